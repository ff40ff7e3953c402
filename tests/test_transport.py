"""The Matrix transport against a real Synapse homeserver on 127.0.0.1 (issue 13).

Every test gets its own user and room on one shared server; the test that stops the server
mid-drain has a server of its own. Faults Synapse cannot be made to show (a server that
trickles bytes, one that answers something that is not HTTP, one that never answers) are
small socket servers here. After every fault the room must hold each event of
``events.ndjson`` exactly once, in order.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import socket
import threading

import pytest
from synapse_harness import Synapse, available
from test_durability import held_command, start_controller, wait_for

from transport.matrix_messages import EVENT_ID_KEY, EVENT_IDS_KEY, EVENT_KEY, TRUNCATED_KEY

pytestmark = pytest.mark.skipif(not available(), reason="Synapse is not installed (make synapse)")
_names = itertools.count()


@pytest.fixture(scope="session")
def synapse(tmp_path_factory):
    server = Synapse(tmp_path_factory.mktemp("synapse"))
    server.start()
    yield server
    server.stop()


class Room:
    """A fresh bot user (an admin, so it can set its own rate limit), its room, and a person
    who is mentioned on escalation."""

    def __init__(self, server: Synapse, encrypted: bool = False, admin: bool = True) -> None:
        self.server = server
        self.username = f"bot{next(_names)}_{os.getpid()}"
        bot = server.register(self.username, admin=admin)
        self.user_id, self.token = bot["user_id"], bot["access_token"]
        person = server.register(f"person{next(_names)}_{os.getpid()}")
        self.person = person["user_id"]
        self.room_id = server.create_room(self.token, encrypted=encrypted, invite=(self.person,))
        server.join(person["access_token"], self.room_id)

    def messages(self) -> list[dict]:
        """The MACP messages in the room, oldest first."""
        return [m for m in self.server.messages(self.token, self.room_id) if EVENT_ID_KEY in m["content"]]

    def delivered_ids(self) -> list[str]:
        """Every MACP event id in the room, in message order: a coalesced message carries
        several (``dev.mosaicstack.macp.event_ids``)."""
        return [event_id for m in self.messages() for event_id in m["content"].get(EVENT_IDS_KEY, [m["content"][EVENT_ID_KEY]])]


@pytest.fixture
def room(synapse) -> Room:
    return Room(synapse)


def enable(sandbox, room_or_url, token: str | None = None, **matrix) -> None:
    """Turn the transport on in the sandbox, for a :class:`Room` or a bare URL."""
    if isinstance(room_or_url, Room):
        url, room_id, token = room_or_url.server.url, room_or_url.room_id, token or room_or_url.token
        matrix.setdefault("mention_user_ids", [room_or_url.person])
    else:
        url, room_id = room_or_url, "!room:localhost"
    sandbox.env["ROOM_TOKEN"] = token or "syt_token"
    sandbox.write_config({"enabled": True, "transport": "matrix", "worker": {"max_attempts": 1},
                          "matrix": {"homeserver": url, "room_id": room_id, "token_env": "ROOM_TOKEN", **matrix}})


def log_ids(sandbox) -> list[str]:
    return [event["event_id"] for event in sandbox.events()]


def state(sandbox) -> dict:
    return json.loads((sandbox.orch / ".transport-state.json").read_text())


def assert_room_matches_log(sandbox, room: Room) -> None:
    assert room.delivered_ids() == log_ids(sandbox), "each event of events.ndjson is in the room exactly once, in order"


# -- normal runs --------------------------------------------------------------------------


def test_a_drain_reaches_the_room_once_threaded_per_task_with_a_summary(sandbox, room):
    enable(sandbox, room)
    sandbox.macp("submit", "--task-id", "A", "--title", "Fix <b>parser</b> & lexer", "--command", "echo hi > a.txt", check=True)
    sandbox.macp("submit", "--task-id", "B", "--command", "exit 3", check=True)
    sandbox.macp("submit", "--task-id", "C", "--command", "true", "--depends-on", "A", check=True)
    drain = sandbox.macp("drain")
    assert drain.returncode == 1 and "matrix" not in drain.stderr

    assert_room_matches_log(sandbox, room)
    messages = room.messages()
    main = [m for m in messages if "m.relates_to" not in m["content"]]
    assert [m["content"][EVENT_ID_KEY] for m in main] == [
        *[sandbox.events(task)[0]["event_id"] for task in ("A", "B", "C")],
        sandbox.events()[-1]["event_id"],
    ], "the main timeline has one line per task (its first event) and the summary"
    roots = {m["content"][EVENT_KEY]["task_id"]: m["event_id"] for m in main if m["content"][EVENT_KEY]["task_id"]}
    for message in messages:
        task_id = message["content"][EVENT_KEY]["task_id"]
        relation = message["content"].get("m.relates_to")
        if relation:
            assert relation["rel_type"] == "m.thread" and relation["event_id"] == roots[task_id]

    first = main[0]["content"]
    assert first["body"] == "A · submitted: Fix <b>parser</b> & lexer"
    assert first["format"] == "org.matrix.custom.html"
    assert first["formatted_body"] == "<b>A</b> · submitted: Fix &lt;b&gt;parser&lt;/b&gt; &amp; lexer"
    assert first["m.mentions"] == {}

    failed = next(m["content"] for m in messages if m["content"][EVENT_KEY]["event_type"] == "task.failed")
    assert failed["m.mentions"] == {"user_ids": [room.person]} and failed["body"].startswith(f"{room.person} B · failed · attempt 1")
    assert f'href="https://matrix.to/#/{room.person}"' in failed["formatted_body"]

    summary = main[-1]["content"]
    assert summary[EVENT_KEY]["event_type"] == "controller.stopped"
    assert summary["body"].startswith(f"MACP {sandbox.repo.name} · run finished: 3 task(s) in ")
    assert "2 completed, 1 failed — B failed" in summary["body"]

    bodies = json.dumps([m["content"] for m in messages], ensure_ascii=False)
    assert str(sandbox.repo) not in bodies and str(sandbox.home) not in bodies, "local paths are shown relative"
    assert "results/A.json" in bodies and "…/a--" in bodies
    status = json.loads(sandbox.macp("status", "--json", check=True).stdout)
    assert status["transport"]["backlog"] == 0 and status["transport"]["last_error"] is None


def test_cli_actions_deliver_their_events_at_once(sandbox, room):
    enable(sandbox, room)
    sandbox.macp("submit", "--task-id", "A", "--command", "true", check=True)
    assert room.delivered_ids() == log_ids(sandbox) != []
    sandbox.macp("cancel", "A", "--reason", "not needed", check=True)
    sandbox.macp("retry", "A", check=True)
    assert [m["content"][EVENT_KEY]["event_type"] for m in room.messages()] == ["task.submitted", "task.cancelled", "task.retried"]


def test_a_late_event_says_when_it_happened(sandbox, room):
    sandbox.env["MACP_NOW"] = "2026-01-02T03:04:05Z"
    sandbox.macp("submit", "--task-id", "A", "--command", "true", check=True)
    del sandbox.env["MACP_NOW"]
    enable(sandbox, room)
    assert sandbox.macp("deliver", check=True).stdout.strip() == "delivered 1 event(s); 0 waiting"
    assert room.messages()[0]["content"]["body"] == "A · submitted: A (at 2026-01-02 03:04:05 UTC)"


# -- poison events and malformed lines -----------------------------------------------------


def test_a_70000_character_title_is_shrunk_to_fit_and_the_rest_follow(sandbox, room):
    enable(sandbox, room)
    sandbox.macp("submit", "--task-id", "BIG", "--title", "x" * 70_000, "--command", "true", check=True)
    sandbox.macp("submit", "--task-id", "NEXT", "--command", "true", check=True)
    sandbox.macp("drain", check=True)
    assert_room_matches_log(sandbox, room)
    big = room.messages()[0]["content"]
    assert big[TRUNCATED_KEY] is True and len(big["body"]) < 5000 and "70000 characters in all" in big["body"]


def test_an_event_refused_even_when_shrunk_is_set_aside_and_never_blocks(sandbox, room):
    enable(sandbox, room)
    sandbox.macp("submit", "--task-id", "A", "--command", "true", check=True)
    poison = {"event_id": "p" * 70_000, "event_type": "task.progress", "task_id": "A", "status": "pending",
              "timestamp": "2026-11-23T00:00:00Z", "source": "cli", "attempt": 0, "message": "", "metadata": {}}
    with (sandbox.orch / "events.ndjson").open("a") as log:
        log.write(json.dumps(poison) + "\n")
    drain = sandbox.macp("drain")
    assert drain.returncode == 0 and "set aside in transport-dead-letter.ndjson" in drain.stderr
    assert "M_TOO_LARGE" in drain.stderr
    assert room.delivered_ids() == [i for i in log_ids(sandbox) if i != poison["event_id"]]
    letters = [json.loads(line) for line in (sandbox.orch / "transport-dead-letter.ndjson").read_text().splitlines()]
    assert [letter["event"]["event_id"] for letter in letters] == [poison["event_id"]] and letters[0]["errcode"] == "M_TOO_LARGE"
    status = json.loads(sandbox.macp("status", "--json", check=True).stdout)["transport"]
    assert status["dead_letters"] == 1 and status["backlog"] == 0


def test_a_lone_surrogate_in_a_line_is_shown_escaped_and_blocks_nothing(sandbox, room):
    """``"\\udc80"`` is valid JSON text but no Unicode string; Synapse answers 500 to it every
    time, so it must never reach the homeserver as such."""
    enable(sandbox, room)
    sandbox.macp("submit", "--task-id", "A", "--command", "true", check=True)
    with (sandbox.orch / "events.ndjson").open("a") as log:
        log.write('{"event_id": "lone", "event_type": "task.progress", "task_id": "A", "message": "\\udc80 broken"}\n')
    drain = sandbox.macp("drain")
    assert drain.returncode == 0 and "matrix" not in drain.stderr, drain.stderr
    assert_room_matches_log(sandbox, room)
    assert room.messages()[1]["content"]["body"] == "A · progress: \\udc80 broken"


def test_malformed_log_lines_are_skipped_with_a_note(sandbox, room):
    enable(sandbox, room)
    sandbox.macp("submit", "--task-id", "A", "--command", "true", check=True)
    with (sandbox.orch / "events.ndjson").open("a") as log:
        log.write('{"event_type": "task.progress", "task_id": "A"}\n')
        log.write("not json at all\n")
    drain = sandbox.macp("drain")
    assert drain.returncode == 0, drain.stderr
    assert drain.stderr.count("is not an event with an event_id") == 2
    assert room.delivered_ids() == valid_ids(sandbox)
    assert sandbox.task("A")["status"] == "completed"


def valid_ids(sandbox) -> list[str]:
    ids = []
    for line in (sandbox.orch / "events.ndjson").read_text().splitlines():
        with contextlib.suppress(ValueError, KeyError):
            ids.append(json.loads(line)["event_id"])
    return ids


# -- refused tokens and rooms ------------------------------------------------------------


@pytest.mark.parametrize("fault", ["unknown token", "not in the room"])
def test_a_refused_token_or_room_is_reported_and_waits_for_a_fix(sandbox, room, fault):
    if fault == "unknown token":
        bad_token, errcode = "syt_not_a_real_token", "M_UNKNOWN_TOKEN"
    else:
        bad_token, errcode = room.server.register(f"outsider{next(_names)}")["access_token"], "M_FORBIDDEN"
    enable(sandbox, room, token=bad_token)
    first = sandbox.macp("submit", "--task-id", "A", "--command", "true")
    assert first.returncode == 0 and errcode in first.stderr and "1 event(s) wait" in first.stderr
    second = sandbox.macp("submit", "--task-id", "B", "--command", "true")
    assert "delivery is stopped" in second.stderr, "automatic rounds do not retry a refused token"
    status = sandbox.macp("status", check=True).stdout
    assert "matrix: 2 event(s) not yet delivered" in status and errcode in status
    deliver = sandbox.macp("deliver")
    assert deliver.returncode == 77 and errcode in deliver.stderr
    assert room.messages() == []

    enable(sandbox, room)  # the right token: a new token is tried at once
    sandbox.macp("drain", check=True)
    assert_room_matches_log(sandbox, room)
    assert json.loads(sandbox.macp("status", "--json", check=True).stdout)["transport"]["last_error"] is None


def test_an_encrypted_room_is_refused_unless_plaintext_is_allowed(sandbox, synapse):
    room = Room(synapse, encrypted=True)
    enable(sandbox, room)
    submit = sandbox.macp("submit", "--task-id", "A", "--command", "true")
    assert "end-to-end encrypted" in submit.stderr and "MACP_ENCRYPTED_ROOM" in submit.stderr
    assert room.messages() == []
    assert "delivery is stopped" in sandbox.macp("submit", "--task-id", "B", "--command", "true").stderr
    enable(sandbox, room, allow_plaintext_in_encrypted_room=True)  # changed settings: automatic rounds try again
    sandbox.macp("submit", "--task-id", "C", "--command", "true", check=True)
    assert_room_matches_log(sandbox, room)


# -- rate limits, token changes ------------------------------------------------------------


def test_rate_limits_are_waited_out_in_the_same_round(sandbox, room):
    # One message a second: the second one is refused unless Synapse took a whole second
    # over the first, some fifty times its usual time.
    room.server.limit_messages(room.token, room.user_id, per_second=1, burst=1)
    enable(sandbox, room, round_deadline_seconds=60)
    lines = "".join(json.dumps({"id": f"T{i}", "command": "true"}) + "\n" for i in range(4))
    sandbox.macp("submit", "--from", "-", input=lines, check=True)
    assert_room_matches_log(sandbox, room)
    assert state(sandbox)["rate_limited"] >= 1, "Synapse answered 429 and the round waited instead of stopping"


def test_a_rate_limited_homeserver_catches_up_within_three_drains(sandbox, tmp_path):
    # Synapse's own default is 0.2 messages a second; at 0.5 with a burst of 3, one message
    # per event fell further behind with every drain (7 of 31 delivered after three).
    server = Synapse(tmp_path / "limited-synapse", message_rate=0.5, message_burst=3)
    server.start()
    try:
        room = Room(server, admin=False)  # the server's own rc_message applies to it
        enable(sandbox, room)  # the defaults: 5 s a round, 30 s for the round at the end of a drain
        caught_up_within_three_drains(sandbox, room)
    finally:
        server.stop()


def caught_up_within_three_drains(sandbox, room: Room) -> None:
    lines = "".join(json.dumps({"id": f"R{i}", "dispatch": "exec", "command": "true"}) + "\n" for i in range(5))
    sandbox.macp("submit", "--from", "-", input=lines, check=True)
    for _ in range(3):
        sandbox.macp("drain", timeout=180)
        if len(room.delivered_ids()) >= len(log_ids(sandbox)):
            break
    assert len(log_ids(sandbox)) >= 30, "the case is forced: thirty events and more"
    assert collections.Counter(room.delivered_ids()) == collections.Counter(log_ids(sandbox)), "every event in the room, once each"
    coalesced = [m for m in room.messages() if EVENT_IDS_KEY in m["content"]]
    assert coalesced and all(len({sandbox_task(sandbox, i) for i in m["content"][EVENT_IDS_KEY]}) == 1 for m in coalesced), "one task per message"
    for task_id in (f"R{i}" for i in range(5)):
        in_room = [event_id for event_id in room.delivered_ids() if event_id in {e["event_id"] for e in sandbox.events(task_id)}]
        assert in_room == [e["event_id"] for e in sandbox.events(task_id)], "a task's events in their order"


def sandbox_task(sandbox, event_id: str) -> str | None:
    """The task of the logged event ``event_id``."""
    return next(event.get("task_id") for event in sandbox.events() if event["event_id"] == event_id)


def test_a_new_access_token_resends_nothing_already_in_the_room(sandbox, room):
    enable(sandbox, room)
    sandbox.macp("submit", "--task-id", "A", "--command", "true", check=True)
    sandbox.macp("drain", check=True)
    assert_room_matches_log(sandbox, room)

    def rewind() -> None:  # as if the run had stopped before the round's cursor was saved
        saved = state(sandbox)
        saved["cursor"] = 0
        (sandbox.orch / ".transport-state.json").write_text(json.dumps(saved))

    rewind()
    sandbox.macp("deliver", check=True)
    assert_room_matches_log(sandbox, room)  # the same token: the homeserver knows the transaction ids

    rewind()
    enable(sandbox, room, token=room.server.login(room.username))
    report = json.loads(sandbox.macp("deliver", "--json", check=True).stdout)
    assert report["delivered"] == 0 and report["recognised"] == len(log_ids(sandbox))
    assert_room_matches_log(sandbox, room)


# -- a homeserver that stops, trickles, lies or says nothing -------------------------------


def test_a_homeserver_stopped_mid_drain_loses_and_duplicates_nothing(sandbox, tmp_path):
    server = Synapse(tmp_path / "own-synapse")
    server.start()
    try:
        room = Room(server)
        enable(sandbox, room)
        release = tmp_path / "release"
        sandbox.macp("submit", "--task-id", "A", "--command", held_command(release, tmp_path / "started"), check=True)
        for task_id in ("B", "C"):
            sandbox.macp("submit", "--task-id", task_id, "--command", "true", check=True)
        drain = start_controller(sandbox, "--until-drained")
        wait_for((tmp_path / "started").exists, what="task A to start")
        server.stop()
        release.touch()
        _, stderr = drain.communicate(timeout=120)
        assert drain.returncode == 0 and "matrix delivery failed" in stderr
        assert [sandbox.task(t)["status"] for t in "ABC"] == ["completed"] * 3, "delivery faults never change a task"
        server.start()
        assert sandbox.macp("deliver").returncode == 0
        assert_room_matches_log(sandbox, room)
        assert state(sandbox)["retry_at"] == 0, "a delivery that got through ends the backoff"
    finally:
        server.stop()


class SocketServer:
    """A loopback TCP server whose every connection is handled by ``serve(connection)`` in
    a thread; counts connections."""

    def __init__(self, serve) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        self.closing = threading.Event()
        self.serve = serve
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):
            self.serve(connection, self.closing)

    def close(self) -> None:
        self.closing.set()
        self.listener.close()


def trickle(connection, closing) -> None:
    """A byte every 0.3 s: no single read ever waits as long as the 1-s deadline."""
    connection.recv(65536)
    while not closing.wait(0.3):
        connection.sendall(b"H")


def not_http(connection, closing) -> None:
    connection.recv(65536)
    connection.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")


def silent(connection, closing) -> None:
    connection.recv(65536)
    closing.wait(60)


@pytest.mark.parametrize("serve, says", [(trickle, "deadline"), (not_http, "not HTTP"), (silent, "deadline")])
def test_a_misbehaving_homeserver_costs_one_bounded_round_and_changes_nothing(sandbox, serve, says):
    server = SocketServer(serve)
    try:
        enable(sandbox, server.url, round_deadline_seconds=1, final_round_deadline_seconds=1)
        lines = "".join(json.dumps({"id": task_id, "command": "true"}) + "\n" for task_id in "ABC")
        submit = sandbox.macp("submit", "--from", "-", input=lines, timeout=60)
        assert submit.returncode == 0 and says in submit.stderr
        assert server.connections == 1 and state(sandbox)["failures"] == 1
        drain = sandbox.macp("drain", timeout=60)
        assert drain.returncode == 0 and "Traceback" not in drain.stderr
        assert [sandbox.task(t)["status"] for t in "ABC"] == ["completed"] * 3
        assert server.connections <= 2, "after a failed round, automatic rounds back off instead of paying the deadline again"
        deliver = sandbox.macp("deliver", timeout=60)
        assert deliver.returncode == 69 and says in deliver.stderr
        status = json.loads(sandbox.macp("status", "--json", check=True).stdout)["transport"]
        assert status["backlog"] == len(log_ids(sandbox)) and status["next_try_at"]
    finally:
        server.close()


def proxy_refusing(connection, closing) -> None:
    connection.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


@pytest.mark.parametrize("scheme, first_line", [
    ("http", "GET http://matrix.invalid:8008/_matrix/client/v3/rooms/"),
    ("https", "CONNECT matrix.invalid:8008 HTTP/1.0"),
])
def test_the_proxy_the_environment_names_is_used(sandbox, scheme, first_line):
    requests: list[str] = []

    def record(connection, closing) -> None:
        requests.append(connection.recv(65536).decode("latin-1"))
        proxy_refusing(connection, closing)

    proxy = SocketServer(record)
    try:
        enable(sandbox, f"{scheme}://matrix.invalid:8008")
        sandbox.env[f"{scheme}_proxy"] = proxy.url
        sandbox.macp("submit", "--task-id", "A", "--command", "true", check=True)
        assert sandbox.macp("deliver").returncode == 69
        assert requests and requests[0].startswith(first_line)
    finally:
        proxy.close()


def test_transport_is_off_by_default(sandbox):
    server = SocketServer(silent)
    try:
        sandbox.write_config({"matrix": {"homeserver": server.url, "room_id": "!r:x"}})
        sandbox.env["MACP_MATRIX_TOKEN"] = "t"
        sandbox.macp("submit", "--task-id", "A", "--command", "true", check=True)
        sandbox.macp("drain", check=True)
        assert server.connections == 0 and not (sandbox.orch / ".transport-state.json").exists()
        assert "transport" not in json.loads(sandbox.macp("status", "--json", check=True).stdout)
        assert sandbox.macp("deliver").returncode == 2
    finally:
        server.close()

