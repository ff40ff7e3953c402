"""Claiming (the controller's first step): which task runs next, and the holds to apply
first, as :mod:`macp.admission` decides; and which tasks the controller refuses to run at
all (a schema error, a path out of bounds).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.run_state import RunState
from dispatcher import macp_dispatcher as dispatcher
from macp import clock
from macp.admission import Hold
from macp.errors import MacpError
from macp.lifecycle import follows_job, status_of, transition
from macp.model import Config, ResultDetails, Task, TaskChanges
from macp.naming import dispatch_kind
from macp.runtime_state import load_runtime_state
from macp.scheduler import queue_order
from macp.settings import max_attempts
from macp.taskdoc import TaskDocument, task_errors


def task_problem(document, task: Task, repo_root: Path, config: Config, derived: bool = True) -> str | None:
    """Why the controller must not run ``task`` -- its first schema error (with its JSON
    path in tasks.json) or a path that leaves where it must stay -- or None. ``derived``:
    see :func:`dispatcher.macp_dispatcher.check_task_paths`."""
    errors = task_errors(document, task)
    if errors:
        return f"{document.label}: {errors[0]}"
    try:
        dispatcher.check_task_paths(task, repo_root, config, derived)
    except MacpError as exc:
        return str(exc)
    return None


def refused_tasks(document, repo_root: Path, config: Config) -> dict[str, str]:
    """``{task id: why}`` for every task not completed or cancelled that the controller must
    not run (:func:`task_problem`), found at start-up. One bad task is set aside; the others
    run. The paths MACP derives from a task's id are checked when the task is claimed or
    held, not here: a queue of 10,000 tasks starts without 20,000 path resolutions."""
    refused = {}
    for task in document.tasks:
        if status_of(task) not in ("completed", "cancelled"):
            problem = task_problem(document, task, repo_root, config, derived=False)
            if problem is not None:
                refused[task["id"]] = problem
    return refused


class Claims(RunState):
    """Claim the next task (:meth:`claim_next`) and apply the holds admission decided."""

    def claim_next(self) -> tuple[Task, bool] | None:
        """Claim the next task: an acp task with its report in, or a task whose worker job a
        stopped controller left running (:func:`macp.lifecycle.follows_job`, for the Slurm
        executor) -- ``resumed`` True, its attempt already counted -- else the task
        :func:`macp.admission.admit` picks (``pending -> running``, attempt counted), after
        applying the holds it decided (escalations, waits)."""
        now = clock.now()
        ledger = self.ledger  # read before the queue is locked
        with self.guard.critical():
            with self.queue.edit() as document:
                for waiting in queue_order([task for task in document.tasks if task.get("status") == "running"]):
                    if waiting["id"] in self.summary.refused:
                        continue
                    acp = waiting.get("acp")
                    job = waiting.get("job")
                    followed = follows_job(waiting) and job is not None and self.executor.name == job["executor"]
                    if status_of(waiting) == "running" and not waiting.get("claim") and ((acp and acp.get("reported_at")) or followed):
                        resumed: Task = {**waiting, "claim": self.owner, "updated_at": clock.timestamp()}
                        document.replace(resumed)
                        return resumed, True
                runtime_state = load_runtime_state(self.layout)
                while True:
                    admission = self.admitter.admit(
                        document,
                        self.config,
                        runtime_state,
                        now,
                        lambda task: dispatcher.brief_for_review(task, self.layout.repo_root),
                        refused=self.summary.refused,
                        outside=self.archive,
                        ledger=ledger,
                    )
                    # Checked again where it is used: the task may have been edited since
                    # start-up, and the paths MACP derives from an id are checked here only.
                    decided = [hold.task_id for hold in admission.holds] + ([admission.task["id"]] if admission.task else [])
                    problems = {task_id: problem for task_id in decided if (problem := self.problem_with(document, task_id))}
                    if not problems:
                        break
                    for task_id, problem in problems.items():
                        self.refuse(task_id, problem)
                held = [self.apply_hold(document, hold) for hold in admission.holds]
                task = None
                if admission.task is not None:
                    task = self._claimed(admission.task, admission.runtime)
                    document.replace(task)
            for hold, stored in zip(admission.holds, held, strict=True):
                self.record_hold(hold, stored)
            if task is None:
                return None
            kind = dispatch_kind(task)
            runtime = f", runtime {task['attempt_runtime']}" if admission.runtime else ""
            metadata: dict[str, Any] = {"dispatch": kind, "runtime": task.get("attempt_runtime")}
            if admission.why:
                metadata["runtime_selection"] = admission.why
            self.emit("task.started", task, f"attempt {task['attempts']}/{task['max_attempts']} ({kind}{runtime})", **metadata)
        self.say(f"{task['id']}: started attempt {task['attempts']}/{task['max_attempts']} ({kind}{runtime})")
        return task, False

    def problem_with(self, document, task_id: str) -> str | None:
        """:func:`task_problem` of the stored task ``task_id``."""
        return task_problem(document, document.get(task_id), self.layout.repo_root, self.config)

    def apply_hold(self, document: TaskDocument, hold: Hold) -> Task:
        """Apply an admission hold to the task in ``document``; returns the stored task."""
        task = document.get(hold.task_id)
        if hold.status:
            task = transition(task, hold.status, clock.timestamp(), hold.changes)
        else:
            task = {**task, **hold.changes, "updated_at": clock.timestamp()}
        document.replace(task)
        return task

    def record_hold(self, hold: Hold, task: Task) -> None:
        """Log a hold; an escalated task also gets its result file, like any final status."""
        if hold.status == "escalated":
            details: ResultDetails = {"escalation_reason": hold.message, "max_attempts": max_attempts(task, self.config)}
            dispatcher.collect_result(task, None, [], self.layout.orch_dir, "escalated", details)
            self.summary.outcomes[task["id"]] = "escalated"
        self.emit(hold.event_type, task, hold.message, **hold.metadata)
        self.say(f"{task['id']}: {status_of(task)} ({hold.message})")

    def _claimed(self, task: Task, runtime: str | None) -> Task:
        now = clock.timestamp()
        changes: TaskChanges = {
            "attempts": task.get("attempts", 0) + 1,
            "max_attempts": max_attempts(task, self.config),
            "claim": self.owner,
            "started_at": task.get("started_at") or now,
            "attempt_started_at": now,
            "not_before": None,
            "job": None,
            "result_path": task.get("result_path")
            or dispatcher.default_result_path(task, self.layout.repo_root, self.config),
        }
        if runtime:
            changes["attempt_runtime"] = runtime
        return transition(task, "running", now, changes)
