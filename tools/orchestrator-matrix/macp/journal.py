"""The task journal: each state change one appended line, with tasks.json its checkpoint.

A controller run does not rewrite tasks.json at every state change (that costs the whole
queue, issue 11). It appends the changed tasks to ``tasks.journal`` (one fsynced write) and
folds the journal into tasks.json when the journal outgrows the checkpoint and at the end of
the run (docs/durability.md "The journal"). The file is JSON lines:

- ``{"macp_journal": 1, "checkpoint_sha256": HEX}`` first: the SHA-256 of the tasks.json
  bytes the journal extends. A tasks.json with another digest was changed outside MACP
  (a hand edit) while changes were journaled.
- ``{"task": {...}}``: a task's complete new state; replaying puts it in place of the task
  with its id (or appends it). Replaying a line twice changes nothing, so a crash between a
  fold's checkpoint and its truncation of the journal is harmless.
- ``{"folding": HEX}``: a fold began that writes the tasks.json with that digest (so the
  checkpoint after a crash inside a fold is not mistaken for a hand edit).

A last line without its newline was cut short by a crash and is ignored (its change never
happened: the controller's state change had not returned).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from macp.errors import MacpError
from macp.fsio import append_line
from macp.model import Task

VERSION = 1


@dataclass
class Journal:
    """A parsed journal: ``checkpoints`` are the tasks.json digests it may extend (its
    header's and any fold's), ``tasks`` the journaled task states in order, ``size`` the
    bytes of its complete lines (a torn last line excluded)."""

    checkpoints: set[str] = field(default_factory=set)
    tasks: list[Task] = field(default_factory=list)
    size: int = 0

    def extends(self, checkpoint_sha256: str) -> bool:
        """True when the journal was written on top of the tasks.json with that digest (or
        is empty): False means tasks.json changed outside MACP since."""
        return not self.tasks or checkpoint_sha256 in self.checkpoints


def digest(data: bytes) -> str:
    """SHA-256 hex digest of ``data`` (a checkpoint's bytes)."""
    import hashlib

    return hashlib.sha256(data).hexdigest()


def read_journal(path: Path) -> Journal:
    """Parse the journal at ``path`` (an empty :class:`Journal` when there is none).

    Raises :class:`MacpError` naming the file and line when a complete line is not a
    journal record (the file was damaged or edited).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Journal()
    journal = Journal(size=data.rfind(b"\n") + 1)
    for number, raw in enumerate(data[: journal.size].splitlines(), 1):
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("task"), dict) and isinstance(record["task"].get("id"), str):
            journal.tasks.append(record["task"])
        elif isinstance(record, dict) and isinstance(record.get("folding"), str):
            journal.checkpoints.add(record["folding"])
        elif isinstance(record, dict) and number == 1 and record.get("macp_journal") == VERSION:
            journal.checkpoints.add(str(record.get("checkpoint_sha256")))
        else:
            raise MacpError(f"{path}:{number}: not a journal record (expected a task, a fold or the header)")
    return journal


def append_tasks(path: Path, tasks: list[Task], checkpoint_sha256: str, size: int) -> int:
    """Append one line per task in ``tasks`` (one write, one fsync), after a header naming
    ``checkpoint_sha256`` when the journal is empty (``size`` 0). Returns the journal's new
    size in bytes. Raises ``OSError`` when the write fails (the journal is then as before)."""
    lines = [json.dumps({"task": task}, ensure_ascii=False, separators=(",", ":")) for task in tasks]
    if size == 0:
        lines.insert(0, json.dumps({"macp_journal": VERSION, "checkpoint_sha256": checkpoint_sha256}))
    append_line(path, "\n".join(lines))
    return path.stat().st_size


def mark_fold(path: Path, checkpoint_sha256: str) -> None:
    """Record that a fold now writes the tasks.json with digest ``checkpoint_sha256``."""
    append_line(path, json.dumps({"folding": checkpoint_sha256}))


def clear(path: Path) -> None:
    """Empty the journal after a fold (its changes are in tasks.json now)."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return
    try:
        os.ftruncate(fd, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
