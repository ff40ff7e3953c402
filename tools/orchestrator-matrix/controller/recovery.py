"""Crash recovery: make the queue whole before a controller runs anything (docs/durability.md).

Called with the controller lock held, so any claim found belongs to a controller that is
gone, and a ``running``/``gated`` task without a claim (other than an acp task waiting for its
report) is running nowhere: both go back to ``pending``. When the previous controller died without releasing the lock (its record is still in
the lock file), its leftover processes are stopped, state changes it made without logging
them are logged, and worktree cleanups it did not finish are done.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from dispatcher import macp_dispatcher as dispatcher
from macp import clock, gitops
from macp.events import read_tail
from macp.executor import Executor
from macp.layout import Layout
from macp.lifecycle import ACTIVE, FINISHED, status_of, transition
from macp.model import Config, Job, Run, Task
from macp.naming import dispatch_kind
from macp.procs import OWNER_ENV
from macp.proctree import processes_with_env, terminate
from macp.signals import SignalGuard
from macp.slurm import SlurmExecutor, job_name
from macp.taskstore import QueueSession
from macp.usage import sums_of


class Controller(Protocol):
    """What recovery uses of the controller that runs it
    (:class:`controller.mosaic_orchestrator.Controller`): its repository, config, signal
    guard and queue, and its ways to record an event, tell the person watching and remove a
    finished task's worktree. Declared here so recovery does not import the controller."""

    layout: Layout
    config: Config
    guard: SignalGuard
    queue: QueueSession
    executor: Executor
    say: Callable[[str], object]

    def emit(self, event_type: str, task: Task, message: str, *, source: str = ..., **metadata: object) -> None: ...

    def remove_worktree(self, task: Task) -> None: ...


def recover(ctl: Controller, previous: dict | None, refused: Mapping[str, str]) -> list[str]:
    """Make the queue whole again before running anything; return the recovered task ids.

    Runs while holding the controller lock, so any claim found belongs to a controller
    that is gone: its ``running``/``gated`` tasks go back to ``pending`` (the interrupted
    attempt not counted, the worktree kept for reuse; acp tasks waiting for their report
    keep waiting). ``previous`` is the lock record of a controller that died without
    releasing the lock: then its leftover processes are stopped first, state changes it
    made without logging them are logged, and cleanups it did not finish are done.
    Tasks in ``refused`` (id -> why: not valid against the schema, a path out of bounds)
    are left exactly as they are, as everywhere else: one task edited into nonsense by hand
    never stops the recovery of the others (issue 22).
    """
    if previous:
        stop_orphans(ctl, previous)
    recovered: list[Task] = []
    followed: list[Task] = []
    with ctl.guard.critical():
        with ctl.queue.edit() as document:
            for task in list(document.tasks):
                if task["id"] in refused:
                    continue
                if status_of(task) in ACTIVE and (task.get("claim") or not awaiting_acp_report(task)) and (job := job_to_follow(ctl, task)):
                    kept: Task = {**task, "claim": None, "job": job, "updated_at": clock.timestamp()}
                    document.replace(kept)
                    followed.append(kept)
                elif status_of(task) in ACTIVE and (task.get("claim") or not awaiting_acp_report(task)):
                    cancel_job(ctl, task)  # a gate the job still runs must not race the attempt's next run
                    handed_back = interrupted(task, ctl.layout, ctl.config)
                    document.replace(handed_back)
                    recovered.append(handed_back)
            for stale in ctl.layout.orch_dir.glob(".tasks.json.*.tmp"):
                stale.unlink()
        if previous:
            log_unlogged_changes(ctl, [task for task in document.tasks if task["id"] not in refused], previous, {t["id"] for t in recovered})
        for task in recovered:
            ctl.emit("task.recovered", task, "owner is gone; interrupted attempt not counted")
            ctl.say(f"{task['id']}: recovered from a stopped controller, back to {status_of(task)}")
        for task in followed:
            job_id = job["id"] if (job := task.get("job")) else "?"
            ctl.emit("task.recovered", task, f"owner is gone; its worker still runs as Slurm job {job_id}, followed to its end", job=task.get("job"))
            ctl.say(f"{task['id']}: its worker still runs as Slurm job {job_id}; it is followed, not run again")
    if recovered or previous:
        gitops.prune_worktrees(ctl.layout.repo_root)
    if previous and ctl.config["macp"]["cleanup_worktrees"]:
        for task in document.tasks:
            if task["id"] not in refused and status_of(task) in ("completed", "failed", "escalated") and (worktree := task.get("worktree")) and Path(worktree).exists():
                ctl.remove_worktree(task)
    return [task["id"] for task in recovered]


def job_to_follow(ctl: Controller, task: Task) -> Job | None:
    """The Slurm job still running ``task``'s worker for a controller that is gone -- the
    one recorded on the task, else the one named after its claim (the controller died
    between ``sbatch`` and recording it) -- or None: no such job, or it ended without an
    exit file. A recorded job this controller's executor cannot ask about (it is not Slurm)
    is kept: the task waits for a drain with ``--executor slurm`` rather than run twice."""
    recorded = task.get("job")
    if status_of(task) != "running" or (recorded and recorded["step"] != "worker"):
        return None
    executor = ctl.executor
    if not isinstance(executor, SlurmExecutor):
        return recorded
    log_path = ctl.layout.attempt_dir(task["id"], task.get("attempts", 0)) / "worker.log"
    if recorded is not None:
        return recorded if executor.followable(recorded["id"], log_path) else None
    claim = task.get("claim")
    if not claim:
        return None
    token, attempt = str(claim.get("token") or ""), task.get("attempts", 0)
    found = executor.find(task["id"], attempt, token)
    if found is None or not executor.followable(found, log_path):
        return None
    return {"executor": "slurm", "id": found, "name": job_name(ctl.layout.repo_root, task["id"], str(attempt), token), "step": "worker"}


def cancel_job(ctl: Controller, task: Task) -> None:
    """``scancel`` the Slurm job recorded on ``task`` when this controller runs Slurm (a job
    not followed: it ran a gate, or it already ended). With another executor the job cannot
    be reached; its worktree is the task's, and the job ends when its step does."""
    job = task.get("job")
    if job is not None and isinstance(ctl.executor, SlurmExecutor):
        ctl.executor.cancel(job["id"])


def stop_orphans(ctl: Controller, previous: dict) -> None:
    """Stop what crashed controllers left running (their children carry their tokens;
    ``previous["tokens"]`` names every controller not yet recovered from)."""
    orphans = sorted({pid for token in previous.get("tokens") or [previous["token"]] for pid in processes_with_env(OWNER_ENV, token)})
    if orphans:
        terminate(orphans, ctl.config["macp"]["kill_grace_seconds"])
        ctl.say(f"stopped {len(orphans)} process(es) left by the controller that died (pid {previous.get('pid')})")


def log_unlogged_changes(ctl: Controller, tasks: list[Task], previous: dict, recovered: set[str]) -> None:
    """Append the event a crashed controller did not get to write after its last state change.

    Looks at tasks changed since ``previous`` started; when the log's latest event for one
    disagrees with its status, the status is logged now (``task.<status>`` for a final
    status, else ``task.updated``).
    """
    latest: dict[str, str | None] = {}
    for event in read_tail(ctl.layout.events_file):
        if event.get("task_id"):
            latest[event["task_id"]] = event.get("status")
    since = previous.get("started_at", "")
    for task in tasks:
        status = status_of(task)
        if task["id"] in recovered or (task.get("updated_at") or "") < since or latest.get(task["id"]) == status:
            continue
        event_type = f"task.{status}" if status in FINISHED else "task.updated"
        ctl.emit(event_type, task, "logged on recovery: the controller stopped before writing this event")


def awaiting_acp_report(task: Task) -> bool:
    """True for an acp task whose sessions_spawn request is out: it waits in ``running``
    without a claim on purpose (``mosaic macp complete`` ends the wait)."""
    return dispatch_kind(task) == "acp" and bool((task.get("acp") or {}).get("requested_at"))


def interrupted(task: Task, layout: Layout, config: Config) -> Task:
    """``task`` handed back (:func:`released`) after its attempt was cut short by a signal or
    a crash, with what its agent run had used by then kept as waste: a run that did not
    count (issue 23), read from the attempt's log (:func:`dispatcher.run_usage`), always
    ``partial`` (or ``unavailable``: nothing reported yet). Only for a task
    whose agent run was under way: ``running``, on a runtime, its log there and no run of
    this attempt recorded yet (a run is recorded as it ends, before the task moves on)."""
    runtime = task.get("attempt_runtime")
    log_path = layout.attempt_dir(task["id"], task.get("attempts", 0)) / "worker.log"
    began = task.get("attempt_started_at") or ""
    recorded = any((run.get("at") or "") >= began for run in task.get("runs") or [])
    if status_of(task) == "running" and runtime and not recorded and log_path.is_file():
        usage = dispatcher.run_usage(config, runtime, log_path)
        if usage["completeness"] == "complete":
            usage = {**usage, "completeness": "partial"}  # cut short: whatever it reported, the run did not end
        run: Run = {"attempt": task.get("attempts", 0), "runtime": runtime, "exit_code": None, "timed_out": False, "idle_timed_out": False,
                    "at": clock.timestamp(), "counted": False, "usage": usage}
        runs = [*(task.get("runs") or []), run]
        task = {**task, "runs": runs, **sums_of(runs)}
    return released(task)


def released(task: Task) -> Task:
    """``task`` handed back after its attempt was cut short (recovery or a signal)."""
    now = clock.timestamp()
    if dispatch_kind(task) == "acp" and (task.get("acp") or {}).get("reported_at"):
        return {**task, "status": "running", "claim": None, "updated_at": now}
    return transition(task, "pending", now, {"claim": None, "attempts": max(0, task.get("attempts", 1) - 1)})
