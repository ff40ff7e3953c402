"""Landing (issue 25, docs/landing.md): which completed tasks land, in which order, and what a
landing that failed means for its task -- pure, like :mod:`macp.decide`. The command that
carries it out is :mod:`controller.land_cli`.

- A task can land when it is ``completed``, has a branch, and has not landed yet
  (``landed_commit``).
- They land in dependency order (a task after the tasks it depends on that land in the
  same run), then in queue order (:func:`macp.scheduler.queue_order`).
- A task whose landing failed -- its branch conflicts with what is on the target, or the
  gates fail on the combination -- goes back to its task like a failed gate: ``pending``
  with the failure as the next brief's guidance while attempts remain (the landing counts as
  one), else ``escalated``.
"""

from __future__ import annotations

from macp.errors import MacpError
from macp.lifecycle import status_of
from macp.model import Failure, Task, TaskChanges, TaskStatus
from macp.scheduler import queue_order


def can_land(task: Task) -> bool:
    """True for a completed task with a branch that has not landed yet."""
    return status_of(task) == "completed" and bool(task.get("branch")) and not task.get("landed_commit")


def landing_order(tasks: list[Task], ids: list[str] | None) -> list[Task]:
    """The tasks to land: those named by ``ids`` (None: every task that can land), in
    dependency then queue order. Raises :class:`MacpError` naming the first id that is not
    a task, or a task that cannot land (and why)."""
    by_id = {task["id"]: task for task in tasks}
    if ids is None:
        chosen = [task for task in tasks if can_land(task)]
    else:
        chosen = []
        for task_id in dict.fromkeys(ids):
            task = by_id.get(task_id)
            if task is None:
                raise MacpError(f"no task {task_id!r}")
            if not can_land(task):
                why = f"it is {status_of(task)}" if status_of(task) != "completed" else "it landed already" if task.get("landed_commit") else "it has no branch"
                raise MacpError(f"task {task_id} cannot land: {why}; only completed tasks that have not landed can")
            chosen.append(task)
    waiting = {task["id"] for task in chosen}
    ordered: list[Task] = []
    remaining = queue_order(chosen)
    while remaining:  # each round takes the first task whose dependencies in this run have landed
        ready = next((task for task in remaining if not set(task.get("depends_on") or []) & waiting), remaining[0])
        ordered.append(ready)
        remaining.remove(ready)
        waiting.discard(ready["id"])
    return ordered


def land_message(task: Task) -> str:
    """The landing commit's message: ``<id>: <title>`` (the title on one line, at most 200
    characters)."""
    title = " ".join((task.get("title") or task["id"]).split())[:200]
    return f"{task['id']}: {title}"


def sent_back(task: Task, failure: Failure, max_attempts: int, base_commit: str) -> tuple[TaskStatus, TaskChanges, str]:
    """What a failed landing (``failure``, kind ``land``) does to ``task``: ``(status,
    changes, message)``. Back to ``pending`` while it has attempts left (``max_attempts``),
    its failure kept for the next brief and its work started again from ``base_commit``, the
    target's tip; else ``escalated``."""
    what = landing_failure_text(failure)
    changes: TaskChanges = {"last_failure": failure, "landed_commit": None, "landed_at": None}
    if task.get("attempts", 0) < max_attempts:
        changes.update({"base_commit": base_commit, "not_before": None, "completed_at": None, "stacked_on": []})
        return "pending", changes, f"{what}; sent back to retry from the target's tip ({task.get('attempts', 0) + 1}/{max_attempts})"
    reason = f"{what}, after {task.get('attempts', 0)} attempt(s)"
    return "escalated", {**changes, "escalation_reason": reason}, reason


def landing_failure_text(failure: Failure) -> str:
    """One line saying why a landing failed (also the guidance's summary of it)."""
    if failure.get("conflicts"):
        shown = ", ".join((failure.get("conflicts") or [])[:5])
        landed = failure.get("conflicts_with")
        return f"landing it conflicts in {shown}" + (f" with {landed}, landed before it" if landed else " with the target")
    return f"quality gate `{failure.get('gate')}` ({failure.get('classification', 'unknown')}) failed on it combined with the target"
