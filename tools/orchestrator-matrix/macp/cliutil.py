"""What every MACP command-line entry point shares: argument errors on one line, the
``--repo`` default, and turning errors into exit codes without tracebacks.

Exit codes (docs/exit-codes.md): 0 ok, 1 a task failed/escalated or a file is invalid,
2 usage or input error, 70 internal error, 75 another controller holds the lock,
129/130/143 interrupted by SIGHUP/SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import traceback
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import NoReturn, get_args

from macp import gitops
from macp.errors import EXIT_INTERNAL, EXIT_IO, EXIT_USAGE, Interrupted, MacpError, is_resource_exhaustion, is_storage_error
from macp.layout import Layout, check_state_folder
from macp.model import ExecutorKind

DOCS_DIR = Path(__file__).resolve().parents[3] / "docs"

EPILOG = f"""exit codes: 0 ok; 1 a task ended failed/escalated, or a file is invalid; 2 usage or
input error; 70 internal error; 74 state cannot be written (disk full, read-only);
75 another controller is running; 129/130/143 interrupted (docs/exit-codes.md).
docs: {DOCS_DIR}"""


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit code 2, and
    whose ``--help`` ends with the exit codes and where the docs are (:data:`EPILOG`)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("epilog", EPILOG)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def out(line: str = "") -> None:
    """Write one line of human output to stdout."""
    sys.stdout.write(line + "\n")


# The name diagnostics are printed under: set by run_main for the command that runs.
_PROG: ContextVar[str] = ContextVar("macp_prog", default="mosaic macp")


def note(line: str) -> None:
    """Write one diagnostic line to stderr, prefixed like every error of the running
    command (``mosaic macp <command>: ...``)."""
    sys.stderr.write(f"{_PROG.get()}: {line}\n")


def print_json(value: object) -> None:
    """Write ``value`` as JSON to stdout: :func:`json_text` with two levels indented, so a
    list of tasks is one task per line."""
    out(json_text(value, 2))


def json_text(value: object, levels: int, indent: int = 0) -> str:
    """``value`` as JSON with objects and arrays indented by two spaces for ``levels`` levels
    and every deeper value compact on one line. The deep part goes through Python's C
    encoder, which the indenting encoder cannot use: ``status --json`` on 10,000 tasks spent
    more time indenting than reading the queue (issue 11)."""
    if levels == 0 or not isinstance(value, (dict, list)) or not value:
        return json.dumps(value, ensure_ascii=False)
    pad = "  " * (indent + 1)
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(str(key), ensure_ascii=False)}: {json_text(item, levels - 1, indent + 1)}" for key, item in value.items()]
        opening, closing = "{", "}"
    else:
        items = [f"{pad}{json_text(item, levels - 1, indent + 1)}" for item in value]
        opening, closing = "[", "]"
    return opening + "\n" + ",\n".join(items) + "\n" + "  " * indent + closing


def resolve_repo(repo: str | None) -> Path:
    """The repository root: ``--repo`` if given, else the main worktree of the current folder's
    repository (:func:`macp.gitops.toplevel`), so commands work inside a task's worktree too.

    A ``--repo`` that is a main worktree (its ``.git`` is a folder with ``HEAD`` and
    ``objects``, as git itself checks) is taken without starting git. Raises
    :class:`MacpError` (exit 2) when the folder is not inside a git repository.
    """
    start = Path(repo).expanduser() if repo else Path.cwd()
    git_dir = start / ".git"
    if repo and (git_dir / "HEAD").is_file() and (git_dir / "objects").is_dir():
        return start.resolve()
    return gitops.toplevel(start.resolve())


def repo_layout(repo: str | None) -> Layout:
    """The :class:`~macp.layout.Layout` of the repository ``--repo`` names
    (:func:`resolve_repo`), its state folder checked first (:func:`macp.layout.check_state_folder`:
    never a symbolic link out of the repository). Every command starts here."""
    layout = Layout(resolve_repo(repo))
    check_state_folder(layout)
    return layout


def run_main(prog: str, body: Callable[[], int]) -> int:
    """Run ``body`` and map what it raises to an exit code, printing one line on stderr.

    Set ``MACP_DEBUG=1`` to get the traceback of an internal error as well.
    """
    _PROG.set(prog)
    try:
        return body()
    except MacpError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.exit_code
    except Interrupted as exc:
        print(f"{prog}: interrupted by signal {exc.signum}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        where = f" {shortened(str(exc.filename))}" if exc.filename else ""
        if exc.errno in (errno.ENAMETOOLONG, errno.ELOOP):  # a path the user gave that no file system takes
            print(f"{prog}: {exc.strerror}:{where}", file=sys.stderr)
            return EXIT_USAGE
        if is_resource_exhaustion(exc):
            print(f"{prog}: the machine's limits were reached: {exc.strerror or exc}{where} (nothing was half-written; raise the limit, e.g. ulimit -n, or run fewer --workers)", file=sys.stderr)
            return EXIT_IO
        if not is_storage_error(exc):
            raise
        print(f"{prog}: cannot write{where}: {exc.strerror or exc} (nothing was half-written)", file=sys.stderr)
        return EXIT_IO
    except Exception as exc:  # noqa: BLE001 -- a bug: one line, details with MACP_DEBUG
        if os.environ.get("MACP_DEBUG"):
            traceback.print_exc()
        print(f"{prog}: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INTERNAL


def shortened(text: str, limit: int = 120) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis in the middle: a path of
    thousands of characters still makes one readable line."""
    return text if len(text) <= limit else f"{text[: limit // 2]}…{text[-limit // 2 :]}"


def token_figure(text: str) -> int:
    """argparse type: a token figure as the Mosaic Stack guide writes it (``800``, ``5K``,
    ``4.2K``, ``1.5M``; :func:`macp.usage.parse_tokens`), at least 1."""
    from macp.usage import parse_tokens

    try:
        value = parse_tokens(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1 token")
    return value


def positive_dollars(text: str) -> float:
    """argparse type: an amount of US dollars above 0 (``0.50``, ``$2``)."""
    try:
        value = float(text.strip().removeprefix("$"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount of dollars") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def add_executor_option(parser: argparse.ArgumentParser) -> None:
    """``--executor local|slurm`` of ``mosaic-orchestrator-run`` and ``mosaic macp drain`` (issue 24)."""
    parser.add_argument("--executor", choices=get_args(ExecutorKind),
                        help="where attempts run: local processes, or jobs on a Slurm cluster (default: config executor.kind, local unless set)")


def add_land_option(parser: argparse.ArgumentParser) -> None:
    """``--land`` of ``mosaic-orchestrator-run`` and ``mosaic macp drain`` (issue 25)."""
    parser.add_argument("--land", action="store_true",
                        help="land each task it completes onto the target branch, tested (default: config macp.auto_land, off; docs/landing.md)")


def add_workers_option(parser: argparse.ArgumentParser) -> None:
    """``--workers N`` of ``mosaic-orchestrator-run`` and ``mosaic macp drain`` (issue 12)."""
    parser.add_argument("--workers", type=positive_int, metavar="N", help="run up to N tasks at once (default: worker.max_parallel, 1 unless set)")
