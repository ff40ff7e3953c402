"""What an agent run used, read exactly from the runtime's own structured output (pure; issue 23).

Every runtime reports tokens in its own shape and with its own meaning. MACP keeps one:
``input_tokens`` counts every input token -- those read from a cache
(``cached_input_tokens``) and written to one (``cache_write_tokens``) included;
``output_tokens`` counts every output token, reasoning (``reasoning_tokens``) included;
``total_tokens`` is their sum. What each CLI prints (checked against the real CLIs and a
fake model API that reports distinct figures, ``tests/live/fake_model_api.py``):

- codex ``exec --json``: ``turn.completed.usage`` {``input_tokens`` (cached included),
  ``cached_input_tokens``, ``cache_write_input_tokens``, ``output_tokens`` (reasoning
  included), ``reasoning_output_tokens``}; cumulative for the thread, so the last one counts;
  ``turn.failed`` carries none; no cost.
- claude ``-p --output-format stream-json``: the final ``result`` line's ``usage``
  {``input_tokens`` (not cached), ``cache_read_input_tokens``,
  ``cache_creation_input_tokens``, ``output_tokens`` (thinking included,
  ``output_tokens_details.thinking_tokens``)} and ``total_cost_usd``; error results carry
  them too.
- gemini ``--output-format stream-json``: the final ``result.stats`` {``input_tokens``
  (cached included), ``cached``, ``output_tokens`` (thoughts *not* included),
  ``total_tokens`` (thoughts included)}: thoughts are the difference; no cost.
- opencode ``run --format json``: one ``step_finish`` per step, ``part.tokens``
  {``input`` (not cached), ``output`` (reasoning *not* included), ``reasoning``,
  ``cache.read``, ``cache.write``} and ``part.cost``: the steps are summed.

``completeness``: ``complete`` when the run's final report was read, ``partial`` when only
part of the run was (a run killed or failed before its final report: opencode's steps so
far), ``unavailable`` when the output holds no figures (a text runtime, a run that never
reached the model). A cost is ``reported`` only when the runtime put a figure on it (opencode
reports 0 for a model it has no prices for: that is no price).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from macp.jsontext import json_object
from macp.model import Completeness, Run, TaskChanges, Usage
from macp.runtime_output import structured_events

_FIGURE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*$")
_SCALE = {"": 1, "k": 1_000, "m": 1_000_000}

def parse_tokens(text: str) -> int:
    """A token figure as the guide writes it -- ``5K`` (5000), ``4.2K`` (4200), ``1.5M``,
    or a plain ``800`` -- as a whole number of tokens. Raises ValueError for anything else
    (the message names the accepted forms)."""
    match = _FIGURE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a token figure (like 800, 5K, 4.2K or 1.5M)")
    return round(float(match.group(1)) * _SCALE[match.group(2).lower()])


def format_tokens(tokens: int) -> str:
    """``tokens`` in the guide's format: ``800``, ``5.2K``, ``15K``, ``1.2M`` (one decimal,
    dropped when it is 0)."""
    if tokens < 1_000:
        return str(tokens)
    value, suffix = (tokens / 1_000_000, "M") if tokens >= 999_950 else (tokens / 1_000, "K")
    return f"{value:.1f}".removesuffix(".0") + suffix


def reported_usage(report: Mapping[str, Any]) -> Usage | None:
    """What a worker's own report says it used (docs/workers.md; an exec worker, or an agent
    whose runtime prints no figures): a ``usage`` object with MACP's field names
    (``input_tokens``, ``cached_input_tokens``, ``cache_write_tokens``, ``output_tokens``,
    ``reasoning_tokens``, ``cost_usd``: the cost is ``reported``), else the Mosaic Stack
    guide's ``used`` figure (``"5.2K"``): used tokens whose split is unknown, counted as
    input. None when the report has neither, or they cannot be read."""
    figures = report.get("usage")
    if isinstance(figures, dict):
        return _named(figures, _MACP_NAMES, cost_usd=_cost(figures.get("cost_usd")))
    used = report.get("used")
    if isinstance(used, str):
        try:
            return usage_of(input_tokens=parse_tokens(used))
        except ValueError:
            return None
    return None


def unavailable() -> Usage:
    """No figures at all."""
    return usage_of(completeness="unavailable")


def usage_of(
    *, input_tokens: int = 0, cached: int = 0, cache_write: int = 0, output_tokens: int = 0, reasoning: int = 0,
    cost_usd: float | None = None, completeness: Completeness = "complete",
) -> Usage:
    """A :class:`~macp.model.Usage` from MACP's meanings (module docstring); a cost is
    ``reported`` when given."""
    return {
        "input_tokens": input_tokens,
        "cached_input_tokens": cached,
        "cache_write_tokens": cache_write,
        "output_tokens": output_tokens,
        "reasoning_tokens": reasoning,
        "total_tokens": input_tokens + output_tokens,
        "cost_usd": cost_usd,
        "cost_source": "reported" if cost_usd is not None else None,
        "completeness": completeness,
    }


def used_tokens(usage: Usage) -> int:
    """What a run or task *used*, in MACP's one unit for estimates, ``used`` and budgets
    (issue 23; the Mosaic Stack guide's "K" tokens): input not read from a cache, plus
    output -- so cache hits, which cost a tenth or less, do not swing it."""
    return usage["input_tokens"] - usage["cached_input_tokens"] + usage["output_tokens"]


def combined(usages: Iterable[Usage]) -> Usage:
    """The sum of ``usages`` (several runs). A cost is known only when every run's is, and
    its source is the one they share (else ``price_table``, the weaker); the completeness
    is the worst of theirs -- ``partial`` when complete and unavailable runs mix. The sum of
    nothing is :func:`unavailable`."""
    usages = list(usages)
    if not usages:
        return unavailable()
    costs = [usage["cost_usd"] for usage in usages]
    sources = {usage["cost_source"] for usage in usages}
    kinds = {usage["completeness"] for usage in usages}
    total = usage_of(
        input_tokens=sum(usage["input_tokens"] for usage in usages),
        cached=sum(usage["cached_input_tokens"] for usage in usages),
        cache_write=sum(usage["cache_write_tokens"] for usage in usages),
        output_tokens=sum(usage["output_tokens"] for usage in usages),
        reasoning=sum(usage["reasoning_tokens"] for usage in usages),
        cost_usd=None if None in costs else round(sum(cost for cost in costs if cost is not None), 10),
        completeness="partial" if len(kinds) > 1 else kinds.pop(),
    )
    if total["cost_usd"] is not None and sources != {"reported"}:
        total["cost_source"] = "price_table"
    return total


def read_usage(output: str, output_format: str) -> Usage:
    """What the run whose merged output is ``output`` used, read as ``output_format``
    (a runtime's ``output`` setting; ``text`` and unknown formats have no figures)."""
    reader = _READERS.get(output_format)
    return reader(structured_events(output)) if reader else unavailable()


def _count(value: Any) -> int:
    """A token count as the runtime wrote it: a non-negative integer, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


# Names of (input, cached input, cache writes, output, reasoning) in MACP's meanings.
_MACP_NAMES = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
_CODEX_NAMES = ("input_tokens", "cached_input_tokens", "cache_write_input_tokens", "output_tokens", "reasoning_output_tokens")


def _named(figures: dict, names: tuple[str, str, str, str, str], cost_usd: float | None = None) -> Usage:
    """A :class:`~macp.model.Usage` from ``figures`` that already mean what MACP's fields
    mean, under the ``names`` (input, cached input, cache writes, output, reasoning)."""
    input_tokens, cached, cache_write, output_tokens, reasoning = (_count(figures.get(name)) for name in names)
    return usage_of(input_tokens=input_tokens, cached=cached, cache_write=cache_write, output_tokens=output_tokens, reasoning=reasoning, cost_usd=cost_usd)


def _cost(value: Any) -> float | None:
    """A reported cost in dollars; None when there is none, or 0 (no price known)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def _codex(events: list[dict]) -> Usage:
    reports = [json_object(event.get("usage")) for event in events if event["type"] == "turn.completed" and isinstance(event.get("usage"), dict)]
    if not reports:
        return unavailable()
    return _named(reports[-1], _CODEX_NAMES)  # cumulative for the thread: the last report holds the whole run


def _claude(events: list[dict]) -> Usage:
    results = [event for event in events if event["type"] == "result" and isinstance(event.get("usage"), dict)]
    if not results:
        return unavailable()
    final = results[-1]
    usage = json_object(final.get("usage"))
    cache_read, cache_write = _count(usage.get("cache_read_input_tokens")), _count(usage.get("cache_creation_input_tokens"))
    return usage_of(
        input_tokens=_count(usage.get("input_tokens")) + cache_read + cache_write,
        cached=cache_read,
        cache_write=cache_write,
        output_tokens=_count(usage.get("output_tokens")),
        reasoning=_count(json_object(usage.get("output_tokens_details")).get("thinking_tokens")),
        cost_usd=_cost(final.get("total_cost_usd")),
    )


def _gemini(events: list[dict]) -> Usage:
    results = [json_object(event.get("stats")) for event in events if event["type"] == "result" and isinstance(event.get("stats"), dict)]
    if not results:
        return unavailable()
    stats = results[-1]
    input_tokens, output_tokens = _count(stats.get("input_tokens")), _count(stats.get("output_tokens"))
    thoughts = max(0, _count(stats.get("total_tokens")) - input_tokens - output_tokens)  # only the total counts them
    return usage_of(
        input_tokens=input_tokens, cached=_count(stats.get("cached")), output_tokens=output_tokens + thoughts, reasoning=thoughts
    )


def _opencode(events: list[dict]) -> Usage:
    steps = [json_object(event.get("part")) for event in events if event["type"] == "step_finish"]
    if not steps:
        return unavailable()
    tokens = [json_object(step.get("tokens")) for step in steps]
    cache = [json_object(entry.get("cache")) for entry in tokens]
    read, written = sum(_count(entry.get("read")) for entry in cache), sum(_count(entry.get("write")) for entry in cache)
    reasoning = sum(_count(entry.get("reasoning")) for entry in tokens)
    costs = [_cost(step.get("cost")) for step in steps]
    finished = steps[-1].get("reason") == "stop"  # the last step of a run that ended: its final report
    return usage_of(
        input_tokens=sum(_count(entry.get("input")) for entry in tokens) + read + written,
        cached=read,
        cache_write=written,
        output_tokens=sum(_count(entry.get("output")) for entry in tokens) + reasoning,
        reasoning=reasoning,
        cost_usd=None if all(cost is None for cost in costs) else sum(cost or 0.0 for cost in costs),
        completeness="complete" if finished else "partial",
    )


_READERS: dict[str, Callable[[list[dict]], Usage]] = {
    "codex-json": _codex,
    "claude-stream-json": _claude,
    "gemini-stream-json": _gemini,
    "opencode-json": _opencode,
}


def sums_of(runs: list[Run]) -> TaskChanges:
    """A task's ``usage`` (its counted runs, summed) and ``waste`` (its runs that did not
    count -- provider failures -- summed apart, never lost) from its ``runs``."""
    counted = [run["usage"] for run in runs if "usage" in run and run.get("counted", True)]
    wasted = [run["usage"] for run in runs if "usage" in run and not run.get("counted", True)]
    return {"usage": combined(counted), "waste": combined(wasted)}
