"""Decide which task the controller claims next, and what must be held back first (pure).

Before a task is claimed (DESIGN.md "The task lifecycle", issue 4):

- pending tasks in a dependency cycle are escalated with the cycle's path;
- pending tasks whose dependency ended failed/escalated/cancelled, or does not exist, are
  escalated with the reason (like Airflow's upstream_failed) instead of waiting forever;
- a task whose dispatch is covered by the risk policy (``macp.risk``, yolo by default) and
  whose title, description or brief matches the risk lexicon is escalated before dispatch
  until a person approves it;
- a yolo/acp task whose every usable runtime is cooling down waits (``not_before``) until
  the first one is back;
- a yolo/acp task that would overrun a budget (:mod:`macp.budget`) is escalated when it
  can never meet its own cap, waits until the next UTC day for the daily budget, or is
  passed over for this run's.

The first ready task that passes is claimed, with the runtime :mod:`macp.selection` picks --
unless it must wait for a task already running (issue 12, docs/workers.md): one of its
``exclusive_group`` is running, or its runtime already runs ``runtimes.<name>.max_parallel``
attempts. Such a task is passed over for now, unchanged (no hold, no event), and the next
ready task is considered; a serial run never meets either case.
Tasks the controller *refused* (a schema error or a path that leaves where it must stay,
issue 9) are never claimed and never changed: their dependents wait for them, and every
other task runs as if they were not there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from macp import clock
from macp.budget import Ledger, budget_verdict
from macp.budget import Verdict as BudgetVerdict
from macp.dependencies import KnownTasks, Outside, doomed_tasks, find_cycles
from macp.lifecycle import ACTIVE, FINISHED, STATUSES, status_of
from macp.model import Config, Task, TaskChanges, TaskStatus
from macp.naming import branch_name
from macp.risk import risk_term
from macp.scheduler import pick_next
from macp.selection import choose_runtime
from macp.settings import runtime_max_parallel


@dataclass(frozen=True)
class Hold:
    """A change to make to a task instead of claiming it: ``status`` (None keeps the
    status), field ``changes``, and the event that records it."""

    task_id: str
    status: TaskStatus | None
    changes: TaskChanges
    event_type: str
    message: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def apply(self, task: Task) -> None:
        """Make this hold's changes to ``task`` (a simulated copy) in place."""
        task.update(self.changes)
        if self.status:
            task["status"] = self.status


@dataclass(frozen=True)
class Admission:
    """The task to claim (or None), the runtime it runs on and why, and the holds to apply."""

    task: Task | None
    runtime: str | None
    why: str
    holds: list[Hold]


def dependency_holds(tasks: list[Task]) -> list[Hold]:
    """Escalations for pending tasks in a dependency cycle or behind a dead dependency."""
    holds: list[Hold] = []
    held: set[str] = set()
    pending = {task["id"] for task in tasks if status_of(task) == "pending"}
    for cycle in find_cycles(tasks):
        path = " -> ".join(cycle)
        for task_id in dict.fromkeys(cycle):
            if task_id in pending and task_id not in held:
                reason = f"dependency cycle: {path}"
                holds.append(Hold(task_id, "escalated", {"escalation_reason": reason}, "task.escalated", reason, {"cycle": cycle}))
                held.add(task_id)
    simulated: list[Task] = [{**task, "status": "escalated"} if task["id"] in held else task for task in tasks]
    for task_id, reason in doomed_tasks(simulated):
        # Marked, so that `retry` of the failed task re-queues the tasks it took down with it.
        changes: TaskChanges = {"escalation_reason": reason, "upstream_failed": reason.startswith("upstream failed")}
        holds.append(Hold(task_id, "escalated", changes, "task.escalated", reason))
    return holds


def risk_hold(task: Task, config: Config, brief_text: str) -> Hold | None:
    """The risk-policy escalation for ``task``, or None when it may be dispatched."""
    policy = config["macp"].get("risk") or {}
    if not policy.get("enabled") or task.get("approved"):
        return None
    if (task.get("dispatch") or "legacy") not in policy.get("dispatch", ["yolo"]):
        return None
    text = "\n".join([task.get("title") or "", task.get("description") or "", brief_text])
    term = risk_term(text, policy.get("lexicon", []))
    if term is None:
        return None
    reason = f"risk hold: the task mentions {term!r}; a person must approve it (mosaic macp approve {task['id']})"
    return Hold(task["id"], "escalated", {"risk_hold": term, "escalation_reason": reason}, "task.escalated", reason, {"risk_term": term})


@dataclass(frozen=True)
class Busy:
    """What the running tasks occupy: their ``exclusive_group`` values, their branches (a
    branch is checked out in one worktree at a time: tasks that share one run one after
    another, whatever ``--workers`` allows, so their outcomes never depend on it), and how
    many attempts this or another controller runs on each runtime (tasks with a claim: an
    acp task waiting for its report runs elsewhere and holds no slot)."""

    groups: frozenset[str]
    runtimes: Counter
    branches: frozenset[str] = frozenset()

    @classmethod
    def of(cls, tasks: list[Task]) -> Busy:
        """What ``tasks`` that are ``running`` or ``gated`` occupy."""
        active = [task for task in tasks if status_of(task) in ACTIVE]
        groups = frozenset(group for task in active if (group := task.get("exclusive_group")))
        runtimes = Counter(task["attempt_runtime"] for task in active if task.get("claim") and task.get("attempt_runtime"))
        branches = frozenset(branch_name(task) for task in active if task.get("dispatch"))  # legacy tasks run in the repository
        return cls(groups, runtimes, branches)

    def wait_reason(self, task: Task, runtime: str | None, config: Config) -> str | None:
        """Why ``task`` (to run on ``runtime``) must wait for a running task, or None."""
        group = task.get("exclusive_group")
        if group and group in self.groups:
            return f"exclusive group {group} is running"
        if task.get("dispatch") and (branch := branch_name(task)) in self.branches:
            return f"its branch {branch} is checked out by a running task"
        if runtime and self.runtimes[runtime] >= runtime_max_parallel(config, runtime):
            return f"runtime {runtime} runs {self.runtimes[runtime]} attempt(s), its max_parallel"
        return None


def in_play(tasks: list[Task], by_id: Mapping[str, Task]) -> list[Task]:
    """The tasks admission looks at: every unfinished task, in file order, then the finished
    tasks those depend on (``by_id``: the queue's tasks, and with :class:`KnownTasks` the
    archive's -- a dependency on an archived task is judged by its archived status, issue 22).
    Finished tasks nothing waits for cannot change what is claimed, so a queue of 10,000
    finished tasks costs a claim no more than an empty one (issue 11)."""
    unfinished = [task for task in tasks if task.get("status") not in FINISHED]  # no status: pending
    open_ids = {task["id"] for task in unfinished}
    needed = {dependency for task in unfinished for dependency in dependency_ids(task) if dependency not in open_ids}
    return unfinished + [found for task_id in sorted(needed) if (found := by_id.get(task_id)) is not None]


def dependency_ids(task: Task) -> list[str]:
    """The ids in the task's ``depends_on``, [] when it is no list (a refused task's may not be)."""
    dependencies = task.get("depends_on")
    return [d for d in dependencies if isinstance(d, str)] if isinstance(dependencies, list) else []


def stand_in(task: Task) -> Task:
    """What the queue logic sees of a refused task: its id and, when valid, its status --
    none of the fields that made it refused (a ``not_before`` that is no timestamp, a
    ``depends_on`` that is no list)."""
    status = task.get("status")
    return {"id": task["id"], "status": status if status is not None and status in STATUSES else "pending"}


def admission_view(tasks: list[Task], refused: Mapping[str, str], by_id: Mapping[str, Task]) -> list[Task]:
    """What admission reasons over: :func:`in_play` of ``tasks`` (``by_id`` finds tasks by
    id), refused tasks as their :func:`stand_in`."""
    return [stand_in(task) if task["id"] in refused else task for task in in_play(tasks, by_id)]


Verdict = Hold | tuple[str | None, str] | None
"""What :func:`consider` decides for a ready task: claim it on ``(runtime, why)``, hold it
(:class:`Hold`), or pass over it for now (None)."""


def consider(
    task: Task, busy: Busy, config: Config, history: list[Task], runtime_state: dict, now: datetime, brief_text: Callable[[Task], str],
    ledger: Ledger | None = None,
) -> Verdict:
    """The verdict on ``task``, the first ready task in queue order: passed over while it
    must wait for a running task, held by the risk policy, held until a runtime is back
    (or escalated when none is configured), held or passed over by a budget (``ledger``:
    what runs cost so far; None: budgets are not checked), else claimed."""
    if busy.wait_reason(task, None, config):
        return None
    hold = risk_hold(task, config, brief_text(task))
    if hold is not None or task.get("dispatch") not in ("yolo", "acp"):
        return hold or (None, "")
    runtime, why, back_at = choose_runtime(task, config, history, runtime_state, now)
    if runtime is not None:
        if busy.wait_reason(task, runtime, config):
            return None
        if ledger is not None and (over := budget_verdict(task, runtime, config, ledger, now)) is not None:
            return budget_hold(task, over)
        return runtime, why
    if back_at is None:
        reason = "no runtime is configured for this task"
        return Hold(task["id"], "escalated", {"escalation_reason": reason}, "task.escalated", reason)
    until = clock.format_timestamp(back_at)
    return Hold(task["id"], None, {"not_before": until}, "task.updated", f"every runtime is cooling down; waiting until {until}")


def budget_hold(task: Task, over: BudgetVerdict) -> Hold | None:
    """What a budget's verdict ``over`` does to ``task``: an escalation or a wait
    (:class:`Hold`), or a pass-over (None)."""
    kind, message, until = over
    if kind == "escalate":
        return Hold(task["id"], "escalated", {"escalation_reason": message}, "task.escalated", message, {"budget": True})
    if kind == "wait":
        return Hold(task["id"], None, {"not_before": until}, "task.updated", message, {"budget": True, "not_before": until})
    return None


def admit(
    tasks: list[Task],
    config: Config,
    runtime_state: dict,
    now: datetime,
    brief_text: Callable[[Task], str],
    refused: Mapping[str, str] | None = None,
    outside: Outside | None = None,
    ledger: Ledger | None = None,
) -> Admission:
    """What to claim next from ``tasks`` at ``now``; ``brief_text(task)`` reads a brief;
    ``refused`` maps the ids of tasks never to claim to why (see the module docstring);
    ``outside(id)`` finds a dependency that is not in ``tasks`` (the archive); ``ledger``:
    what runs cost so far, for the budgets (None: not checked).
    The reference: :class:`macp.admission_index.Admitter` gives the same answer at a cost in
    the tasks changed since its last claim."""
    refused = refused or {}
    stored = KnownTasks(tasks, outside)
    history = tasks  # runtime selection weighs every finished task's outcome
    tasks = admission_view(tasks, refused, stored)
    holds = dependency_holds(tasks)
    view = {task["id"]: task.copy() for task in tasks}
    busy = Busy.of(tasks)
    passed_over: set[str] = set()  # must wait for a running task; not held, not changed

    for dependency_hold in holds:
        dependency_hold.apply(view[dependency_hold.task_id])
    while (task := pick_next([task for task in view.values() if task["id"] not in refused and task["id"] not in passed_over], now)) is not None:
        verdict = consider(task, busy, config, history, runtime_state, now, brief_text, ledger)
        if verdict is None:
            passed_over.add(task["id"])
        elif isinstance(verdict, Hold):
            holds.append(verdict)
            verdict.apply(view[verdict.task_id])
        else:
            return Admission(stored[task["id"]], *verdict, holds)
    return Admission(None, None, "", holds)
