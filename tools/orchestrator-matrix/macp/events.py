"""The append-only event log ``events.ndjson``: build, validate, append, read.

Each event is one JSON object on one line, valid against ``protocol/event.schema.json``.
Appends go through :func:`macp.fsio.append_line`: locked, and a torn last line (a crash
mid-append) is moved to ``events.ndjson.torn`` before the next append. Until then readers
skip a torn final line and report it on stderr; a bad line elsewhere is an error.
"""

from __future__ import annotations

import json
import mmap
import os
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

from macp import clock
from macp.cliutil import note
from macp.errors import MacpError
from macp.fsio import append_line
from macp.jsontext import loads
from macp.redact import redact, redact_value
from protocol.schemas import schema_errors

# Every event type MACP records (the enum of protocol/event.schema.json, which a test keeps
# equal to this); statuses are macp.lifecycle.STATUSES.
EVENT_TYPES = (
    "task.submitted", "task.assigned", "task.started", "task.progress", "task.gated", "task.completed", "task.failed",
    "task.escalated", "task.retry.scheduled", "task.recovered", "task.interrupted", "task.cancelled", "task.approved",
    "task.retried", "task.updated", "task.variance", "task.provider.failed", "task.acp.requested", "task.acp.reported",
    "task.job.submitted", "task.landed", "task.land.failed",
    "gate.passed", "gate.failed",
    "worktree.created", "worktree.reused", "worktree.removed", "worktree.kept", "worktree.committed", "worktree.commit_failed",
    "branch.pruned", "controller.started", "controller.stopped", "queue.archived",
)


def make_event(
    event_type: str,
    *,
    source: str,
    task_id: str | None = None,
    status: str | None = None,
    attempt: int | None = None,
    message: str = "",
    metadata: dict | None = None,
) -> dict:
    """Build an event dict (new ``event_id``, current timestamp, message redacted)."""
    event = {
        "event_id": uuid.uuid4().hex,
        "event_type": event_type,
        "task_id": task_id,
        "status": status,
        "timestamp": clock.timestamp(),
        "source": source,
        "attempt": attempt,
        "message": redact(message),
        "metadata": redact_value(metadata or {}),
    }
    return event


def append_event(events_file: Path, event: dict) -> dict:
    """Validate ``event`` against the event schema and append it; returns the event.

    Raises ``ValueError`` if the event is invalid (a programming error: nothing is written).
    """
    append_events(events_file, [event])
    return event


def check_events(events: list[dict]) -> None:
    """Raise ``ValueError`` naming the first error when an event is not valid against the
    event schema (a programming error)."""
    for event in events:
        errors = schema_errors("event", event)
        if errors:
            raise ValueError(f"refusing to write an invalid event: {errors[0]}")


def is_valid_event(event: object) -> bool:
    """True when ``event`` is an object valid against the event schema."""
    return isinstance(event, dict) and not schema_errors("event", event)


def append_events(events_file: Path, events: list[dict]) -> None:
    """Validate every event, then append them all in one write and one fsync (a batch
    submit logs thousands of events at the cost of one). Raises ``ValueError`` if any is
    invalid; then nothing is written."""
    check_events(events)
    if events:
        append_line(events_file, "\n".join(json.dumps(event, ensure_ascii=False, separators=(",", ":")) for event in events))


def read_events(events_file: Path, task_id: str | None = None) -> Iterator[dict]:
    """Yield the events of ``events_file`` in order (nothing when it does not exist); with
    ``task_id`` only that task's, found by looking for the quoted id in each line's raw
    bytes before decoding it (most lines are never decoded), then checked exactly.

    A final line without its newline or that is not JSON is a torn append: it is skipped with
    a note on stderr. Any other undecodable line raises :class:`MacpError` naming file and line.
    """
    for event in _read_lines(events_file, json.dumps(task_id, ensure_ascii=False).encode() if task_id is not None else None):
        if task_id is None or event.get("task_id") == task_id:
            yield event


def _read_lines(events_file: Path, needle: bytes | None) -> Iterator[dict]:
    """Decode the lines holding ``needle`` (all with None). The last line is always decoded,
    so a torn append is noticed whatever is filtered. The file is memory-mapped and searched
    with ``find`` (C speed); line numbers are counted only for an error message."""
    try:
        with events_file.open("rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                return
            data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        return
    with data:
        lines = list(_located_lines(data, needle))
        if not lines:
            return
        *complete, (offset, raw, wanted) = lines
        for earlier_offset, earlier_raw, earlier_wanted in complete:
            if earlier_wanted:
                yield _decode_line(events_file, partial(_line_number, data, earlier_offset), earlier_raw)
        try:
            if not raw.endswith(b"\n"):
                raise ValueError("no final newline")
            event = _decode_line(events_file, lambda: _line_number(data, offset), raw)
        except (ValueError, MacpError):
            note(f"{events_file}:{_line_number(data, offset)}: skipping torn final line")
            return
    if wanted:
        yield event


def _line_number(data: mmap.mmap, offset: int) -> int:
    return data[:offset].count(b"\n") + 1


def _located_lines(data: mmap.mmap, needle: bytes | None) -> Iterator[tuple[int, bytes, bool]]:
    """``(byte offset, raw line, holds needle)`` for the lines worth looking at: every
    non-blank line without a needle; with one, only the lines that hold it, plus the last
    non-blank line."""
    if needle is None:
        offset = 0
        for raw in iter(data.readline, b""):
            if raw.strip():
                yield offset, raw, True
            offset += len(raw)
        return
    position = 0
    while (hit := data.find(needle, position)) != -1:
        start = data.rfind(b"\n", 0, hit) + 1
        end = data.find(b"\n", hit)
        end = len(data) if end == -1 else end + 1
        yield start, data[start:end], True
        position = end
    last_end = len(data)
    while last_end and data[last_end - 1 : last_end] in (b" ", b"\t", b"\r", b"\n"):  # only the trailing blanks are walked
        last_end -= 1
    if last_end and position < last_end:
        start = data.rfind(b"\n", 0, last_end) + 1
        yield start, data[start:], False


def _decode_line(events_file: Path, number: Callable[[], int], raw: bytes) -> dict:
    """One event line; ``number()`` gives its line number for the error message."""
    try:
        event = loads(raw.decode("utf-8"))
    except ValueError as exc:  # not UTF-8, not JSON, or nested deeper than the parser follows
        raise MacpError(f"{events_file}:{number()}: invalid event line: {exc}") from None
    if not isinstance(event, dict):
        raise MacpError(f"{events_file}:{number()}: an event must be a JSON object")
    return event


def read_tail(events_file: Path, max_bytes: int = 1 << 20) -> list[dict]:
    """The events in the last ``max_bytes`` of the log (a partial first line and undecodable
    lines are skipped). Used by crash recovery, which only needs the most recent events."""
    try:
        with events_file.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - max_bytes))
            chunk = handle.read()
    except FileNotFoundError:
        return []
    lines = chunk.split(b"\n")
    if size > max_bytes:
        lines = lines[1:]
    events = []
    for raw in lines:
        try:
            event = loads(raw)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events
