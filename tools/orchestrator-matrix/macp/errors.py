"""Errors a user can cause, and the exit codes the command-line tools document.

Every :class:`MacpError` is reported as one line on stderr (``mosaic macp <command>: <message>``) and
ends the process with its ``exit_code``; see docs/exit-codes.md.
"""

from __future__ import annotations

import errno
from typing import TypeGuard

EXIT_OK = 0
EXIT_TASKS_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69  # ``mosaic macp deliver``: the homeserver could not be reached in time
EXIT_INTERNAL = 70
EXIT_IO = 74
EXIT_BUSY = 75
EXIT_REFUSED = 77  # ``mosaic macp deliver``: the homeserver refused the token or the room
EXIT_NOT_INSTALLED = 127


class MacpError(Exception):
    """A problem the user can fix: bad input, a bad state file, a repository in the way.

    ``MacpError(message, exit_code=EXIT_USAGE)``; ``str(error)`` is the one-line message.
    """

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class BusyError(MacpError):
    """Another controller holds the repository's controller lock (exit code 75)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_BUSY)


class JobLost(Exception):
    """The executor lost a command where it ran (a Slurm node failure): no outcome of the
    command's own, so the attempt does not count. Raised into a task's steps at the
    ``yield`` of that command (:mod:`macp.pool`); ``str(error)`` says what happened."""


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived; ``signum`` says which. Derives from BaseException
    so that ``except Exception`` blocks never swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """128 + the signal number: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP."""
        return 128 + self.signum


# A full disk, a quota, a file too large, a read-only or forbidden state folder: the user's
# machine, not a bug (docs/exit-codes.md, exit 74).
_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM})


# Out of file descriptors (the process's or the system's), memory, or processes: the
# machine's limits, not a task's failure (issue 22; docs/exit-codes.md, exit 74).
_EXHAUSTION_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN})


def is_resource_exhaustion(exc: BaseException) -> TypeGuard[OSError]:
    """True for an :class:`OSError` that says this process or machine ran out of file
    descriptors, memory or processes (EMFILE, ENFILE, ENOMEM, EAGAIN from ``fork``): the
    work that met it is handed back, never failed."""
    return isinstance(exc, OSError) and exc.errno in _EXHAUSTION_ERRNOS


def is_storage_error(exc: BaseException) -> bool:
    """True for an :class:`OSError` that says the state cannot be written on this machine
    (full disk or quota, file too large, read-only or forbidden folder): exit 74, never a
    task's failure."""
    return isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS
