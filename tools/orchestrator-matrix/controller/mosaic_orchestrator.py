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

The steps of one attempt read top to bottom in :mod:`controller.attempt`; claiming is in
:mod:`controller.claims`, the recorded state changes in :mod:`controller.run_state`; this
module holds the run loop, interruption and the command line.

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
from collections.abc import Hashable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the tools folder importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller import recovery
from controller.attempt import Attempts
from controller.claims import Claims, refused_tasks
from controller.planning import plan_lines, remaining_lines
from controller.run_report import run_document, summary_event, summary_lines, task_rows
from controller.run_state import PROG, RunSummary, warn, warn_plain
from dispatcher import macp_dispatcher as dispatcher
from macp import __version__, clock, proctree
from macp.budget import budget_lines
from macp.cancellation import drop_request, read_requests
from macp.cliutil import (
    OneLineParser,
    add_executor_option,
    add_land_option,
    add_workers_option,
    print_json,
    repo_layout,
    run_main,
)
from macp.config import load_config
from macp.decide import AttemptOutcome
from macp.dependencies import KnownTasks
from macp.errors import EXIT_OK, EXIT_USAGE, Interrupted, JobLost, MacpError, is_resource_exhaustion, is_storage_error
from macp.events import append_event
from macp.executor import make_executor
from macp.landing import can_land
from macp.layout import check_output_folders
from macp.lifecycle import ACTIVE, follows_job, status_of, transition
from macp.locks import ControllerLock
from macp.model import Job, Task
from macp.pool import Cancelled, Crashed, StepPool, Steps
from macp.procs import OWNER_ENV
from macp.runtime_state import load_runtime_state
from macp.signals import STOP_SIGNALS, SignalGuard
from macp.taskstore import load_tasks

CANCEL_POLL_SECONDS = 1.0  # how often a running controller looks for cancel requests


class Controller(Claims, Attempts):
    """Runs the tasks of one repository: claims (:class:`controller.claims.Claims`), attempts
    (:class:`controller.attempt.Attempts`) and the run loop that interleaves them.

    ``say`` receives one human-readable line per step (stdout by default).
    """

    # -- interruption --------------------------------------------------------------------

    def interrupt(self, signum: int) -> None:
        """Leave every task in flight recoverable after SIGINT/SIGTERM/SIGHUP (attempts not counted),
        in the order they were claimed. Their processes are already stopped (:meth:`run`),
        except a worker running as a Slurm job: that task stays ``running`` and the next
        controller follows its job (:func:`macp.lifecycle.follows_job`)."""
        released = []
        with self.queue.edit() as document:
            for task_id in self.in_flight:
                task = document.get(task_id)
                if follows_job(task) and task_id not in self.cancelling:
                    self.say(f"{task_id}: left running as Slurm job {job['id'] if (job := task.get('job')) else '?'}; the next run follows it")
                    continue
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
        pool = StepPool(self.executor, self.job_started)
        claiming = claim_now = True
        try:
            self.honour_cancel_requests(pool)  # a request left for a task its crashed controller ran
            while True:
                if self.to_land and not pool:  # nothing runs: land what completed before claiming more (drain --land)
                    self.land_completed()
                    claim_now = True  # a task sent back may run again
                while claim_now and claiming and len(pool) < workers and (claimed := self.claim_within_limits(len(pool))) is not None:
                    task, resumed = claimed
                    self.in_flight[task["id"]] = time.monotonic()
                    pool.add(task["id"], self.task_steps(task, resumed))
                if claim_now:
                    claiming = until_drained
                if not pool:  # what completed last was landed at the top: nothing runs, nothing to claim
                    return self.summary
                finished = pool.wait(timeout=CANCEL_POLL_SECONDS)
                claim_now = bool(finished)  # a slot is free again only when a task ended
                for task_id, outcome in finished:
                    if isinstance(outcome, Crashed) and is_resource_exhaustion(outcome.error):
                        workers = self.out_of_resources(str(task_id), outcome.error, len(pool))
                        self.settle(str(task_id), self.hand_back(str(task_id), f"the machine ran out of resources ({outcome.error.strerror})"))
                    else:
                        self.settle(str(task_id), outcome)
                self.honour_cancel_requests(pool)
        except BaseException:
            pool.stop_all()
            raise

    def honour_cancel_requests(self, pool: StepPool) -> None:
        """Carry out ``mosaic macp cancel`` of running tasks (:mod:`macp.cancellation`): stop
        the processes of each task this controller runs that a request names (it ends
        ``cancelled`` when they are gone, :meth:`settle`); a request for an attempt that no
        longer runs is dropped, or -- its controller died and the task was recovered to
        ``pending`` -- carried out on the pending task."""
        for request in read_requests(self.layout):
            task_id = request["task_id"]
            if task_id in self.cancelling:
                continue
            if task_id in self.in_flight and request.get("claim_token") == self.owner.get("token") and pool.cancel(task_id):
                self.cancelling[task_id] = str(request.get("reason") or "cancelled by hand")
                self.say(f"{task_id}: cancel requested; stopping it")
                continue
            task = self.queue.snapshot().find(task_id)
            if task_id not in self.in_flight and task is not None and status_of(task) == "pending" and request.get("claim_token") != self.owner.get("token"):
                self.change(task_id, "cancelled", "task.cancelled", f"{request.get('reason') or 'cancelled by hand'} (requested while its controller ran; it stopped before)")
                self.say(f"{task_id}: cancelled (requested while the controller that ran it was stopped)")
            drop_request(self.layout, task_id)

    def cancelled(self, task_id: str) -> str:
        """End ``task_id``, whose processes :meth:`honour_cancel_requests` stopped, ``cancelled``
        (its worktree kept, as ``cancel`` always does); returns the status."""
        reason = self.cancelling.pop(task_id)
        self.change(task_id, "cancelled", "task.cancelled", f"{reason} (stopped while it ran)", {"claim": None})
        drop_request(self.layout, task_id)
        self.say(f"{task_id}: cancelled")
        return "cancelled"

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

    def job_started(self, task_id: Hashable, job: Job) -> None:
        """Record on the task the scheduler job a command of its attempt was submitted as
        (``job``, ``task.job.submitted``): what a controller that crashes leaves for the next
        one to follow."""
        task = self.update(str(task_id), {"job": job})
        with self.guard.critical():
            self.emit("task.job.submitted", task, f"{job['step']}: Slurm job {job['id']} ({job['name']})", source="dispatcher", job=job)
        self.say(f"{task_id}: {job['step']} submitted as Slurm job {job['id']}")

    def task_steps(self, task: Task, resumed: bool) -> Steps:
        """The steps of one claimed task (:mod:`macp.pool`): its attempt, or -- for an acp
        task whose report is in -- what that report means, or -- for a task whose worker job
        a stopped controller left running -- that job followed to its end. A command the
        executor lost (a node failure) hands the task back, its attempt not counted.
        Returns the task's status."""
        try:
            return (yield from self.attempt_steps(task, resumed))
        except JobLost as lost:
            self.say(f"{task['id']}: {lost}")
            return self.hand_back(task["id"], str(lost))

    def attempt_steps(self, task: Task, resumed: bool) -> Steps:
        """:meth:`task_steps` without the executor's losses."""
        if resumed and follows_job(task):
            return (yield from self.follow_attempt(task))
        if resumed:
            acp = task.get("acp") or {}  # resumed: the report is in (claim_next)
            summary = acp.get("reported_summary")
            return (yield from self.after_worker(task, AttemptOutcome(acp.get("reported_exit_code"), report={"summary": summary} if summary else {})))
        return (yield from self.run_attempt(task))

    def settle(self, task_id: str, outcome: str | Crashed | Cancelled) -> None:
        """Record how a task's steps ended; a step that raised ends the task ``failed``
        (:meth:`internal_failure`) unless it is the machine's storage, which stops the run
        (exit 74; the next run recovers the task); a cancelled one ends ``cancelled``. Then
        deliver pending events."""
        if isinstance(outcome, Cancelled):
            outcome = self.cancelled(task_id)
        if isinstance(outcome, Crashed):
            if is_storage_error(outcome.error):
                raise outcome.error
            outcome = self.internal_failure(task_id, outcome.error)
        began = self.in_flight.pop(task_id)
        self.summary.outcomes[task_id] = outcome
        if outcome == "completed" and self.auto_land:
            self.to_land.append(task_id)
        self.summary.seconds[task_id] = self.summary.seconds.get(task_id, 0.0) + time.monotonic() - began
        self.transport.deliver(between_tasks=True)

    def land_completed(self) -> None:
        """Land the tasks this run completed (``drain --land``, ``macp.auto_land``;
        :func:`controller.land_cli.land`), while no task runs: those with a branch, in one
        batch of ``land.batch``. A task sent back is ``pending`` (or ``escalated``) again; a
        landing that cannot start (the target's checkout is dirty) is said once and landing
        stops for this run."""
        from controller.land_cli import land  # here: only a run that lands needs it

        snapshot = self.queue.snapshot()
        ids = [task_id for task_id in self.to_land if (task := snapshot.find(task_id)) is not None and can_land(task)]
        self.to_land = []
        if not ids:
            return
        try:
            landed = land(self.layout, self.config, ids, None, False, self.say)
        except MacpError as exc:
            warn(f"{exc}; landing stops for this run")
            self.auto_land = False
            return
        for entry in landed.sent_back:
            self.summary.outcomes[entry["id"]] = entry["status"]

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
    add_executor_option(parser)
    add_land_option(parser)
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
    executor: str | None = None,
    land: bool = False,
    say=print,
) -> int:
    """Run the controller on ``repo`` with up to ``workers`` tasks at once (None:
    ``worker.max_parallel``), running commands through ``executor`` (``local`` or ``slurm``;
    None: config ``executor.kind``), landing each task it completes when ``land`` (or
    ``macp.auto_land``; docs/landing.md); returns the exit code (see docs/exit-codes.md). The
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
    executor_in_use = make_executor(config["executor"], executor, layout.repo_root)
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
    controller.executor = executor_in_use
    controller.auto_land = land or config["macp"]["auto_land"]
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
            args.repo, until_drained=args.until_drained, wait=args.wait, dry_run=args.dry_run, json_output=args.json, workers=args.workers,
            executor=args.executor, land=args.land,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
