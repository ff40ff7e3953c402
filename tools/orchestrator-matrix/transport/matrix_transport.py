"""Deliver MACP events to a Matrix room (DESIGN.md "Transport", issue 13). Off by default.

Turned on by ``"enabled": true`` with ``"transport": "matrix"`` in config, with
``matrix.homeserver`` and ``matrix.room_id``; the access token is read from the environment
variable ``matrix.token_env`` (default ``MACP_MATRIX_TOKEN``), never from a file.

``events.ndjson`` is the outbox and :mod:`transport.matrix_state` says how far it is
delivered. A *delivery round* sends the events after the cursor, in order, over one
keep-alive connection (:mod:`transport.matrix_http`), each with ``PUT
…/send/m.room.message/{event_id}`` so a resend is idempotent, rendered for people by
:mod:`transport.matrix_messages`. A round:

- has a total deadline (``matrix.round_deadline_seconds``, default 5 s; the round at the end
  of a drain and ``deliver`` ``matrix.final_round_deadline_seconds``, default 30 s) that bounds
  every connect, send, read and rate-limit wait; what is left waits for the next round;
- once events wait (a 429, or a backlog an earlier round left), sends each task's waiting
  events as one message in its thread, so a rate-limited homeserver catches up;
- runs after recovery and between tasks in the controller (between tasks only until a round
  of this run met a slow or unreachable homeserver), at the end of a drain, after every CLI
  command that records events, and on demand (``mosaic macp deliver``);
- treats failures by class (:mod:`transport.matrix_errors`): a 429 waits and goes on; a
  network error or 5xx ends the round and backs off (5 s doubling to 5 min) for the
  automatic rounds; an event the homeserver refuses is shrunk, then set aside in
  ``transport-dead-letter.ndjson``; a refused token or room stops delivery, reported with
  its errcode, until the token changes or ``mosaic macp deliver`` is run; a malformed log
  line is skipped with a note;
- refuses to post into an encrypted room unless ``matrix.allow_plaintext_in_encrypted_room``;
- after the access token changed, looks through the room's recent messages for the events
  it is about to send (by ``dev.mosaicstack.macp.event_id``) so a new token resends nothing.

Delivery never changes a task and never changes a run's exit code; ``status`` shows the
backlog and the last error.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from macp import clock
from macp.cliutil import note
from macp.fsio import append_line
from macp.layout import Layout
from macp.model import Config
from macp.settings import matrix_token_env, worktree_base
from transport.matrix_errors import DeliveryError, RateLimited, Refused, Rejected, Unreachable
from transport.matrix_http import MatrixClient, room_path, send_path
from transport.matrix_messages import (
    EVENT_ID_KEY,
    EVENT_IDS_KEY,
    RenderContext,
    coalesced_content,
    message_content,
    minimal_content,
)
from transport.matrix_rounds import (
    advance,
    backoff_seconds,
    error_record,
    fingerprint,
    group_transaction_id,
    parse_event,
    transaction_id,
    transport_lock,
)
from transport.matrix_state import DEAD_LETTER_NAME, DeliveryState, backlog, events_after, load_state, save_state

HISTORY_PAGES = 10  # pages of 100 recent room messages looked through after a token change
MAX_ROUND_LINES = 5000  # log lines one round looks at; the rest wait for the next
MAX_COALESCED = 20  # events of one task in one coalesced message


@dataclass
class RoundReport:
    """What one round did. ``outcome``: ``delivered`` (the round ran; ``error`` may say why
    it stopped early), ``disabled``, ``unconfigured``, ``busy`` (another process was
    delivering until the deadline), ``backoff`` or ``blocked`` (an automatic round that
    waited, see the module docstring)."""

    outcome: str = "delivered"
    delivered: int = 0
    recognised: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    rate_limited: int = 0
    backlog: int = 0
    error: DeliveryError | None = None


class MatrixTransport:
    """Delivery rounds for one repository; keeps its connection between rounds."""

    def __init__(self, layout: Layout, config: Config) -> None:
        self.layout = layout
        self.config = config
        self.matrix = config.get("matrix") or {}
        self.token_env = matrix_token_env(config)
        self.active = bool(config.get("enabled")) and config.get("transport") == "matrix"
        self.client: MatrixClient | None = None
        self.room_checked = False
        self.stalled = False
        self.said_blocked = False

    @property
    def state_dir(self) -> Path:
        return self.layout.orch_dir

    def deliver(self, *, forced: bool = False, between_tasks: bool = False, final: bool = False) -> RoundReport:
        """Run one delivery round and report it. ``forced`` (``mosaic macp deliver``) runs
        even during a backoff or after a refused token; ``between_tasks`` rounds are skipped
        once a round of this process met a slow or unreachable homeserver; a ``final`` round
        (the end of a drain) and a forced one may take ``matrix.final_round_deadline_seconds``
        instead of ``matrix.round_deadline_seconds``: the work is done, and a rate-limited
        homeserver can catch up. Raises nothing for a network or homeserver problem (it is
        noted on stderr and kept in the state)."""
        if not self.active:
            return RoundReport("disabled")
        if between_tasks and self.stalled:
            return RoundReport("backoff")
        token = os.environ.get(self.token_env, "")
        if not token or not self.matrix.get("homeserver") or not self.matrix.get("room_id"):
            note(f"matrix transport is enabled but matrix.homeserver, matrix.room_id or ${self.token_env} is missing; events stay queued")
            return RoundReport("unconfigured")
        token_id = fingerprint(token)
        settings_id = fingerprint(token, self.matrix["room_id"], str(bool(self.matrix.get("allow_plaintext_in_encrypted_room"))))
        budget = self.matrix["final_round_deadline_seconds"] if final or forced else self.matrix["round_deadline_seconds"]
        deadline = time.monotonic() + float(budget)
        with transport_lock(self.state_dir, deadline) as locked:
            if not locked:
                return RoundReport("busy")
            state = load_state(self.state_dir)
            if final and not state.failures and time.time() < state.retry_at <= time.time() + (deadline - time.monotonic()):
                time.sleep(max(0.0, state.retry_at - time.time()))  # the last round waits out a rate limit that ends within its budget
            waiting = self._waiting(state, settings_id, forced)
            if waiting is not None:
                waiting.backlog = backlog(self.layout.events_file, state.cursor)
                return waiting
            report = RoundReport()
            try:
                self._round(state, token, token_id, deadline, report)
            except (RateLimited, Unreachable) as exc:
                self.stalled = True
                report.error = exc
                if isinstance(exc, RateLimited):
                    state.retry_at = time.time() + exc.retry_after
                else:
                    state.failures += 1
                    state.retry_at = time.time() + backoff_seconds(state.failures)
                    state.last_error = error_record(exc, "unreachable")
            except Refused as exc:
                report.error = exc
                state.blocked = settings_id
                state.last_error = error_record(exc, "refused")
            finally:
                self._save(state)
            report.backlog = backlog(self.layout.events_file, state.cursor)
            self._say(report, state)
            return report

    def _save(self, state: DeliveryState) -> None:
        """Save the round's state; a state folder that cannot be written (a full disk) is
        noted, not raised: the next round resends from the last saved cursor and the
        homeserver recognises what it already has."""
        try:
            save_state(self.state_dir, state)
        except OSError as exc:
            note(f"matrix delivery state not saved ({exc}); the next round resends this round's events")

    def _waiting(self, state: DeliveryState, settings_id: str, forced: bool) -> RoundReport | None:
        """The report of an automatic round that must not run now, or ``None``."""
        if forced:
            return None
        if state.blocked == settings_id:
            if not self.said_blocked:
                self.said_blocked = True
                error = state.last_error or {}
                note(f"matrix delivery is stopped since {error.get('at')}: {error.get('errcode')} {error.get('error')}; fix the token or room, then run 'mosaic macp deliver'")
            return RoundReport("blocked")
        if state.retry_at > time.time():
            return RoundReport("backoff")
        return None

    def _say(self, report: RoundReport, state: DeliveryState) -> None:
        """One stderr line for a round that stopped on an error."""
        error = report.error
        if error is None:
            return
        if isinstance(error, Refused):
            note(f"matrix delivery refused: {error.describe()}; {report.backlog} event(s) wait until the token or room is fixed, then run 'mosaic macp deliver'")
        elif isinstance(error, RateLimited):
            note(f"matrix delivery rate-limited beyond this round's deadline; {report.backlog} event(s) wait for the next round")
        else:
            wait = round(max(0.0, state.retry_at - time.time()))
            note(f"matrix delivery failed: {error.describe()}; {report.backlog} event(s) wait, next automatic try in {wait}s")

    def _client(self, token: str) -> MatrixClient:
        if self.client is None or self.client.token != token:
            if self.client is not None:
                self.client.close()
            try:
                self.client = MatrixClient(self.matrix["homeserver"], token)
            except ValueError as exc:
                raise Refused(str(exc), "MACP_BAD_CONFIG") from None
        return self.client

    def _round(self, state: DeliveryState, token: str, token_id: str, deadline: float, report: RoundReport) -> None:
        """Send the events after the cursor until the end of the log or the deadline,
        advancing ``state`` (saved by the caller, once). Events are sent one message each;
        once events wait -- the last round left some, or this one met a 429 -- each task's
        waiting events go in one message (:func:`~transport.matrix_messages.coalesced_content`),
        so a rate-limited homeserver catches up instead of falling further behind."""
        lines = list(itertools.islice(events_after(self.layout.events_file, state.cursor), MAX_ROUND_LINES + 1))
        if not lines:
            return
        beyond = len(lines) > MAX_ROUND_LINES
        items = [(end, parse_event(raw)) for raw, end in lines[:MAX_ROUND_LINES]]
        client = self._client(token)
        if not self.room_checked:
            self._check_room(client, deadline)
            self.room_checked = True
        state.enter_room(self.matrix["room_id"])
        known = self._already_in_room(client, deadline) if state.token and state.token != token_id else {}
        state.token = token_id
        context = self._context()
        done, handled = set(state.sent_ahead), [False] * len(items)
        coalesce = state.behind
        try:
            for index, (end, event) in enumerate(items):
                if handled[index]:
                    continue
                if event is not None and event["event_id"] not in known and event["event_id"] not in done:
                    if time.monotonic() >= deadline:
                        return
                    group = self._group(items, index, handled, known.keys() | done) if coalesce else [index]
                    self._send(client, [items[j][1] for j in group], state, context, deadline, report)  # type: ignore[misc]
                    for j in group:
                        handled[j] = True
                    coalesce = coalesce or report.rate_limited > 0
                    continue
                handled[index] = True
                if event is None:
                    report.skipped += 1
                    state.skipped_lines += 1
                    note(f"matrix: skipped a line of {self.layout.events_file.name} that is not an event with an event_id (ending at byte {end})")
                elif event["event_id"] in known:
                    report.recognised += 1
                    matrix_id, threaded = known[event["event_id"]]
                    if event.get("task_id") and not threaded:
                        state.threads.setdefault(str(event["task_id"]), matrix_id)
        finally:
            advance(state, items, handled, beyond)

    @staticmethod
    def _group(items: list[tuple[int, dict | None]], first: int, handled: list[bool], sent: set[str]) -> list[int]:
        """The indexes of the waiting events of ``items[first]``'s task, from ``first`` on, not
        handled or sent yet: at most :data:`MAX_COALESCED` of them (an event of no task goes
        alone)."""
        event = items[first][1]
        assert event is not None
        task_id = event.get("task_id")
        if not task_id:
            return [first]
        group = []
        for index in range(first, len(items)):
            other = items[index][1]
            if not handled[index] and other is not None and other.get("task_id") == task_id and other["event_id"] not in sent:
                group.append(index)
                if len(group) == MAX_COALESCED:
                    break
        return group

    def _context(self) -> RenderContext:
        root = self.layout.repo_root
        return RenderContext(
            repo_name=root.name,
            repo_root=str(root),
            worktree_base=str(worktree_base(self.config, root)),
            home=os.path.expanduser("~"),
            mention_user_ids=tuple(self.matrix.get("mention_user_ids") or ()),
            late_after_seconds=float(self.matrix["late_after_seconds"]),
            now=clock.now(),
        )

    def _check_room(self, client: MatrixClient, deadline: float) -> None:
        """Raise :class:`Refused` for an encrypted room unless plaintext is allowed there."""
        try:
            client.request("GET", room_path(self.matrix["room_id"], "state/m.room.encryption/"), None, deadline)
        except Refused as exc:
            if exc.errcode == "M_NOT_FOUND":
                return
            raise
        if not self.matrix.get("allow_plaintext_in_encrypted_room"):
            raise Refused(
                "the room is end-to-end encrypted and MACP does not encrypt; nothing was posted "
                "(set matrix.allow_plaintext_in_encrypted_room to post plaintext there anyway)",
                "MACP_ENCRYPTED_ROOM",
            )

    def _already_in_room(self, client: MatrixClient, deadline: float) -> dict[str, tuple[str, bool]]:
        """MACP event id → (Matrix event id, whether it is threaded) for the MACP messages
        among the room's most recent ones (:data:`HISTORY_PAGES` pages of 100)."""
        found: dict[str, tuple[str, bool]] = {}
        room_filter = quote(json.dumps({"types": ["m.room.message"]}), safe="")
        start = ""
        for _ in range(HISTORY_PAGES):
            page = client.request("GET", room_path(self.matrix["room_id"], f"messages?dir=b&limit=100&filter={room_filter}{start}"), None, deadline)
            for message in page.get("chunk") or []:
                content = message.get("content") or {}
                listed = content.get(EVENT_IDS_KEY)
                macp_ids: list = listed if isinstance(listed, list) else [content.get(EVENT_ID_KEY)]
                relation = content.get("m.relates_to") or {}
                for macp_id in macp_ids:
                    if isinstance(macp_id, str):
                        found.setdefault(macp_id, (message.get("event_id", ""), relation.get("rel_type") == "m.thread"))
            if not page.get("chunk") or not page.get("end"):
                break
            start = f"&from={quote(str(page['end']), safe='')}"
        return found

    def _send(self, client: MatrixClient, events: list[dict], state: DeliveryState, context: RenderContext, deadline: float, report: RoundReport) -> None:
        """Send ``events`` (one, or a task's waiting events coalesced) as one message,
        threaded under their task's root, shrinking it or setting the events aside when the
        homeserver refuses it."""
        task_id = str(events[0]["task_id"]) if events[0].get("task_id") else ""
        root = state.threads.get(task_id) if task_id else None
        if len(events) == 1:
            content, txn_id = message_content(events[0], root, context), transaction_id(events[0]["event_id"])
        else:
            content, txn_id = coalesced_content(events, root, context), group_transaction_id([event["event_id"] for event in events])
        rejection: Rejected | None = None
        for txn, attempt in ((txn_id, content), (f"{txn_id}.min", minimal_content(content))):
            try:
                matrix_id = self._put(client, txn, attempt, deadline, report, state)
            except Rejected as exc:
                rejection = exc
                continue
            if task_id and root is None:
                state.remember_thread(task_id, matrix_id)
            state.delivered += len(events)
            state.failures = 0
            state.retry_at = 0.0
            state.blocked = ""
            state.last_error = None
            state.last_delivery_at = clock.timestamp()
            report.delivered += len(events)
            return
        assert rejection is not None
        for event in events:
            append_line(self.state_dir / DEAD_LETTER_NAME, json.dumps({"event": event, **error_record(rejection, "rejected")}))
            note(f"matrix: event {event['event_id']} ({event.get('event_type')}, task {task_id or '-'}) refused even when shrunk ({rejection.describe()}); set aside in {DEAD_LETTER_NAME}")
        state.dead_letters += len(events)
        state.last_error = error_record(rejection, "rejected")
        report.dead_lettered += len(events)

    def _put(self, client: MatrixClient, txn_id: str, content: dict, deadline: float, report: RoundReport, state: DeliveryState) -> str:
        """PUT one message, waiting out 429s within the deadline; returns its Matrix event id."""
        while True:
            try:
                reply = client.request("PUT", send_path(self.matrix["room_id"], txn_id), content, deadline)
            except RateLimited as exc:
                report.rate_limited += 1
                state.rate_limited += 1
                if time.monotonic() + exc.retry_after >= deadline:
                    raise
                time.sleep(exc.retry_after)
                continue
            matrix_id = reply.get("event_id")
            if not isinstance(matrix_id, str):
                raise Unreachable("the homeserver's reply has no event_id")
            return matrix_id


