"""File locks: a short exclusive lock for read-modify-write, and the controller lock.

Both use ``fcntl.flock`` on a lock file beside the state they guard. ``flock`` locks belong
to the open file description, so they vanish when the holder dies: a crashed controller
never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from macp import clock
from macp.errors import BusyError
from macp.jsontext import json_object
from macp.model import Claim


@contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` for the ``with`` block (blocks until free).

    Used for every read-modify-write of ``tasks.json``; holders keep it for milliseconds,
    never while a worker runs.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def owner_record() -> Claim:
    """This process as a lock or claim owner: ``{"pid", "host", "started_at", "token"}``.

    ``token`` is unique per controller run; the controller puts it in its children's
    environment so a later run can find what a crashed one left running.
    """
    return {"pid": os.getpid(), "host": socket.gethostname(), "started_at": clock.timestamp(), "token": uuid.uuid4().hex}


class ControllerLock:
    """The one-controller-per-repository lock (``controller.lock`` in the state folder).

    ``acquire(wait=False)`` takes it or raises :class:`BusyError` naming the holder's pid,
    host and start time; with ``wait=True`` it polls until free (``poll_seconds`` apart).
    The holder's :func:`owner_record` is written into the lock file for the next contender
    and erased by :meth:`release`, so a record found on acquiring (``previous``) means the
    last controller died without releasing: its children may still be running.

    Recovery debts are inherited: until the new holder calls :meth:`recovered`, its record
    also names every dead controller not yet recovered from (``recovering``: their tokens
    and the earliest start), so a holder that dies in the middle of a recovery passes the
    whole debt on. ``previous`` then carries ``tokens`` (every dead controller's token) and
    ``started_at`` (the earliest of their starts).
    """

    def __init__(self, lock_path: Path) -> None:
        self.lock_path = lock_path
        self._fd: int | None = None
        self.owner: Claim | None = None
        self.previous: dict | None = None

    def acquire(self, wait: bool = False, poll_seconds: float = 0.2) -> None:
        """Take the lock; raises BusyError when it is held and ``wait`` is false."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    holder = describe_holder(self.lock_path)
                    os.close(fd)
                    raise BusyError(f"another controller is running on this repository ({holder})") from None
                time.sleep(poll_seconds)
        self._fd = fd
        self.previous = _inherited(_parse_owner(os.pread(fd, 65536, 0)))
        self.owner = owner_record()
        debt = {"tokens": self.previous["tokens"], "since": self.previous["started_at"]} if self.previous else None
        self._write_record({**self.owner, "recovering": debt} if debt else self.owner)

    def recovered(self) -> None:
        """Record that the dead controllers named in ``previous`` have been recovered from."""
        if self._fd is not None and self.owner is not None:
            self._write_record(self.owner)

    def _write_record(self, record: Mapping[str, object]) -> None:
        assert self._fd is not None
        data = (json.dumps(record) + "\n").encode()
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))
        os.fsync(self._fd)

    def release(self, clean: bool = True) -> None:
        """Drop the lock (idempotent). A ``clean`` exit erases the holder record; otherwise
        the record stays, so the next holder finds it in ``previous`` and recovers as after
        a crash."""
        if self._fd is not None:
            if clean:
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def live_holder(lock_path: Path) -> dict | None:
    """The record of the controller holding ``lock_path`` right now, or None when no process
    holds it (a record left by a dead controller does not count). Takes nothing: it only
    tries a shared lock, which fails while a controller holds the exclusive one."""
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _parse_owner(os.pread(fd, 65536, 0)) or {"token": None}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _parse_owner(raw: bytes) -> dict | None:
    try:
        owner = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return owner if isinstance(owner, dict) and isinstance(owner.get("token"), str) else None


def _inherited(previous: dict | None) -> dict | None:
    """``previous`` with ``tokens`` (its own and those it had not recovered from yet) and
    ``started_at`` (the earliest start among them); None when there is nothing to recover."""
    if previous is None:
        return None
    debt = json_object(previous.get("recovering"))
    tokens = [token for token in debt.get("tokens", []) if isinstance(token, str)] + [previous["token"]]
    starts = [stamp for stamp in (debt.get("since"), previous.get("started_at")) if isinstance(stamp, str)]
    return {**previous, "tokens": tokens, "started_at": min(starts) if starts else ""}


def describe_holder(lock_path: Path, attempts: int = 25) -> str:
    """``pid 123 on host since 2026-...`` from the lock file, or ``holder unknown``.

    A holder that has just taken the lock may not have written its record yet, so an empty or
    partial record is read again (``attempts`` times, 20 ms apart).
    """
    for _ in range(attempts):
        try:
            holder = _parse_owner(lock_path.read_bytes())
        except OSError:
            holder = None
        if holder is not None:
            return f"pid {holder['pid']} on {holder['host']} since {holder['started_at']}"
        time.sleep(0.02)
    return "holder unknown"
