"""MACP controller: claim tasks from tasks.json, run them, gate them, record everything.

Run it as ``bin/mosaic-orchestrator-run --repo DIR --once|--until-drained`` or directly as
``python3 tools/orchestrator-matrix/controller/mosaic_orchestrator.py --repo DIR --once``.

One attempt of one task (DESIGN.md "The task lifecycle"):

1. claim: ``pending -> running`` under the tasks.json lock (attempt counted, owner recorded);
2. worktree: MACP tasks get one (created, or reused on a retry); legacy tasks run in the root;
3. worker: the dispatch command runs with a timeout in its own process group;
4. ``running -> gated`` when it exits 0, then every quality gate runs;
5. ``gated -> completed``; or a retry (``-> pending``, ``task.retry.scheduled``, failure kept
   for the next brief); or, out of attempts, ``failed`` (worker) / ``escalated`` (gate).

acp tasks stop after step 2: the ``sessions_spawn`` file is written and the task waits in
``running`` until ``mosaic macp complete`` reports an exit code; the next controller run
then carries on at step 4. Every state change is one locked tasks.json update followed by
one event. A second controller on the same repository exits at once (exit 75) unless
``--wait``; tasks a dead controller left ``running``/``gated`` are recovered on start.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the tools folder importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller import recovery
from controller.planning import ledger_now, plan_lines, remaining_lines
from controller.run_report import run_document, summary_event, summary_lines, task_rows
from dispatcher import macp_dispatcher as dispatcher
from macp import __version__, clock, gitops, proctree
from macp.admission import Hold
from macp.admission_index import Admitter
from macp.archive import ArchiveLookup
from macp.budget import Ledger, budget_lines
from macp.cliutil import OneLineParser, add_workers_option, print_json, repo_layout, run_main
from macp.config import load_config
from macp.decide import AttemptOutcome, Decision, Ending, attempt_failed, decide
from macp.decide import finish as finish_decision
from macp.dependencies import KnownTasks
from macp.errors import EXIT_OK, EXIT_TASKS_FAILED, EXIT_USAGE, Interrupted, MacpError, is_resource_exhaustion, is_storage_error
from macp.estimates import LEARNING_LEVELS, learning_entry, variance_of, variance_text
from macp.events import append_event, make_event
from macp.fsio import read_json, write_atomic
from macp.gates import GateLimits, gate_specs, gate_steps
from macp.jsontext import dump_json
from macp.layout import Layout, check_output_folders, confine
from macp.learnings import append_learning
from macp.lifecycle import ACTIVE, status_of, transition
from macp.locks import ControllerLock
from macp.model import (
    AcpState,
    Claim,
    Config,
    Failure,
    GateResult,
    GateSpec,
    KeptCommit,
    Result,
    ResultDetails,
    Run,
    Task,
    TaskChanges,
    TaskStatus,
    Usage,
    Variance,
    WorkerRun,
)
from macp.naming import dispatch_kind
from macp.pool import Crashed, StepPool, Steps
from macp.prices import price_for, priced
from macp.procs import OWNER_ENV, Command, ProcessResult, read_log_tail
from macp.recording import recorded
from macp.runtime_state import load_runtime_state, record_cooldown
from macp.scheduler import queue_order
from macp.settings import max_attempts, timeout_seconds
from macp.signals import STOP_SIGNALS, SignalGuard
from macp.taskdoc import TaskDocument, task_errors
from macp.taskstore import QueueSession, load_tasks
from macp.usage import sums_of, unavailable
from macp.worktree_contents import (
    WorktreeContents,
    dirty_fingerprints,
    gate_output_after,
    gate_output_now,
    path_list,
    read_gate_record,
    why_kept,
    write_gate_record,
)
from transport.matrix_transport import MatrixTransport

PROG = "mosaic-orchestrator-run"


@dataclass
class RunSummary:
    """What one controller run did: the status each task it touched ended in, the seconds
    it spent on each, and the tasks it refused to run (id -> why)."""

    outcomes: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """2 when a task was refused (a user error to fix), else 1 when any task ended
        failed or escalated in this run, else 0 (docs/exit-codes.md)."""
        if self.refused:
            return EXIT_USAGE
        failed = any(status in ("failed", "escalated") for status in self.outcomes.values())
        return EXIT_TASKS_FAILED if failed else EXIT_OK


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


def one_line_title(task: Task) -> str:
    """The task's title (else its id) on one line, for commit messages."""
    title = " ".join((task.get("title") or task["id"]).split())
    return title[:200]


def warn_plain(line: str) -> None:
    """A progress line on stderr (when stdout carries the ``--json`` document)."""
    print(line, file=sys.stderr)


def warn(line: str) -> None:
    """One diagnostic line on stderr, prefixed with the controller's name."""
    print(f"{PROG}: {line}", file=sys.stderr)


class Controller:
    """Runs the tasks of one repository. Holds the controller lock's ``owner`` record.

    ``say`` receives one human-readable line per step (stdout by default).
    """

    def __init__(self, layout: Layout, config: Config, guard: SignalGuard, owner: Claim, say=print, refused: dict | None = None) -> None:
        self.layout = layout
        self.config = config
        self.guard = guard
        self.owner = owner
        self.say = say
        self.in_flight: dict[str, float] = {}  # claimed task id -> monotonic time of its claim
        self.summary = RunSummary(refused=dict(refused or {}))
        self.transport = MatrixTransport(layout, config)
        self.queue = QueueSession(layout)  # state changes are journaled (macp.journal)
        self.admitter = Admitter()  # admission kept across claims (macp.admission_index)
        self.archive = ArchiveLookup(layout.orch_dir)  # archived tasks by id: dependencies, the run's summary
        # An event could not be appended after a state change: the next controller must
        # log it on recovery, as after a crash (see run_controller).
        self.unlogged = False
        self.base: str | None = None  # the ref new branches start from, resolved once per run

    @cached_property
    def ledger(self) -> Ledger:
        """What runs cost so far, for the budgets (:func:`controller.planning.ledger_now`),
        and then every run this controller records."""
        return ledger_now(self.layout, self.queue.snapshot().tasks, clock.now(), self.config)

    def refuse(self, task_id: str, problem: str) -> None:
        """Set ``task_id`` aside for this run, untouched, and say why on stderr."""
        self.summary.refused[task_id] = problem
        warn(f"task {task_id} not run: {problem}")

    # -- recording -----------------------------------------------------------------------

    def event(self, event_type: str, task: Task, message: str, *, source: str = "controller", **metadata: object) -> dict:
        """An event about ``task`` (its current status and attempt)."""
        return make_event(
            event_type,
            source=source,
            task_id=task["id"],
            status=status_of(task),
            attempt=task.get("attempts", 0),
            message=message,
            metadata=metadata,
        )

    def emit(self, event_type: str, task: Task, message: str, *, source: str = "controller", **metadata: object) -> None:
        """Append one event about ``task`` (:meth:`event`)."""
        try:
            append_event(self.layout.events_file, self.event(event_type, task, message, source=source, **metadata))
        except BaseException:
            self.mark_unlogged()
            raise

    def mark_unlogged(self) -> None:
        """A state change was written but its event was not: the next run logs it."""
        self.unlogged = True

    def change(
        self,
        task_id: str,
        new_status: TaskStatus | None,
        event_type: str,
        message: str,
        changes: TaskChanges | None = None,
        metadata: dict[str, Any] | None = None,
        source: str = "controller",
    ) -> Task:
        """Move ``task_id`` to ``new_status`` (None: keep its status) with ``changes`` and
        record ``event_type`` from ``source`` (with ``metadata``), as one unit
        (:func:`macp.recording.recorded`); returns the stored task."""
        with recorded(self.queue.edit(), self.layout.events_file, self.guard, self.mark_unlogged) as (document, events):
            task, now = document.get(task_id), clock.timestamp()
            task = transition(task, new_status, now, changes) if new_status else {**task, **(changes or {}), "updated_at": now}
            document.replace(task)
            events.append(self.event(event_type, task, message, source=source, **(metadata or {})))
        return task

    def update(self, task_id: str, changes: TaskChanges) -> Task:
        """Set fields of ``task_id`` without a status change; returns the stored task."""
        with self.guard.critical(), self.queue.edit() as document:
            task: Task = {**document.get(task_id), **changes, "updated_at": clock.timestamp()}
            document.replace(task)
        return task

    # -- interruption --------------------------------------------------------------------

    def interrupt(self, signum: int) -> None:
        """Leave every task in flight recoverable after SIGINT/SIGTERM/SIGHUP (attempts not counted),
        in the order they were claimed. Their processes are already stopped (:meth:`run`)."""
        released = []
        with self.queue.edit() as document:
            for task_id in self.in_flight:
                task = document.get(task_id)
                if status_of(task) in ACTIVE and task.get("claim") == self.owner:
                    task = recovery.interrupted(task, self.layout, self.config)
                    document.replace(task)
                    released.append(task)
        for task in released:
            self.emit("task.interrupted", task, f"controller stopped by signal {signum}; attempt not counted")
            self.say(f"{task['id']}: interrupted, back to {status_of(task)}")

    # -- the run loop --------------------------------------------------------------------

    def run(self, workers: int = 1, until_drained: bool = True) -> RunSummary:
        """Run tasks with up to ``workers`` at once (issue 12, docs/workers.md): claim while a
        slot is free, in the order :meth:`claim_next` gives (the same as a serial run), start
        each task's steps, and when one ends apply its outcome and claim again. Until none is
        runnable and none is running; or, without ``until_drained``, one wave of claims.

        Any exception -- an interruption, a full disk -- first stops every running child."""
        pool = StepPool()
        claiming = True
        try:
            while True:
                while claiming and len(pool) < workers and (claimed := self.claim_within_limits(len(pool))) is not None:
                    task, resumed = claimed
                    self.in_flight[task["id"]] = time.monotonic()
                    pool.add(task["id"], self.task_steps(task, resumed))
                claiming = until_drained
                if not pool:
                    return self.summary
                for task_id, outcome in pool.wait():
                    if isinstance(outcome, Crashed) and is_resource_exhaustion(outcome.error):
                        workers = self.out_of_resources(str(task_id), outcome.error, len(pool))
                        self.settle(str(task_id), self.hand_back(str(task_id), f"the machine ran out of resources ({outcome.error.strerror})"))
                    else:
                        self.settle(str(task_id), outcome)
        except BaseException:
            pool.stop_all()
            raise

    def claim_within_limits(self, running: int) -> tuple[Task, bool] | None:
        """:meth:`claim_next`; when the machine's limits (file descriptors, memory,
        processes) stop even the claim, None while ``running`` tasks still run -- they free
        what the next claim needs -- else the error (exit 74)."""
        try:
            return self.claim_next()
        except OSError as exc:
            if is_resource_exhaustion(exc) and running:
                return None
            raise

    def out_of_resources(self, task_id: str, error: OSError, running: int) -> int:
        """How many tasks may run at once after ``task_id`` met the machine's limits
        (``error``): as many as still run (``running``), which evidently fit. Raises
        ``error`` when none runs: not even one task fits, and the run stops (exit 74; the
        task is recovered, its attempt not counted, by the next run)."""
        if not running:
            raise error
        self.say(f"{task_id}: {error.strerror}; up to {running} task(s) at once from now on")
        return running

    def hand_back(self, task_id: str, why: str) -> str:
        """Put ``task_id`` back to ``pending`` with its attempt not counted, as an
        interruption, because of ``why``: the machine's or the repository's problem (the
        machine's limits, a repository with no commit), not the task's (issue 22). Returns
        its status."""
        with recorded(self.queue.edit(), self.layout.events_file, self.guard, self.mark_unlogged) as (document, events):
            task = recovery.released(document.get(task_id))
            document.replace(task)
            events.append(self.event("task.interrupted", task, f"{why}; attempt not counted"))
        return status_of(task)

    def task_steps(self, task: Task, resumed: bool) -> Steps:
        """The steps of one claimed task (:mod:`macp.pool`): its attempt, or -- for an acp
        task whose report is in -- what that report means. Returns the task's status."""
        if resumed:
            acp = task.get("acp") or {}  # resumed: the report is in (claim_next)
            summary = acp.get("reported_summary")
            return (yield from self.after_worker(task, AttemptOutcome(acp.get("reported_exit_code"), report={"summary": summary} if summary else {})))
        return (yield from self.run_attempt(task))

    def settle(self, task_id: str, outcome: str | Crashed) -> None:
        """Record how a task's steps ended; a step that raised ends the task ``failed``
        (:meth:`internal_failure`) unless it is the machine's storage, which stops the run
        (exit 74; the next run recovers the task). Then deliver pending events."""
        if isinstance(outcome, Crashed):
            if is_storage_error(outcome.error):
                raise outcome.error
            outcome = self.internal_failure(task_id, outcome.error)
        began = self.in_flight.pop(task_id)
        self.summary.outcomes[task_id] = outcome
        self.summary.seconds[task_id] = self.summary.seconds.get(task_id, 0.0) + time.monotonic() - began
        self.transport.deliver(between_tasks=True)

    def internal_failure(self, task_id: str, exc: Exception) -> str:
        """End a task whose handling raised: ``failed`` with the internal error in its result
        and event (its attempt stays counted), so it is never recovered and re-run silently.
        The traceback goes to stderr. Returns the task's status afterwards."""
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        message = f"internal error while handling the task: {type(exc).__name__}: {exc}"
        with self.guard.critical():
            with self.queue.edit() as document:
                task = document.get(task_id)
                if status_of(task) not in ACTIVE or task.get("claim") != self.owner:
                    return status_of(task)
                task = transition(task, "failed", clock.timestamp(), {"claim": None, "error": message, "completed_at": clock.timestamp()})
                document.replace(task)
            try:
                dispatcher.collect_result(task, None, [], self.layout.orch_dir, "failed", {"error": message})
            except Exception as result_exc:  # noqa: BLE001 -- the status and the event must still be written
                message += f" (no result file: {type(result_exc).__name__}: {result_exc})"
            self.emit("task.failed", task, message, internal_error=True)
        self.say(f"{task_id}: failed ({message})")
        return "failed"

    def claim_next(self) -> tuple[Task, bool] | None:
        """Claim the next task: an acp task with its report in (``resumed`` True), else the
        task :func:`macp.admission.admit` picks (``pending -> running``, attempt counted),
        after applying the holds it decided (escalations, waits)."""
        now = clock.now()
        ledger = self.ledger  # read before the queue is locked
        with self.guard.critical():
            with self.queue.edit() as document:
                for waiting in queue_order([task for task in document.tasks if task.get("status") == "running"]):
                    if waiting["id"] in self.summary.refused:
                        continue
                    acp = waiting.get("acp")
                    if status_of(waiting) == "running" and not waiting.get("claim") and acp and acp.get("reported_at"):
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
            "result_path": task.get("result_path")
            or dispatcher.default_result_path(task, self.layout.repo_root, self.config),
        }
        if runtime:
            changes["attempt_runtime"] = runtime
        return transition(task, "running", now, changes)

    def workdir(self, task: Task) -> Path:
        """Where the task's worker and gates run: its worktree, else the repository root."""
        worktree = task.get("worktree")
        return Path(worktree) if worktree else self.layout.repo_root

    def environment(self, task: Task) -> dict[str, str]:
        """The environment of the task's worker and gates for its current attempt."""
        attempt_dir = self.layout.attempt_dir(task["id"], task["attempts"])
        return dispatcher.worker_env(
            task,
            attempt=task["attempts"],
            cwd=self.workdir(task),
            brief_file=attempt_dir / "brief.md",
            report_file=attempt_dir / "report.json",
            config_file=self.layout.config_file,
            hidden=dispatcher.own_secret_names(self.config),
        )

    # -- one attempt ---------------------------------------------------------------------

    def run_attempt(self, task: Task) -> Steps:
        """A claimed task's attempt, as steps: the worker, then :meth:`after_worker`.
        Returns the task's status after it."""
        kind = dispatch_kind(task)
        if kind != "legacy":
            try:
                task = self.enter_worktree(task)
            except dispatcher.NoCommitYet as exc:
                self.refuse(task["id"], str(exc))  # the repository's to fix: not run again this run
                return self.hand_back(task["id"], "the repository has no commit yet")
            except dispatcher.StackConflict as exc:
                failure: Failure = {"kind": "merge", "attempt": task["attempts"], "exit_code": None, "conflicts": exc.paths, "output_tail": str(exc)}
                return self.apply(task, attempt_failed(task, failure, "failed", [], {"exit_code": None, "error": str(exc)}, self.config, clock.now()))
            except MacpError as exc:
                return self.finish(task, Ending("failed", exit_code=None, error=f"worktree creation failed: {exc}"))
        attempt_dir = self.fresh_attempt_dir(task)
        try:
            brief_file, prompt = dispatcher.write_attempt_brief(task, self.layout.repo_root, attempt_dir)
            if kind == "acp":
                return self.request_acp(task, prompt)
            argv = dispatcher.build_dispatch_argv(task, self.config, brief_file)
        except MacpError as exc:
            return self.finish(task, Ending("failed", exit_code=None, error=str(exc)))
        log_path = attempt_dir / "worker.log"
        command = dispatcher.worker_command(argv, task=task, cwd=self.workdir(task), env=self.environment(task), log_path=log_path, config=self.config)
        proc = yield command
        if proc.timed_out:
            self.say(f"{task['id']}: worker timed out after {command.timeout_seconds}s; its process group was stopped")
        if proc.idle_timed_out:
            limits = f"nothing for {command.idle_timeout_seconds}s, or nothing at all in its first {command.first_output_timeout_seconds}s"
            self.say(f"{task['id']}: worker went silent ({limits}); its process group was stopped")
        report = dispatcher.read_worker_report(attempt_dir / "report.json", task["id"])
        run: WorkerRun = {"started_at": proc.started_at, "duration_seconds": proc.duration_seconds}
        outcome = AttemptOutcome(
            proc.exit_code, proc.timed_out, proc.output_tail, report, proc.spawn_error, proc.idle_timed_out, log_path, run, silent=proc.log_bytes == 0
        )
        return (yield from self.after_worker(task, outcome))

    def fresh_attempt_dir(self, task: Task) -> Path:
        """The log folder of this attempt; logs of an earlier run of the same attempt number
        that did not count (recovery, provider failure) are moved aside, not overwritten."""
        path = self.layout.attempt_dir(task["id"], task["attempts"])
        if path.exists():
            number = 1
            while path.with_name(f"{path.name}.uncounted-{number}").exists():
                number += 1
            path.rename(path.with_name(f"{path.name}.uncounted-{number}"))
        return path

    def enter_worktree(self, task: Task) -> Task:
        """Create or reuse the task's worktree and record it on the task; a new branch starts
        from its completed dependencies' work (``stacked_on``, :func:`dispatcher.stacked_branches`)."""
        stack = dispatcher.stacked_branches(task, KnownTasks(self.queue.snapshot().tasks, self.archive), self.layout.repo_root, self.config)
        if self.base is None:
            self.base = dispatcher.base_ref(self.layout.repo_root, self.config)  # once per run (issue 11)
        path, created, base_commit, repaired = dispatcher.prepare_worktree(task, self.layout.repo_root, self.config, stack, self.base)
        branch = dispatcher.branch_name(task)
        changes: TaskChanges = {"worktree": str(path), "branch": branch, "base_commit": base_commit}
        if created:
            changes["stacked_on"] = stack
        event = "worktree.created" if created else "worktree.reused"
        metadata: dict[str, Any] = {"worktree": str(path), "branch": branch, **({"repaired": repaired} if repaired else {})}
        if created and stack:
            metadata["stacked_on"] = stack
        task = self.change(task["id"], None, event, f"{path} on branch {branch}", changes, metadata, source="dispatcher")
        for line in repaired:
            self.say(f"{task['id']}: {line}")
        return task

    def request_acp(self, task: Task, prompt: str) -> str:
        """Write the acp task's ``sessions_spawn`` file and leave it waiting in ``running``."""
        params = dispatcher.acp_spawn_params(task, self.config, self.workdir(task), prompt)
        spawn_file = self.layout.acp_file(task["id"])
        write_atomic(spawn_file, dump_json(params))
        acp: AcpState = {"spawn_file": str(spawn_file), "requested_at": clock.timestamp(), "reported_exit_code": None, "reported_summary": None, "reported_at": None}
        task = self.change(
            task["id"], None, "task.acp.requested", f"sessions_spawn parameters in {spawn_file}", {"acp": acp, "claim": None}, {"spawn_file": str(spawn_file)}, "dispatcher"
        )
        self.say(f"{task['id']}: waiting for an external acp completion report (spawn file {spawn_file})")
        return "running"

    def after_worker(self, task: Task, outcome: AttemptOutcome) -> Steps:
        """Apply what the worker's exit means (:func:`macp.decide.decide`): a provider
        failure, escalation, a failed attempt, or the gates (as steps) and then their
        verdict. Returns the task's status."""
        if outcome.log_path:
            outcome = replace(outcome, output=read_log_tail(outcome.log_path))
        outcome = replace(outcome, usage=self.attempt_usage(task, outcome))
        decision = self.decide(task, outcome, None)
        if outcome.usage is not None:
            task = self.record_run(task, task.get("attempt_runtime") or dispatch_kind(task), outcome, decision.counts_attempt)
        if decision.action == "gates":
            specs = gate_specs(task, self.config)
            if decision.status == "gated":
                task = self.commit_leftovers(task)
                task = self.change(task["id"], "gated", "task.gated", f"worker exited 0; running {len(specs)} quality gate(s)")
                self.say(f"{task['id']}: gated, running {len(specs)} quality gate(s)")
            decision = self.decide(task, outcome, (yield from self.run_quality_gates(task, specs)))
        return self.apply(task, decision)

    def decide(self, task: Task, outcome: AttemptOutcome, gate_results: list[GateResult] | None) -> Decision:
        """:func:`macp.decide.decide` with this run's config, the clock, and -- for a provider
        failure, which picks the next runtime -- the queue and runtimes.json."""
        provider_inputs: dict[str, Any] = {}
        if dispatch_kind(task) == "yolo":
            provider_inputs = {"tasks": self.queue.snapshot().tasks, "runtime_state": load_runtime_state(self.layout)}
        return decide(task, outcome, gate_results, self.config, clock.now(), **provider_inputs)

    def apply(self, task: Task, decision: Decision) -> str:
        """Carry out ``decision`` for ``task`` (the controller follows it; the policy is in
        :mod:`macp.decide`); returns the task's status afterwards."""
        if decision.cooldown is not None:
            cooldown = decision.cooldown
            record_cooldown(self.layout, cooldown.runtime, cooldown.until, cooldown.kind, cooldown.evidence, task["id"])
        if decision.action == "finish" and decision.ending is not None:
            if decision.changes:  # a provider escalation: the uncounted attempt and its own event first
                task = self.change(task["id"], None, decision.event_type, decision.message, decision.changes, decision.metadata)
            if decision.say:
                self.say(decision.say)
            return self.finish(task, decision.ending)
        assert decision.status is not None
        self.change(task["id"], decision.status, decision.event_type, decision.message, decision.changes, decision.metadata)
        if decision.say:
            self.say(decision.say)
        return decision.status

    def commit_leftovers(self, task: Task) -> Task:
        """Commit what a worker that exited 0 left uncommitted on the task branch, so the
        gates test what the branch holds (``macp.commit_leftovers``, DESIGN.md "Worktrees";
        message ``<id>: <title>``). Only the worker's changes: ignored files and what
        earlier gates left untouched (:mod:`macp.worktree_contents`) stay out. With it off,
        the uncommitted work is noted on the task (``uncommitted_work``) for ``status``,
        ``show`` and the result. A commit git refuses is logged and the gates run on the
        worktree as it is."""
        worktree = self.workdir(task) if task.get("worktree") else None
        if worktree is None or not worktree.exists():
            return task
        message = f"{task['id']}: {one_line_title(task)}"
        left_by_gates = gate_output_now(worktree, read_gate_record(self.layout.task_log_dir(task["id"])))
        try:
            if not self.config["macp"]["commit_leftovers"]:
                changes = [path for path in gitops.worktree_status(worktree).dirty if path not in left_by_gates]
                return self.update(task["id"], {"uncommitted_work": path_list("uncommitted", changes) if changes else None})
            commit = gitops.commit_all(worktree, message, leave_out=left_by_gates)
        except gitops.GitError as exc:
            with self.guard.critical():
                self.emit("worktree.commit_failed", task, f"the worker's uncommitted changes were not committed: {exc}", source="dispatcher")
            return task
        if commit:
            with self.guard.critical():
                self.emit("worktree.committed", task, f"{commit[:12]} {message}", source="dispatcher", commit=commit)
            self.say(f"{task['id']}: committed the worker's uncommitted changes ({commit[:12]})")
        return task

    def attempt_usage(self, task: Task, outcome: AttemptOutcome) -> Usage | None:
        """What this attempt's run used: an agent runtime's own figures (:func:`dispatcher.run_usage`),
        else what the worker's report says (``usage`` or the guide's ``used``; priced like
        the runtime's runs); :func:`macp.usage.unavailable` for an agent run with neither;
        None for an exec or legacy worker that reported nothing (no run is recorded)."""
        runtime, reported = task.get("attempt_runtime"), outcome.report.get("usage")
        own = dispatcher.run_usage(self.config, runtime, outcome.log_path) if runtime and outcome.log_path else None
        if reported is not None and (own is None or own["completeness"] == "unavailable"):
            return priced(reported, price_for(self.config, runtime)) if runtime else reported
        return own if own is not None or not runtime else unavailable()

    def record_run(self, task: Task, runtime: str, outcome: AttemptOutcome, counted: bool) -> Task:
        """Append where this attempt ran (on ``runtime``; ``exec`` for an exec worker that
        reported what it used), how it ended, whether it
        ``counted`` and what it used (``outcome.usage``) to the task's ``runs``, sum the
        task's ``usage`` and ``waste`` again, and count its cost in the budgets' ledger."""
        run: Run = {
            "attempt": task["attempts"],
            "runtime": runtime,
            "exit_code": outcome.exit_code,
            "timed_out": outcome.timed_out,
            "idle_timed_out": outcome.idle_timed_out,
            "at": clock.timestamp(),
            "counted": counted,
            "usage": outcome.usage or unavailable(),
        }
        self.ledger.add(run)
        runs = [*(task.get("runs") or []), run]
        return self.update(task["id"], {"runs": runs, **sums_of(runs)})

    def run_quality_gates(self, task: Task, specs: list[GateSpec]) -> Generator[Command, ProcessResult, list[GateResult]]:
        """Run ``specs`` in the task's working folder (as steps) and record one event per gate."""
        macp = self.config["macp"]
        limits = GateLimits(
            timeout_seconds=timeout_seconds(task, self.config),
            tail_bytes=macp["output_tail_bytes"],
            max_log_bytes=macp["max_log_bytes"],
            grace_seconds=macp["kill_grace_seconds"],
        )
        log_dir = self.layout.attempt_dir(task["id"], task["attempts"])
        worktree = self.workdir(task) if task.get("worktree") and specs else None
        before = dirty_fingerprints(worktree) if worktree else {}
        results = yield from gate_steps(specs, cwd=self.workdir(task), env=self.environment(task), log_dir=log_dir, limits=limits)
        if worktree:  # what the gates left is not the worker's work (macp.worktree_contents)
            task_logs = self.layout.task_log_dir(task["id"])
            write_gate_record(task_logs, gate_output_after(read_gate_record(task_logs), before, dirty_fingerprints(worktree)))
        with self.guard.critical():
            for gate in results:
                verdict = "passed" if gate["passed"] else "failed"
                self.emit(
                    f"gate.{verdict}",
                    task,
                    f"{gate['name']}: exit {gate['exit_code']}" + (" (timed out)" if gate["timed_out"] else ""),
                    source="quality-gate",
                    gate=gate["name"],
                    exit_code=gate["exit_code"],
                    classification=gate["classification"],
                )
        return results

    def finish(self, task: Task, ending: Ending) -> str:
        """End the task as ``ending`` says: write its result, record the status, then remove
        its worktree. In that order, so a crash can leak a worktree but never lose an outcome."""
        status, report, error, escalation_reason = ending.status, ending.report, ending.error, ending.escalation_reason
        files = report.get("files_changed")
        kept: str | None = None
        kept_commits: list[KeptCommit] = []
        commits: list[str] = []
        contents: WorktreeContents | None = None
        worktree = self.workdir(task) if task.get("worktree") else None
        base_commit = task.get("base_commit")
        if worktree and worktree.exists():
            try:
                contents = dispatcher.inspect_worktree(task, worktree, self.layout.repo_root, self.config)
                if base_commit:
                    files = [path for path in gitops.changed_files(worktree, base_commit) if path not in contents.gate_output]
                kept = ending.keep_worktree or why_kept(contents, self.config["macp"]["remove_ignored_files"])
                kept_commits = dispatcher.preserve_commits(task, worktree)
                commits = gitops.commits_since(worktree, base_commit) if base_commit else []
            except gitops.GitError as exc:
                kept, contents = f"could not inspect it: {exc}", None
        details: ResultDetails = {
            "summary": report.get("summary") or "",
            "files_changed": files or [],
            "error": error,
            "escalation_reason": escalation_reason,
            "timed_out": ending.timed_out,
            "worktree_kept": kept,
            "kept_commits": kept_commits,
            "build_output": contents.build_output_record() if contents else None,
            "output_tail": ending.output_tail,
            "base_commit": base_commit,
            "commits": commits,
            "worker": ending.worker_run,
            "estimate_tokens": task.get("estimate_tokens"),
            "variance": (variance := variance_of(task)),
            "metadata": {
                "log_dir": str(self.layout.attempt_dir(task["id"], task.get("attempts", 0))),
                **({"uncommitted_work": uncommitted} if (uncommitted := task.get("uncommitted_work")) else {}),
                **({"report_note": report["note"]} if report.get("note") else {}),
                **({"reported_commit": report["commit_sha"]} if report.get("commit_sha") else {}),
            },
        }
        result = dispatcher.collect_result(task, ending.exit_code, ending.gate_results, self.layout.orch_dir, status, details)
        message = finish_decision(ending).message
        changes: TaskChanges = {
            "claim": None,
            "completed_at": result["completed_at"],
            "error": error,
            "escalation_reason": escalation_reason,
            "pr": report.get("pr") or task.get("pr"),
        }
        if ending.last_failure:
            changes["last_failure"] = ending.last_failure
        if variance:
            changes["variance"] = variance
        result_path = str(dispatcher.result_file(task, self.layout.orch_dir))
        task = self.change(task["id"], status, f"task.{status}", message, changes, {"result": result_path})
        self.say(f"{task['id']}: {status}" + (f" ({message})" if status != "completed" else ""))
        if variance:
            self.record_variance(task, variance)
        if worktree and worktree.exists() and kept is None and self.config["macp"]["cleanup_worktrees"]:
            self.remove_worktree(task, contents)  # inspected and its commits kept just above
        elif kept is not None:
            with self.guard.critical():
                self.emit("worktree.kept", task, f"{task['worktree']} kept: {kept}", source="dispatcher", reason=kept)
            self.say(f"{task['id']}: worktree kept ({kept})")
        return status

    def record_variance(self, task: Task, variance: Variance) -> None:
        """Log how far the ended ``task`` was off its estimate (``task.variance``, with the
        Mosaic Stack guide's level) and, from 50 %, append a learning to the learnings file
        (:mod:`macp.learnings`); a learnings file MACP cannot extend is named, not fatal."""
        text = variance_text(variance)
        with self.guard.critical():
            self.emit("task.variance", task, text, **variance)
        self.say(f"{task['id']}: {text}")
        if variance["level"] in LEARNING_LEVELS:
            try:
                path = confine(self.config["macp"]["learnings_file"], self.layout.repo_root, "macp.learnings_file")
                append_learning(path, learning_entry(task, variance, clock.timestamp()))
            except MacpError as exc:
                warn(str(exc))

    def remove_worktree(self, task: Task, contents: WorktreeContents | None = None) -> None:
        """Remove a finished task's worktree unless it holds work; log either way
        (``contents``: see :func:`dispatcher.cleanup_worktree`).

        When it is kept for a reason the result does not know yet, the result is updated.
        """
        try:
            kept = dispatcher.cleanup_worktree(task, self.layout.repo_root, self.config, contents)
        except gitops.GitError as exc:
            kept = f"could not inspect it: {exc}"
        with self.guard.critical():
            if kept is None:
                self.emit("worktree.removed", task, f"{task['worktree']} removed; branch {task.get('branch')} kept", source="dispatcher")
                return
            self.emit("worktree.kept", task, f"{task['worktree']} kept: {kept}", source="dispatcher", reason=kept)
            result = self.read_result(task)
            if result is not None and result.get("worktree_kept") != kept:
                write_atomic(dispatcher.result_file(task, self.layout.orch_dir), dump_json({**result, "worktree_kept": kept}))
        self.say(f"{task['id']}: worktree kept ({kept})")

    def read_result(self, task: Task) -> Result | None:
        """The task's result file, or None when it has none (yet) or it cannot be read."""
        try:
            return read_json(dispatcher.result_file(task, self.layout.orch_dir))
        except (MacpError, OSError):
            return None


def build_parser() -> OneLineParser:
    """Arguments of ``mosaic-orchestrator-run``."""
    parser = OneLineParser(prog=PROG, description="Run MACP tasks from .mosaic/orchestrator/tasks.json.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--repo", help="repository root (default: the main worktree of the current folder's repository, also from a task's worktree)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="run one task, or one wave of --workers tasks (the default)")
    mode.add_argument("--until-drained", action="store_true", help="run tasks until none is runnable")
    parser.add_argument("--wait", action="store_true", help="wait for another running controller instead of exiting 75")
    add_workers_option(parser)
    parser.add_argument("--dry-run", action="store_true", help="print the order and exact commands without running anything")
    parser.add_argument("--json", action="store_true", help="print the run's summary as one JSON document on stdout (progress goes to stderr)")
    return parser


def run_controller(
    repo: str | None,
    *,
    until_drained: bool,
    wait: bool = False,
    dry_run: bool = False,
    json_output: bool = False,
    workers: int | None = None,
    say=print,
) -> int:
    """Run the controller on ``repo`` with up to ``workers`` tasks at once (None:
    ``worker.max_parallel``); returns the exit code (see docs/exit-codes.md). The
    run ends with a summary of every task it touched (:mod:`controller.run_report`); with
    ``json_output`` that summary is one JSON document on stdout and ``say``'s progress
    lines go to stderr."""
    if json_output:
        say = warn_plain
    started_at, began = clock.timestamp(), time.monotonic()
    layout = repo_layout(repo)
    config = load_config(layout.config_file)
    if not layout.tasks_file.exists():
        say(f"nothing to do: {layout.tasks_file} does not exist (run 'mosaic macp init')")
        return EXIT_OK
    check_output_folders(layout)
    document = load_tasks(layout)
    refused = refused_tasks(document, layout.repo_root, config)
    workers = workers or config["worker"]["max_parallel"]
    if dry_run:
        for line in plan_lines(document.tasks, layout.repo_root, config, load_runtime_state(layout), clock.now(), refused, workers):
            say(line)
        return EXIT_USAGE if refused else EXIT_OK
    lock = ControllerLock(layout.controller_lock)
    lock.acquire(wait=wait)
    assert lock.owner is not None
    os.environ[OWNER_ENV] = lock.owner["token"]
    # Orphans a worker leaves (double fork, setsid) are adopted by the controller, not init,
    # so they can be found, stopped and reaped (macp.proctree).
    proctree.become_subreaper()
    guard = SignalGuard()
    guard.install()
    controller = Controller(layout, config, guard, lock.owner, say)
    for task_id, problem in refused.items():
        controller.refuse(task_id, problem)
    ended_cleanly = False
    try:
        recovery.recover(controller, lock.previous, controller.summary.refused)
        lock.recovered()
        controller.transport.deliver(between_tasks=True)
        controller.run(workers, until_drained)
        if not until_drained and not controller.summary.outcomes:
            say("no runnable task")
        controller.queue.fold()
        tasks = controller.queue.snapshot().tasks
        if until_drained:
            for line in remaining_lines(tasks, clock.now(), controller.summary.refused, controller.archive) + budget_lines(config, controller.ledger, clock.now()):
                say(line)
        summary = controller.summary
        rows = task_rows(KnownTasks(tasks, controller.archive), summary.outcomes, summary.seconds, controller.read_result, config)
        if until_drained and rows:
            append_event(layout.events_file, summary_event(rows, time.monotonic() - began, summary.exit_code))
        controller.transport.deliver(final=True)
        if json_output:
            print_json(run_document(str(layout.repo_root), started_at, clock.timestamp(), summary.exit_code, rows, tasks, summary.refused))
        else:
            for line in summary_lines(rows):
                say(line)
        ended_cleanly = True
        return summary.exit_code
    except Interrupted as exc:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        controller.interrupt(exc.signum)
        ended_cleanly = True
        raise
    finally:
        fold_at_exit(controller)
        guard.restore()
        # A run that ended on an error, or could not log a change, leaves its record in the
        # lock file: the next controller recovers from it as from a crash and logs the
        # changes the log is missing, so tasks.json and the log never stay apart.
        lock.release(clean=ended_cleanly and not controller.unlogged)


def fold_at_exit(controller: Controller) -> None:
    """Fold the run's journal into tasks.json however the run ended, so at rest tasks.json
    is the whole queue. A fold that fails (a full disk) leaves the journal, which every
    reader replays and the next run folds; it is reported on stderr."""
    try:
        controller.queue.fold()
        if controller.queue.unreadable:
            raise MacpError(f"it cannot be read ({controller.queue.unreadable}); fix it and the next reader applies them")
    except (OSError, MacpError) as exc:
        warn(f"tasks.json not brought up to date: {exc}; the changes are kept in {controller.layout.tasks_journal}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mosaic-orchestrator-run``; returns the exit code."""
    args = build_parser().parse_args(argv)
    return run_main(
        PROG,
        lambda: run_controller(
            args.repo, until_drained=args.until_drained, wait=args.wait, dry_run=args.dry_run, json_output=args.json, workers=args.workers
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
