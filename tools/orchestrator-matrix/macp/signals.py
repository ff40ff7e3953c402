"""SIGINT/SIGTERM/SIGHUP handling for the controller and the commands that write state.

While a worker runs, a signal raises :class:`~macp.errors.Interrupted` at once, so the
process runner stops the worker's group. While state is being written (tasks.json, an event,
a result) the signal is held back until the write is complete, so no state change is ever
half-recorded. SIGHUP (the terminal or SSH session closed) is a stop like SIGTERM (issue 22):
the running tasks are stopped and left recoverable, never orphaned.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from macp.errors import Interrupted

# The signals that ask MACP to stop: each leaves the tasks in flight recoverable.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class SignalGuard:
    """Install handlers for :data:`STOP_SIGNALS`; use :meth:`critical` around state writes."""

    def __init__(self) -> None:
        self._depth = 0
        self._pending: int | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        """Route :data:`STOP_SIGNALS` to this guard."""
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        """Put the previous handlers back."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, _frame: object) -> None:
        if self._depth:
            self._pending = self._pending or signum
            return
        raise Interrupted(signum)

    @contextmanager
    def critical(self) -> Iterator[None]:
        """Hold signals back for the block; raise the held one (if any) when it ends."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if self._depth == 0 and self._pending is not None:
            signum, self._pending = self._pending, None
            raise Interrupted(signum)
