"""Run a worker or gate command: own process group, timeout, bounded and redacted output.

One synchronous loop (``select`` on the child's merged stdout/stderr pipe, no threads):

- the child starts in a new session, so it and everything it spawns share one process group;
- output is streamed to a per-run log file, redacted line by line and cut at ``max_log_bytes``,
  while only the last ``tail_bytes`` are kept in memory for results and events;
- at the deadline, or after ``idle_timeout_seconds`` without any output, the command's
  processes get SIGTERM, then SIGKILL after ``grace_seconds``: its process group, and every
  process that left the group (``setsid``, a double fork) that :mod:`macp.proctree` finds;
  after a normal exit what the leader left running gets the same SIGTERM, grace, SIGKILL,
  so nothing the command started outlives it;
- if the controller itself is interrupted (:class:`~macp.errors.Interrupted`), the
  command's processes are stopped the same way before the interruption propagates.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from macp import clock
from macp.proctree import RUN_ENV, reap_adopted, run_members, signal_all, start_ticks
from macp.redact import redact

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
OWNER_ENV = "MACP_OWNER_TOKEN"
_READ_SIZE = 65536
_TAIL_CONTEXT = 1024
_POLL_SECONDS = 0.2
_DRAIN_SECONDS = 2.0


@dataclass(frozen=True)
class ProcessResult:
    """Outcome of :func:`run_process`.

    ``exit_code``: the exit status, or 128+N when killed by signal N (shell convention);
    None when the command could not be started (``spawn_error`` says why).
    ``timed_out``: the deadline passed and the group was killed. ``idle_timed_out``: the
    command printed nothing for its idle timeout and the group was killed (``timed_out`` is
    then False). ``started_at``: when it started (UTC timestamp); ``duration_seconds``: wall time. ``output_tail``: the last bytes of output as clean text (ANSI and control
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


def strip_terminal_codes(text: str) -> str:
    """``text`` without ANSI escape sequences and control characters (tab, newline and
    carriage return stay)."""
    return _CONTROL.sub("", _ANSI.sub("", text))


def clean_text(raw: bytes) -> str:
    """Decode ``raw`` for humans and JSON: UTF-8 with replacement, no ANSI/control chars, redacted."""
    return redact(strip_terminal_codes(raw.decode("utf-8", errors="replace")))


def read_log_tail(log_path: Path, max_bytes: int = 1 << 20) -> str:
    """The last ``max_bytes`` (default 1 MiB) of a run's log as clean text (see
    :func:`clean_text`); "" when the log cannot be read. A partial first line is dropped."""
    try:
        with open(log_path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - max_bytes))
            raw = handle.read()
    except OSError:
        return ""
    if size > max_bytes and b"\n" in raw:
        raw = raw[raw.index(b"\n") + 1 :]
    return clean_text(raw)


class _Capture:
    """Collect a child's output: a log file cut at ``max_bytes`` and an in-memory tail, both
    redacted before anything is cut (docs/security.md).

    The log gets whole lines, terminal escapes removed and secrets redacted. A line is held
    until its newline comes, up to the room left in the log: a longer line is redacted whole
    and then cut with the log, so no secret is split by a chunk boundary. The tail keeps
    :data:`_TAIL_CONTEXT` bytes more than it shows, so a label or token that starts before
    the shown part is redacted as a whole (:meth:`tail_text`).
    """

    def __init__(self, handle: BinaryIO, max_bytes: int, tail_bytes: int) -> None:
        self.handle = handle
        self.max_bytes = max_bytes
        self.tail_bytes = tail_bytes
        self.tail = bytearray()
        self.tail_trimmed = False
        self.written = 0
        self.truncated = False
        self._pending = bytearray()

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of output: whole lines go to the log, everything to the tail."""
        self.tail.extend(chunk)
        keep = self.tail_bytes + _TAIL_CONTEXT
        if len(self.tail) > keep:
            del self.tail[: len(self.tail) - keep]
            self.tail_trimmed = True
        if self.truncated:
            return
        newline = chunk.rfind(b"\n")
        if newline == -1:
            self._pending.extend(chunk)
            if len(self._pending) > self.max_bytes - self.written + _TAIL_CONTEXT:
                self._write(bytes(self._pending))
                self._pending.clear()
            return
        self._pending.extend(chunk[: newline + 1])
        self._write(bytes(self._pending))
        self._pending = bytearray(chunk[newline + 1 :])

    def close(self) -> None:
        """Flush a final line that had no newline."""
        if self._pending:
            self._write(bytes(self._pending))
            self._pending.clear()

    def tail_text(self) -> str:
        """The last ``tail_bytes`` of output as clean, redacted text (see :func:`clean_text`).

        Redaction runs on the tail plus its context first, and the context's first word is
        dropped when output was cut before it, so a token cut at the edge is never shown.
        """
        raw = bytes(self.tail)
        if self.tail_trimmed:
            raw = raw[next((i + 1 for i, byte in enumerate(raw[:_TAIL_CONTEXT]) if byte in b" \t\n"), 0) :]
        text = clean_text(raw).encode("utf-8")
        return text[-self.tail_bytes :].decode("utf-8", errors="ignore") if len(text) > self.tail_bytes else text.decode("utf-8")

    def _write(self, data: bytes) -> None:
        if self.truncated:
            return
        text = redact(strip_terminal_codes(data.decode("utf-8", errors="replace"))).encode("utf-8")
        room = self.max_bytes - self.written
        if len(text) > room:
            text = text[:room] + f"\n[macp: log cut at {self.max_bytes} bytes]\n".encode()
            self.truncated = True
        self.handle.write(text)
        self.handle.flush()  # whole lines reach the file as they come: `tail -f` and `mosaic macp log --follow` see them
        self.written += len(text)


def run_process(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    log_path: Path,
    timeout_seconds: float | None,
    stdin_path: Path | None = None,
    idle_timeout_seconds: float | None = None,
    tail_bytes: int = 4096,
    max_log_bytes: int = 8 * 1024 * 1024,
    grace_seconds: float = 5.0,
) -> ProcessResult:
    """Run ``argv`` in ``cwd`` with exactly ``env``; return a :class:`ProcessResult`.

    ``stdin_path`` feeds the child's stdin from a file (else stdin is ``/dev/null``, never an
    open pipe: agent CLIs block on one). ``timeout_seconds`` None means no deadline;
    ``idle_timeout_seconds`` None means silence is never cut short. Raises
    :class:`~macp.errors.Interrupted` after stopping the group if the controller is signalled.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    run_id = secrets.token_hex(8)
    started_at = clock.timestamp()
    started = time.monotonic()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(log_fd, "wb") as log_handle:
        capture = _Capture(log_handle, max_log_bytes, tail_bytes)
        stdin: BinaryIO | int = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL  # noqa: SIM115 -- closed below once the child has it
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env={**env, RUN_ENV: run_id},
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            message = f"cannot start {argv[0]!r}: {exc.strerror or exc}"
            log_handle.write((message + "\n").encode())
            return ProcessResult(None, False, 0.0, message, log_path, len(message) + 1, False, message, started_at=started_at)
        finally:
            if not isinstance(stdin, int):
                stdin.close()
        assert proc.stdout is not None
        pipe = _Pipe(proc.stdout.fileno(), capture, started)
        deadline = None if timeout_seconds is None else started + timeout_seconds
        run = _Run(proc, run_id, start_ticks(proc.pid))
        all_gone = False
        try:
            stopped = _wait_for_exit(proc, pipe, deadline, idle_timeout_seconds)
            all_gone = _stop_run(run, pipe, grace_seconds)
        except BaseException:
            _stop_run(run, pipe, grace_seconds)
            raise
        finally:
            if not all_gone:  # else one reading of /proc already found nothing left
                _signal_run(run, signal.SIGKILL)
            proc.wait()
            if not all_gone:
                reap_adopted()
            pipe.drain(time.monotonic() + _DRAIN_SECONDS)
            capture.close()
            proc.stdout.close()
    returncode = proc.returncode
    exit_code = returncode if returncode >= 0 else 128 - returncode
    return ProcessResult(
        exit_code,
        stopped == "deadline",
        round(time.monotonic() - started, 3),
        capture.tail_text(),
        log_path,
        capture.written,
        capture.truncated,
        idle_timed_out=stopped == "idle",
        started_at=started_at,
    )


class _Pipe:
    """The read end of the child's output pipe, fed into a :class:`_Capture`."""

    def __init__(self, fd: int, capture: _Capture, started: float) -> None:
        self.fd = fd
        self.capture = capture
        self.open = True
        self.last_output = started

    def read_for(self, seconds: float) -> None:
        """Wait up to ``seconds`` for output and take one chunk; notes EOF."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, seconds))
        if ready:
            chunk = os.read(self.fd, _READ_SIZE)
            if chunk:
                self.capture.feed(chunk)
                self.last_output = time.monotonic()
            else:
                self.open = False

    def drain(self, until: float) -> None:
        """Read what is left until EOF or the monotonic time ``until``."""
        while self.open and time.monotonic() < until:
            self.read_for(until - time.monotonic())


def _wait_for_exit(proc: subprocess.Popen, pipe: _Pipe, deadline: float | None, idle_seconds: float | None = None) -> str | None:
    """Copy output until the group leader exits. Returns ``"deadline"`` if the monotonic
    ``deadline`` came first, ``"idle"`` if no output came for ``idle_seconds``, else None."""
    while proc.poll() is None:
        remaining = _POLL_SECONDS if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            return "deadline"
        if idle_seconds is not None and time.monotonic() - pipe.last_output >= idle_seconds:
            return "idle"
        if pipe.open:
            pipe.read_for(min(remaining, _POLL_SECONDS))
        else:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=min(remaining, _POLL_SECONDS))
    return None


@dataclass(frozen=True)
class _Run:
    """One running command: its leader, the run id in its environment, and when the leader
    started (clock ticks, :func:`macp.proctree.start_ticks`)."""

    proc: subprocess.Popen
    run_id: str
    since: int

    def members(self) -> set[int]:
        """Live processes of the command (:func:`macp.proctree.run_members`)."""
        return run_members(self.proc.pid, self.run_id, self.since)


def _stop_run(run: _Run, pipe: _Pipe, grace_seconds: float) -> bool:
    """SIGTERM whatever of the command still runs -- the leader (at a timeout or an
    interruption) or what it left behind (after a normal exit) -- and wait up to
    ``grace_seconds`` for all of it to go, reading its output meanwhile. Returns True when
    the leader had ended and nothing of the command was left at all; otherwise SIGKILL
    follows in :func:`run_process`."""
    if run.proc.poll() is not None and not run.members():
        return True
    _signal_run(run, signal.SIGTERM)
    end = time.monotonic() + grace_seconds
    while time.monotonic() < end and (run.proc.poll() is None or run.members()):
        if pipe.open:
            pipe.read_for(0.05)
        else:
            time.sleep(0.05)
    return False


def _signal_run(run: _Run, signum: int) -> None:
    """Send ``signum`` to the command's process group and to its processes outside it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(run.proc.pid, signum)
    signal_all(run.members(), signum)
