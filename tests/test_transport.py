"""The Matrix transport against a fake homeserver: idempotent sends, retry after failures."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class FakeHomeserver:
    """Records PUTs; answers ``status`` (200 by default)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 200
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if owner.status == 200:
                    owner.requests.append({"path": self.path, "auth": self.headers["Authorization"], "body": body})
                self.send_response(owner.status)
                self.end_headers()
                self.wfile.write(b'{"event_id": "$x"}')

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def homeserver():
    server = FakeHomeserver()
    yield server
    server.close()


def test_events_reach_the_room_once_and_failures_are_retried(sandbox, homeserver):
    sandbox.env["ROOM_TOKEN"] = "syt_secret"
    sandbox.write_config({"enabled": True, "transport": "matrix",
                          "matrix": {"homeserver": homeserver.url, "room_id": "!room:example.org", "token_env": "ROOM_TOKEN"}})
    sandbox.macp("submit", "--task-id", "A", "--command", "true", check=True)
    homeserver.status = 500
    proc = sandbox.macp("drain", check=True)
    assert "matrix delivery failed" in proc.stderr
    assert homeserver.requests == [] and sandbox.task("A")["status"] == "completed", "delivery never changes a task"
    homeserver.status = 200
    sandbox.macp("drain", check=True)
    events = sandbox.events()
    assert [r["path"].rsplit("/", 1)[1] for r in homeserver.requests] == [e["event_id"] for e in events]
    first = homeserver.requests[0]
    assert first["path"].startswith("/_matrix/client/v3/rooms/%21room%3Aexample.org/send/m.room.message/")
    assert first["auth"] == "Bearer syt_secret"
    assert first["body"]["msgtype"] == "m.notice" and first["body"]["body"].startswith("[task.submitted] A (pending)")
    sandbox.macp("drain", check=True)
    assert len(homeserver.requests) == len(events), "nothing is sent twice"


def test_transport_is_off_by_default(sandbox, homeserver):
    sandbox.write_config({"matrix": {"homeserver": homeserver.url, "room_id": "!r:x"}})
    sandbox.env["MACP_MATRIX_TOKEN"] = "t"
    sandbox.macp("submit", "--task-id", "A", "--command", "true", check=True)
    sandbox.macp("drain", check=True)
    assert homeserver.requests == []
    assert not (sandbox.orch / ".transport-cursor").exists()
