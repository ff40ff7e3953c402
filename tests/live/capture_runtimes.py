#!/usr/bin/env python3
"""Capture what the real agent CLIs print for each failure case (regenerates test data).

    make agent-clis && python3 tests/live/capture_runtimes.py [--only codex,claude] [--case 429]

Runs each installed CLI exactly as MACP would (the command line, prompt on stdin and extra
environment of MACP's default runtime template, merged stdout/stderr through MACP's own
process runner) against the fake model API on 127.0.0.1, once per case, and writes the
output to ``tests/data/runtimes/<cli>-<case>.txt`` and how each run ended (exit code,
whether it was cut for silence, CLI version, when it started) to
``tests/data/runtimes/captures.json``. The CLIs run with ``TZ=UTC``, so the clock times they
print are UTC. The
fast test suite classifies these files (``tests/test_runtime_captures.py``).

Cases: the fake API's (ok, 401, 429, quota, 500, 503, 529, never), ``refused`` (nothing
listens), and command lines a runtime refuses: ``root-guard`` (claude as root without
``IS_SANDBOX``), ``untrusted`` (gemini without ``--skip-trust``), ``no-auth`` (gemini with no
credentials), ``unknown-flag`` (codex given a flag it does not know).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tools" / "orchestrator-matrix"))
sys.path.insert(0, str(HERE))

from agent_clis import BIN_DIR, PACKAGES, FakeApi, cli_path, installed, point_at  # noqa: E402

from macp.config import default_config  # noqa: E402
from macp.pool import run_process  # noqa: E402
from macp.runtimes import build_invocation, running_as_root  # noqa: E402

DATA = ROOT / "tests" / "data" / "runtimes"
API_CASES = ("ok", "401", "429", "quota", "500", "503", "529", "never", "refused")
MISCONFIGURED = {"claude": ("root-guard",), "gemini": ("untrusted", "no-auth"), "codex": ("unknown-flag",)}
PROMPT = "Reply with one short line saying the task is done.\n"
# Silence cut short: soon for the API that never answers, later for the rest, so that a CLI
# retrying quietly (opencode backs off up to 30 s between tries) gets to print its error.
IDLE_SECONDS = {"never": 15}
DEFAULT_IDLE_SECONDS = 120
TIMEOUT_SECONDS = 300


def cases_of(cli: str) -> list[str]:
    return [*API_CASES, *MISCONFIGURED.get(cli, ())]


def capture(cli: str, case: str, api: FakeApi, scratch: Path) -> dict:
    """Run ``cli`` for ``case``; write its output file and return its record."""
    home = scratch / f"{cli}-{case}" / "home"
    work = scratch / f"{cli}-{case}" / "work"
    home.mkdir(parents=True)
    work.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    prompt = scratch / f"{cli}-{case}" / "prompt.md"
    prompt.write_text(PROMPT)
    spec = default_config()["runtimes"][cli]
    invocation = build_invocation(spec, worktree=str(work), prompt_file=prompt, prompt_text=PROMPT, as_root=running_as_root())
    env = {"HOME": str(home), "PATH": cli_path(), "LANG": "C.UTF-8", "TERM": "dumb", "TZ": "UTC"}
    if case != "no-auth":
        env.update(point_at(cli, home, api.url("ok" if case in ("root-guard", "untrusted", "unknown-flag") else case)))
    env.update(invocation.env)
    argv = list(invocation.argv)
    if case == "root-guard":
        env.pop("IS_SANDBOX", None)
    elif case == "untrusted":
        argv.remove("--skip-trust")
    elif case == "unknown-flag":
        argv.insert(2, "--no-such-flag")
    argv[0] = str(BIN_DIR / argv[0])
    out = DATA / f"{cli}-{case}.txt"
    captured_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = run_process(argv, cwd=work, env=env, log_path=out, timeout_seconds=TIMEOUT_SECONDS,
                         stdin_path=prompt, idle_timeout_seconds=IDLE_SECONDS.get(case, DEFAULT_IDLE_SECONDS))
    return {"cli": cli, "version": PACKAGES[cli][1], "case": case, "exit_code": result.exit_code,
            "idle_timed_out": result.idle_timed_out, "timed_out": result.timed_out, "captured_at": captured_at}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated CLIs (default: every installed one)")
    parser.add_argument("--case", action="append", help="only this case (repeatable)")
    args = parser.parse_args(argv)
    clis = args.only.split(",") if args.only else list(PACKAGES)
    missing = [cli for cli in clis if not installed(cli)]
    if missing:
        print(f"not installed: {', '.join(missing)} (run 'make agent-clis')", file=sys.stderr)
        return 2
    DATA.mkdir(parents=True, exist_ok=True)
    index_file = DATA / "captures.json"
    index = json.loads(index_file.read_text()) if index_file.exists() else {}
    with tempfile.TemporaryDirectory(prefix="macp-capture-") as scratch, FakeApi(Path(scratch) / "api") as api:
        for cli in clis:
            for case in cases_of(cli):
                if args.case and case not in args.case:
                    continue
                record = capture(cli, case, api, Path(scratch))
                index[f"{cli}-{case}"] = record
                print(f"{cli}-{case}: exit {record['exit_code']}" + (" (silent, cut)" if record["idle_timed_out"] else ""), flush=True)
                index_file.write_text(json.dumps(dict(sorted(index.items())), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
