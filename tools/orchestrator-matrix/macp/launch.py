"""Start an entry point: Ctrl-C is one line and exit 130 from the first moment, and MACP's own
output never fails what it reports on.

``run_main`` (:mod:`macp.cliutil`) maps a SIGINT to exit 130 once a command runs; this covers
the start-up before it, while the program itself is still being imported.

stdout and stderr are wrapped (:class:`ResilientStream`): when their reader goes away -- a
pipe closed early (``drain | head -1``), a terminal closed (SIGHUP, then EIO) -- the failed
write sends that descriptor to ``/dev/null`` and the program carries on. A drain whose
progress nobody reads any more still finishes its tasks (issue 22).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
from typing import Any

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it (docs/exit-codes.md)


class ResilientStream:
    """A text or binary stream whose reader may go away: a ``write`` or ``flush`` that fails
    with an ``OSError`` (EPIPE, EIO) points the stream's descriptor at ``/dev/null`` and is
    dropped, so what is still buffered and everything written later goes nowhere instead of
    raising. Everything else is the wrapped stream's."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, data: Any) -> int:
        try:
            return self._stream.write(data)
        except OSError:
            self._reader_gone()
            return len(data)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError:
            self._reader_gone()

    @property
    def buffer(self) -> ResilientStream:
        return ResilientStream(self._stream.buffer)

    def _reader_gone(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)
        with contextlib.suppress(OSError):
            self._stream.flush()  # what was buffered for the reader that left

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def launch(module: str, prog: str) -> int:
    """Wrap stdout and stderr (:class:`ResilientStream`), import ``module`` and return what
    its ``main()`` returns; a ``KeyboardInterrupt`` during the import prints ``<prog>:
    interrupted`` on stderr and returns 130."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="replace")  # a lone surrogate in a title prints as "?", never raises
    sys.stdout = ResilientStream(sys.stdout)
    sys.stderr = ResilientStream(sys.stderr)
    try:
        main = importlib.import_module(module).main
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return EXIT_INTERRUPTED
    return main()
