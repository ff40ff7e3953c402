"""Run several commands at once in one process: no threads, no asyncio (issue 12).

Each unit of work is a *steps* generator: plain code that yields a
:class:`~macp.procs.Command` whenever it needs a child process and receives the command's
:class:`~macp.procs.ProcessResult` back, then returns its outcome. A worker attempt with
its gates is one such generator (``Controller.task_steps``); one command alone is another
(:func:`macp.procs.run_command`).

:class:`StepPool` starts the commands the generators yield, waits for all of them with one
:mod:`selectors` call (output pipes, and pidfds that become readable when a leader exits),
advances each generator when its command ends, and hands back the outcomes as they come.
Which child ends first is up to the children; everything between two yields runs to its
end before anything else does, so the code of one generator never interleaves with
another's.

The commands are started by an executor (:mod:`macp.executor`: local processes by default,
or Slurm jobs); a command the executor lost (a node failure) raises
:class:`~macp.errors.JobLost` into its generator instead of returning a result.
"""

from __future__ import annotations

import selectors
import time
from collections.abc import Callable, Generator, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from macp.errors import JobLost
from macp.executor import Executor, Handle, LocalExecutor
from macp.model import Job
from macp.procs import Command, ProcessResult

Steps = Generator[Command, ProcessResult, Any]
OnStart = Callable[[Hashable, Job], None]


@dataclass(frozen=True)
class Crashed:
    """The outcome of a steps generator that raised ``error`` instead of returning."""

    error: Exception


@dataclass(frozen=True)
class Cancelled:
    """The outcome of a steps generator stopped by :meth:`StepPool.cancel`: its command was
    stopped and the generator closed without being advanced."""


class StepPool:
    """Steps generators in progress, keyed by any hashable (the controller uses task ids).

    ``len(pool)`` counts the generators not yet handed back by :meth:`wait`. ``executor``
    starts the commands (default: local processes); ``on_start(key, job)`` hears of each
    scheduler job started for ``key``'s generator, so the task can record it.
    """

    def __init__(self, executor: Executor | None = None, on_start: OnStart | None = None) -> None:
        self._executor = executor or LocalExecutor()
        self._on_start = on_start
        self._selector = selectors.DefaultSelector()
        self._running: dict[Hashable, tuple[Steps, Handle]] = {}
        self._last: dict[Hashable, Handle] = {}  # the handle of each generator's latest command
        self._watched: dict[Handle, set[int]] = {}
        self._done: list[tuple[Hashable, Any]] = []
        self._cancelling: set[Hashable] = set()

    def __len__(self) -> int:
        return len(self._running) + len(self._done)

    def add(self, key: Hashable, steps: Steps) -> None:
        """Start ``steps`` under ``key``: run it up to its first command and start that."""
        self._advance(key, steps, None)

    def wait(self, timeout: float | None = None) -> list[tuple[Hashable, Any]]:
        """Block until at least one generator has finished, or ``timeout`` seconds (None:
        no limit) have passed; return ``[(key, outcome)]`` in the order they finished --
        the value each returned, :class:`Crashed` or :class:`Cancelled`. An exception that
        is not an :class:`Exception` (an interruption) propagates; call :meth:`stop_all`
        then. Returns ``[]`` when nothing is in progress or nothing finished in time."""
        until = None if timeout is None else time.monotonic() + timeout
        while not self._done and self._running and (until is None or time.monotonic() < until):
            self._poll(advance=True, until=until)
        done, self._done = self._done, []
        return done

    def cancel(self, key: Hashable) -> bool:
        """Stop the command ``key``'s generator runs (SIGTERM to all of it, SIGKILL after
        the grace); once it is gone the generator is closed, not advanced, and :meth:`wait`
        hands back :class:`Cancelled` for it. False when ``key`` runs nothing here."""
        entry = self._running.get(key)
        if entry is None:
            return False
        entry[1].stop()
        self._cancelling.add(key)
        return True

    def stop_all(self) -> None:
        """Stop every running command (SIGTERM, the grace, SIGKILL -- all of them at once)
        and close their generators without advancing them; a command that survives its
        controller (a Slurm worker job) is left running, to be followed again. When this is
        itself interrupted, what is left is killed outright before the interruption
        propagates."""
        for key, (steps, child) in list(self._running.items()):
            if child.survives_controller:
                del self._running[key]
                steps.close()
        try:
            for _steps, child in self._running.values():
                child.stop()
            while self._running:
                self._poll(advance=False)
        finally:
            for steps, child in self._running.values():
                child.kill()
                self._unwatch(child)
                child.result()
                steps.close()
            self._running.clear()

    def _advance(self, key: Hashable, steps: Steps, value: ProcessResult | None, error: Exception | None = None) -> None:
        """Send ``value`` (or throw ``error``) into ``steps`` until it yields a command that
        starts or finishes. A command that cannot even be set up (its log cannot be created)
        raises inside the generator, at its ``yield``, as a direct call would."""
        while True:
            try:
                command = steps.throw(error) if error is not None else steps.send(value)  # type: ignore[arg-type]  # None starts it
            except StopIteration as stop:
                self._finished(key, stop.value)
                return
            except Exception as exc:  # noqa: BLE001 -- handed to the owner, who decides
                self._finished(key, Crashed(exc))
                return
            try:
                started = self._executor.start(command)
            except Exception as exc:  # noqa: BLE001 -- goes back into the generator
                error = exc
                continue
            error = None
            if isinstance(started, ProcessResult):  # could not start: the generator hears so
                value = started
                continue
            self._running[key] = (steps, started)
            self._last[key] = started
            self._watch(started)
            if started.job is not None and self._on_start is not None:
                self._on_start(key, started.job)
            return

    def _finished(self, key: Hashable, outcome: Any) -> None:
        """``key``'s generator ended with ``outcome``: its last command's executor hears
        that the attempt is over."""
        last = self._last.pop(key, None)
        if last is not None:
            last.release()
        self._done.append((key, outcome))

    def _poll(self, advance: bool, until: float | None = None) -> None:
        """Wait for the next output, exit or deadline of any running command (or ``until``,
        a monotonic time), then step every command; those that ended go back to their
        generator (``advance``, unless it was cancelled) or are closed."""
        wake = min(child.wake_at() for _steps, child in self._running.values())
        if until is not None:
            wake = min(wake, until)
        for selector_key, _events in self._selector.select(max(0.0, wake - time.monotonic())):
            selector_key.data.on_ready(selector_key.fd)
        for key, (steps, child) in list(self._running.items()):
            ended = child.step()
            self._watch(child)
            if not ended:
                continue
            del self._running[key]
            self._unwatch(child)
            result = child.result()
            if key in self._cancelling:
                self._cancelling.discard(key)
                steps.close()
                self._finished(key, Cancelled())
            elif advance and result.lost:
                self._advance(key, steps, None, JobLost(result.lost))
            elif advance:
                self._advance(key, steps, result)
            else:
                steps.close()

    def _watch(self, child: Handle) -> None:
        """Register exactly the fds ``child`` wants watched now."""
        watched = self._watched.setdefault(child, set())
        wanted = child.fds()
        for fd in watched - wanted:
            self._selector.unregister(fd)
        for fd in wanted - watched:
            self._selector.register(fd, selectors.EVENT_READ, child)
        self._watched[child] = wanted

    def _unwatch(self, child: Handle) -> None:
        for fd in self._watched.pop(child, set()):
            self._selector.unregister(fd)


def run_steps(steps: Steps) -> Any:
    """Run one steps generator to its end, alone, and return what it returns. Raises what
    it raised, and :class:`~macp.errors.Interrupted` after stopping all of its command if
    the process is signalled meanwhile."""
    pool = StepPool()
    pool.add("steps", steps)
    try:
        ((_key, outcome),) = pool.wait()
    except BaseException:
        pool.stop_all()
        raise
    if isinstance(outcome, Crashed):
        raise outcome.error
    return outcome


def run_command(command: Command) -> ProcessResult:
    """Run ``command`` to its end and return a :class:`ProcessResult` (:func:`run_steps`).
    Raises :class:`~macp.errors.Interrupted` after stopping all of the command if the
    controller is signalled meanwhile, and what setting it up raised (an ``OSError``
    creating its log)."""
    result = run_steps(_one(command))
    assert isinstance(result, ProcessResult)
    return result


def _one(command: Command) -> Generator[Command, ProcessResult, ProcessResult]:
    return (yield command)


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
    """:func:`run_command` of the :class:`Command` these arguments describe."""
    return run_command(
        Command(argv, cwd, env, log_path, timeout_seconds, stdin_path, idle_timeout_seconds, tail_bytes, max_log_bytes, grace_seconds)
    )
