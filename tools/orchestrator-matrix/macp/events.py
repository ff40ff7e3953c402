"""The append-only event log ``events.ndjson``: build, validate, append, read.

Each event is one JSON object on one line, valid against ``protocol/event.schema.json``.
Appends go through :func:`macp.fsio.append_line`: locked, and a torn last line (a crash
mid-append) is moved to ``events.ndjson.torn`` before the next append. Until then readers
skip a torn final line and report it on stderr; a bad line elsewhere is an error.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

from macp import clock
from macp.cliutil import note
from macp.errors import MacpError
from macp.fsio import append_line
from macp.redact import redact, redact_value
from protocol.schemas import schema_errors


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
    errors = schema_errors("event", event)
    if errors:
        raise ValueError(f"refusing to write an invalid event: {errors[0]}")
    append_line(events_file, json.dumps(event, ensure_ascii=False, separators=(",", ":")))
    return event


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
    so a torn append is noticed whatever is filtered."""
    try:
        handle = events_file.open("rb")
    except FileNotFoundError:
        return
    with handle:
        previous: tuple[int, bytes, bool] | None = None
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            if previous is not None and previous[2]:
                yield _decode_line(events_file, previous[0], previous[1])
            previous = (number, raw, needle is None or needle in raw)
        if previous is None:
            return
        number, raw, wanted = previous
        try:
            if not raw.endswith(b"\n"):
                raise ValueError("no final newline")
            event = _decode_line(events_file, number, raw)
        except (ValueError, MacpError):
            note(f"{events_file}:{number}: skipping torn final line")
            return
        if wanted:
            yield event


def _decode_line(events_file: Path, number: int, raw: bytes) -> dict:
    try:
        event = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MacpError(f"{events_file}:{number}: invalid event line: {exc}") from None
    if not isinstance(event, dict):
        raise MacpError(f"{events_file}:{number}: an event must be a JSON object")
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
            event = json.loads(raw)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events
