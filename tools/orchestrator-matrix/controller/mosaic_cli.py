"""``mosaic``: the top-level command. ``mosaic macp ...`` goes to the MACP CLI;
``mosaic yolo <runtime> <prompt>`` runs an agent CLI headless in the current folder.

``mosaic yolo`` builds the runtime's real invocation from the config template
(``runtimes.<name>`` in config.json; see docs/runtimes.md and
``../shared/reference/agent-runtimes.md``): approval-skip flag, prompt through stdin or a
file (never a shell), stdin otherwise ``/dev/null``, ``env_as_root`` added when running as
root. The config is ``$MACP_CONFIG`` (set by the dispatcher for workers), else the current
repository's, else MACP's defaults: it works in any folder, git or not. The runtime
replaces this process (``exec``); a runtime binary that is not installed exits 127.

Prompt words are written to a temporary file that is opened and unlinked before the
runtime starts: the runtime reads it through an open descriptor (stdin, or
``/dev/fd/N`` for ``"prompt": "file"``), so nothing is left behind.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from macp import __version__, gitops
from macp.cliutil import EPILOG, OneLineParser, run_main
from macp.config import load_config
from macp.errors import EXIT_NOT_INSTALLED, MacpError
from macp.layout import Layout
from macp.model import Config
from macp.runtimes import build_invocation, describe_invocation, running_as_root, runtime_spec

PROG = "mosaic"


def yolo_config() -> Config:
    """Config for ``mosaic yolo``: ``$MACP_CONFIG``, the current repository's, or the defaults."""
    if os.environ.get("MACP_CONFIG"):
        return load_config(Path(os.environ["MACP_CONFIG"]))
    try:
        return load_config(Layout(gitops.toplevel(Path.cwd())).config_file)
    except MacpError:
        return load_config(None)


def prompt_source(args) -> tuple[Path, str, int | None]:
    """``(path to read the prompt from, prompt text, open descriptor or None)``.

    ``--prompt-file`` is used as it is. Prompt words go to a new temporary file that is
    opened and at once unlinked; the returned descriptor keeps it readable through
    ``/dev/fd/N`` until the runtime exits. A dry run only names it.
    """
    if args.prompt_file:
        path = Path(args.prompt_file)
        try:
            return path, path.read_bytes().decode("utf-8", errors="replace"), None
        except OSError as exc:
            raise MacpError(f"--prompt-file: cannot read {path}: {exc.strerror}") from None
    if not args.prompt:
        raise MacpError("give the prompt as words or with --prompt-file")
    text = " ".join(args.prompt)
    if args.dry_run:
        return Path("<prompt file>"), text, None
    handle = tempfile.TemporaryFile(prefix="mosaic-yolo-")  # noqa: SIM115 -- its descriptor outlives this function on purpose
    handle.write(text.encode("utf-8", "surrogateescape"))  # an argument that is not UTF-8 goes on as the bytes it was
    handle.flush()
    fd = os.dup(handle.fileno())
    handle.close()
    os.lseek(fd, 0, os.SEEK_SET)
    os.set_inheritable(fd, True)
    return Path(f"/dev/fd/{fd}"), text, fd


def cmd_yolo(args) -> int:
    spec = runtime_spec(yolo_config(), args.runtime)
    prompt_file, prompt_text, prompt_fd = prompt_source(args)
    caps = {"max_cost_usd": args.max_cost_usd} if args.max_cost_usd else {}
    invocation = build_invocation(spec, worktree=os.getcwd(), prompt_file=prompt_file, prompt_text=prompt_text, as_root=running_as_root(), caps=caps)
    if args.dry_run:
        print(describe_invocation(invocation))
        return 0
    env = {**os.environ, **invocation.env}
    if invocation.stdin_path is not None and prompt_fd is not None:
        os.dup2(prompt_fd, 0)
    else:
        stdin_fd = os.open(invocation.stdin_path or os.devnull, os.O_RDONLY)
        os.dup2(stdin_fd, 0)
        os.close(stdin_fd)
    try:
        os.execvpe(invocation.argv[0], invocation.argv, env)
    except OSError as exc:
        reason = "not found on PATH" if isinstance(exc, FileNotFoundError) else exc.strerror
        fix = f"install {invocation.argv[0]} (docs/runtimes.md), or remove runtimes.{args.runtime} from config.json so no task uses it"
        print(f"{PROG} yolo: runtime {args.runtime!r} cannot run: {invocation.argv[0]}: {reason}; {fix}", file=sys.stderr)
        return EXIT_NOT_INSTALLED
    return 0  # not reached: execvpe replaces the process


def build_yolo_parser() -> OneLineParser:
    """Arguments of ``mosaic yolo``."""
    parser = OneLineParser(prog="mosaic yolo", description="Run an agent CLI headless with approvals skipped.")
    parser.add_argument("runtime", help="a runtime configured in config.json (codex, claude, opencode, ...)")
    parser.add_argument("prompt", nargs="*", help="the prompt (or use --prompt-file)")
    parser.add_argument("--prompt-file", help="read the prompt from this file (default: the prompt arguments)")
    parser.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    parser.add_argument("--max-cost-usd", metavar="USD", help="the most the run may cost, passed on with the runtime's caps arguments (runtimes.<name>.caps; claude: --max-budget-usd) (default: no cap)")
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
        sys.stdout.write(USAGE + "\n" + EPILOG + "\n")
        return 0 if argv else 2
    if argv[0] == "--version":
        sys.stdout.write(f"{PROG} {__version__}\n")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "macp":
        from controller.macp_cli import main as macp_main

        return macp_main(rest)
    if command == "yolo":
        args = build_yolo_parser().parse_intermixed_args(rest)
        return run_main(f"{PROG} yolo", lambda: cmd_yolo(args))
    sys.stderr.write(f"{PROG}: unknown command {command!r} (see mosaic --help)\n")
    return 2
