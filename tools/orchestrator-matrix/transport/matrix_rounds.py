"""The bookkeeping of a Matrix delivery round (split from :mod:`transport.matrix_transport`,
issue 24): the transport lock, the backoff after failures, Matrix transaction ids made from
event ids (so a resent event is deduplicated by the homeserver), reading one line of the
event log, and moving the delivery cursor past what a round handled.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

from macp import clock
from transport.matrix_errors import DeliveryError
from transport.matrix_state import DeliveryState

BACKOFF_BASE_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 300.0
LOCK_NAME = ".transport.lock"
SAFE_TXN_ID = re.compile(r"[A-Za-z0-9._~-]{1,128}")


def fingerprint(*parts: str) -> str:
    """16 hex digits of the SHA-256 of ``parts``: tells tokens (and settings) apart without
    storing them."""
    import hashlib

    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def backoff_seconds(failures: int) -> float:
    """Seconds automatic rounds wait after ``failures`` failed rounds in a row."""
    return min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, failures - 1))


def error_record(exc: DeliveryError, kind: str) -> dict:
    """The ``last_error`` kept in the state and shown by ``status``."""
    return {"kind": kind, "status": exc.status, "errcode": exc.errcode, "error": exc.error, "at": clock.timestamp()}


@contextlib.contextmanager
def transport_lock(orch_dir: Path, deadline: float) -> Iterator[bool]:
    """Hold the transport's ``flock`` (one delivering process per repository), waiting for
    it until ``deadline`` (monotonic); yields whether it was taken."""
    fd = os.open(orch_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.05)
        yield True
    finally:
        os.close(fd)


def advance(state: DeliveryState, items: list[tuple[int, dict | None]], handled: list[bool], beyond: bool) -> None:
    """After a round over ``items`` (``(offset after the line, event)``, in log order):
    move the cursor past the longest run of handled lines from the start, keep the ids of
    events handled beyond it (``sent_ahead``), and note whether events were left waiting
    (``behind``; also when lines ``beyond`` this round's were not looked at). Pure."""
    prefix = 0
    while prefix < len(items) and handled[prefix]:
        prefix += 1
    if prefix:
        state.cursor = items[prefix - 1][0]
    state.sent_ahead = [event["event_id"] for (_end, event), done in zip(items[prefix:], handled[prefix:], strict=True) if done and event is not None]
    state.behind = beyond or prefix < len(items)


def group_transaction_id(event_ids: list[str]) -> str:
    """The transaction id of a coalesced message: a digest of its events' ids, so resending
    the same group is idempotent."""
    import hashlib

    return "group-" + hashlib.sha256("\n".join(event_ids).encode("utf-8", "surrogatepass")).hexdigest()[:40]


def transaction_id(event_id: str) -> str:
    """The transaction id of an event's message: its event id when that is a short, plain
    token (MACP's own are 32 hex digits), else a digest of it, so any line's id makes a
    valid URL path segment."""
    if SAFE_TXN_ID.fullmatch(event_id):
        return event_id
    import hashlib

    return "sha256-" + hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()


def parse_event(raw: bytes) -> dict | None:
    """The event on one log line, or ``None`` when the line is not a JSON object with a
    string ``event_id`` (such a line is skipped, never retried)."""
    try:
        event = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("event_id"), str) or not event["event_id"]:
        return None
    return event
