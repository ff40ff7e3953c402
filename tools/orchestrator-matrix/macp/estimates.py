"""Token estimates against what tasks used: the Mosaic Stack guide's loop (seed 004; pure).

The guide estimates every task in "K" tokens (``5K``, ``15K``, ``4.2K``), writes the actual
``used`` figure back into docs/tasks.md in the same format, and after each task checks the
variance ``(used - estimate) / estimate x 100`` against its thresholds on the variance's
size: up to 30 % log only, up to 50 % flag for review, up to 100 % capture a learning, over
100 % CRITICAL (and a learning). Tasks submitted without an estimate get one calibrated from
what finished tasks of their type used.

The unit is :func:`macp.usage.used_tokens`: input not read from a cache, plus output.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable

from macp.lifecycle import status_of
from macp.model import Task, Variance, VarianceLevel
from macp.usage import format_tokens, used_tokens

# (upper bound of |variance| in percent, level): the guide's "Variance Thresholds" table.
THRESHOLDS: tuple[tuple[float, VarianceLevel], ...] = ((30.0, "log"), (50.0, "flag"), (100.0, "learning"))
LEARNING_LEVELS: frozenset[VarianceLevel] = frozenset({"learning", "critical"})


def variance_level(percent: float) -> VarianceLevel:
    """The guide's level for a variance of ``percent`` (its size counts, not its sign)."""
    for bound, level in THRESHOLDS:
        if abs(percent) <= bound:
            return level
    return "critical"


def variance_of(task: Task) -> Variance | None:
    """The variance of ``task``'s ``used_tokens`` (its counted runs' usage) against its
    ``estimate_tokens``; None when it has no estimate or its runs reported no figures."""
    estimate, usage = task.get("estimate_tokens"), task.get("usage")
    if not estimate or usage is None or usage["completeness"] == "unavailable":
        return None
    used = used_tokens(usage)
    percent = round((used - estimate) / estimate * 100, 1)
    return {"estimate_tokens": estimate, "used_tokens": used, "percent": percent, "level": variance_level(percent)}


Calibration = tuple[int, int]
"""A calibrated estimate: (tokens, how many finished tasks it was taken from)."""


def calibrated_estimate(task_type: str | None, finished: Iterable[Task]) -> Calibration | None:
    """The median ``used_tokens`` of the ``finished`` tasks of ``task_type`` (None: tasks
    without a type) that completed with figures, and how many there were; None when there
    are none."""
    used = [
        used_tokens(usage)
        for task in finished
        if task.get("type") == task_type and status_of(task) == "completed"
        and (usage := task.get("usage")) is not None and usage["completeness"] != "unavailable"
    ]
    return (max(1, round(statistics.median(used))), len(used)) if used else None


def estimate_note(task: Task) -> str:
    """How ``task``'s estimate reads in a command's output: ``estimate 5K`` or ``estimate
    4.2K, calibrated``; empty when it has none."""
    estimate = task.get("estimate_tokens")
    if not estimate:
        return ""
    return f"estimate {format_tokens(estimate)}" + (", calibrated" if task.get("estimate_source") == "calibrated" else "")


def learning_entry(task: Task, variance: Variance, at: str) -> dict[str, object]:
    """The learning a task whose variance reached :data:`LEARNING_LEVELS` leaves in the
    learnings file (the guide's ``orchestrator-learnings.json``): when (``at``), which task
    and of what type, on which runtime, how it ended, and the figures in both forms."""
    return {
        "at": at,
        "task_id": task["id"],
        "title": task.get("title") or task["id"],
        "type": task.get("type"),
        "runtime": task.get("attempt_runtime") or task.get("runtime"),
        "status": status_of(task),
        "estimate": format_tokens(variance["estimate_tokens"]),
        "used": format_tokens(variance["used_tokens"]),
        "estimate_tokens": variance["estimate_tokens"],
        "used_tokens": variance["used_tokens"],
        "variance_percent": variance["percent"],
        "level": variance["level"],
    }


def variance_text(variance: Variance) -> str:
    """``used 5.2K of an estimated 4K (+30.0 %, log)``."""
    return f"used {format_tokens(variance['used_tokens'])} of an estimated {format_tokens(variance['estimate_tokens'])} ({variance['percent']:+.1f} %, {variance['level']})"


def calibrate(tasks: list[Task], finished: Callable[[], list[Task]]) -> list[str]:
    """Give each agent task of ``tasks`` without an estimate the median ``used`` of the
    finished tasks of its type (:func:`calibrated_estimate`; ``estimate_source``
    ``calibrated``), in place; returns one line per calibrated type saying so.
    ``finished()`` gives the tasks to calibrate from; it is called only when a task needs
    an estimate (reading the archive is not free), and once."""
    lines: list[str] = []
    by_type: dict[str | None, Calibration | None] = {}
    history: list[Task] | None = None
    for task in tasks:
        if task.get("estimate_tokens") or task.get("dispatch") not in ("yolo", "acp"):
            continue
        kind = task.get("type")
        if kind not in by_type:
            history = finished() if history is None else history
            by_type[kind] = calibrated_estimate(kind, history)
            if (found := by_type[kind]) is not None:
                tokens, count = found
                lines.append(f"estimate {format_tokens(tokens)} for new {kind or 'untyped'} tasks: calibrated, the median used of {count} completed {kind or 'untyped'} task(s)")
        if (calibration := by_type[kind]) is not None:
            task["estimate_tokens"], task["estimate_source"] = calibration[0], "calibrated"
    return lines
