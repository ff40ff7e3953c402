"""Task statuses and the transitions between them (pure; DESIGN.md "The task lifecycle").

Statuses are the brief's enum plus ``cancelled``. ``ready`` and ``blocked`` are derived views
of ``pending`` (see :mod:`macp.scheduler`), never stored.
"""

from __future__ import annotations

from typing import get_args

from macp.errors import MacpError
from macp.model import Task, TaskChanges, TaskStatus

STATUSES: tuple[TaskStatus, ...] = get_args(TaskStatus)
ACTIVE = frozenset({"running", "gated"})
FINISHED = frozenset({"completed", "failed", "escalated", "cancelled"})

ALLOWED: dict[str, frozenset[str]] = {
    "pending": frozenset({"running", "escalated", "cancelled"}),
    # running -> completed: a legacy task, which has no gated step (pre-MACP lifecycle).
    "running": frozenset({"gated", "completed", "pending", "failed", "escalated", "cancelled"}),
    "gated": frozenset({"completed", "pending", "failed", "escalated", "cancelled"}),
    # completed -> pending / escalated: its landing failed (mosaic macp land, issue 25).
    "completed": frozenset({"pending", "escalated"}),
    "failed": frozenset({"pending", "cancelled"}),
    "escalated": frozenset({"pending", "cancelled"}),
    "cancelled": frozenset({"pending"}),
}


def follows_job(task: Task) -> bool:
    """True for a ``running`` task whose worker runs as a scheduler job that outlives its
    controller (task ``job``, the Slurm executor): a controller that stops leaves it
    running, and the next one follows that job to its end instead of running the attempt
    again (docs/scale-out.md)."""
    job = task.get("job")
    return status_of(task) == "running" and job is not None and job.get("step") == "worker"


def status_of(task: Task) -> TaskStatus:
    """The task's status; a task without one (a new legacy entry) is ``pending``."""
    return task.get("status") or "pending"


def can_transition(old: str, new: str) -> bool:
    """True when ``old -> new`` is a transition the lifecycle allows."""
    return new in ALLOWED.get(old, frozenset())


def transition(task: Task, new: TaskStatus, at: str, changes: TaskChanges | None = None) -> Task:
    """A copy of ``task`` moved to status ``new`` at timestamp ``at`` with ``changes`` applied.

    Raises :class:`MacpError` for a transition the lifecycle forbids (e.g. completed -> running).
    """
    old = status_of(task)
    if not can_transition(old, new):
        raise MacpError(f"task {task.get('id')}: cannot go from {old} to {new}")
    return {**task, **(changes or {}), "status": new, "updated_at": at}
