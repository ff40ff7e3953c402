#!/usr/bin/env python3
"""Fault injection: SIGKILL the MACP controller at random moments while it drains, restart it,
and check after every kill that nothing was lost.

    python3 tests/faults/crash_drain.py --tasks 40 --rounds 60 --seed 7

Builds a throwaway git repository, queues ``--tasks`` exec tasks through ``mosaic macp
submit`` (each appends its id to a log outside the repository and sleeps briefly). The first
kill is forced: the first task's worker marks that it runs and waits, and the controller is
killed then, so a recovery of an interrupted attempt always happens. Then the controller is
started again and again (``mosaic-orchestrator-run --until-drained``) and killed with
SIGKILL after a random delay. After every round: tasks.json parses, and the queue (tasks.json
with the journal replayed) has every task valid against
task.schema.json, the set of task ids is exactly the queued one (nothing lost, nothing
duplicated). At the end, one uninterrupted drain must finish the queue: every task
``completed``, none ``running``, each task's last logged status ``completed``, and no process
of the run left alive. Prints a summary (kills, recoveries, executions) and exits 1 on any
violation.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "orchestrator-matrix"))

from macp.errors import MacpError  # noqa: E402
from macp.layout import Layout  # noqa: E402
from macp.taskstore import load_tasks  # noqa: E402
from protocol.schemas import schema_errors  # noqa: E402

CONTROLLER = ROOT / "bin" / "mosaic-orchestrator-run"
MOSAIC = ROOT / "bin" / "mosaic"


class Violation(AssertionError):
    """An invariant broke."""


def make_world(root: Path) -> tuple[Path, dict[str, str]]:
    """A git repository with one commit, and the environment to run MACP in."""
    repo = root / "repo"
    repo.mkdir(parents=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MACP_", "GIT_"))},
        "HOME": str(root / "home"),
        "GIT_AUTHOR_NAME": "fault",
        "GIT_AUTHOR_EMAIL": "fault@macp.invalid",
        "GIT_COMMITTER_NAME": "fault",
        "GIT_COMMITTER_EMAIL": "fault@macp.invalid",
        "RUNS_LOG": str(root / "runs.log"),
        "STARTED": str(root / "first-task-started"),
        "RELEASE": str(root / "first-task-released"),
    }
    for argv in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "start"]):
        subprocess.run(["git", *argv], cwd=repo, env=env, check=True)
    return repo, env


# Every worker logs its run; the first task's first run marks that it started and then waits
# (bounded) until the forced kill has happened.
WORKER = (
    'echo "$MACP_TASK_ID" >> "$RUNS_LOG"; '
    'if [ "$MACP_TASK_ID" = T000 ] && [ ! -e "$RELEASE" ]; then touch "$STARTED"; sleep 60; fi; sleep 0.05'
)
FORCED_TASK = "T000"


def queue(repo: Path, env: dict[str, str], count: int) -> list[str]:
    ids = [f"T{number:03d}" for number in range(count)]
    for task_id in ids:
        subprocess.run(
            [str(MOSAIC), "macp", "submit", "--task-id", task_id, "--command", WORKER],
            cwd=repo, env=env, check=True, capture_output=True,
        )
    return ids


def forced_kill(repo: Path, env: dict[str, str]) -> None:
    """Kill the controller while the first task's worker is known to run (bounded wait)."""
    proc = run_controller(repo, env)
    started = Path(env["STARTED"])
    deadline = time.monotonic() + 120
    while not started.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise Violation(f"the first task never started (controller exit {proc.poll()})")
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    Path(env["RELEASE"]).touch()


def tasks_of(repo: Path) -> list[dict]:
    """The queue as any MACP command reads it after the kill: the tasks.json checkpoint (which
    must parse on its own) with the run's journal replayed on top."""
    text = (repo / ".mosaic" / "orchestrator" / "tasks.json").read_text()
    try:
        json.loads(text)["tasks"]
        return load_tasks(Layout(repo)).tasks
    except (ValueError, KeyError, MacpError) as exc:
        raise Violation(f"the queue does not read back: {exc}") from None


def check_queue(repo: Path, ids: list[str]) -> list[dict]:
    """tasks.json parses, validates, and holds exactly ``ids`` once each."""
    tasks = tasks_of(repo)
    for task in tasks:
        errors = schema_errors("task", task)
        if errors:
            raise Violation(f"task {task.get('id')} is invalid: {errors[0]}")
    seen = Counter(task["id"] for task in tasks)
    if sorted(seen) != sorted(ids) or max(seen.values()) != 1:
        raise Violation(f"queue changed: {dict(seen)}")
    return tasks


def run_controller(repo: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [str(CONTROLLER), "--repo", str(repo), "--until-drained"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )


def leftovers(env: dict[str, str]) -> list[int]:
    """Processes of this run still alive (they carry RUNS_LOG in their environment)."""
    needle = f"RUNS_LOG={env['RUNS_LOG']}".encode()
    alive = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if needle in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                    state = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b") ", 1)[1][:1]
                    if state != b"Z":
                        alive.append(int(entry))
            except OSError:
                continue
    return alive


def crash_drain(tasks: int, rounds: int, seed: int, max_delay: float, root: Path) -> dict:
    """Run the experiment in ``root``; return the summary. Raises Violation on a broken invariant."""
    rng = random.Random(seed)
    repo, env = make_world(root)
    ids = queue(repo, env, tasks)
    forced_kill(repo, env)
    kills = 1
    for _ in range(rounds):
        proc = run_controller(repo, env)
        time.sleep(rng.uniform(0, max_delay))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        _, stderr = proc.communicate()
        if proc.returncode not in (0, -signal.SIGKILL):
            raise Violation(f"controller exited {proc.returncode}: {stderr.decode()[-500:]}")
        if all(task.get("status") == "completed" for task in check_queue(repo, ids)):
            break
    final = run_controller(repo, env)
    _, stderr = final.communicate(timeout=300)
    if final.returncode != 0:
        raise Violation(f"final drain exited {final.returncode}: {stderr.decode()[-500:]}")
    tasks_after = check_queue(repo, ids)
    unfinished = [t["id"] for t in tasks_after if t.get("status") != "completed"]
    if unfinished:
        raise Violation(f"not completed after the final drain: {unfinished}")
    events = [json.loads(line) for line in (repo / ".mosaic" / "orchestrator" / "events.ndjson").read_text().splitlines()]
    last_status = {e["task_id"]: e["status"] for e in events if e.get("task_id")}
    wrong = {task_id: status for task_id, status in last_status.items() if status != "completed"}
    if wrong or sorted(last_status) != sorted(ids):
        raise Violation(f"the event log does not end with every task completed: {wrong}")
    deadline = time.monotonic() + 30
    while (alive := leftovers(env)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive:
        raise Violation(f"processes of the run are still alive: {alive}")
    runs = Counter(Path(env["RUNS_LOG"]).read_text().split()) if Path(env["RUNS_LOG"]).exists() else Counter()
    return {
        "tasks": tasks,
        "kills": kills,
        "recoveries": sum(1 for e in events if e["event_type"] == "task.recovered"),
        "interrupted_logged_on_recovery": sum(1 for e in events if "logged on recovery" in e.get("message", "")),
        "executions": sum(runs.values()),
        "forced_task_runs": runs[FORCED_TASK],
        "forced_task_attempts": next(t["attempts"] for t in tasks_after if t["id"] == FORCED_TASK),
        "tasks_run_more_than_once": sum(1 for count in runs.values() if count > 1),
        "events": len(events),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-delay", type=float, default=0.4, help="longest wait before a kill (seconds)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder for inspection")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="macp-crash-"))
    try:
        summary = crash_drain(args.tasks, args.rounds, args.seed, args.max_delay, root)
    except Violation as exc:
        print(f"VIOLATION: {exc} (state kept in {root})", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    if not args.keep:
        subprocess.run(["rm", "-rf", str(root)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
