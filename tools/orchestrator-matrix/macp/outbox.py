"""The events of a queue change, kept until they are in the log (issue 22 item 7).

A command (``submit``, ``retry``, ``cancel``, ``sync``, ``archive``, …) writes tasks.json
and then appends the events that record the change. A command killed between the two would
leave a change nobody logged. So, under the tasks.json lock, the writer first puts the
events in ``events.outbox`` with the SHA-256 of the tasks.json it is about to write; then
writes tasks.json, appends the events and deletes the outbox. The next writer (a command or
a controller, under the same lock) settles an outbox it finds before anything else:

- tasks.json is the one the outbox names: the change happened, so its events that are not
  in the log yet (by ``event_id``) are appended;
- otherwise the writer died before tasks.json was replaced: the change never happened, and
  its events are dropped.

Either way the outbox is then deleted. The outbox is written without ``fsync``: it guards
against a killed process, whose written data the kernel keeps; the queue and the log are
fsynced as before.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from macp.events import append_events, check_events, is_valid_event, read_tail


def write_outbox(path: Path, tasks_sha256: str, events: list[dict]) -> None:
    """Record ``events`` as the log entries of the tasks.json whose digest is ``tasks_sha256``
    (checked against the event schema first: ``ValueError``, nothing written)."""
    check_events(events)
    path.write_text(json.dumps({"tasks_sha256": tasks_sha256, "events": events}, ensure_ascii=False), encoding="utf-8")


def clear_outbox(path: Path) -> None:
    """Delete the outbox once its events are in the log."""
    path.unlink(missing_ok=True)


def settle_outbox(path: Path, tasks_sha256: str, events_file: Path) -> list[dict]:
    """Settle an outbox a writer left (module docstring); ``tasks_sha256`` is the digest of
    tasks.json as it is now. Returns the events appended now. Raises ``OSError`` when they
    cannot be appended (the outbox then stays for the next writer)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    try:
        record = json.loads(raw)
    except ValueError:
        record = None  # cut short while it was written: tasks.json was never replaced
    missing: list[dict] = []
    if isinstance(record, dict) and record.get("tasks_sha256") == tasks_sha256 and isinstance(record.get("events"), list):
        logged = {event.get("event_id") for event in read_tail(events_file)}
        missing = [event for event in record["events"] if is_valid_event(event) and event.get("event_id") not in logged]
        append_events(events_file, missing)
    os.unlink(path)
    return missing
