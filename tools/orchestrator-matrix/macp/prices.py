"""Put a price on runs whose runtime reports no cost (issue 23; pure).

codex and gemini report tokens but no cost (docs/usage.md). config ``prices`` holds USD per
million tokens by runtime -- and, optionally, by model (``prices.runtimes.<name>.models``,
chosen by ``runtimes.<name>.model``). A run is priced from the figures it reported: input
not read from a cache (cache writes included) at ``input``, cached input at
``cached_input`` (default: ``input``), output (reasoning included) at ``output``. A cost a
runtime reported is never replaced. The shipped table is marked ``example`` with its date
(``as_of``); :func:`price_note` says so wherever such a cost is shown, so an example never
passes for a bill.
"""

from __future__ import annotations

from macp.model import Config, Price, Usage

PER_MILLION = 1_000_000


def price_for(config: Config, runtime: str) -> Price | None:
    """The prices of ``runtime``'s runs: its model's entry when ``runtimes.<name>.model``
    names one the table lists, else the runtime's own; None when the table has neither
    an ``input`` nor an ``output`` price for it."""
    entry = (config["prices"].get("runtimes") or {}).get(runtime)
    if entry is None:
        return None
    spec = config["runtimes"].get(runtime)
    model = spec.get("model") if spec else None
    models: dict[str, Price] = entry.get("models") or {}
    chosen = models.get(model, entry) if model else entry
    return chosen if "input" in chosen or "output" in chosen else None


def priced(usage: Usage, price: Price | None) -> Usage:
    """``usage`` with a ``cost_usd`` from ``price`` (``cost_source`` ``price_table``) when it
    has token figures and no cost of its own; else ``usage`` as it is."""
    if price is None or usage["cost_usd"] is not None or usage["completeness"] == "unavailable":
        return usage
    cached = usage["cached_input_tokens"]
    cost = (
        (usage["input_tokens"] - cached) * price.get("input", 0.0)
        + cached * price.get("cached_input", price.get("input", 0.0))
        + usage["output_tokens"] * price.get("output", 0.0)
    ) / PER_MILLION
    return {**usage, "cost_usd": round(cost, 10), "cost_source": "price_table"}


def price_note(config: Config) -> str:
    """What a reader of a cost must know about the table it came from: ``prices are the
    shipped examples as of 2026-12-01: set prices in config.json`` when ``example``;
    empty otherwise."""
    prices = config["prices"]
    if not prices.get("example"):
        return ""
    return f"costs from the price table are the shipped examples as of {prices.get('as_of') or 'an unknown date'}: set prices in config.json"
