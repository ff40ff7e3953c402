#!/usr/bin/env python3
"""``make demo``: MACP end to end on a throwaway git repository, offline.

Builds a small Python project with a real unittest suite (two real bugs, one missing
function) in ``$DEMO_DIR`` (else a new temp folder), then drives the real CLI:

- LEGACY-1, a pre-MACP task (no ``dispatch``) already in tasks.json, runs in the repo root;
- DEMO-1, an ``exec`` task, fixes ``median`` in its worktree and passes its test gate;
- DEMO-2, a ``yolo`` task, goes through ``mosaic yolo`` to an offline runtime that applies
  the patch in its brief;
- DEMO-3, an ``exec`` task whose gate fails: it is retried with the failure in its brief,
  fails again and ends ``escalated``;
- DEMO-4, an ``acp`` task: its ``sessions_spawn`` file is shown, an external completion
  is reported with ``mosaic macp complete``, and the next drain gates and completes it.

It ends with ``mosaic macp status`` and ``mosaic macp history --task-id DEMO-3``, and exits
non-zero if any task ended other than expected. Needs python3 and git only. A temp folder it
made is removed at the end; ``$DEMO_DIR`` is kept for a look around.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DEMO = Path(__file__).resolve().parent
MOSAIC = DEMO.parents[2] / "bin" / "mosaic"
EXPECTED = {"LEGACY-1": "completed", "DEMO-1": "completed", "DEMO-2": "completed", "DEMO-3": "escalated", "DEMO-4": "completed"}
ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "MACP Demo",
    "GIT_AUTHOR_EMAIL": "demo@macp.invalid",
    "GIT_COMMITTER_NAME": "MACP Demo",
    "GIT_COMMITTER_EMAIL": "demo@macp.invalid",
}

FIX_MEDIAN = DEMO / "fixes" / "fix_median.py"
NAIVE_MODE = "\\n\\ndef mode(values):\\n    return values[0]\\n"


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def run(*argv: str, cwd: Path, expect: int | tuple[int, ...] = 0, quiet: bool = False) -> subprocess.CompletedProcess:
    """Run ``mosaic ...`` (shown as typed) or another command; fail the demo on a surprise exit.

    ``quiet`` keeps the command's output for the caller instead of printing it.
    """
    command = [str(MOSAIC), *argv[1:]] if argv[0] == "mosaic" else list(argv)
    print(f"$ {shlex.join(argv)}", flush=True)
    proc = subprocess.run(command, cwd=cwd, env=ENV, text=True, capture_output=True, check=False)
    if not quiet:
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
    allowed = expect if isinstance(expect, tuple) else (expect,)
    if proc.returncode not in allowed:
        raise SystemExit(f"demo: {argv[0]} exited {proc.returncode}, expected {allowed}")
    return proc


def demo_root() -> tuple[Path, bool]:
    """``$DEMO_DIR`` (created if needed, must not hold a previous demo; kept afterwards), or a
    new temp folder (removed afterwards). Returns ``(folder, keep it)``."""
    if os.environ.get("DEMO_DIR"):
        root = Path(os.environ["DEMO_DIR"]).expanduser().resolve()
        if (root / "project").exists():
            raise SystemExit(f"demo: {root / 'project'} already exists; set DEMO_DIR to an empty folder")
        root.mkdir(parents=True, exist_ok=True)
        return root, True
    return Path(tempfile.mkdtemp(prefix="macp-demo-")).resolve(), False


def build_project(repo: Path) -> None:
    shutil.copytree(DEMO / "project", repo, ignore=shutil.ignore_patterns("__pycache__"))
    run("git", "init", "-q", "-b", "main", cwd=repo)
    run("git", "add", ".", cwd=repo)
    run("git", "commit", "-q", "-m", "Demo project: stats helpers with two bugs", cwd=repo)
    tests = run("python3", "-m", "unittest", "discover", "-s", "tests", "-t", ".", "-q", cwd=repo, expect=1, quiet=True)
    print(f"({tests.stderr.strip().splitlines()[-1]} on main: the bugs and the missing function the tasks are about)")


def configure(repo: Path, root: Path) -> None:
    orch = repo / ".mosaic" / "orchestrator"
    config = json.loads((orch / "config.json").read_text())
    config["macp"]["worktree_base"] = str(root / "worktrees")
    config["land"]["gates"] = ["python3 -m unittest tests.test_stats tests.test_words"]
    config["runtimes"]["offline"] = {"command": [sys.executable, str(DEMO / "offline_agent.py")], "prompt": "stdin"}
    (orch / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"(config: worktrees under {root / 'worktrees'}; runtime 'offline' = {DEMO / 'offline_agent.py'})")
    legacy = {"id": "LEGACY-1", "title": "Smoke-test the package (a pre-MACP task)", "command": "python3 -c 'import stats; print(stats.mean([1, 2, 3]))'"}
    (orch / "tasks.json").write_text(json.dumps({"tasks": [legacy]}, indent=2) + "\n")
    print("(tasks.json: one legacy task without 'dispatch', as an older queue would have it)")


def submit_tasks(repo: Path) -> None:
    run("mosaic", "macp", "submit", "--task-id", "DEMO-1", "--title", "Fix median for even-length lists", "--type", "coding",
        "--dispatch", "exec", "--command", f"python3 {shlex.quote(str(FIX_MEDIAN))} && git commit -qam 'Fix median for even-length lists'",
        "--gate", "python3 -m unittest tests.test_stats", cwd=repo)
    run("mosaic", "macp", "submit", "--task-id", "DEMO-2", "--title", "Fix word_count on repeated spaces", "--type", "coding",
        "--dispatch", "yolo", "--runtime", "offline", "--brief", "docs/tasks/DEMO-2.md",
        "--gate", "python3 -m unittest tests.test_words", cwd=repo)
    run("mosaic", "macp", "submit", "--task-id", "DEMO-3", "--title", "Add stats.mode()", "--type", "coding", "--dispatch", "exec",
        "--max-attempts", "2", "--command",
        f"echo \"--- brief of attempt $MACP_ATTEMPT ---\"; cat \"$MACP_BRIEF\"; printf '{NAIVE_MODE}' >> stats.py; "
        "git commit -qam 'Add mode (naive)'",
        "--gate", "python3 -m unittest tests.test_mode", cwd=repo)
    run("mosaic", "macp", "submit", "--task-id", "DEMO-4", "--title", "Review the statistics module", "--type", "review",
        "--dispatch", "acp", "--runtime", "codex", "--brief", "docs/tasks/DEMO-4.md", "--gate", "test -s REVIEW.md", cwd=repo)


def report_acp(repo: Path) -> None:
    spawn = repo / ".mosaic" / "orchestrator" / "acp" / "DEMO-4.json"
    print(f"$ cat {spawn}")
    print(spawn.read_text(), end="")
    worktree = Path(json.loads(spawn.read_text())["cwd"])
    print(f"(an external agent works in {worktree} and reports back)")
    (worktree / "REVIEW.md").write_text("# Review\n\n- mean() and median() raise ZeroDivisionError/IndexError on [].\n")
    run("git", "add", "REVIEW.md", cwd=worktree)
    run("git", "commit", "-q", "-m", "Review notes", cwd=worktree)
    run("mosaic", "macp", "complete", "DEMO-4", "--exit-code", "0", "--summary", "review notes in REVIEW.md", cwd=repo)


def check_outcome(repo: Path) -> None:
    tasks = json.loads((repo / ".mosaic" / "orchestrator" / "tasks.json").read_text())["tasks"]
    got = {task["id"]: task["status"] for task in tasks}
    if got != EXPECTED:
        raise SystemExit(f"demo: unexpected outcome {got}, expected {EXPECTED}")


def main() -> int:
    root, keep = demo_root()
    try:
        run_demo(root)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
            print(f"(removed {root}; set DEMO_DIR=/some/empty/folder to keep the demo's repository)")
    return 0


def run_demo(root: Path) -> None:
    """Every step of the demo in ``root``; raises SystemExit when one surprises."""
    repo = root / "project"
    banner(f"MACP demo in {root}")
    build_project(repo)
    banner("Initialise MACP and queue the work")
    run("mosaic", "macp", "init", cwd=repo)
    configure(repo, root)
    submit_tasks(repo)
    run("mosaic", "macp", "status", cwd=repo)
    banner("Drain the queue (DEMO-3 is expected to end escalated: exit 1)")
    run("mosaic", "macp", "drain", cwd=repo, expect=1)
    banner("The acp task: its sessions_spawn parameters, then an external completion report")
    report_acp(repo)
    run("mosaic", "macp", "drain", cwd=repo)
    banner("Where things stand")
    run("mosaic", "macp", "status", cwd=repo)
    banner("History of DEMO-3 (gate failure, guided retry, escalation)")
    run("mosaic", "macp", "history", "--task-id", "DEMO-3", cwd=repo)
    brief = repo / ".mosaic" / "orchestrator" / "logs" / "DEMO-3" / "attempt-2" / "brief.md"
    print(f"$ cat {brief.relative_to(repo)}")
    print(brief.read_text(), end="")
    check_outcome(repo)
    banner("Land the completed work on main: combined, the stats and words tests run once on all of it, main fast-forwarded")
    run("mosaic", "macp", "land", "--all", "--batch", "3", cwd=repo)
    run("git", "log", "--oneline", "--first-parent", "-4", "main", cwd=repo)
    banner("Done")
    print(f"repository: {repo}\nresults:    {repo / '.mosaic' / 'orchestrator' / 'results'}\nbranches:")
    run("git", "branch", "--list", "feat/*", cwd=repo)


if __name__ == "__main__":
    sys.exit(main())
