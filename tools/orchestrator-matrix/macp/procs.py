"""Run a worker or gate command: own process group, timeout, bounded and redacted output.

A :class:`Command` is started as a :class:`Child`, which its owner advances without
blocking -- :class:`macp.pool.StepPool` multiplexes any number of them with one
``selectors`` call, no threads (:func:`macp.pool.run_command` runs one alone):

- the child starts in a new session, so it and everything it spawns share one process group;
- output is streamed to a per-run log file, redacted line by line and cut at ``max_log_bytes``,
  while only the last ``tail_bytes`` are kept in memory for results and events;
- at the deadline, or after ``idle_timeout_seconds`` without any output, the command's
  processes get SIGTERM, then SIGKILL after ``grace_seconds``: its process group, and every
  process that left the group (``setsid``, a double fork) that :mod:`macp.proctree` finds;
  after a normal exit what the leader left running gets the same SIGTERM, grace, SIGKILL,
  so nothing the command started outlives it;
- if the controller itself is interrupted (:class:`~macp.errors.Interrupted`), every running
  command is stopped the same way before the interruption propagates
  (:meth:`macp.pool.StepPool.stop_all`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from macp import clock
from macp.capture import OutputCapture
from macp.errors import is_resource_exhaustion
from macp.fsio import create_regular, open_regular
from macp.model import Job
from macp.proctree import RUN_ENV, reap_adopted, run_members, signal_all, start_ticks

OWNER_ENV = "MACP_OWNER_TOKEN"
_READ_SIZE = 65536
_POLL_SECONDS = 0.2  # how often a child is polled where there is no pidfd
_IDLE_WAKE_SECONDS = 60.0  # with a pidfd, exits and output wake the loop; this is a backstop
_STOP_POLL_SECONDS = 0.05  # how often a stopping command is checked for being gone
_DRAIN_SECONDS = 2.0


@dataclass(frozen=True)
class ProcessResult:
    """How a :class:`Command` ended (:meth:`Child.result`, :func:`macp.pool.run_command`).

    ``exit_code``: the exit status, or 128+N when killed by signal N (shell convention);
    None when the command could not be started (``spawn_error`` says why).
    ``timed_out``: the deadline passed and the group was killed. ``idle_timed_out``: the
    command printed nothing for its idle timeout (or, from its start, for its first-output
    timeout) and the group was killed (``timed_out`` is then False). ``lost``: why the
    executor lost the command where it ran (a Slurm node failure): no outcome of the command's
    own, so the attempt does not count. ``started_at``: when it started (UTC timestamp); ``duration_seconds``: wall time. ``output_tail``: the last bytes of output as clean text (ANSI and control
    characters removed, invalid UTF-8 replaced, secrets redacted). ``log_bytes``: bytes
    written to the log; ``log_truncated``: output beyond ``max_log_bytes`` was dropped.
    """

    exit_code: int | None
    timed_out: bool
    duration_seconds: float
    output_tail: str
    log_path: Path
    log_bytes: int
    log_truncated: bool
    spawn_error: str | None = None
    idle_timed_out: bool = False
    started_at: str = ""
    lost: str | None = None


@dataclass(frozen=True)
class Command:
    """One command to run: ``argv`` in ``cwd`` with exactly ``env``, output to ``log_path``.

    ``stdin_path`` feeds the child's stdin from a file (else stdin is ``/dev/null``, never an
    open pipe: agent CLIs block on one). ``timeout_seconds`` None means no deadline;
    ``idle_timeout_seconds`` None means silence is never cut short;
    ``first_output_timeout_seconds``: a command that has printed nothing at all this long
    after its start is stopped as silent too (None: never). ``attach``: the id of a job an
    executor already runs this command as (after a controller crash, :mod:`macp.slurm`),
    followed instead of starting the command again. ``later_seconds``: how long the steps
    that may follow it in the same attempt can take (its gates), for an executor that books
    a job's time up front. ``tail_bytes`` of output
    are kept for results, the log is cut at ``max_log_bytes``, and ``grace_seconds`` pass
    between SIGTERM and SIGKILL.
    """

    argv: list[str]
    cwd: Path
    env: dict[str, str]
    log_path: Path
    timeout_seconds: float | None
    stdin_path: Path | None = None
    idle_timeout_seconds: float | None = None
    tail_bytes: int = 4096
    max_log_bytes: int = 8 * 1024 * 1024
    grace_seconds: float = 5.0
    first_output_timeout_seconds: float | None = None
    attach: str | None = None
    later_seconds: float = 0.0


# Leaders of the commands this process runs right now (pids). Their exit status belongs to
# their subprocess.Popen, so /proc scans never reap them; and while more than one runs, an
# orphan adopted by this subreaper cannot be told apart and is left to the last one.
_LEADERS: set[int] = set()


class Child:
    """One started :class:`Command`, advanced without blocking by whoever multiplexes it
    (:class:`macp.pool.StepPool`): :meth:`fds` to watch, :meth:`on_ready` when one is
    readable, :meth:`step` at least by :meth:`wake_at` (a monotonic time, seconds), and
    :meth:`result` once :meth:`step` returned True.

    Phases: ``running`` (copying output; the deadline or idle timeout may end it),
    ``stopping`` (SIGTERM sent to what is left of the command; SIGKILL when the grace ends),
    ``draining`` (the leader reaped; the rest of its output read until EOF, at most
    :data:`_DRAIN_SECONDS`).

    A local command never outlives its controller (``survives_controller``) and has no
    scheduler job to record (``job``).
    """

    survives_controller = False
    job: Job | None = None

    def release(self) -> None:
        """Nothing to do when the attempt is over: a local process ends with its command."""

    def __init__(self, command: Command, proc: subprocess.Popen, log_handle: BinaryIO, run_id: str, started_at: str) -> None:
        assert proc.stdout is not None
        self.command = command
        self.proc = proc
        self.log_handle = log_handle
        self.capture = OutputCapture(log_handle, command.max_log_bytes, command.tail_bytes)
        self.started = time.monotonic()
        self.started_at = started_at
        self.pipe = _Pipe(proc.stdout.fileno(), self.capture, self.started)
        self.run = _Run(proc, run_id, start_ticks(proc.pid))
        self.deadline = None if command.timeout_seconds is None else self.started + command.timeout_seconds
        self.phase = "running"
        self.until = 0.0  # end of the grace (stopping) or of the drain (draining)
        self.stopped: str | None = None  # "deadline" or "idle" when the controller ended it
        self.pidfd = _pidfd(proc.pid)
        _LEADERS.add(proc.pid)

    @classmethod
    def start(cls, command: Command) -> Child | ProcessResult:
        """Start ``command`` in a new session (its own process group); a
        :class:`ProcessResult` with ``spawn_error`` when it cannot be started."""
        command.log_path.parent.mkdir(parents=True, exist_ok=True)
        run_id = secrets.token_hex(8)
        started_at = clock.timestamp()
        log_handle = os.fdopen(create_regular(command.log_path), "wb")
        stdin: BinaryIO | int = os.fdopen(open_regular(command.stdin_path), "rb") if command.stdin_path else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(
                command.argv,
                cwd=command.cwd,
                env={**command.env, RUN_ENV: run_id},
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            if is_resource_exhaustion(exc):  # the machine's limit, not the command's: the caller decides
                log_handle.close()
                raise
            message = f"cannot start {command.argv[0]!r}: {exc.strerror or exc}"
            with log_handle:
                log_handle.write((message + "\n").encode())
            return ProcessResult(None, False, 0.0, message, command.log_path, len(message) + 1, False, message, started_at=started_at)
        finally:
            if not isinstance(stdin, int):
                stdin.close()
        return cls(command, proc, log_handle, run_id, started_at)

    @property
    def pid(self) -> int:
        """The leader's pid (also its process group id)."""
        return self.proc.pid

    def fds(self) -> set[int]:
        """The file descriptors to wait on: the output pipe until EOF, and the leader's pidfd
        (readable when it exits) while it runs."""
        wanted = {self.pipe.fd} if self.pipe.open else set()
        if self.pidfd is not None and self.phase == "running":
            wanted.add(self.pidfd)
        return wanted

    def on_ready(self, fd: int) -> None:
        """``fd`` (one of :meth:`fds`) is readable: take a chunk of output, or note EOF. A
        readable pidfd needs nothing here: the next :meth:`step` sees the exit."""
        if fd == self.pipe.fd and self.pipe.open:
            self.pipe.read_once()

    def wake_at(self) -> float:
        """The monotonic time by which :meth:`step` must run again, whatever the fds do."""
        if self.phase == "stopping":
            return time.monotonic() + _STOP_POLL_SECONDS
        if self.phase == "draining":
            return self.until
        moments = [time.monotonic() + (_POLL_SECONDS if self.pidfd is None else _IDLE_WAKE_SECONDS)]
        if self.deadline is not None:
            moments.append(self.deadline)
        if self.command.idle_timeout_seconds is not None:
            moments.append(self.pipe.last_output + self.command.idle_timeout_seconds)
        if self.command.first_output_timeout_seconds is not None and not self.pipe.received:
            moments.append(self.started + self.command.first_output_timeout_seconds)
        return min(moments)

    def step(self) -> bool:
        """Advance the command: notice its leader's exit, a passed deadline or idle timeout,
        the end of a grace period, the end of its output. True when :meth:`result` is ready."""
        now = time.monotonic()
        if self.phase == "running":
            idle = self.command.idle_timeout_seconds
            if self.proc.poll() is not None:
                if self.run.members():
                    self._terminate(now)  # what the leader left running goes the same way
                else:
                    self._reap(all_gone=True)
            elif self.deadline is not None and now >= self.deadline:
                self.stopped = "deadline"
                self._terminate(now)
            elif (idle is not None and now - self.pipe.last_output >= idle) or self._silent_from_start(now):
                self.stopped = "idle"
                self._terminate(now)
        elif self.phase == "stopping" and (now >= self.until or (self.proc.poll() is not None and not self.run.members())):
            self._reap(all_gone=False)
        return self.phase == "draining" and (not self.pipe.open or time.monotonic() >= self.until)

    def _silent_from_start(self, now: float) -> bool:
        """True when the command has printed nothing at all for its first-output timeout."""
        first = self.command.first_output_timeout_seconds
        return first is not None and not self.pipe.received and now - self.started >= first

    def stop(self) -> None:
        """Begin stopping the command now (the controller was interrupted): SIGTERM to all of
        it, SIGKILL after the grace. :meth:`step` carries it out."""
        if self.phase == "running":
            self._terminate(time.monotonic())

    def kill(self) -> None:
        """SIGKILL whatever of the command is left and reap its leader, at once (the last
        resort when stopping was itself interrupted)."""
        if self.phase != "draining":
            _signal_run(self.run, signal.SIGKILL)
            self._reap(all_gone=False)

    def result(self) -> ProcessResult:
        """Close the command's files and return how it ended (after :meth:`step` said so)."""
        self.capture.close()
        self.log_handle.close()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        returncode = self.proc.returncode
        return ProcessResult(
            returncode if returncode >= 0 else 128 - returncode,
            self.stopped == "deadline",
            round(time.monotonic() - self.started, 3),
            self.capture.tail_text(),
            self.command.log_path,
            self.capture.written,
            self.capture.truncated,
            idle_timed_out=self.stopped == "idle",
            started_at=self.started_at,
        )

    def _terminate(self, now: float) -> None:
        _signal_run(self.run, signal.SIGTERM)
        self.phase = "stopping"
        self.until = now + self.command.grace_seconds

    def _reap(self, all_gone: bool) -> None:
        """SIGKILL what is left (unless one reading of /proc already found nothing), collect
        the leader's status and any adopted orphan that ended, then start draining."""
        if not all_gone:
            _signal_run(self.run, signal.SIGKILL)
        self.proc.wait()
        _LEADERS.discard(self.proc.pid)
        if not all_gone:
            reap_adopted(keep=_LEADERS)
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        self.phase = "draining"
        self.until = time.monotonic() + _DRAIN_SECONDS


def _pidfd(pid: int) -> int | None:
    """A pidfd for ``pid`` (Linux 5.3+): readable once the process exits. None elsewhere;
    the child is then polled every :data:`_POLL_SECONDS`."""
    try:
        return os.pidfd_open(pid)  # type: ignore[attr-defined,unused-ignore]
    except (AttributeError, OSError):
        return None


class _Pipe:
    """The read end of the child's output pipe, fed into a :class:`OutputCapture`."""

    def __init__(self, fd: int, capture: OutputCapture, started: float) -> None:
        self.fd = fd
        self.capture = capture
        self.open = True
        self.last_output = started
        self.received = 0  # bytes of output read so far

    def read_once(self) -> None:
        """Take one chunk of output (the pipe is readable); notes EOF."""
        chunk = os.read(self.fd, _READ_SIZE)
        if chunk:
            self.capture.feed(chunk)
            self.last_output = time.monotonic()
            self.received += len(chunk)
        else:
            self.open = False


@dataclass(frozen=True)
class _Run:
    """One running command: its leader, the run id in its environment, and when the leader
    started (clock ticks, :func:`macp.proctree.start_ticks`)."""

    proc: subprocess.Popen
    run_id: str
    since: int

    def members(self) -> set[int]:
        """Live processes of the command (:func:`macp.proctree.run_members`); orphans this
        subreaper adopted count only while no other command runs (see :data:`_LEADERS`)."""
        others = _LEADERS - {self.proc.pid}
        return run_members(self.proc.pid, self.run_id, self.since, keep=others, adopt_orphans=not others)


def _signal_run(run: _Run, signum: int) -> None:
    """Send ``signum`` to the command's process group and to its processes outside it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(run.proc.pid, signum)
    signal_all(run.members(), signum)
