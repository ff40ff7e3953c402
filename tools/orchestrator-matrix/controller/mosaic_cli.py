"""``mosaic``: the top-level command. ``mosaic macp ...`` goes to the MACP CLI;
``mosaic yolo <runtime> <prompt>`` runs an agent CLI headless in the current folder.

``mosaic yolo`` builds the runtime's real invocation from the config template
(``runtimes.<name>`` in config.json; see docs/runtimes.md and
``../shared/reference/agent-runtimes.md``): approval-skip flag, prompt through stdin or a
file (never a shell), stdin otherwise ``/dev/null``. The config is ``$MACP_CONFIG`` (set by
the dispatcher for workers), else the current repository's, else MACP's defaults. The
runtime replaces this process (``exec``); a runtime binary that is not installed exits 127.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from pathlib import Path

from macp import gitops
from macp.cliutil import OneLineParser, run_main
from macp.config import load_config
from macp.errors import EXIT_NOT_INSTALLED, MacpError
from macp.layout import Layout
from macp.runtimes import build_invocation, runtime_spec

PROG = "mosaic"


def yolo_config() -> dict:
    """Config for ``mosaic yolo``: ``$MACP_CONFIG``, the current repository's, or the defaults."""
    if os.environ.get("MACP_CONFIG"):
        return load_config(Path(os.environ["MACP_CONFIG"]))
    try:
        return load_config(Layout(gitops.toplevel(Path.cwd())).config_file)
    except MacpError:
        return load_config(Path(os.devnull))


def prompt_source(args) -> tuple[Path, str]:
    """``(file holding the prompt, prompt text)`` from ``--prompt-file`` or the prompt words.

    Words are written to a new temporary file (kept: the runtime may read it after this
    process has been replaced); a dry run only names it.
    """
    if args.prompt_file:
        path = Path(args.prompt_file)
        try:
            return path, path.read_bytes().decode("utf-8", errors="replace")
        except OSError as exc:
            raise MacpError(f"--prompt-file: cannot read {path}: {exc.strerror}") from None
    if not args.prompt:
        raise MacpError("give the prompt as words or with --prompt-file")
    text = " ".join(args.prompt)
    if args.dry_run:
        return Path("<prompt file>"), text
    fd, name = tempfile.mkstemp(prefix="mosaic-yolo-", suffix=".md")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return Path(name), text


def cmd_yolo(args) -> int:
    spec = runtime_spec(yolo_config(), args.runtime)
    prompt_file, prompt_text = prompt_source(args)
    invocation = build_invocation(spec, worktree=os.getcwd(), prompt_file=prompt_file, prompt_text=prompt_text)
    if args.dry_run:
        stdin = shlex.quote(str(invocation.stdin_path)) if invocation.stdin_path else "/dev/null"
        print(f"{shlex.join(invocation.argv)} < {stdin}")
        return 0
    env = {**os.environ, **invocation.env}
    stdin_fd = os.open(invocation.stdin_path or os.devnull, os.O_RDONLY)
    os.dup2(stdin_fd, 0)
    os.close(stdin_fd)
    try:
        os.execvpe(invocation.argv[0], invocation.argv, env)
    except OSError as exc:
        reason = "not found on PATH" if isinstance(exc, FileNotFoundError) else exc.strerror
        print(f"{PROG} yolo: runtime {args.runtime!r} cannot run: {invocation.argv[0]}: {reason}", file=sys.stderr)
        return EXIT_NOT_INSTALLED
    return 0  # not reached: execvpe replaces the process


def build_yolo_parser() -> OneLineParser:
    """Arguments of ``mosaic yolo``."""
    parser = OneLineParser(prog="mosaic yolo", description="Run an agent CLI headless with approvals skipped.")
    parser.add_argument("runtime", help="a runtime configured in config.json (codex, claude, opencode, ...)")
    parser.add_argument("prompt", nargs="*", help="the prompt (or use --prompt-file)")
    parser.add_argument("--prompt-file", help="read the prompt from this file")
    parser.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    return parser


USAGE = """usage: mosaic <command> [args]

commands:
  macp ...                    submit, inspect and run MACP tasks (mosaic macp --help)
  yolo <runtime> <prompt>     run an agent CLI headless in the current folder (mosaic yolo --help)
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mosaic``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "macp":
        from controller.macp_cli import main as macp_main

        return macp_main(rest)
    if command == "yolo":
        args = build_yolo_parser().parse_intermixed_args(rest)
        return run_main(f"{PROG} yolo", lambda: cmd_yolo(args))
    sys.stderr.write(f"{PROG}: unknown command {command!r} (see mosaic --help)\n")
    return 2
