"""Read and write the queue: ``tasks.json`` (the checkpoint) plus ``tasks.journal``.

The file is ``{"tasks": [...]}`` (other top-level keys are kept) or, for legacy queues, a bare
list; it is written back in the shape it was read. Readers take the checkpoint and replay
the journal (:mod:`macp.journal`) on top. Changes go through one of two doors, both under
the exclusive lock of ``.tasks.lock``:

- :func:`edit_tasks` (commands, sync, archive): fresh read, change, then the whole queue is
  written back atomically and the journal emptied (a *fold*);
- :class:`QueueSession` (the controller): the queue stays in memory, each change is one
  appended journal line, and the journal is folded when it outgrows the checkpoint and when
  the run ends (docs/durability.md "The journal").
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from macp import journal
from macp.archive import find_archived
from macp.errors import MacpError
from macp.events import append_events
from macp.fsio import write_atomic
from macp.jsontext import parse_json_text, utf8
from macp.layout import Layout
from macp.locks import exclusive_lock
from macp.model import Task
from macp.outbox import clear_outbox, settle_outbox, write_outbox
from macp.taskdoc import TaskDocument, parse_tasks, validate_tasks

# The journal is folded once it is larger than this and larger than tasks.json, so a fold
# (which costs the whole queue) comes at most once per queue-size of changes: O(1) a change.
FOLD_MIN_BYTES = 1 << 20


def load_tasks(layout: Layout, validate: bool = False) -> TaskDocument:
    """The queue: tasks.json with the journal replayed on top (an empty queue when neither
    exists). Takes no lock: a fold in another process at the same instant can only make
    this an earlier complete state, never a mixed one.

    With ``validate`` every task is checked against ``task.schema.json``. Raises
    :class:`MacpError` for unreadable, malformed or invalid files.
    """
    document = _load(layout).document
    if validate:
        validate_tasks(document)
    return document


@dataclass
class _Loaded:
    """A read of the queue: the ``document`` (journal replayed), the checkpoint's digest,
    the ``journal`` read and whether tasks.json was ``edited`` outside MACP under it."""

    document: TaskDocument
    checkpoint_sha256: str
    journal: journal.Journal
    edited: bool


def _load(layout: Layout) -> _Loaded:
    path = layout.tasks_file
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raw = None
    tail = journal.read_journal(layout.tasks_journal)
    if raw is None:
        document = TaskDocument([], {}, str(path))
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MacpError(f"{path}: not UTF-8 (byte {exc.start})") from None
        document = parse_tasks(parse_json_text(text, str(path)), str(path))
    sha = journal.digest(raw or b"") if tail.size else ""
    for task in tail.tasks:
        document.put(task)
    document.changed.clear()
    document.archived = lambda task_id: find_archived(layout.orch_dir, task_id) is not None
    return _Loaded(document, sha, tail, not tail.extends(sha))


def find_known(layout: Layout, task_id: str) -> tuple[Task, bool]:
    """``(task, archived)``: the task ``task_id`` from the queue, else from the archive
    (read-only views: show, log, diff). Raises :class:`MacpError` "unknown task"."""
    task = load_tasks(layout).find(task_id)
    if task is not None:
        return task, False
    archived = find_archived(layout.orch_dir, task_id)
    if archived is None:
        raise MacpError(f"unknown task: {task_id}")
    return archived, True


def _fold(layout: Layout, loaded: _Loaded, text: str | None = None) -> str:
    """Write ``loaded.document`` (serialised: ``text``) as tasks.json and empty the journal;
    returns the new checkpoint's digest ("" when there was no journal to mark). A hand edit
    the journal was replayed over is reported on stderr."""
    text = text if text is not None else loaded.document.to_json()
    sha = ""
    if loaded.journal.size:
        sha = journal.digest(utf8(text))
        journal.mark_fold(layout.tasks_journal, sha)
    write_atomic(layout.tasks_file, text)
    if loaded.journal.size:
        journal.clear(layout.tasks_journal)
    if loaded.edited:
        ids = ", ".join(sorted({task["id"] for task in loaded.journal.tasks}))
        sys.stderr.write(f"macp: {layout.tasks_file} was changed outside MACP during a run; the run's changes to {ids} were applied on top of it\n")
    return sha


def settle_left_events(layout: Layout) -> None:
    """Settle the events a killed writer left in the outbox (:mod:`macp.outbox`); call with
    the tasks.json lock held, before changing anything."""
    if layout.events_outbox.exists():
        try:
            raw = layout.tasks_file.read_bytes()
        except FileNotFoundError:
            raw = b""
        settle_outbox(layout.events_outbox, journal.digest(raw), layout.events_file)


@contextmanager
def edit_tasks(layout: Layout) -> Iterator[TaskDocument]:
    """Lock the queue, yield a fresh :class:`TaskDocument`, and write it back atomically
    (folding the journal in), with the events the block put in ``document.events``.

    The write happens only if the block finishes without an exception and the document
    changed. Its events go to the outbox first, then tasks.json is replaced, then the
    events are appended, all under the lock (:mod:`macp.outbox`): a writer killed at any
    point leaves the change and its events both recorded, or neither. The lock is held for
    the block only, so keep the block short.
    """
    with exclusive_lock(layout.tasks_lock):
        settle_left_events(layout)
        loaded = _load(layout)
        document = loaded.document
        before = document.fingerprint()
        yield document
        if document.fingerprint() != before:
            text = document.to_json()
            if document.events:
                write_outbox(layout.events_outbox, journal.digest(utf8(text)), document.events)
            _fold(layout, loaded, text)
        if document.events:
            append_events(layout.events_file, document.events)
            document.events.clear()
            clear_outbox(layout.events_outbox)


class QueueSession:
    """The controller's queue: kept in memory across state changes, each change one
    journal append (O(1) in the queue's size).

    Before each change the session checks, with two ``stat`` calls, that tasks.json and the
    journal are as it left them; when another process folded (a command such as ``submit``
    or ``cancel``) or someone edited tasks.json, it reads the queue afresh. Call
    :meth:`fold` at the end of a run so tasks.json at rest is the whole queue."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._loaded: _Loaded | None = None
        self._seen: tuple[tuple[int, ...], int] | None = None
        self.unreadable: str | None = None  # why tasks.json, changed by someone else, cannot be read now

    def _identity(self) -> tuple[tuple[int, ...], int]:
        try:
            info = os.stat(self.layout.tasks_file)
            checkpoint: tuple[int, ...] = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        except FileNotFoundError:
            checkpoint = ()
        try:
            size = os.stat(self.layout.tasks_journal).st_size
        except FileNotFoundError:
            size = 0
        return checkpoint, size

    def _current(self) -> _Loaded:
        """The queue, re-read only when someone else changed the files (lock held); events a
        killed command left are settled first (:func:`settle_left_events`).

        A tasks.json that someone else changed and that cannot be read now -- an editor
        saving it in place, caught halfway; a hand edit that is not JSON -- is never fatal
        to the running work (issue 22): the run goes on with the queue as it was, its
        changes go to the journal, tasks.json is not folded over, and it is read again at
        the next change; once it reads, the run's changes are applied on top of the edit."""
        if self._loaded is None or self._identity() != self._seen:
            settle_left_events(self.layout)
            try:
                loaded = _load(self.layout)
            except MacpError as exc:
                if self._loaded is None:
                    raise  # nothing to go on with: the file is the user's to fix
                if self.unreadable != str(exc):
                    sys.stderr.write(f"macp: cannot read {exc}; the run goes on with the queue as it was, and applies its changes once the file reads again\n")
                self.unreadable = str(exc)
                return self._loaded
            self._loaded, self.unreadable = loaded, None
            if loaded.edited:
                self._write_checkpoint()
            self._seen = self._identity()
        return self._loaded

    def _write_checkpoint(self) -> None:
        assert self._loaded is not None
        if self.unreadable:
            return  # never write over a file someone else is changing: the journal keeps the run's changes
        loaded = self._loaded
        sha = _fold(self.layout, loaded)
        self._loaded = _Loaded(loaded.document, sha, journal.Journal(), False)

    @contextmanager
    def edit(self) -> Iterator[TaskDocument]:
        """Lock the queue and yield it; tasks given a new state with ``replace``/``put``
        are journaled when the block ends (nothing is written when it raises)."""
        with exclusive_lock(self.layout.tasks_lock):
            loaded = self._current()
            document = loaded.document
            document.changed.clear()
            try:
                yield document
                if document.changed:
                    if not loaded.checkpoint_sha256:
                        raw = self.layout.tasks_file.read_bytes() if self.layout.tasks_file.exists() else b""
                        loaded.checkpoint_sha256 = journal.digest(raw)
                    tasks = [document.get(task_id) for task_id in sorted(document.changed)]
                    size = journal.append_tasks(self.layout.tasks_journal, tasks, loaded.checkpoint_sha256, loaded.journal.size)
                    loaded.journal.size = size
                    loaded.journal.tasks.extend(tasks)
                    checkpoint = self._seen[0] if self._seen else ()
                    if self.unreadable:
                        pass  # _seen stays as it was: tasks.json is read again at the next change
                    elif size > max(FOLD_MIN_BYTES, checkpoint[1] if checkpoint else 0):
                        self._write_checkpoint()
                        self._seen = self._identity()
                    else:
                        self._seen = (checkpoint, size)
            except BaseException:
                self._loaded = None  # the copy in memory may be half-changed: read afresh next time
                raise

    def snapshot(self) -> TaskDocument:
        """The current queue (read afresh if someone else changed it). Do not change it:
        use :meth:`edit`."""
        with exclusive_lock(self.layout.tasks_lock):
            return self._current().document

    def fold(self) -> None:
        """Write the whole queue to tasks.json and empty the journal, if it holds anything
        and tasks.json reads (:meth:`_current`); else the journal stays for the next run."""
        with exclusive_lock(self.layout.tasks_lock):
            if self._current().journal.size and not self.unreadable:
                self._write_checkpoint()
                self._seen = self._identity()
