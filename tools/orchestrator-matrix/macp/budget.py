"""Budgets that stop work before it starts, not in the middle of an edit (issue 23; pure).

Two kinds (docs/usage.md):

- a task's own caps: ``max_tokens`` (used tokens, :func:`macp.usage.used_tokens`) and
  ``max_cost_usd``, else config ``budget.task_max_tokens`` / ``budget.task_max_cost_usd``.
  They count every run of the task, the ones that did not count as attempts (waste)
  included: retries, failover and provider failures spend like anything else.
- period budgets in US dollars: ``budget.daily_usd`` (every run recorded on a UTC day) and
  ``budget.per_run_usd`` (every run of one controller run).

Before an agent task (yolo, acp) is claimed, :func:`budget_verdict` weighs what is left
against the task's estimate (``estimate_tokens``; priced by :func:`estimated_cost`): a task
that would overrun a cap it can never meet is escalated ``budget: ...`` with the figures; one
that would overrun today's budget waits (``not_before``) until the next UTC day; one that
would overrun this run's budget is left pending for the next run. After a run,
:func:`overrun` says when the task's own report took it past its cap: a counted failure of
class ``budget`` (:mod:`macp.decide`). exec tasks use no model and are never held.

Costs are known only where a runtime reported one or the price table priced it
(:mod:`macp.prices`); a run without a cost counts 0 dollars, and :class:`Ledger` counts
such runs so the output can say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from macp import clock
from macp.model import Config, Run, Task, Usage
from macp.prices import PER_MILLION, price_for, price_note
from macp.usage import format_tokens, used_tokens

BUDGET = "budget"  # the escalation reasons' prefix and the failure class


@dataclass
class Ledger:
    """What recorded runs cost, kept as runs are recorded: US dollars per UTC day
    (``YYYY-MM-DD``), in this controller run, and per runtime the cost and used tokens of
    its priced runs (what :func:`estimated_cost` measures a runtime's price by);
    ``unpriced_runs`` counts runs with figures but no cost."""

    by_day: dict[str, float] = field(default_factory=dict)
    this_run: float = 0.0
    rates: dict[str, tuple[float, int]] = field(default_factory=dict)
    unpriced_runs: int = 0

    @classmethod
    def of(cls, tasks: list[Task]) -> Ledger:
        """The ledger of every run of ``tasks`` (none of them in this controller run)."""
        ledger = cls()
        for task in tasks:
            for run in task.get("runs") or []:
                ledger.add(run, this_run=False)
        return ledger

    def add(self, run: Run, this_run: bool = True) -> None:
        """Count ``run`` (recorded at its ``at``), in this controller run when ``this_run``."""
        usage = run.get("usage")
        if usage is None or usage["completeness"] == "unavailable":
            return
        cost = usage["cost_usd"]
        if cost is None:
            self.unpriced_runs += 1
            return
        day = (run.get("at") or "")[:10]
        self.by_day[day] = self.by_day.get(day, 0.0) + cost
        if this_run:
            self.this_run += cost
        spent, used = self.rates.get(run["runtime"], (0.0, 0))
        self.rates[run["runtime"]] = (spent + cost, used + used_tokens(usage))

    def today(self, now: datetime) -> float:
        """What runs recorded on ``now``'s UTC day cost."""
        return self.by_day.get(now.astimezone(timezone.utc).strftime("%Y-%m-%d"), 0.0)


def next_day(now: datetime) -> datetime:
    """The start of the UTC day after ``now``'s: when a daily budget is whole again."""
    day = now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return day + timedelta(days=1)


def estimated_cost(tokens: int, runtime: str | None, config: Config, ledger: Ledger) -> float | None:
    """What ``tokens`` used tokens on ``runtime`` are expected to cost, in US dollars: at
    the runtime's measured rate (the cost of its priced runs over their used tokens) once
    it has one, else at the price table's ``input`` price (an agent run's used tokens are
    mostly input: the capture of a real codex run is 93 % input; its ``output`` price when
    it has none); None when neither is known. 0 tokens cost 0."""
    if not tokens:
        return 0.0
    spent, used = ledger.rates.get(runtime or "", (0.0, 0))
    if spent > 0 and used > 0:
        return tokens * spent / used
    price = price_for(config, runtime) if runtime else None
    if price is None:
        return None
    return tokens * price.get("input", price.get("output", 0.0)) / PER_MILLION


def caps(task: Task, config: Config) -> tuple[int | None, float | None]:
    """The task's ``(max_tokens, max_cost_usd)``: its own, else config ``budget``'s defaults."""
    budget = config["budget"]
    return task.get("max_tokens") or budget["task_max_tokens"], task.get("max_cost_usd") or budget["task_max_cost_usd"]


def spent(task: Task, run_usage: Usage | None = None) -> tuple[int, float]:
    """What the task has spent over all its runs, waste included, plus ``run_usage`` (a run
    not yet recorded): (used tokens, US dollars; a run without a cost counts 0)."""
    usages = [usage for usage in (task.get("usage"), task.get("waste"), run_usage) if usage is not None]
    return sum(used_tokens(usage) for usage in usages), sum(usage["cost_usd"] or 0.0 for usage in usages)


def remaining_cost(task: Task, config: Config) -> float | None:
    """US dollars the task may still spend under its ``max_cost_usd`` (a runtime that takes
    a cap gets it on its command line: ``runtimes.<name>.caps``); None without a cap."""
    _, max_cost = caps(task, config)
    return None if max_cost is None else max(0.0, max_cost - spent(task)[1])


def cap_text(amount: float) -> str:
    """A cap as a CLI argument: ``0.75``, ``0.0031`` (at most four decimals, no trailing zeros)."""
    return f"{amount:.4f}".rstrip("0").rstrip(".") or "0"


def dollars(amount: float) -> str:
    """``$0.42``; amounts under a cent keep four decimals (``$0.0031``)."""
    return f"${amount:.2f}" if amount >= 0.01 or amount == 0 else f"${amount:.4f}"


Verdict = tuple[str, str, str | None]
"""(kind, message, until): kind ``escalate`` (a cap the task can never meet), ``wait``
(until the ``until`` timestamp, the next UTC day) or ``pass`` (this run's budget: left
pending for the next run)."""


def budget_verdict(task: Task, runtime: str | None, config: Config, ledger: Ledger, now: datetime) -> Verdict | None:
    """Whether ``task``, about to be claimed on ``runtime``, must not start for a budget
    (the module docstring), and why; None when it may."""
    estimate = task.get("estimate_tokens") or 0
    cost = estimated_cost(estimate, runtime, config, ledger)
    used, paid = spent(task)
    max_tokens, max_cost = caps(task, config)
    # nothing left (a run already reached the cap: :func:`overrun`), or not enough for the estimate
    if max_tokens is not None and (used >= max_tokens or used + estimate > max_tokens):
        return "escalate", f"{BUDGET}: {_against('used', format_tokens(used), 'max_tokens', format_tokens(max_tokens), format_tokens(estimate) if estimate else None)}", None
    if max_cost is not None and (paid >= max_cost or paid + (cost or 0.0) > max_cost):
        return "escalate", f"{BUDGET}: {_against('spent', dollars(paid), 'max_cost_usd', dollars(max_cost), dollars(cost) if cost else None)}", None
    budget = config["budget"]
    if budget["daily_usd"] is not None:
        daily, today = budget["daily_usd"], ledger.today(now)
        if (cost or 0.0) > daily:
            return "escalate", f"{BUDGET}: its estimated cost {dollars(cost or 0.0)} is more than the whole daily budget {dollars(daily)}", None
        if today + (cost or 0.0) > daily or today >= daily:
            until = clock.format_timestamp(next_day(now))
            return "wait", f"{BUDGET}: today's runs cost {dollars(today)} of the daily {dollars(daily)}, its estimate {dollars(cost or 0.0)}; waiting until {until}", until
    per_run = budget["per_run_usd"]
    if per_run is not None and (ledger.this_run + (cost or 0.0) > per_run or ledger.this_run >= per_run):
        return "pass", f"{BUDGET}: this run's tasks cost {dollars(ledger.this_run)} of its {dollars(per_run)}, its estimate {dollars(cost or 0.0)}; left for the next run", None
    return None


def _against(verb: str, spent_text: str, cap_name: str, limit_text: str, estimate_text: str | None) -> str:
    """``the task has used 3K of its max_tokens 8K and its estimate is 6K``."""
    return f"the task has {verb} {spent_text} of its {cap_name} {limit_text}" + (f" and its estimate is {estimate_text}" if estimate_text else "")


def overrun(task: Task, run_usage: Usage, config: Config) -> str | None:
    """Why the run that used ``run_usage`` took ``task`` to its own cap or past it -- by its
    runtime's own report: nothing is left for another attempt (claude, given the cap,
    stops itself once its cost reaches it: "Reached maximum budget") -- or None."""
    used, paid = spent(task, run_usage)
    max_tokens, max_cost = caps(task, config)
    if max_tokens is not None and used >= max_tokens:
        return f"{BUDGET}: the task used {format_tokens(used)}, its max_tokens is {format_tokens(max_tokens)}"
    if max_cost is not None and paid >= max_cost:
        return f"{BUDGET}: the task spent {dollars(paid)}, its max_cost_usd is {dollars(max_cost)}"
    return None


def budget_lines(config: Config, ledger: Ledger, now: datetime) -> list[str]:
    """What a person running a drain should know of the budgets (``--dry-run`` and the end
    of a drain): each one configured and what is spent of it, runs no price covers, and
    the example price table's note (:func:`macp.prices.price_note`). None when no budget
    is configured."""
    budget = config["budget"]
    lines = []
    if budget["daily_usd"] is not None:
        lines.append(f"budget: today's runs (UTC) cost {dollars(ledger.today(now))} of the daily {dollars(budget['daily_usd'])}")
    if budget["per_run_usd"] is not None:
        lines.append(f"budget: this run's tasks cost {dollars(ledger.this_run)} of its {dollars(budget['per_run_usd'])}; ready tasks past it wait for the next run")
    defaults = [f"{name} {text}" for name, value, text in (
        ("max_tokens", budget["task_max_tokens"], format_tokens(budget["task_max_tokens"] or 0)),
        ("max_cost_usd", budget["task_max_cost_usd"], dollars(budget["task_max_cost_usd"] or 0.0)),
    ) if value is not None]
    if defaults:
        lines.append(f"budget: a task without its own cap has {', '.join(defaults)}")
    if not lines:
        return []
    if ledger.unpriced_runs:
        lines.append(f"budget: {ledger.unpriced_runs} run(s) reported tokens but no cost and no price covers their runtime: they count $0")
    if note := price_note(config):
        lines.append(f"budget: {note}")
    return lines
