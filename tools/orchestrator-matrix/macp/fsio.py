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
import errno
import fcntl
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from macp.errors import MacpError
from macp.jsontext import parse_json_text, utf8


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
            handle.write(utf8(text))
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
    data = utf8(line.rstrip("\n") + "\n")
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


class NotARegularFile(OSError):
    """A path MACP reads or writes as a file is something else: a FIFO, a socket, a device,
    a folder or a symbolic link -- put there by a hostile or careless hand."""


def open_regular(path: Path, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """``os.open`` for a regular file only (issue 22): opened with ``O_NONBLOCK`` and
    ``O_NOFOLLOW``, so a FIFO never blocks and a final symbolic link is never followed, then
    checked with ``fstat``. Returns a descriptor in blocking mode again. Raises
    :class:`NotARegularFile` for anything but a regular file, ``OSError`` as ``os.open``."""
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_NOFOLLOW, mode)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):  # a link; a FIFO nobody reads; a folder
            raise NotARegularFile(exc.errno, f"not a regular file: {exc.strerror}", str(path)) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotARegularFile(errno.EINVAL, "not a regular file", str(path))
    os.set_blocking(fd, True)
    return fd


def create_regular(path: Path) -> int:
    """A descriptor of ``path`` as an empty regular file opened for writing (a log). What
    stands there that is not a regular file is removed first (a folder is moved aside to
    ``<name>.moved-aside``): only MACP writes in its own folders, so it is never work."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        return open_regular(path, flags)
    except NotARegularFile:
        if path.is_dir() and not path.is_symlink():
            os.replace(path, path.with_name(path.name + ".moved-aside"))
        else:
            path.unlink()
    return open_regular(path, flags | os.O_EXCL)


def read_regular(path: Path, max_bytes: int | None = None, offset: int = 0) -> bytes:
    """The bytes of the regular file ``path`` from ``offset`` (at most ``max_bytes``; a
    negative ``offset`` counts from the end). Raises :class:`NotARegularFile` or
    ``OSError`` (``FileNotFoundError`` when there is none)."""
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as handle:
        if offset < 0:
            handle.seek(max(0, os.fstat(fd).st_size + offset))
        elif offset:
            handle.seek(offset)
        return handle.read() if max_bytes is None else handle.read(max_bytes)


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
