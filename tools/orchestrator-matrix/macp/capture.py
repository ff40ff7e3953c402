"""A command's output as MACP keeps it: redacted, without terminal escapes, cut to size
(docs/security.md). :class:`OutputCapture` streams a running command's output into its log
and keeps its tail (:mod:`macp.procs` for local processes, :mod:`macp.slurm` for a Slurm
job's output file); :func:`read_log_tail` reads the end of a finished log back.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from macp.fsio import open_regular
from macp.redact import redact
from macp.textview import strip_terminal_codes

_TAIL_CONTEXT = 1024


def clean_text(raw: bytes) -> str:
    """Decode ``raw`` for humans and JSON: UTF-8 with replacement, no ANSI/control chars, redacted."""
    return redact(strip_terminal_codes(raw.decode("utf-8", errors="replace")))


def read_log_tail(log_path: Path, max_bytes: int = 1 << 20) -> str:
    """The last ``max_bytes`` (default 1 MiB) of a run's log as clean text (see
    :func:`clean_text`); "" when the log cannot be read. A partial first line is dropped."""
    try:
        with os.fdopen(open_regular(log_path), "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - max_bytes))
            raw = handle.read()
    except OSError:  # none, or not a regular file (a FIFO left in its place): nothing to read
        return ""
    if size > max_bytes and b"\n" in raw:
        raw = raw[raw.index(b"\n") + 1 :]
    return clean_text(raw)


class OutputCapture:
    """Collect a child's output: a log file cut at ``max_bytes`` and an in-memory tail, both
    redacted before anything is cut (docs/security.md).

    The log gets whole lines, terminal escapes removed and secrets redacted. A line is held
    until its newline comes, up to the room left in the log: a longer line is redacted whole
    and then cut with the log, so no secret is split by a chunk boundary. The tail keeps
    :data:`_TAIL_CONTEXT` bytes more than it shows, so a label or token that starts before
    the shown part is redacted as a whole (:meth:`tail_text`).
    """

    def __init__(self, handle: BinaryIO, max_bytes: int, tail_bytes: int) -> None:
        self.handle = handle
        self.max_bytes = max_bytes
        self.tail_bytes = tail_bytes
        self.tail = bytearray()
        self.tail_trimmed = False
        self.written = 0
        self.truncated = False
        self._pending = bytearray()

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of output: whole lines go to the log, everything to the tail."""
        self.tail.extend(chunk)
        keep = self.tail_bytes + _TAIL_CONTEXT
        if len(self.tail) > keep:
            del self.tail[: len(self.tail) - keep]
            self.tail_trimmed = True
        if self.truncated:
            return
        newline = chunk.rfind(b"\n")
        if newline == -1:
            self._pending.extend(chunk)
            if len(self._pending) > self.max_bytes - self.written + _TAIL_CONTEXT:
                self._write(bytes(self._pending))
                self._pending.clear()
            return
        self._pending.extend(chunk[: newline + 1])
        self._write(bytes(self._pending))
        self._pending = bytearray(chunk[newline + 1 :])

    def close(self) -> None:
        """Flush a final line that had no newline."""
        if self._pending:
            self._write(bytes(self._pending))
            self._pending.clear()

    def tail_text(self) -> str:
        """The last ``tail_bytes`` of output as clean, redacted text (see :func:`clean_text`).

        Redaction runs on the tail plus its context first, and the context's first word is
        dropped when output was cut before it, so a token cut at the edge is never shown.
        """
        raw = bytes(self.tail)
        if self.tail_trimmed:
            raw = raw[next((i + 1 for i, byte in enumerate(raw[:_TAIL_CONTEXT]) if byte in b" \t\n"), 0) :]
        text = clean_text(raw).encode("utf-8")
        return text[-self.tail_bytes :].decode("utf-8", errors="ignore") if len(text) > self.tail_bytes else text.decode("utf-8")

    def _write(self, data: bytes) -> None:
        if self.truncated:
            return
        text = redact(strip_terminal_codes(data.decode("utf-8", errors="replace"))).encode("utf-8")
        room = self.max_bytes - self.written
        if len(text) > room:
            text = text[:room] + f"\n[macp: log cut at {self.max_bytes} bytes]\n".encode()
            self.truncated = True
        self.handle.write(text)
        self.handle.flush()  # whole lines reach the file as they come: `tail -f` and `mosaic macp log --follow` see them
        self.written += len(text)
