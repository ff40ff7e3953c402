"""What the work cost, grouped: the figures of ``mosaic macp usage`` (issue 23; pure).

Every recorded run of every task (the queue and the archive) is counted once, in the group
of its task (``task``, ``type``), its runtime (``runtime``) or the UTC day it was recorded
(``day``): its tokens, its used tokens (:func:`macp.usage.used_tokens`) and its cost, the
runs that did not count (provider failures) as ``waste`` apart. A task's estimate counts in
the group of its last counted run, against the used tokens of its counted runs, so the
groups' estimates and variances add up to the whole as the runs do. ``since`` keeps the
runs recorded from then on (and the estimates of tasks whose last counted run is one).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from macp.budget import dollars
from macp.model import Run, Task
from macp.usage import format_tokens, used_tokens

Grouping = Literal["task", "runtime", "type", "day"]
GROUPINGS: tuple[Grouping, ...] = ("task", "runtime", "type", "day")
TOKEN_FIELDS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens", "total_tokens")


@dataclass
class Tally:
    """The sums of one group (or of all): runs with figures, their tokens and used tokens,
    the cost of those with one (``unpriced_runs`` have none; ``table_priced_runs`` were
    priced from the price table), runs with no figures at all,
    the waste (runs that did not count) apart, and the estimates of the group's tasks
    against those tasks' used tokens."""

    runs: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_FIELDS, 0))
    used_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_runs: int = 0
    table_priced_runs: int = 0
    runs_without_figures: int = 0
    waste_runs: int = 0
    waste_used_tokens: int = 0
    waste_cost_usd: float = 0.0
    estimated_tasks: int = 0
    estimate_tokens: int = 0
    estimated_used_tokens: int = 0

    def add_run(self, run: Run) -> None:
        """Count ``run``: as work when it counted, else as waste."""
        usage = run.get("usage")
        if usage is None or usage["completeness"] == "unavailable":
            self.runs_without_figures += 1
            return
        if not run.get("counted", True):
            self.waste_runs += 1
            self.waste_used_tokens += used_tokens(usage)
            self.waste_cost_usd += usage["cost_usd"] or 0.0
            return
        self.runs += 1
        for name in TOKEN_FIELDS:
            self.tokens[name] += usage[name]  # type: ignore[literal-required]
        self.used_tokens += used_tokens(usage)
        if usage["cost_usd"] is None:
            self.unpriced_runs += 1
        else:
            self.cost_usd += usage["cost_usd"]
            self.table_priced_runs += usage["cost_source"] == "price_table"

    def add_estimate(self, estimate: int, used: int) -> None:
        """Count a task's ``estimate`` against what its counted runs ``used``."""
        self.estimated_tasks += 1
        self.estimate_tokens += estimate
        self.estimated_used_tokens += used

    @property
    def variance_percent(self) -> float | None:
        """(used - estimate) / estimate x 100 over the estimated tasks; None without one."""
        if not self.estimate_tokens:
            return None
        return round((self.estimated_used_tokens - self.estimate_tokens) / self.estimate_tokens * 100, 1)

    def as_json(self) -> dict[str, Any]:
        """The tally as ``usage --json`` prints it (costs rounded to 10 decimals)."""
        return {
            "runs": self.runs,
            **self.tokens,
            "used_tokens": self.used_tokens,
            "cost_usd": round(self.cost_usd, 10),
            "unpriced_runs": self.unpriced_runs,
            "table_priced_runs": self.table_priced_runs,
            "runs_without_figures": self.runs_without_figures,
            "waste": {"runs": self.waste_runs, "used_tokens": self.waste_used_tokens, "cost_usd": round(self.waste_cost_usd, 10)},
            "estimate": {"tasks": self.estimated_tasks, "estimate_tokens": self.estimate_tokens, "used_tokens": self.estimated_used_tokens,
                         "variance_percent": self.variance_percent},
        }


def group_key(by: Grouping, task: Task, run: Run) -> str:
    """The group ``run`` of ``task`` counts in."""
    if by == "task":
        return task["id"]
    if by == "runtime":
        return run["runtime"]
    if by == "type":
        return task.get("type") or "(none)"
    return (run.get("at") or "")[:10] or "(undated)"


def usage_groups(tasks: Iterable[Task], by: Grouping, since: str | None = None) -> tuple[dict[str, Tally], Tally]:
    """Every group's :class:`Tally` (in the order first met; days sorted) and the total, from
    the runs of ``tasks`` recorded at or after ``since`` (a timestamp; None: all)."""
    groups: dict[str, Tally] = {}
    total = Tally()
    for task in tasks:
        runs = [run for run in task.get("runs") or [] if since is None or (run.get("at") or "") >= since]
        for run in runs:
            for tally in (groups.setdefault(group_key(by, task, run), Tally()), total):
                tally.add_run(run)
        counted = [run for run in runs if run.get("counted", True) and (usage := run.get("usage")) and usage["completeness"] != "unavailable"]
        if task.get("estimate_tokens") and counted:
            used = sum(used_tokens(run["usage"]) for run in counted)
            for tally in (groups[group_key(by, task, counted[-1])], total):
                tally.add_estimate(task["estimate_tokens"], used)
    if by == "day":
        groups = dict(sorted(groups.items()))
    return groups, total


def spend_of(task: Task) -> dict[str, Any]:
    """What one task spent, for ``status``, the drain summary and the JUnit properties:
    ``used_tokens`` and ``cost_usd`` of its counted runs, its ``estimate_tokens``, and the
    ``waste_used_tokens`` / ``waste_cost_usd`` of the rest; None where there is no figure
    (no agent run reported one, no cost known, no estimate)."""
    usage, waste = task.get("usage"), task.get("waste")
    has = [value is not None and value["completeness"] != "unavailable" for value in (usage, waste)]
    return {
        "used_tokens": used_tokens(usage) if usage is not None and has[0] else None,
        "cost_usd": usage["cost_usd"] if usage is not None else None,
        "estimate_tokens": task.get("estimate_tokens"),
        "waste_used_tokens": used_tokens(waste) if waste is not None and has[1] else None,
        "waste_cost_usd": waste["cost_usd"] if waste is not None else None,
    }


def spend_text(spend: dict[str, Any]) -> str:
    """One short cell: ``1.1K/5K $0.0020`` (used/estimate, cost); ``-`` with no figure."""
    if spend["used_tokens"] is None:
        return "-" if not spend["estimate_tokens"] else f"-/{format_tokens(spend['estimate_tokens'])}"
    text = format_tokens(spend["used_tokens"]) + (f"/{format_tokens(spend['estimate_tokens'])}" if spend["estimate_tokens"] else "")
    return text + (f" {dollars(spend['cost_usd'])}" if spend["cost_usd"] is not None else "")
