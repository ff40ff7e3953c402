"""Deliver MACP events to a Matrix room (DESIGN.md "Transport"). Disabled by default.

Turned on by ``"enabled": true`` with ``"transport": "matrix"`` in config, and
``matrix.homeserver`` / ``matrix.room_id``; the access token is read from the environment
variable ``matrix.token_env`` (default ``MACP_MATRIX_TOKEN``), never from a file.

``events.ndjson`` is the outbox: ``.transport-cursor`` in the state folder holds the byte
offset of the first event not yet delivered. Each event is sent with the Matrix
client-server API, ``PUT /_matrix/client/v3/rooms/{roomId}/send/m.room.message/{txnId}``,
with the event id as the transaction id, so a resend after a crash is idempotent. A failed
delivery stops the round and leaves the cursor where it was; the next run retries. Delivery
never changes a task.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

from macp.cliutil import note
from macp.config import matrix_token_env
from macp.fsio import write_atomic
from macp.layout import Layout

TIMEOUT_SECONDS = 10


def send_url(homeserver: str, room_id: str, txn_id: str) -> str:
    """The client-server API URL that sends one message event to ``room_id``."""
    return f"{homeserver.rstrip('/')}/_matrix/client/v3/rooms/{quote(room_id, safe='')}/send/m.room.message/{quote(txn_id, safe='')}"


def message_body(event: dict) -> dict:
    """An ``m.notice`` for ``event``: a readable line plus the whole event under a namespaced key."""
    status = f" ({event['status']})" if event.get("status") else ""
    text = f"[{event.get('event_type')}] {event.get('task_id') or '-'}{status}: {event.get('message', '')}".rstrip(": ")
    return {"msgtype": "m.notice", "body": text, "dev.mosaicstack.macp.event": event}


class MatrixTransport:
    """Sends the events after the cursor; ``opener`` is ``urllib.request.urlopen`` (tests may
    pass another)."""

    def __init__(self, layout: Layout, config: dict, opener=urllib.request.urlopen) -> None:
        self.layout = layout
        self.matrix = config.get("matrix") or {}
        self.token_env = matrix_token_env(config)
        self.active = bool(config.get("enabled")) and config.get("transport") == "matrix"
        self.opener = opener
        self.cursor_file = layout.orch_dir / ".transport-cursor"

    def _cursor(self) -> int:
        try:
            return int(self.cursor_file.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def deliver_pending(self) -> int:
        """Send every undelivered event; return how many were delivered. Never raises for a
        network or server problem: it says so on stderr and stops."""
        if not self.active:
            return 0
        token = os.environ.get(self.token_env)
        if not token or not self.matrix.get("homeserver") or not self.matrix.get("room_id"):
            note("matrix transport is enabled but homeserver, room_id or the token is missing; events stay queued")
            return 0
        delivered = 0
        offset = self._cursor()
        for line, end in _lines_from(self.layout.events_file, offset):
            try:
                event = json.loads(line)
                self._send(event, token)
            except ValueError:
                pass  # a line that is not an event is skipped, not retried forever
            except (urllib.error.URLError, OSError) as exc:
                note(f"matrix delivery failed ({exc}); will retry on the next run")
                break
            offset = end
            write_atomic(self.cursor_file, f"{offset}\n")
            delivered += 1
        return delivered

    def _send(self, event: dict, token: str) -> None:
        request = urllib.request.Request(
            send_url(self.matrix["homeserver"], self.matrix["room_id"], event["event_id"]),
            data=json.dumps(message_body(event)).encode(),
            method="PUT",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with self.opener(request, timeout=TIMEOUT_SECONDS) as response:
            response.read()


def _lines_from(path: Path, offset: int):
    """``(line, offset after it)`` for each complete line of ``path`` from ``offset``."""
    try:
        handle = path.open("rb")
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
                yield raw.decode("utf-8", errors="replace"), position
