#!/usr/bin/env python3
"""MACP's benchmark suite (issue 11): each measurement against a peer on the same machine.

Runs A and B interleaved (A B A B ...) for several rounds, takes medians, and prints a table of
medians and ratios; ``--json FILE`` writes the same as JSON. Peers that are not installed
(``nq``, ``jq``) are skipped with a note. Every measurement runs in a fresh temporary git
repository with its own HOME; nothing leaves the machine.

    python3 bench/run.py [--rounds 5] [--json bench/latest.json] [--only NAME]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run with this interpreter, as `python3 -c pass` is: a version manager's shim in front of
# `#!/usr/bin/env python3` would otherwise be measured too.
MOSAIC = [sys.executable, str(ROOT / "bin" / "mosaic")]
CONTROLLER = [sys.executable, str(ROOT / "bin" / "mosaic-orchestrator-run")]
IDENTITY = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@macp.invalid", "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "bench@macp.invalid"}


class Workspace:
    """A temporary git repository with its own HOME, for one measurement; removed at exit."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="macp-bench-"))
        atexit.register(self.close)
        self.repo = self.root / "repo"
        # As users run it: with Python's bytecode cache (a CI box may switch it off).
        self.env = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}, **IDENTITY, "HOME": str(self.root / "home")}
        self.run(["git", "init", "-q", "-b", "main", str(self.repo)], cwd=self.root)
        self.run(["git", "commit", "-q", "--allow-empty", "-m", "init"])
        (self.repo / ".mosaic" / "orchestrator").mkdir(parents=True)

    def run(self, argv: list[str], cwd: Path | None = None, stdin: str | None = None) -> None:
        subprocess.run(argv, cwd=cwd or self.repo, env=self.env, input=stdin, text=True, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def tasks(self, tasks: list[dict]) -> None:
        (self.repo / ".mosaic" / "orchestrator" / "tasks.json").write_text(json.dumps({"tasks": tasks}))

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def legacy_tasks(count: int, start: int = 0, status: str = "pending") -> list[dict]:
    return [{"id": f"t{n}", "command": "true", "status": status} for n in range(start, start + count)]


# -- measurements: each returns seconds per unit, for MACP (A) and its peer (B or None) -------


def drain_per_task(queued_finished: int, count: int = 50, queued_pending: int = 0) -> Callable[[], float]:
    """Drain ``count`` trivial legacy tasks with ``queued_finished`` finished ones in the queue
    before them, and ``queued_pending`` pending ones after them that wait for a task that
    never runs (so the queue stays that long for the whole drain)."""

    def measure() -> float:
        ws = Workspace()
        try:
            waiting = [{**task, "depends_on": ["gate"]} for task in legacy_tasks(queued_pending, start=queued_finished + count)]
            gate = [{"id": "gate", "command": "true", "status": "pending", "not_before": "2999-01-01T00:00:00Z"}] if waiting else []
            ws.tasks(legacy_tasks(queued_finished, status="completed") + legacy_tasks(count, start=queued_finished) + gate + waiting)
            return timed(lambda: ws.run([*CONTROLLER, "--repo", str(ws.repo), "--until-drained"])) / count
        finally:
            ws.close()

    return measure


def one_submit(queued_finished: int, count: int = 10) -> Callable[[], float]:
    """``count`` single ``submit`` commands into a queue of ``queued_finished`` finished tasks,
    per submit."""

    def measure() -> float:
        ws = Workspace()
        try:
            ws.tasks(legacy_tasks(queued_finished, status="completed"))

            def submits() -> None:
                for n in range(count):
                    ws.run([*MOSAIC, "macp", "submit", "--repo", str(ws.repo), "--task-id", f"s{n}", "--command", "true"])

            return timed(submits) / count
        finally:
            ws.close()

    return measure


def worktree_tasks(files: int = 200, count: int = 10) -> tuple[Callable[[], float], Callable[[], float]]:
    """``count`` exec tasks, each in its own worktree of a ``files``-file repository, against
    a shell loop doing the same ``git worktree add``, run and ``git worktree remove``."""

    def workspace() -> Workspace:
        ws = Workspace()
        for n in range(files):
            (ws.repo / f"f{n}.txt").write_text(f"{n}\n")
        ws.run(["git", "add", "-A"])
        ws.run(["git", "commit", "-q", "-m", "files"])
        return ws

    def macp() -> float:
        ws = workspace()
        try:
            ws.tasks([{"id": f"w{n}", "dispatch": "exec", "command": "true"} for n in range(count)])
            return timed(lambda: ws.run([*CONTROLLER, "--repo", str(ws.repo), "--until-drained"])) / count
        finally:
            ws.close()

    def loop() -> float:
        ws = workspace()
        script = (f'for n in $(seq {count}); do git worktree add -q -b feat/w$n "$HOME/w$n" HEAD && (cd "$HOME/w$n" && true) '
                  '&& git worktree remove "$HOME/w$n"; done')
        try:
            return timed(lambda: ws.run(["sh", "-c", script])) / count
        finally:
            ws.close()

    return macp, loop


def nq_jobs(count: int, wait: bool) -> Callable[[], float] | None:
    """``count`` trivial jobs through ``nq``, per job: enqueued and, with ``wait``, run to
    the end (``nq -w``); None when ``nq`` is not installed."""
    if not shutil.which("nq"):
        return None

    def measure() -> float:
        folder = Path(tempfile.mkdtemp(prefix="nq-bench-"))
        env = {**os.environ, "NQDIR": str(folder)}

        def jobs() -> None:
            for _ in range(count):
                subprocess.run(["nq", "true"], env=env, check=True, stdout=subprocess.DEVNULL)
            if wait:
                subprocess.run(["nq", "-w"], env=env, check=True, stdout=subprocess.DEVNULL)

        try:
            return timed(jobs) / count
        finally:
            subprocess.run(["nq", "-w"], env=env, check=False, stdout=subprocess.DEVNULL)
            shutil.rmtree(folder, ignore_errors=True)

    return measure


def batch_submit(count: int = 1000) -> Callable[[], float]:
    """``submit --from`` of ``count`` tasks, per task."""

    def measure() -> float:
        ws = Workspace()
        try:
            ws.tasks([])
            lines = "\n".join(json.dumps({"id": f"b{n}", "command": "true"}) for n in range(count))
            return timed(lambda: ws.run([*MOSAIC, "macp", "submit", "--repo", str(ws.repo), "--from", "-"], stdin=lines)) / count
        finally:
            ws.close()

    return measure


def history_of_one_task(events: int = 200_000) -> tuple[Callable[[], float], Callable[[], float]]:
    """``history --task-id`` over ``events`` events, against ``grep -F`` of the same file."""
    ws = Workspace()
    ws.tasks(legacy_tasks(1))
    line = '{{"event_id":"{n:032x}","event_type":"task.updated","task_id":"t{t}","status":"pending","timestamp":"2026-11-23T00:00:00.000Z","source":"controller","attempt":0,"message":"x","metadata":{{}}}}'
    events_file = ws.repo / ".mosaic" / "orchestrator" / "events.ndjson"
    events_file.write_text("\n".join(line.format(n=n, t=n % 1000) for n in range(events)) + "\n")
    macp = lambda: timed(lambda: ws.run([*MOSAIC, "macp", "history", "--repo", str(ws.repo), "--task-id", "t0"]))  # noqa: E731
    grep = lambda: timed(lambda: subprocess.run(["grep", "-F", '"task_id":"t0"', str(events_file)], stdout=subprocess.DEVNULL, check=False))  # noqa: E731
    return macp, grep


def status_json(tasks: int = 10_000) -> tuple[Callable[[], float], Callable[[], float] | None]:
    """``status --json`` on ``tasks`` tasks, against ``jq '.tasks|length'`` of tasks.json."""
    ws = Workspace()
    ws.tasks(legacy_tasks(tasks, status="completed"))
    tasks_file = ws.repo / ".mosaic" / "orchestrator" / "tasks.json"
    macp = lambda: timed(lambda: ws.run([*MOSAIC, "macp", "status", "--json", "--repo", str(ws.repo)]))  # noqa: E731
    if not shutil.which("jq"):
        return macp, None
    jq = lambda: timed(lambda: subprocess.run(["jq", ".tasks|length", str(tasks_file)], stdout=subprocess.DEVNULL, check=True))  # noqa: E731
    return macp, jq


def start_up() -> tuple[Callable[[], float], Callable[[], float]]:
    """A read command's start-up (``status`` of an empty queue) against ``python3 -c pass``."""
    ws = Workspace()
    ws.tasks([])
    macp = lambda: timed(lambda: ws.run([*MOSAIC, "macp", "status", "--repo", str(ws.repo)]))  # noqa: E731
    bare = lambda: timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True))  # noqa: E731
    return macp, bare


def parallel_sleeps(workers: int = 2, count: int = 4, seconds: int = 2) -> tuple[Callable[[], float], Callable[[], float]]:
    """``count`` exec tasks of ``sleep seconds`` drained with ``--workers workers`` (issue 12:
    four 2-second tasks in about 4 seconds), against ``xargs -P workers`` running the same
    sleeps. Whole-run seconds."""

    def macp() -> float:
        ws = Workspace()
        try:
            ws.tasks([{"id": f"p{n}", "dispatch": "exec", "command": f"sleep {seconds}"} for n in range(count)])
            return timed(lambda: ws.run([*CONTROLLER, "--repo", str(ws.repo), "--until-drained", "--workers", str(workers)]))
        finally:
            ws.close()

    def xargs() -> float:
        jobs = "".join(f"{seconds}\n" for _ in range(count))
        return timed(lambda: subprocess.run(["xargs", "-P", str(workers), "-n", "1", "sleep"], input=jobs, text=True, check=True))

    return macp, xargs


def matrix_delivery(count: int = 30) -> tuple[Callable[[], float] | None, Callable[[], float] | None]:
    """What Matrix delivery adds to a drain of ``count`` trivial tasks (the drain with the
    transport on, minus the same drain with it off; issue 13), against the homeserver's own
    cost: the same messages sent to a new room over one keep-alive connection. A real Synapse
    on 127.0.0.1 (``make synapse``); ``(None, None)`` when it is not installed."""
    sys.path.insert(0, str(ROOT / "tests"))
    import http.client
    from urllib.parse import quote

    from synapse_harness import Synapse, available

    if not available():
        return None, None
    server = Synapse(Path(tempfile.mkdtemp(prefix="macp-bench-synapse-")))
    server.start()
    atexit.register(server.stop)
    bot = server.register("bench", admin=True)
    sent: list[tuple[str, dict]] = []  # (Matrix event id, content) of the last drain's messages

    def drain(room_id: str | None) -> float:
        ws = Workspace()
        try:
            ws.tasks(legacy_tasks(count))
            if room_id:
                config = {"enabled": True, "transport": "matrix", "matrix": {"homeserver": server.url, "room_id": room_id}}
                (ws.repo / ".mosaic" / "orchestrator" / "config.json").write_text(json.dumps(config))
                ws.env["MACP_MATRIX_TOKEN"] = bot["access_token"]
            return timed(lambda: ws.run([*CONTROLLER, "--repo", str(ws.repo), "--until-drained"]))
        finally:
            ws.close()

    def macp() -> float:
        room_id = server.create_room(bot["access_token"])
        added = drain(room_id) - drain(None)
        sent[:] = [(message["event_id"], message["content"]) for message in server.messages(bot["access_token"], room_id)]
        return added

    def homeserver() -> float:
        room_id = server.create_room(bot["access_token"])
        connection = http.client.HTTPConnection("127.0.0.1", server.port)
        headers = {"Authorization": f"Bearer {bot['access_token']}", "Content-Type": "application/json"}
        roots: dict[str, str] = {}  # thread root in the drain's room -> the same message here

        def send_all() -> None:
            for number, (original, content) in enumerate(sent):
                relation = content.get("m.relates_to")
                body = dict(content)
                if relation:
                    root = roots[relation["event_id"]]
                    body["m.relates_to"] = {**relation, "event_id": root, "m.in_reply_to": {"event_id": root}}
                path = f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/send/m.room.message/floor{number}"
                connection.request("PUT", path, body=json.dumps(body), headers=headers)
                roots[original] = json.loads(connection.getresponse().read())["event_id"]

        try:
            return timed(send_all)
        finally:
            connection.close()

    return macp, homeserver


def landing(count: int = 20, batch: int = 5, gate_seconds: float = 0.2) -> tuple[Callable[[], float], Callable[[], float]]:
    """Landing ``count`` independent completed tasks with ``--batch`` ``batch`` (issue 25),
    each gate run taking ``gate_seconds``, against a shell loop that merges each branch and
    runs the gate after each merge. Raises AssertionError when land runs the gates more than
    ``count / batch + 2`` times (issue 25: at most 6 for 20 tasks in batches of 5)."""
    gate = f"sleep {gate_seconds}"

    def drained() -> Workspace:
        ws = Workspace()
        (ws.repo / ".mosaic" / "orchestrator" / "config.json").write_text(json.dumps({"land": {"gates": [gate]}}))
        ws.tasks([{"id": f"l{n}", "dispatch": "exec", "command": f"echo {n} > l{n}.txt"} for n in range(count)])
        ws.run([*CONTROLLER, "--repo", str(ws.repo), "--until-drained"])
        return ws

    def macp() -> float:
        ws = drained()
        try:
            out = ws.root / "land.json"
            started = time.perf_counter()
            with out.open("w") as handle:
                subprocess.run([*MOSAIC, "macp", "land", "--all", "--batch", str(batch), "--json"], cwd=ws.repo, env=ws.env, stdout=handle,
                               stderr=subprocess.DEVNULL, check=True)
            seconds = time.perf_counter() - started
            runs = json.loads(out.read_text())["gate_runs"]
            assert runs <= count // batch + 2, f"land ran the gates {runs} times"
            return seconds
        finally:
            ws.close()

    def loop() -> float:
        ws = drained()
        script = f'for branch in $(git for-each-ref --format="%(refname)" refs/heads/feat/); do git merge -q --no-ff -m "$branch" "$branch" && {gate} || exit 1; done'
        try:
            return timed(lambda: ws.run(["sh", "-c", script]))
        finally:
            ws.close()

    return macp, loop


_CLUSTER: list = []  # the Slurm cluster the Slurm rows share, started on first use


def slurm_cluster():
    """A real one-host Slurm cluster (tests/slurm_harness.py; ``make slurm``), started once
    and stopped at exit; None where it cannot run here."""
    sys.path.insert(0, str(ROOT / "tests"))
    from slurm_harness import SlurmCluster, why_not_here

    if why_not_here() is not None:
        return None
    if not _CLUSTER:
        cluster = SlurmCluster(Path(tempfile.mkdtemp(prefix="macp-bench-slurm-")), nodes=2)
        cluster.start()
        atexit.register(cluster.stop)
        _CLUSTER.append(cluster)
    return _CLUSTER[0]


def slurm_tasks(count: int = 20) -> tuple[Callable[[], float] | None, Callable[[], float] | None]:
    """``count`` trivial tasks drained through the Slurm executor, one at a time (issue 24),
    against a shell loop of ``sbatch --wait`` running the same command on the same cluster."""
    cluster = slurm_cluster()
    if cluster is None:
        return None, None

    def macp() -> float:
        ws = Workspace()
        try:
            ws.env["SLURM_CONF"] = cluster.env["SLURM_CONF"]
            ws.tasks(legacy_tasks(count))
            return timed(lambda: ws.run([*CONTROLLER, "--repo", str(ws.repo), "--until-drained", "--executor", "slurm"]))
        finally:
            ws.close()

    def loop() -> float:
        script = f"for i in $(seq {count}); do sbatch --wait --quiet --output=/dev/null --wrap true || exit 1; done"
        return timed(lambda: subprocess.run(["sh", "-c", script], env=cluster.env, check=True, stdout=subprocess.DEVNULL))

    return macp, loop


def slurm_polling(jobs: int = 200) -> tuple[Callable[[], float] | None, Callable[[], float] | None]:
    """The controller's cost of one poll round over ``jobs`` jobs (held, so they stay in the
    queue): :meth:`macp.slurm.SlurmExecutor.states`, one ``squeue`` and its parsing,
    against that ``squeue`` call alone."""
    cluster = slurm_cluster()
    if cluster is None:
        return None, None
    sys.path.insert(0, str(ROOT / "tools" / "orchestrator-matrix"))
    from macp.slurm import SlurmExecutor, SlurmSettings

    ids = [cluster.run("sbatch", "--parsable", "--hold", "--output=/dev/null", "--wrap", "true").stdout.strip() for _ in range(jobs)]
    atexit.register(lambda: cluster.run("scancel", *ids, check=False))
    os.environ["SLURM_CONF"] = cluster.env["SLURM_CONF"]
    executor = SlurmExecutor(SlurmSettings(), ROOT)
    argv = ["squeue", "-h", "--states=all", "-o", "%i|%T", "-j", ",".join(ids)]

    def macp() -> float:
        return timed(lambda: executor.states(ids))

    def squeue() -> float:
        return timed(lambda: subprocess.run(argv, env=cluster.env, check=True, stdout=subprocess.DEVNULL))

    return macp, squeue


def measurements() -> dict[str, Callable[[], tuple[Callable[[], float] | None, Callable[[], float] | None, str, float]]]:
    """name -> a builder of (MACP, peer or None, what the peer is, goal ratio)."""
    return {
        "drain per trivial task, no worktree (s)": lambda: (drain_per_task(0, 50), nq_jobs(50, wait=True), "nq", 3.0),
        "batch submit (--from) per task (s)": lambda: (batch_submit(), nq_jobs(1000, wait=False), "nq", 3.0),
        "worktree task, 200-file repository (s)": lambda: (*worktree_tasks(), "git worktree loop", 1.2),
        "drain per task, 10,000 finished queued vs 100 (s)": lambda: (drain_per_task(10_000), drain_per_task(100), "MACP with 100", 1.5),
        "drain per task, 10,000 pending queued vs 100 (s)": lambda: (drain_per_task(0, queued_pending=10_000), drain_per_task(0, queued_pending=100),
                                                               "MACP with 100", 1.5),
        "one submit, 10,000 finished queued vs 100 (s)": lambda: (one_submit(10_000), one_submit(100), "MACP with 100", 1.5),
        "history --task-id over 200k events (s)": lambda: (*history_of_one_task(), "grep -F", 2.0),
        "status --json on 10,000 tasks (s)": lambda: (*status_json(), "jq", 1.5),
        "start-up of a read command (s)": lambda: (*start_up(), "python3 -c pass", 2.0),
        "four 2-s tasks with --workers 2, whole run (s)": lambda: (*parallel_sleeps(), "xargs -P 2", 1.25),
        "Matrix delivery added to a drain of 30 tasks (s)": lambda: (*matrix_delivery(), "Synapse accepting them", 1.5),
        "land 20 tasks with --batch 5, gates 0.2 s (s)": lambda: (*landing(), "merge + gate loop", 1.0),
        "20 trivial tasks through Slurm, whole run (s)": lambda: (*slurm_tasks(), "sbatch --wait loop", 1.5),
        "one poll round over 200 Slurm jobs (s)": lambda: (*slurm_polling(), "squeue alone", 1.5),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="MACP benchmarks against peers: medians of interleaved rounds.")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per measurement (default: 5)")
    parser.add_argument("--json", metavar="FILE", help="also write the table as JSON (default: none)")
    parser.add_argument("--only", metavar="TEXT", help="run only measurements whose name contains TEXT (default: all)")
    args = parser.parse_args()
    rows = []
    for name, build in measurements().items():
        if args.only and args.only not in name:
            continue
        macp, peer, peer_name, goal = build()
        if macp is None:
            print(f"{name:<52} skipped: {peer_name} is not installed", flush=True)
            continue
        a, b = [], []
        for _ in range(args.rounds):
            a.append(macp())
            if peer is not None:
                b.append(peer())
        row = {"measurement": name, "macp": statistics.median(a), "peer": peer_name,
               "peer_median": statistics.median(b) if b else None, "goal_ratio": goal}
        row["ratio"] = row["macp"] / row["peer_median"] if b and row["peer_median"] else None
        row["met"] = row["ratio"] is not None and row["ratio"] <= goal
        rows.append(row)
        peer_text = f"{row['peer_median'] * 1000:9.2f} ms" if b else "  (peer not installed)"
        ratio = f"{row['ratio']:6.1f}x (goal {goal}x{', met' if row['met'] else ''})" if row["ratio"] else ""
        print(f"{name:<52} {row['macp'] * 1000:9.2f} ms  vs {peer_name:<16}{peer_text}  {ratio}", flush=True)
    if args.json:
        machine = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": sys.platform}
        Path(args.json).write_text(json.dumps({"machine": machine, "rounds": args.rounds, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
