"""A queue change and the events that record it, written as one unit (issue 12).

Every writer of the queue -- the controller, the ``mosaic macp`` commands, TASKS.md sync,
archive -- goes through :func:`recorded`: the change is made in the block, the queue is
written when the block ends (journal line or whole file, as the edit decides), then the
events are appended. SIGINT and SIGTERM are held back from the first write to the last
(docs/durability.md "Signals"), so an interruption never leaves a change without its event.
A crash (SIGKILL) between the two: a command's edit (:func:`macp.taskstore.edit_tasks`)
keeps the events in the outbox until they are logged (:mod:`macp.outbox`), so the next
writer logs them; the controller's journaled changes are logged by its recovery ("logged on
recovery").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from macp.events import append_events
from macp.signals import SignalGuard
from macp.taskdoc import TaskDocument


@contextmanager
def recorded(
    edit: AbstractContextManager[TaskDocument],
    events_file: Path,
    guard: SignalGuard | None = None,
    unlogged: Callable[[], None] | None = None,
) -> Iterator[tuple[TaskDocument, list[dict]]]:
    """``with recorded(edit_tasks(layout), layout.events_file) as (document, events):``
    change ``document`` and put the events that record the change in ``events``.

    ``guard`` is the caller's installed :class:`~macp.signals.SignalGuard` (the
    controller's); without one, a guard is installed for the block and the previous
    handlers put back after it. A signal that arrives meanwhile is raised as
    :class:`~macp.errors.Interrupted` once both are written. An exception in the block
    writes nothing. ``unlogged()`` is called when the queue was written but the events
    could not be appended (then the exception propagates)."""
    own = guard is None
    active = guard or SignalGuard()
    if own:
        active.install()
    try:
        with active.critical():
            with edit as document:
                document.events.clear()
                yield document, document.events
            if document.events:  # an edit that does not write them itself (the controller's journal)
                try:
                    append_events(events_file, document.events)
                    document.events.clear()
                except BaseException:
                    if unlogged is not None:
                        unlogged()
                    raise
    finally:
        if own:
            active.restore()
