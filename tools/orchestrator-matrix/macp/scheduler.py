"""Which task runs next, and why the others wait (pure functions).

Order (DESIGN.md "Order, time and determinism"): runnable tasks by ``priority`` (higher
first), then by position in tasks.json. A pending task is *ready* when every ``depends_on``
task is ``completed`` and its ``not_before`` has passed; otherwise it is *blocked* (a
dependency) or *waiting* (a time).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from macp.clock import parse_timestamp
from macp.lifecycle import status_of
from macp.model import Task


def queue_order(tasks: list[Task]) -> list[Task]:
    """``tasks`` sorted by priority (higher first), ties kept in file order."""
    return sorted(tasks, key=queue_rank)  # sorted() is stable: equal ranks keep file order


def queue_rank(task: Task) -> int:
    """Minus the task's priority (an integer, else 0): the sort key of :func:`queue_order`."""
    priority = task.get("priority", 0)
    return -priority if type(priority) is int else 0


def hold_reason(task: Task, by_id: Mapping[str, Task], now: datetime) -> str | None:
    """Why the pending ``task`` cannot run at ``now``, or None when it is ready.

    ``by_id`` maps task ids to tasks. Reasons read ``blocked by X (running)``,
    ``unknown dependency X`` or ``waiting until <timestamp>``.
    """
    for dependency in task.get("depends_on") or []:
        other = by_id.get(dependency)
        if other is None:
            return f"unknown dependency {dependency}"
        if other.get("risk_hold") and status_of(other) == "escalated":
            return f"blocked by {dependency} (held for approval: mosaic macp approve {dependency})"
        if status_of(other) != "completed":
            return f"blocked by {dependency} ({status_of(other)})"
    not_before = task.get("not_before")
    if not_before and parse_timestamp(not_before) > now:
        return f"waiting until {not_before}"
    return None


def pick_next(tasks: list[Task], now: datetime) -> Task | None:
    """The first ready pending task in :func:`queue_order`, or None."""
    by_id = {task["id"]: task for task in tasks}
    for task in queue_order(tasks):
        if status_of(task) == "pending" and hold_reason(task, by_id, now) is None:
            return task
    return None
