"""SIGINT/SIGTERM handling for the controller.

While a worker runs, a signal raises :class:`~macp.errors.Interrupted` at once, so the
process runner stops the worker's group. While state is being written (tasks.json, an event,
a result) the signal is held back until the write is complete, so no state change is ever
half-recorded.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from macp.errors import Interrupted


class SignalGuard:
    """Install handlers for SIGINT and SIGTERM; use :meth:`critical` around state writes."""

    def __init__(self) -> None:
        self._depth = 0
        self._pending: int | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        """Route SIGINT and SIGTERM to this guard."""
        for signum in (signal.SIGINT, signal.SIGTERM):
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
