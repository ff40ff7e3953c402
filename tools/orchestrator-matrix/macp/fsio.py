"""Crash-safe file writes and strict JSON reads.

- :func:`write_atomic`: temp file in the same folder, ``fsync``, ``os.replace``, then
  ``fsync`` of the folder. A crash at any instant leaves the old file or the new one.
- :func:`append_line`: one line appended under an exclusive ``flock`` of the file, so
  concurrent appenders never interleave inside a line; a torn last line left by a crash is
  moved aside first (to ``<file>.torn``), so no later line fuses with it; a write that fails
  part-way is undone, so it never leaves a torn line itself.
- :func:`read_json`: parse a state file or raise :class:`~macp.errors.MacpError` naming the
  file, line and column; nothing is ever rewritten on a read error.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from macp.errors import MacpError


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically; create parent folders as needed.

    The new file keeps the old file's permission bits (0644 for a new file). Raises
    ``OSError`` on I/O failure, in which case ``path`` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """``fsync`` a folder so a rename inside it survives a power loss."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_line(path: Path, line: str) -> None:
    """Append ``line`` plus ``\\n`` to ``path`` and ``fsync`` it.

    Under an exclusive ``flock`` of ``path``: when the file does not end with a newline (a
    crash cut an earlier append short), that fragment is appended to ``<path>.torn`` and cut
    off first. Short writes are continued; when a write fails (``ENOSPC``, ``EIO``) the file
    is truncated back to where it was and the ``OSError`` propagates.
    """
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            size = _set_torn_tail_aside(path, fd, size)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def _set_torn_tail_aside(path: Path, fd: int, size: int, window: int = 1 << 20) -> int:
    """Move the bytes after the last newline of ``fd`` to ``<path>.torn``; return the new
    size. Only the last ``window`` bytes are searched: a longer fragment is moved whole."""
    start = max(0, size - window)
    tail = os.pread(fd, size - start, start)
    cut = start + tail.rfind(b"\n") + 1 if b"\n" in tail else start
    fragment = os.pread(fd, size - cut, cut)
    side = os.open(path.with_name(path.name + ".torn"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(side, fragment + b"\n")
        os.fsync(side)
    finally:
        os.close(side)
    os.ftruncate(fd, cut)
    return cut


def json_object(value: object) -> dict[str, Any]:
    """``value`` when it is a JSON object (a dict), else ``{}``: for reading optional nested
    objects of documents MACP did not write (agent output, lock records)."""
    return value if isinstance(value, dict) else {}


def dump_json(value: Any) -> str:
    """Serialise ``value`` as MACP writes its files: 2-space indent, UTF-8, final newline."""
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def parse_json_text(text: str, label: str) -> Any:
    """Parse ``text``; on bad JSON raise MacpError ``<label>:<line>:<col>: invalid JSON: ...``."""
    if not text.strip():
        raise MacpError(f"{label}: file is empty, expected JSON")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MacpError(f"{label}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None


def read_json(path: Path) -> Any:
    """Read and parse the JSON file ``path``.

    Raises :class:`MacpError` (exit 2) when the file is missing, unreadable, not UTF-8 or not
    JSON; the message names the file and, for syntax errors, the line and column.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MacpError(f"{path}: no such file") from None
    except OSError as exc:
        raise MacpError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MacpError(f"{path}: not UTF-8 (byte {exc.start})") from None
    return parse_json_text(text, str(path))
