"""Parallel workers (issue 12, docs/workers.md): up to N tasks at once in one controller.

Every test forces the case it checks. Concurrency is proven, never timed: a task waits
(bounded) for its partner's start marker, so it succeeds only if both ran at the same time.
Keeping tasks apart is proven from the event log: no two tasks of a group have overlapping
``task.started`` .. final-event spans.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from test_durability import alive, start_controller, wait_for

from macp.admission import admit
from macp.config import default_config
from macp.layout import Layout

FINAL_EVENTS = {"task.completed", "task.failed", "task.escalated", "task.retry.scheduled", "task.interrupted"}


def meet(marks: Path, me: str, partner: str, seconds: int = 60) -> str:
    """A shell command: mark that ``me`` started, then wait (bounded) until ``partner`` has
    started too; exit 1 when it never does -- which is what a serial run would give."""
    return (
        f'touch "{marks}/{me}"; i=0; while [ ! -e "{marks}/{partner}" ] && [ $i -lt {seconds * 10} ]; do sleep 0.1; i=$((i+1)); done; '
        f'[ -e "{marks}/{partner}" ]'
    )


def spans(events: list[dict]) -> dict[str, list[tuple[int, int]]]:
    """``{task id: [(index of task.started, index of the event that ended that attempt)]}``
    in event-log order."""
    open_at: dict[str, int] = {}
    found: dict[str, list[tuple[int, int]]] = {}
    for index, event in enumerate(events):
        task_id = event.get("task_id")
        if event["event_type"] == "task.started":
            open_at[task_id] = index
        elif event["event_type"] in FINAL_EVENTS and task_id in open_at:
            found.setdefault(task_id, []).append((open_at.pop(task_id), index))
    return found


def most_at_once(events: list[dict]) -> int:
    """The largest number of attempts in flight at the same time."""
    moments = sorted((index, change) for pairs in spans(events).values() for start, end in pairs for index, change in ((start, 1), (end, -1)))
    level = peak = 0
    for _index, change in moments:
        level += change
        peak = max(peak, level)
    return peak


def overlapping(events: list[dict], ids: set[str]) -> bool:
    """True when two of ``ids`` had attempts in flight at the same time."""
    attempts = sorted((start, end, task_id) for task_id, pairs in spans(events).items() if task_id in ids for start, end in pairs)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(attempts))


def test_two_workers_run_tasks_two_at_a_time(sandbox, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    pairs = [("A", "B"), ("B", "A"), ("C", "D"), ("D", "C")]
    sandbox.write_tasks({"tasks": [{"id": me, "dispatch": "exec", "command": meet(marks, me, partner)} for me, partner in pairs]})
    proc = sandbox.controller("--until-drained", "--workers", "2", check=True)
    assert [sandbox.task(task_id)["status"] for task_id in "ABCD"] == ["completed"] * 4, proc.stdout
    assert [sandbox.task(task_id)["attempts"] for task_id in "ABCD"] == [1] * 4
    events = sandbox.events()
    started = [event["task_id"] for event in events if event["event_type"] == "task.started"]
    assert started == ["A", "B", "C", "D"], "claims keep the serial order"
    assert overlapping(events, {"A", "B"}) and overlapping(events, {"C", "D"})
    assert most_at_once(events) == 2, "never more than two at once"
    assert "this run:" in proc.stdout


def test_worker_max_parallel_in_config_and_the_workers_option_agree(sandbox, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    sandbox.write_config({"worker": {"max_parallel": 2}})
    sandbox.write_tasks({"tasks": [{"id": "A", "dispatch": "exec", "command": meet(marks, "A", "B")},
                                   {"id": "B", "dispatch": "exec", "command": meet(marks, "B", "A")}]})
    sandbox.macp("drain", check=True)
    assert {task["status"] for task in sandbox.tasks()} == {"completed"}
    bad = sandbox.macp("drain", "--workers", "0")
    assert bad.returncode == 2 and "must be at least 1" in bad.stderr and "Traceback" not in bad.stderr


def test_an_exclusive_group_runs_one_task_at_a_time_while_others_run_beside_it(sandbox, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    sandbox.write_tasks({"tasks": [
        {"id": "G1", "dispatch": "exec", "exclusive_group": "db", "command": meet(marks, "G1", "F")},
        {"id": "G2", "dispatch": "exec", "exclusive_group": "db", "command": "true"},
        {"id": "G3", "dispatch": "exec", "exclusive_group": "db", "command": "true"},
        {"id": "F", "dispatch": "exec", "command": meet(marks, "F", "G1")},
    ]})
    sandbox.controller("--until-drained", "--workers", "3", check=True)
    assert {task["status"] for task in sandbox.tasks()} == {"completed"}
    events = sandbox.events()
    assert not overlapping(events, {"G1", "G2", "G3"}), "three free slots, yet one db task at a time"
    assert overlapping(events, {"G1", "F"}), "a task outside the group ran beside it"
    started = [event["task_id"] for event in events if event["event_type"] == "task.started"]
    assert started[:2] == ["G1", "F"], "G2 and G3 were passed over while G1 ran; F, next in order, was claimed"


def test_submit_sets_an_exclusive_group(sandbox):
    sandbox.macp("submit", "--task-id", "E", "--command", "true", "--dispatch", "exec", "--exclusive-group", "db", check=True)
    lines = json.dumps({"id": "F", "command": "true", "dispatch": "exec", "exclusive_group": "db"}) + "\n"
    sandbox.macp("submit", "--from", "-", input=lines, check=True)
    assert [sandbox.task(task_id)["exclusive_group"] for task_id in "EF"] == ["db", "db"]


def test_a_runtime_at_its_max_parallel_is_waited_for_not_swapped():
    config = default_config()
    config["runtimes"]["codex"]["max_parallel"] = 1
    owner = {"pid": 1, "host": "h", "started_at": "2026-01-01T00:00:00Z"}
    tasks = [
        {"id": "R", "status": "running", "dispatch": "yolo", "runtime": "codex", "attempt_runtime": "codex", "claim": owner},
        {"id": "C", "status": "pending", "dispatch": "yolo", "runtime": "codex"},
        {"id": "L", "status": "pending", "dispatch": "yolo", "runtime": "claude"},
    ]
    now = datetime(2026, 1, 1)
    admission = admit(tasks, config, {}, now, lambda task: "")
    assert admission.task is not None and admission.task["id"] == "L", "C waits for codex; L, on another runtime, is claimed"
    assert admission.holds == [], "passing C over changes nothing about it"
    config["runtimes"]["codex"]["max_parallel"] = 2
    admission = admit(tasks, config, {}, now, lambda task: "")
    assert admission.task is not None and (admission.task["id"], admission.runtime) == ("C", "codex")
    waiting_acp = {**tasks[0], "dispatch": "acp", "claim": None}  # its session runs elsewhere: no slot held
    config["runtimes"]["codex"]["max_parallel"] = 1
    admission = admit([waiting_acp, *tasks[1:]], config, {}, now, lambda task: "")
    assert admission.task is not None and admission.task["id"] == "C"


def start_two(sandbox, first: str, second: str, command: Callable[[str], str]) -> subprocess.Popen:
    """Queue two exec tasks (``command(task id)`` each) and start a 2-worker drain."""
    sandbox.write_tasks({"tasks": [{"id": task_id, "dispatch": "exec", "command": command(task_id)} for task_id in (first, second)]})
    return start_controller(sandbox, "--until-drained", "--workers", "2")


def two_running(sandbox, tmp_path):
    """Start a 2-worker drain of W1 and W2, each a worker with a child of its own that runs
    until stopped (and succeeds at once after ``second`` exists). Returns
    ``(controller, pids of both workers and their children, second)`` once all four run."""
    pids, second = tmp_path / "pids", tmp_path / "second-time"
    pids.mkdir()

    def command(task_id: str) -> str:
        return f'if [ -e "{second}" ]; then exit 0; fi; sleep 300 & echo $$ $! > "{pids}/{task_id}.tmp"; mv "{pids}/{task_id}.tmp" "{pids}/{task_id}"; wait'

    controller = start_two(sandbox, "W1", "W2", command)
    try:
        wait_for(lambda: (pids / "W1").exists() and (pids / "W2").exists(), timeout=60, what="both workers to start")
    except AssertionError:
        controller.kill()
        raise
    children = [int(pid) for task_id in ("W1", "W2") for pid in (pids / task_id).read_text().split()]
    assert all(alive(pid) for pid in children)
    return controller, children, second


def assert_both_complete_on_the_next_run(sandbox, second: Path) -> None:
    second.touch()
    sandbox.controller("--until-drained", "--workers", "2", check=True)
    assert [(sandbox.task(t)["status"], sandbox.task(t)["attempts"]) for t in ("W1", "W2")] == [("completed", 1)] * 2


def test_sigterm_with_two_tasks_running_stops_both_and_leaves_both_recoverable(sandbox, tmp_path):
    controller, children, second = two_running(sandbox, tmp_path)
    try:
        controller.send_signal(signal.SIGTERM)
        _out, err = controller.communicate(timeout=60)
    finally:
        if controller.poll() is None:
            controller.kill()
    assert controller.returncode == 143, err
    assert "Traceback" not in err
    assert not [pid for pid in children if alive(pid)], "every worker and its children were stopped"
    for task_id in ("W1", "W2"):
        task = sandbox.task(task_id)
        assert (task["status"], task["attempts"], task["claim"]) == ("pending", 0, None), task
        assert sandbox.event_types(task_id)[-1] == "task.interrupted"
    assert not (sandbox.orch / ".controller.lock").read_text(), "the lock was released cleanly"
    assert_both_complete_on_the_next_run(sandbox, second)


def test_sigkill_with_two_tasks_running_leaves_both_for_the_next_controller_to_recover(sandbox, tmp_path):
    controller, children, second = two_running(sandbox, tmp_path)
    controller.kill()
    controller.wait(timeout=30)
    assert all(alive(pid) for pid in children), "SIGKILL of the controller alone leaves its workers running"
    assert [sandbox.task(t)["status"] for t in ("W1", "W2")] == ["running", "running"]
    second.touch()
    proc = sandbox.controller("--until-drained", "--workers", "2", check=True)
    assert "process(es) left by the controller that died" in proc.stdout, "both workers and both children were found"
    assert not [pid for pid in children if alive(pid)]
    for task_id in ("W1", "W2"):
        assert (sandbox.task(task_id)["status"], sandbox.task(task_id)["attempts"]) == ("completed", 1)
        assert sandbox.event_types(task_id).count("task.recovered") == 1


def test_status_shows_each_running_task_with_its_attempt_elapsed_time_and_last_output(sandbox, tmp_path):
    release = tmp_path / "release"

    def command(task_id: str) -> str:
        return f'echo "{task_id} is halfway"; i=0; while [ ! -e "{release}" ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done'

    controller = start_two(sandbox, "S1", "S2", command)
    try:
        logs = [Layout(sandbox.repo).attempt_dir(task_id, 1) / "worker.log" for task_id in ("S1", "S2")]
        # The controller has copied each line to its log (not only: the worker printed it).
        wait_for(lambda: all(log.exists() and "halfway" in log.read_text() for log in logs), timeout=60, what="both logs to hold the line")
        status = json.loads(sandbox.macp("status", "--json", check=True).stdout)
        text = sandbox.macp("status", check=True).stdout
    finally:
        release.touch()
        controller.communicate(timeout=60)
    rows = {row["id"]: row for row in status["tasks"]}
    for task_id in ("S1", "S2"):
        row = rows[task_id]
        assert row["status"] == "running" and row["attempts"] == 1
        assert row["last_output"] == f"{task_id} is halfway"
        assert row["elapsed_seconds"] >= 0
        assert f"last output: {task_id} is halfway" in text
    assert controller.returncode == 0


def test_dry_run_shows_the_waves_for_n_workers(sandbox):
    sandbox.write_tasks({"tasks": [
        {"id": "A", "dispatch": "exec", "command": "true"},
        {"id": "B", "dispatch": "exec", "command": "true", "exclusive_group": "g"},
        {"id": "C", "dispatch": "exec", "command": "true", "exclusive_group": "g"},
        {"id": "D", "dispatch": "exec", "command": "true", "depends_on": ["A"]},
    ]})
    lines = sandbox.controller("--until-drained", "--dry-run", "--workers", "3", check=True).stdout.splitlines()
    assert lines[0] == "dry run: 4 task(s) would run, in 2 wave(s) of up to 3 at once (nothing was run)"
    assert [line for line in lines if line.startswith("wave ")] == ["wave 1: A, B", "wave 2: C, D"]
    serial = sandbox.controller("--until-drained", "--dry-run", check=True).stdout.splitlines()
    assert serial[0] == "dry run: 4 task(s) would run, in this order (nothing was run)"
    assert not [line for line in serial if line.startswith("wave ")]
    assert sandbox.tasks()[0].get("status", "pending") == "pending", "nothing ran"


def mixed_queue(flag_dir: Path) -> dict:
    """Tasks that end every way: completed (with a gate, and stacked on a dependency),
    completed on a retry, escalated by a gate, failed, escalated behind a failed
    dependency, and an exclusive group."""
    flaky = f'if [ -e "{flag_dir}/flaky" ]; then echo fixed > flaky.txt; else touch "{flag_dir}/flaky"; exit 1; fi'
    return {"tasks": [
        {"id": "ok", "dispatch": "exec", "command": "echo one > one.txt", "quality_gates": ["test -s one.txt"]},
        {"id": "flaky", "dispatch": "exec", "command": flaky, "max_attempts": 2},
        {"id": "gatefail", "dispatch": "exec", "command": "echo x > x.txt", "quality_gates": ["false"], "max_attempts": 1},
        {"id": "bad", "dispatch": "exec", "command": "exit 3", "max_attempts": 1},
        {"id": "child", "dispatch": "exec", "command": "cat one.txt > two.txt", "depends_on": ["ok"]},
        {"id": "orphan", "dispatch": "exec", "command": "true", "depends_on": ["bad"]},
        {"id": "g1", "dispatch": "exec", "command": "echo g1 > g.txt", "exclusive_group": "g"},
        {"id": "g2", "dispatch": "exec", "command": "echo g2 > g.txt", "exclusive_group": "g", "priority": 1},
        {"id": "legacy", "command": "true"},
    ]}


def outcome_of(sandbox) -> dict:
    """Per task: status, attempts, branch, the files its branch changed, and the event
    types recorded about it in order (timestamps and completion order aside)."""
    seen = {}
    for task in sandbox.tasks():
        result = sandbox.result(task["id"])
        seen[task["id"]] = {
            "status": task["status"],
            "attempts": task.get("attempts", 0),
            "branch": task.get("branch"),
            "stacked_on": task.get("stacked_on"),
            "result": (result["status"], result.get("exit_code"), sorted(result.get("files_changed") or [])),
            "events": sandbox.event_types(task["id"]),
        }
    return seen


def drained_with(tmp_path, counts: tuple[str, ...], queue, exit_code: int) -> list:
    """For each worker count: a fresh sandbox holding ``queue(world)``, drained with that
    many workers (which must exit ``exit_code``); returns the sandboxes."""
    from conftest import Sandbox

    drained = []
    for workers in counts:
        world = tmp_path / f"workers-{workers}"
        world.mkdir()
        sandbox = Sandbox(world)
        sandbox.write_tasks(queue(world))
        proc = sandbox.controller("--until-drained", "--workers", workers)
        assert proc.returncode == exit_code, proc.stdout + proc.stderr
        drained.append(sandbox)
    return drained


def test_a_parallel_run_ends_exactly_like_a_serial_run(tmp_path):
    # a task failed: exit 1 either way
    serial, parallel = (outcome_of(sandbox) for sandbox in drained_with(tmp_path, ("1", "3"), mixed_queue, 1))
    assert parallel == serial
    assert serial["flaky"]["attempts"] == 2 and serial["flaky"]["status"] == "completed"
    assert serial["gatefail"]["status"] == "escalated" and serial["bad"]["status"] == "failed"
    assert serial["orphan"]["status"] == "escalated" and serial["child"]["stacked_on"]


def test_timeouts_are_per_task_while_another_task_runs_on(sandbox, tmp_path):
    """T1 hangs and has a 1-second timeout; T2 can only finish once T1's timeout is
    recorded (it waits for T1's task.failed event), so both ran together and the timeout
    stopped T1 alone."""
    events = sandbox.orch / "events.ndjson"
    wait_for_t1 = (
        f'i=0; until grep "task.failed" "{events}" | grep -q \'"T1"\'; do [ $i -lt 600 ] || exit 1; sleep 0.1; i=$((i+1)); done'
    )
    sandbox.write_tasks({"tasks": [
        {"id": "T1", "dispatch": "exec", "command": "sleep 300", "timeout_seconds": 1},
        {"id": "T2", "dispatch": "exec", "command": wait_for_t1},
    ]})
    proc = sandbox.controller("--until-drained", "--workers", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert sandbox.task("T1")["status"] == "failed" and sandbox.result("T1")["timed_out"] is True
    assert sandbox.task("T2")["status"] == "completed" and sandbox.result("T2")["timed_out"] is False
    assert overlapping(sandbox.events(), {"T1", "T2"})


def test_a_command_that_cannot_be_set_up_fails_its_own_steps_only(tmp_path):
    """StepPool: the error creating one command's log is raised inside its generator at the
    yield (as a direct call would raise it); the other command runs to its end."""
    from macp.pool import Crashed, StepPool
    from macp.procs import Command

    blocker = tmp_path / "a-file"
    blocker.write_text("")

    def steps(log: Path, caught: list):
        try:
            result = yield Command(["/bin/sh", "-c", "echo done"], tmp_path, {"PATH": "/usr/bin:/bin"}, log, 30)
        except OSError as exc:
            caught.append(exc)
            raise
        return result

    caught: list = []
    pool = StepPool()
    pool.add("bad", steps(blocker / "log" / "worker.log", caught))  # its folder's parent is a file
    pool.add("good", steps(tmp_path / "logs" / "worker.log", []))
    outcomes = dict(pool.wait())
    if "good" not in outcomes:
        outcomes.update(pool.wait())
    assert isinstance(outcomes["bad"], Crashed) and isinstance(outcomes["bad"].error, OSError)
    assert caught == [outcomes["bad"].error], "the generator saw the error at its yield"
    assert outcomes["good"].exit_code == 0 and outcomes["good"].output_tail == "done\n"


def test_running_out_of_file_descriptors_hands_tasks_back_and_runs_fewer_at_once(sandbox):
    import resource

    def few_descriptors():
        resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))  # `ulimit -n 16`: room for two tasks at most

    sandbox.write_tasks({"tasks": [{"id": f"T{n}", "dispatch": "exec", "command": f"echo {n} > n.txt"} for n in range(6)]})
    proc = sandbox.run("mosaic-orchestrator-run", "--repo", str(sandbox.repo), "--until-drained", "--workers", "6", preexec_fn=few_descriptors)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Too many open files; up to" in proc.stdout, "the case is forced: some tasks met the limit"
    for task in sandbox.tasks():
        assert task["status"] == "completed" and task["attempts"] == 1, task
    handed_back = [e for e in sandbox.events() if e["event_type"] == "task.interrupted"]
    assert handed_back and all("attempt not counted" in e["message"] for e in handed_back)


def test_a_machine_too_small_for_even_one_task_stops_the_run_with_exit_74_and_counts_nothing(sandbox):
    import resource

    def no_room():
        resource.setrlimit(resource.RLIMIT_NOFILE, (9, 9))

    sandbox.write_tasks({"tasks": [{"id": "ONLY", "dispatch": "exec", "command": "true"}]})
    proc = sandbox.run("mosaic-orchestrator-run", "--repo", str(sandbox.repo), "--once", preexec_fn=no_room)
    assert proc.returncode == 74 and "the machine's limits were reached: Too many open files" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    sandbox.controller("--once", check=True)
    task = sandbox.task("ONLY")
    assert task["status"] == "completed" and task["attempts"] == 1, "the attempt that met the limit was not counted"


def test_tasks_sharing_a_branch_end_the_same_with_one_worker_or_two(tmp_path):
    def shared_branch(_world) -> dict:
        return {"tasks": [
            {"id": "FIRST", "dispatch": "exec", "command": "echo one >> shared.txt", "branch": "feat/shared"},
            {"id": "SECOND", "dispatch": "exec", "command": "echo two >> shared.txt", "branch": "feat/shared"},
        ]}

    outcomes = []
    for sandbox in drained_with(tmp_path, ("1", "2"), shared_branch, 0):
        outcomes.append({task["id"]: (task["status"], task["attempts"]) for task in sandbox.tasks()})
        assert sandbox.git("show", "feat/shared:shared.txt") == "one\ntwo\n", "one after the other, each on the other's work"
    assert outcomes[0] == outcomes[1] == {"FIRST": ("completed", 1), "SECOND": ("completed", 1)}
