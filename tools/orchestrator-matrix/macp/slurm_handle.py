"""A command of an attempt running as a step of a Slurm job (issue 24): the handle
:class:`macp.pool.StepPool` advances, as it advances a local :class:`~macp.procs.Child`.
The executor that makes them, and the job's life, are in :mod:`macp.slurm`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from macp.capture import OutputCapture
from macp.fsio import create_regular, read_regular, write_atomic
from macp.model import Job
from macp.procs import Command, ProcessResult

ENDED = frozenset({"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "REVOKED",
                   "SPECIAL_EXIT", "TIMEOUT"})
GONE = "GONE"  # neither squeue nor sacct knows the job
EXIT_FILE_WAIT_SECONDS = 20.0  # how long an exit file may lag behind Slurm saying the job ended (shared file systems)
STALE_HEARTBEATS = 3  # a job whose heartbeat is this many periods old is gone


@dataclass(frozen=True)
class SlurmSettings:
    """config ``executor`` for Slurm: ``partition`` (None: the cluster's default),
    ``sbatch_args`` added to every ``sbatch``, ``poll_seconds`` between ``squeue`` rounds and
    ``heartbeat_seconds`` between the wrapper's heartbeats."""

    partition: str | None = None
    sbatch_args: tuple[str, ...] = ()
    poll_seconds: float = 2.0
    heartbeat_seconds: float = 10.0


class JobControl(Protocol):
    """What a :class:`SlurmJob` asks of the executor that made it
    (:class:`macp.slurm.SlurmExecutor`): its settings and the attempts' jobs, the state of a
    job this poll round, the next round, and cancelling, (re)submitting and watching jobs."""

    settings: SlurmSettings
    attempt_jobs: dict[Path, str]

    def state(self, job_id: str) -> str | None: ...

    def next_poll(self) -> float: ...

    def cancel(self, job_id: str, signal_name: str | None = None) -> None: ...

    def forget(self, job_id: str) -> None: ...

    def submit(self, command: Command, spec: Path) -> str | ProcessResult: ...

    def watch(self, job_id: str) -> None: ...


class SlurmJob:
    """One command running as a Slurm job, advanced like a local
    :class:`~macp.procs.Child` (:class:`macp.pool.StepPool`): no file descriptors to watch,
    :meth:`step` by :meth:`wake_at`. The job's output file is read as it grows and copied,
    redacted and cut, into the command's log, as a local command's output is."""

    def __init__(self, executor: JobControl, command: Command, job_id: str, name: str, started_at: str, handed: bool = False) -> None:
        self.executor = executor
        self.command = command
        self.job_id = job_id
        self.name = name
        self.started_at = started_at
        folder, step = command.log_path.parent, command.log_path.stem
        self.folder = folder
        self.output = folder / f"{step}.slurm.out"
        self.exit_file = folder / f"{step}.exit-{job_id}.json"
        self.heartbeat = folder / f"job.alive-{job_id}"
        self.next_file = folder / f"next-{job_id}.json" if handed else None  # the hand-over the job has not taken yet
        # What the task records of a job just submitted (a job followed again is recorded already).
        self.job: Job | None = None if command.attach else {"executor": "slurm", "id": job_id, "name": name, "step": step}
        self.survives_controller = step == "worker"  # a gate job is cancelled with its controller; the worker's is followed again
        self.log_handle = os.fdopen(create_regular(command.log_path), "wb")
        self.capture = OutputCapture(self.log_handle, command.max_log_bytes, command.tail_bytes)
        self.read_bytes = 0
        self.began = time.monotonic()
        self.running_since: float | None = None
        self.last_output = self.began
        self.ended_seen: float | None = None  # when Slurm was first seen saying the job ended
        self.stopped: str | None = None  # "deadline", "idle" or "cancel" when MACP ended it
        self.stop_until = math.inf
        self.killed = False
        self.superseded = False  # Slurm declared its node failed before its result came
        self.exit: dict | None = None
        self.state: str | None = None
        self.lost: str | None = None
        self.refused: ProcessResult | None = None  # a withdrawn step sbatch would not take again

    def fds(self) -> set[int]:
        return set()

    def on_ready(self, fd: int) -> None:  # pragma: no cover -- never watches a descriptor
        return None

    def wake_at(self) -> float:
        """The next poll round, or sooner a deadline, an idle limit or the end of a grace."""
        moments = [self.executor.next_poll(), self.stop_until]
        deadline = self.deadline()
        if deadline is not None and self.stopped is None:
            moments.append(deadline)
        return max(time.monotonic(), min(moments))

    def deadline(self) -> float | None:
        """When the task's timeout ends: counted from when the job started running."""
        if self.command.timeout_seconds is None or self.running_since is None:
            return None
        return self.running_since + self.command.timeout_seconds

    def step(self) -> bool:
        """Read new output, ask Slurm (once per round for all jobs), and act: a passed
        deadline or idle limit cancels the job; an exit file, or Slurm saying the job ended
        and no exit file after :data:`EXIT_FILE_WAIT_SECONDS`, ends it. True when
        :meth:`result` is ready."""
        self._read_output()
        now = time.monotonic()
        state = self.executor.state(self.job_id) or self.state
        self.state = state
        if state == "NODE_FAIL":  # Slurm gave the attempt up: whatever its process still writes is not its outcome
            self.superseded = True
        if self.superseded:
            return self._after_node_failure(now)
        if self.exit is not None or self._read_exit():
            return True
        if state == "RUNNING" and self.running_since is None:
            self.running_since = now
        if (state in ENDED or state == GONE) and self._withdrawn():
            return self._resubmit()
        if state in ENDED or state == GONE:
            self.ended_seen = self.ended_seen if self.ended_seen is not None else now
            return now - self.ended_seen >= EXIT_FILE_WAIT_SECONDS
        deadline = self.deadline()
        if self.stopped is None and deadline is not None and now >= deadline:
            self._stop("deadline", now)
        elif self.stopped is None and self.running_since is not None and self._silent(now):
            self._stop("idle", now)
        elif self.stopped is not None and now >= self.stop_until and not self.killed:
            self.killed = True
            self.executor.cancel(self.job_id, "KILL")
        return False

    def release(self) -> None:
        """The attempt is over: its job ends now instead of waiting for a next step."""
        if self.executor.attempt_jobs.get(self.folder) == self.job_id:
            del self.executor.attempt_jobs[self.folder]
        with contextlib.suppress(OSError):
            write_atomic(self.folder / f"stop-{self.job_id}", "")

    def stop(self) -> None:
        """Cancel the job (``mosaic macp cancel``, or a gate job when its controller stops)."""
        if self.stopped is None:
            self._stop("cancel", time.monotonic())

    def kill(self) -> None:
        """SIGKILL all of the job at once."""
        self.executor.cancel(self.job_id, "KILL")
        self.killed = True

    def result(self) -> ProcessResult:
        """How the job ended: its exit file's code (else 143 when MACP stopped it, 137 when
        Slurm ended it without one); its output, redacted, in the command's log and tail;
        ``lost`` after a node failure. The job's raw output file is removed."""
        if self.refused is not None:
            self.log_handle.close()
            self.executor.forget(self.job_id)
            return self.refused
        self._read_output()
        if self.exit is None and self.lost is None:
            self.capture.feed(f"\n[macp: Slurm job {self.job_id} ended {self.state or 'unseen'} without an exit file]\n".encode())
        self.capture.close()
        self.log_handle.close()
        with contextlib.suppress(OSError):
            self.output.unlink()
        self.executor.forget(self.job_id)
        if self.exit is not None and self.lost is None:
            exit_code = int(self.exit.get("exit_code", 1))
            duration = float(self.exit.get("duration_seconds") or 0.0)
        else:
            exit_code = 143 if self.stopped else 137
            duration = round(time.monotonic() - self.began, 3)
        timed_out = self.stopped == "deadline" or (self.stopped is None and self.state == "TIMEOUT")
        return ProcessResult(exit_code, timed_out, duration, self.capture.tail_text(), self.command.log_path, self.capture.written,
                             self.capture.truncated, idle_timed_out=self.stopped == "idle", started_at=self.started_at, lost=self.lost)

    # -- inside ----------------------------------------------------------------------------

    def _stop(self, why: str, now: float) -> None:
        self.stopped = why
        self.stop_until = now + self.command.grace_seconds + self.executor.settings.poll_seconds
        self.executor.cancel(self.job_id)

    def _silent(self, now: float) -> bool:
        idle, first = self.command.idle_timeout_seconds, self.command.first_output_timeout_seconds
        if idle is not None and now - self.last_output >= idle:
            return True
        return first is not None and self.read_bytes == 0 and self.running_since is not None and now - self.running_since >= first

    def _withdrawn(self) -> bool:
        """True when this step was handed to a job that ended without taking it, and the
        hand-over is now withdrawn (renamed away: the job can no longer take it)."""
        if self.next_file is None:
            return False
        try:
            os.rename(self.next_file, self.next_file.with_name(self.next_file.name + ".withdrawn"))
        except OSError:
            return False
        return True

    def _resubmit(self) -> bool:
        """Run the withdrawn step in a job of its own; True when even that cannot be
        submitted (:meth:`result` says why)."""
        submitted = self.executor.submit(self.command, self.folder / f"{self.command.log_path.stem}.job.json")
        if isinstance(submitted, ProcessResult):
            self.refused = submitted
            return True
        self.executor.forget(self.job_id)
        self.job_id, self.next_file, self.state, self.running_since = submitted, None, None, None
        self.exit_file = self.folder / f"{self.command.log_path.stem}.exit-{submitted}.json"
        self.heartbeat = self.folder / f"job.alive-{submitted}"
        self.executor.watch(submitted)
        return False

    def _read_output(self) -> None:
        try:
            chunk = read_regular(self.output, offset=self.read_bytes)
        except OSError:
            return
        if chunk:
            self.capture.feed(chunk)
            self.read_bytes += len(chunk)
            self.last_output = time.monotonic()

    def _read_exit(self) -> bool:
        try:
            self.exit = json.loads(read_regular(self.exit_file))
        except (OSError, ValueError):
            return False
        return True

    def _after_node_failure(self, now: float) -> bool:
        """Slurm gave the job up (``NODE_FAIL``): wait until its process is surely gone -- its exit file appears (fenced off: ignored) or its
        heartbeat is :data:`STALE_HEARTBEATS` periods old -- then report it lost."""
        try:
            beat = self.heartbeat.stat().st_mtime
        except OSError:
            beat = 0.0
        finished = self.exit is not None or self._read_exit()
        stale = time.time() - beat >= STALE_HEARTBEATS * self.executor.settings.heartbeat_seconds
        if not finished and not stale:
            return False
        ended = f"; its process ended later with exit {self.exit.get('exit_code')}, a result fenced off and ignored" if finished and self.exit else ""
        self.lost = f"Slurm job {self.job_id} lost: its node failed (NODE_FAIL){ended}"
        return True
