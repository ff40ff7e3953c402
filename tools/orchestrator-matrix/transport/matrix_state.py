"""The transport's own state: where delivery stands in ``events.ndjson`` and how it went.

``.mosaic/orchestrator/.transport-state.json`` holds the cursor (byte offset of the first
event not yet delivered), the ids of events after it that are delivered already (a coalesced
message takes a task's events out of order) and whether events were left waiting, each
task's thread root, the fingerprint of the access token that
last reached the room, the last error and the backoff. It is written once per delivery round
(atomically, fsynced), never per event. A crash mid-round loses at most that round's cursor
advance: the events are resent with the same transaction ids (deduplicated by the homeserver
for the same token) and recognised by their ``dev.mosaicstack.macp.event_id`` otherwise.

The old ``.transport-cursor`` file (a bare offset) is read when there is no state file yet.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from macp.fsio import write_atomic
from macp.jsontext import dump_json, json_object

STATE_NAME = ".transport-state.json"
LEGACY_CURSOR_NAME = ".transport-cursor"
DEAD_LETTER_NAME = "transport-dead-letter.ndjson"
MAX_THREADS = 2000  # thread roots remembered; a task older than that starts a new thread


@dataclass
class DeliveryState:
    """One repository's delivery state (see the module docstring). Times are RFC 3339
    strings, except ``retry_at``: seconds since the epoch before which automatic rounds wait.
    ``blocked`` is the fingerprint of the settings (token, room, plaintext permission) the
    homeserver refused; automatic rounds wait until they change."""

    cursor: int = 0
    room: str = ""
    threads: dict[str, str] = field(default_factory=dict)
    token: str = ""
    last_error: dict | None = None
    blocked: str = ""
    failures: int = 0
    retry_at: float = 0.0
    last_delivery_at: str | None = None
    delivered: int = 0
    dead_letters: int = 0
    skipped_lines: int = 0
    rate_limited: int = 0
    # ids of events beyond the cursor already in the room (a coalesced message took them out
    # of order), and whether the last round left events waiting: then the next round
    # coalesces each task's waiting events into one message
    sent_ahead: list[str] = field(default_factory=list)
    behind: bool = False

    def enter_room(self, room_id: str) -> None:
        """Deliver to ``room_id`` from now on: thread roots of another room are forgotten."""
        if self.room != room_id:
            self.room = room_id
            self.threads = {}

    def remember_thread(self, task_id: str, root: str) -> None:
        """Record ``root`` as ``task_id``'s thread root, forgetting the oldest beyond
        :data:`MAX_THREADS`."""
        self.threads.pop(task_id, None)
        self.threads[task_id] = root
        while len(self.threads) > MAX_THREADS:
            del self.threads[next(iter(self.threads))]


def load_state(orch_dir: Path) -> DeliveryState:
    """The state in ``orch_dir``; a fresh one (at the legacy cursor, if any) when the file is
    missing or unreadable (an unreadable file is not an error: at worst events are resent
    and recognised)."""
    try:
        data = json_object(json.loads((orch_dir / STATE_NAME).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        data = {}
    known = {name: data[name] for name in DeliveryState.__dataclass_fields__ if name in data}
    try:
        state = DeliveryState(**known)
    except TypeError:
        state = DeliveryState()
    if not data:
        with contextlib.suppress(OSError, ValueError):
            state.cursor = int((orch_dir / LEGACY_CURSOR_NAME).read_text().strip() or 0)
    return state


def save_state(orch_dir: Path, state: DeliveryState) -> None:
    """Write ``state`` atomically (fsynced): once per round."""
    write_atomic(orch_dir / STATE_NAME, dump_json(asdict(state)))


def events_after(events_file: Path, offset: int) -> Iterator[tuple[bytes, int]]:
    """``(line, offset after it)`` for each complete line of ``events_file`` from ``offset``
    (a line still being written, without its newline, is left for later). Blank lines are
    passed over."""
    try:
        handle = events_file.open("rb")
    except FileNotFoundError:
        return
    with handle:
        handle.seek(offset)
        position = offset
        for raw in handle:
            if not raw.endswith(b"\n"):
                return
            position += len(raw)
            if raw.strip():
                yield raw, position


def backlog(events_file: Path, offset: int) -> int:
    """How many complete lines of ``events_file`` lie after ``offset``: events not yet
    delivered (malformed lines included)."""
    return sum(1 for _ in events_after(events_file, offset))
