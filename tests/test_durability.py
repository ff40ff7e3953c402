"""Never lose a task: locks, atomic state, crash recovery, timeouts, signals, bounded output.

These tests inject the faults for real: SIGKILL and SIGTERM to the controller, concurrent
submitters and controllers, hanging grandchildren, torn log lines, output floods.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import BIN, ROOT

sys.path.insert(0, str(ROOT / "tests" / "faults"))
from crash_drain import crash_drain


def wait_for(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b") ", 1)[1][:1]
    except (OSError, IndexError):
        return False
    return state != b"Z"


def held_command(release: Path, started: Path | None = None) -> str:
    """A shell command that (optionally) marks that it started, then blocks until the test
    creates ``release`` (bounded: 120 s), so the test decides when the task may end."""
    mark = f'touch "{started}"; ' if started else ""
    return f'{mark}i=0; while [ ! -e "{release}" ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done'


def default_sigint() -> None:
    """In a child: SIGINT back to its default action, as a terminal's foreground job has it
    (a test run started in the background inherits it ignored, and so would the child)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_controller(sandbox, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "mosaic-orchestrator-run"), "--repo", str(sandbox.repo), *args],
        env=sandbox.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


@pytest.mark.slow
def test_sigkill_at_random_moments_never_loses_or_duplicates_a_task(tmp_path):
    summary = crash_drain(tasks=12, rounds=25, seed=11, max_delay=0.3, root=tmp_path)
    assert summary["kills"] >= 1, "the first kill is forced while a worker runs"
    assert summary["forced_task_runs"] >= 2 and summary["forced_task_attempts"] == 1, (
        "the attempt cut short by the forced kill ran again and was not counted"
    )
    assert summary["executions"] >= 12


@pytest.mark.slow
def test_concurrent_submitters_while_a_controller_drains(sandbox):
    sandbox.macp("init", check=True)
    submitters = [
        subprocess.Popen(
            ["/bin/sh", "-c", f'for i in 1 2 3 4 5 6; do "{BIN}/mosaic" macp submit --task-id S{n}-$i --command true || exit 1; done'],
            cwd=sandbox.repo, env=sandbox.env, stderr=subprocess.PIPE, text=True,
        )
        for n in range(6)
    ]
    expected = {f"S{n}-{i}" for n in range(6) for i in range(1, 7)}
    while any(p.poll() is None for p in submitters) or any(t.get("status") != "completed" for t in sandbox.tasks()):
        sandbox.controller("--until-drained", "--wait", check=True)
    assert all(p.returncode == 0 for p in submitters), [p.stderr.read() for p in submitters]
    tasks = sandbox.tasks()
    assert sorted(t["id"] for t in tasks) == sorted(expected)
    assert {t["status"] for t in tasks} == {"completed"}
    assert sum(1 for e in sandbox.events() if e["event_type"] == "task.submitted") == len(expected)


def test_two_controllers_started_together_run_each_command_once(sandbox, tmp_path):
    log, release = tmp_path / "runs.log", tmp_path / "release"
    first_task = f'echo T0 >> "{log}"; ' + held_command(release)
    sandbox.write_tasks({"tasks": [{"id": "T0", "dispatch": "exec", "command": first_task}] + [
        {"id": f"T{n}", "dispatch": "exec", "command": f'echo T{n} >> "{log}"'} for n in range(1, 6)
    ]})
    controllers = [start_controller(sandbox, "--until-drained"), start_controller(sandbox, "--until-drained")]
    wait_for(lambda: any(p.poll() is not None for p in controllers), timeout=60, what="one controller to give up")
    busy = next(p for p in controllers if p.poll() is not None)
    holder = next(p for p in controllers if p is not busy)
    _, busy_err = busy.communicate(timeout=30)
    assert busy.returncode == 75, busy_err
    assert "another controller is running on this repository" in busy_err and f"on {socket.gethostname()} since" in busy_err
    release.touch()
    _, holder_err = holder.communicate(timeout=60)
    assert holder.returncode == 0, holder_err
    assert sorted(log.read_text().split()) == [f"T{n}" for n in range(6)]
    third = start_controller(sandbox, "--until-drained", "--wait")
    assert third.wait(timeout=30) == 0
    assert sorted(log.read_text().split()) == [f"T{n}" for n in range(6)], "a waiting controller finds nothing to redo"


def test_busy_controller_exits_75_at_once_and_wait_waits(sandbox, tmp_path):
    release = tmp_path / "release"
    sandbox.write_tasks({"tasks": [{"id": "slow", "command": held_command(release)}, {"id": "next", "command": "true"}]})
    holder = start_controller(sandbox, "--until-drained")
    wait_for(lambda: sandbox.task("slow").get("status") == "running", what="slow to start")
    busy = sandbox.controller("--once")
    assert busy.returncode == 75, busy.stderr
    assert sandbox.task("slow")["status"] == "running", "it gave up while the holder was still busy"
    assert f"pid {holder.pid} on" in busy.stderr and len(busy.stderr.splitlines()) == 1
    waiting = start_controller(sandbox, "--until-drained", "--wait")
    release.touch()
    assert waiting.wait(timeout=60) == 0
    assert holder.wait(timeout=30) == 0
    assert {t["status"] for t in sandbox.tasks()} == {"completed"}


def test_status_and_submit_never_wait_for_a_running_task(sandbox, tmp_path):
    release = tmp_path / "release"
    sandbox.write_tasks({"tasks": [{"id": "slow", "command": held_command(release)}]})
    holder = start_controller(sandbox, "--once")
    wait_for(lambda: sandbox.task("slow").get("status") == "running", what="slow to start")
    assert sandbox.macp("status").returncode == 0
    assert sandbox.macp("submit", "--task-id", "quick", "--command", "true").returncode == 0
    assert sandbox.task("slow")["status"] == "running", "both finished while the task was still running"
    release.touch()
    holder.wait(timeout=60)
    assert sandbox.task("quick")["status"] == "pending"


def test_timeout_kills_a_hanging_worker_and_its_grandchild(sandbox, tmp_path):
    pids = tmp_path / "pids"
    command = f'sleep 300 & echo $! > "{pids}.grandchild"; echo $$ > "{pids}.worker"; sleep 300'
    sandbox.write_config({"macp": {"kill_grace_seconds": 1}})
    sandbox.write_tasks({"tasks": [{"id": "hang", "dispatch": "exec", "command": command, "timeout_seconds": 1}]})
    proc = sandbox.controller("--once", timeout=30)
    assert proc.returncode == 1
    grandchild, worker = int(Path(f"{pids}.grandchild").read_text()), int(Path(f"{pids}.worker").read_text())
    wait_for(lambda: not alive(grandchild) and not alive(worker), timeout=30, what="the worker's group to die")
    assert sandbox.result("hang")["timed_out"] is True
    failed = sandbox.events("hang")[-2]
    assert failed["event_type"] == "task.failed" and "timed out" in failed["message"]


def test_sigterm_mid_task_stops_the_worker_and_leaves_the_task_recoverable(sandbox, tmp_path):
    marker, pidfile = tmp_path / "second-time", tmp_path / "worker.pid"
    command = f'if [ -f "{marker}" ]; then exit 0; fi; touch "{marker}"; echo $$ > "{pidfile}"; sleep 60'
    sandbox.write_tasks({"tasks": [{"id": "T1", "dispatch": "exec", "command": command}]})
    controller = start_controller(sandbox, "--until-drained")
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the worker to write its pid")
    worker = int(pidfile.read_text())
    controller.send_signal(signal.SIGTERM)
    _, stderr = controller.communicate(timeout=30)
    assert controller.returncode == 143, stderr
    assert "interrupted by signal 15" in stderr
    wait_for(lambda: not alive(worker), timeout=30, what="the worker to die")
    task = sandbox.task("T1")
    assert task["status"] == "pending" and task["attempts"] == 0 and task["claim"] is None
    assert sandbox.events("T1")[-1]["event_type"] == "task.interrupted"
    assert not (sandbox.orch / ".controller.lock").read_text(), "the lock was released cleanly"
    sandbox.controller("--until-drained", check=True)
    assert sandbox.task("T1")["status"] == "completed" and sandbox.task("T1")["attempts"] == 1
    assert sandbox.event_types("T1").count("worktree.reused") == 1


def test_sigkilled_controller_is_recovered_and_its_orphan_worker_stopped(sandbox, tmp_path):
    marker, pidfile = tmp_path / "second-time", tmp_path / "worker.pid"
    command = f'if [ -f "{marker}" ]; then exit 0; fi; touch "{marker}"; echo $$ > "{pidfile}"; sleep 60'
    sandbox.write_tasks({"tasks": [{"id": "T1", "dispatch": "exec", "command": command, "max_attempts": 1}]})
    controller = start_controller(sandbox, "--until-drained")
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the worker to write its pid")
    worker = int(pidfile.read_text())
    os.kill(controller.pid, signal.SIGKILL)
    controller.wait()
    assert alive(worker), "SIGKILL of the controller alone leaves its worker running"
    assert sandbox.task("T1")["status"] == "running"
    proc = sandbox.controller("--until-drained", check=True)
    assert "stopped 2 process(es) left by the controller that died" in proc.stdout, "the worker shell and its sleep"
    assert "T1: recovered from a stopped controller, back to pending" in proc.stdout
    assert not alive(worker)
    task = sandbox.task("T1")
    assert task["status"] == "completed" and task["attempts"] == 1, "the interrupted attempt was not counted"
    assert sandbox.event_types("T1").count("task.recovered") == 1


def test_a_state_change_the_crashed_controller_did_not_log_is_logged_on_recovery(sandbox):
    sandbox.orch.mkdir(parents=True)
    dead = {"pid": 999999, "host": "elsewhere", "started_at": "2026-01-01T00:00:00.000Z", "token": "dead-token"}
    (sandbox.orch / ".controller.lock").write_text(json.dumps(dead))
    sandbox.write_tasks({"tasks": [
        {"id": "done", "status": "completed", "command": "true", "attempts": 1, "updated_at": "2026-01-01T00:00:05.000Z"},
        {"id": "mid", "status": "gated", "command": "true", "attempts": 1, "max_attempts": 1, "claim": {**dead}},
    ]})
    (sandbox.orch / ".tasks.json.abc123.tmp").write_text('{"tasks": [')
    proc = sandbox.controller("--until-drained", check=True)
    assert sandbox.events("done")[0]["event_type"] == "task.completed"
    assert "logged on recovery" in sandbox.events("done")[0]["message"]
    assert sandbox.event_types("mid")[0] == "task.recovered"
    assert sandbox.task("mid")["status"] == "completed" and sandbox.task("mid")["attempts"] == 1
    assert not (sandbox.orch / ".tasks.json.abc123.tmp").exists()
    assert "recovered" in proc.stdout


def test_reader_skips_a_torn_final_event_line_and_says_so(sandbox):
    sandbox.macp("submit", "--task-id", "A", "--command", "true", check=True)
    with (sandbox.orch / "events.ndjson").open("a") as handle:
        handle.write('{"event_id": "torn", "event_type": "task.sta')
    proc = sandbox.macp("history", "--task-id", "A", check=True)
    assert "task.submitted" in proc.stdout
    assert "skipping torn final line" in proc.stderr


def test_a_worker_flooding_a_gigabyte_leaves_bounded_logs_memory_and_valid_json(sandbox):
    sandbox.write_config({"macp": {"max_log_bytes": 65536, "output_tail_bytes": 1024}})
    flood = "head -c 1073741824 /dev/zero | tr '\\0' 'x'; printf '\\0\\377\\033[31mred\\033[0m end\\n'"
    sandbox.write_tasks({"tasks": [{"id": "F", "command": flood}]})
    controller = start_controller(sandbox, "--once")
    _, wait_status, usage = os.wait4(controller.pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0, controller.stderr.read()
    peak_kib = usage.ru_maxrss
    assert 0 < peak_kib < 100 * 1024, f"the controller's memory stays bounded ({peak_kib} KiB)"
    log = sandbox.orch / "logs" / "F" / "attempt-1" / "worker.log"
    assert log.stat().st_size <= 65536 + 100
    assert log.read_text(errors="replace").endswith("[macp: log cut at 65536 bytes]\n")
    result = sandbox.result("F")
    assert len(result["output_tail"].encode()) <= 1024 * 3
    assert result["output_tail"].endswith("\ufffdred end\n"), "NUL and ANSI removed, bad UTF-8 replaced"


def test_tasks_json_is_always_replaced_whole(sandbox, tmp_path):
    release = tmp_path / "release"
    tasks = [{"id": f"T{n}", "command": "true"} for n in range(19)] + [{"id": "T19", "command": held_command(release)}]
    sandbox.write_tasks({"tasks": tasks})
    controller = start_controller(sandbox, "--until-drained")
    seen = 0
    while controller.poll() is None:
        text = (sandbox.orch / "tasks.json").read_text()
        assert len(json.loads(text)["tasks"]) == 20
        seen += 1
        if seen == 50:
            release.touch()
    release.touch()
    assert controller.wait(timeout=60) == 0 and seen >= 50
    leftovers = [p.name for p in sandbox.orch.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_an_unclaimed_running_task_is_not_left_as_a_ghost(sandbox):
    sandbox.write_tasks({"tasks": [
        {"id": "ghost", "status": "running", "command": "true", "attempts": 1},
        {"id": "acp-wait", "status": "running", "dispatch": "acp", "runtime": "codex",
         "acp": {"spawn_file": "x", "requested_at": "2026-01-01T00:00:00Z", "reported_exit_code": None, "reported_at": None}},
    ]})
    sandbox.controller("--until-drained", check=True)
    assert sandbox.task("ghost")["status"] == "completed"
    assert sandbox.task("ghost")["attempts"] == 1, "the attempt that never ran was not counted"
    assert sandbox.task("acp-wait")["status"] == "running", "an acp task waiting for its report keeps waiting"


def test_a_controller_that_dies_mid_recovery_passes_the_recovery_on(sandbox):
    sandbox.write_tasks({"tasks": [{"id": "T1", "command": "true"}]})
    orphan = subprocess.Popen(["sleep", "120"], env={**sandbox.env, "MACP_OWNER_TOKEN": "first-dead"})
    try:
        died_recovering = {
            "pid": 999998, "host": "elsewhere", "started_at": "2026-01-02T00:00:00.000Z", "token": "second-dead",
            "recovering": {"tokens": ["first-dead"], "since": "2026-01-01T00:00:00.000Z"},
        }
        (sandbox.orch / ".controller.lock").write_text(json.dumps(died_recovering))
        proc = sandbox.controller("--until-drained", check=True)
        assert orphan.wait(timeout=30) == -signal.SIGTERM, "the first dead controller's worker was stopped"
        assert "stopped 1 process(es) left by the controller that died" in proc.stdout
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()
    assert not (sandbox.orch / ".controller.lock").read_text(), "released cleanly, no debt left"


def test_a_torn_event_line_is_set_aside_before_the_next_append(sandbox):
    sandbox.macp("submit", "--task-id", "A", "--command", "true", check=True)
    fragment = '{"event_id": "torn", "event_type": "task.sta'
    with (sandbox.orch / "events.ndjson").open("a") as handle:
        handle.write(fragment)
    sandbox.macp("submit", "--task-id", "B", "--command", "true", check=True)
    proc = sandbox.macp("history", check=True)
    assert "skipping torn" not in proc.stderr and "B" in proc.stdout
    assert [e["task_id"] for e in sandbox.events()] == ["A", "B"], "no event fused with the fragment"
    assert (sandbox.orch / "events.ndjson.torn").read_text() == fragment + "\n"


def test_an_append_that_fails_part_way_is_undone(tmp_path):
    log = tmp_path / "events.ndjson"
    log.write_text('{"n": 1}\n')
    code = (
        "import resource, signal, sys; from pathlib import Path\n"
        f"sys.path.insert(0, {str(ROOT / 'tools' / 'orchestrator-matrix')!r})\n"
        "from macp.fsio import append_line\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20, 20))\n"
        f"try:\n    append_line(Path({str(log)!r}), '{{\"n\": 2, \"padding\": \"' + 'x' * 100 + '\"}}')\n"
        "except OSError as exc:\n    print('refused:', exc.errno)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert proc.stdout.startswith("refused:"), proc.stderr
    assert log.read_text() == '{"n": 1}\n', "the partial line was taken back"


def test_what_a_worker_leaves_running_gets_term_before_kill(sandbox, tmp_path):
    ready, marker, script = tmp_path / "ready", tmp_path / "got-term", tmp_path / "grandchild.sh"
    script.write_text(f"trap 'echo term > \"{marker}\"; exit 0' TERM\ntouch \"{ready}\"\nsleep 60 &\nwait\n")
    leader = f'sh "{script}" & i=0; while [ ! -e "{ready}" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; exit 0'
    sandbox.write_config({"macp": {"kill_grace_seconds": 10}})
    sandbox.write_tasks({"tasks": [{"id": "G", "command": leader}]})
    sandbox.controller("--once", check=True, timeout=60)
    assert ready.exists() and marker.read_text() == "term\n", "the grandchild was asked to stop before it was killed"


def held_git(sandbox, tmp_path: Path, step: str) -> tuple[Path, Path, Path]:
    """Put a ``git`` on PATH that, for the git step ``step`` (e.g. ``worktree add``), marks
    that it started, waits for the test's release file, runs the real git and marks that it
    finished. Returns ``(started, release, finished)``."""
    import shutil

    started, release, finished = tmp_path / "git-started", tmp_path / "git-release", tmp_path / "git-finished"
    real = shutil.which("git")
    sandbox.fake_cli("git", f'''#!/bin/sh
case "$*" in
  "{step}"*) touch "{started}"; {held_command(release)}; "{real}" "$@"; code=$?; touch "{finished}"; exit $code ;;
esac
exec "{real}" "$@"
''')
    return started, release, finished


def test_sigterm_never_kills_a_running_git_step_and_the_next_run_reuses_its_worktree(sandbox, tmp_path):
    started, release, finished = held_git(sandbox, tmp_path, "worktree add")
    sandbox.write_tasks({"tasks": [{"id": "G1", "dispatch": "exec", "command": "true"}]})
    controller = start_controller(sandbox, "--once")
    wait_for(started.exists, what="git worktree add to start")
    controller.send_signal(signal.SIGTERM)
    release.touch()
    _out, err = controller.communicate(timeout=60)
    assert controller.returncode == 143 and "Traceback" not in err
    assert finished.exists(), "git ran to its end"
    worktree = sandbox.worktree("G1")
    listing = sandbox.git("worktree", "list", "--porcelain")
    assert f"worktree {worktree}" in listing and "locked" not in listing, "git finished its step"
    assert (worktree / "README.md").exists()
    task = sandbox.task("G1")
    assert task["status"] == "pending" and task["attempts"] == 0, "the task was released, attempt not counted"
    assert "task.interrupted" in sandbox.event_types("G1")
    sandbox.controller("--once", check=True)
    assert sandbox.task("G1")["status"] == "completed"


def test_sigint_during_start_up_exits_130_with_one_line(sandbox, tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    started = tmp_path / "import-started"
    # A module our program imports, first on the path: it marks that the import is under way
    # and then waits (bounded) -- the SIGINT lands while the program is still being imported.
    (shim / "shlex.py").write_text(f"import time\nopen({str(started)!r}, 'w').close()\nfor _ in range(1200):\n    time.sleep(0.1)\n")
    sandbox.write_tasks({"tasks": [{"id": "S1", "command": "touch ran"}]})
    before = (sandbox.orch / "tasks.json").read_text()
    proc = subprocess.Popen(
        [str(BIN / "mosaic-orchestrator-run"), "--repo", str(sandbox.repo), "--once"],
        env={**sandbox.env, "PYTHONPATH": str(shim)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=default_sigint,  # noqa: PLW1509 -- only resets one signal disposition before exec
    )
    wait_for(started.exists, what="the import to start")
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "mosaic-orchestrator-run: interrupted\n", err
    assert (sandbox.orch / "tasks.json").read_text() == before and not (sandbox.repo / "ran").exists()


def test_sigint_while_start_up_runs_git_waits_for_git_then_exits_130(sandbox, tmp_path):
    started, release, finished = held_git(sandbox, tmp_path, "rev-parse --path-format=absolute --show-toplevel")
    sandbox.write_tasks({"tasks": [{"id": "S2", "command": "touch ran"}]})
    # No --repo: the controller asks git where the repository is, from the current folder.
    controller = subprocess.Popen([str(BIN / "mosaic-orchestrator-run"), "--once"], cwd=sandbox.repo, env=sandbox.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                                  preexec_fn=default_sigint)  # noqa: PLW1509 -- only resets one signal disposition before exec
    wait_for(started.exists, what="git rev-parse to start")
    controller.send_signal(signal.SIGINT)
    release.touch()
    _out, err = controller.communicate(timeout=60)
    assert controller.returncode == 130 and err.splitlines() == ["mosaic-orchestrator-run: interrupted"], err
    assert finished.exists(), "the controller waited for git to finish before it stopped"
    assert not (sandbox.repo / "ran").exists()


def test_a_stale_index_lock_left_by_a_crash_is_removed_before_the_worktree_is_reused(sandbox):
    command = 'test -f ../second || { touch ../second; exit 1; }; echo new > new.txt && git add new.txt && git commit -qm new'
    sandbox.write_tasks({"tasks": [{"id": "L1", "dispatch": "exec", "command": command, "max_attempts": 2}]})
    sandbox.controller("--once")
    assert sandbox.task("L1")["status"] == "pending"
    gitdir = Path(sandbox.git("rev-parse", "--absolute-git-dir", cwd=sandbox.worktree("L1")).strip())
    (gitdir / "index.lock").touch()  # what a git killed halfway leaves
    sandbox.controller("--once", check=True)
    assert sandbox.task("L1")["status"] == "completed", "git add worked: the stale lock was gone"
    [reused] = [e for e in sandbox.events("L1") if e["event_type"] == "worktree.reused"]
    assert "stale index.lock" in reused["metadata"]["repaired"][0]


def test_a_worktree_whose_creation_was_cut_short_is_created_again(sandbox):
    sandbox.write_tasks({"tasks": [{"id": "C1", "dispatch": "exec", "command": "test -f README.md", "max_attempts": 2}]})
    sandbox.write_config({"macp": {"cleanup_worktrees": False}})
    gitdir = sandbox.repo / ".git" / "worktrees" / sandbox.worktree("C1").name
    # What a crash during `git worktree add` leaves: the lock git holds while it checks files
    # out, and a checkout that never finished.
    sandbox.git("worktree", "add", "-q", "-b", "feat/C1", str(sandbox.worktree("C1")), "HEAD")
    (gitdir / "locked").write_text("initializing")
    (sandbox.worktree("C1") / "README.md").unlink()
    sandbox.controller("--once", check=True)
    assert sandbox.task("C1")["status"] == "completed", "the worker found a whole checkout"
    [created] = [e for e in sandbox.events("C1") if e["event_type"] == "worktree.created"]
    assert "creation was cut short" in created["metadata"]["repaired"][0]
    assert "locked" not in sandbox.git("worktree", "list", "--porcelain")


def daemon_script(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A script that daemonises the way a worker's tool might: it writes its pid, notes a
    SIGTERM, and keeps a child of its own. Returns ``(script, pid file, TERM marker)``; the
    pid file holds the daemon's pid and its child's."""
    script, pid_file, marker = tmp_path / "daemon.sh", tmp_path / "daemon.pid", tmp_path / "daemon-got-term"
    script.write_text(f"trap 'echo term > \"{marker}\"; exit 0' TERM\nsleep 600 &\necho $$ $! > \"{pid_file}.tmp\" && mv \"{pid_file}.tmp\" \"{pid_file}\"\nwait\n")
    return script, pid_file, marker


def daemon_pids(pid_file: Path) -> list[int]:
    return [int(pid) for pid in pid_file.read_text().split()] if pid_file.exists() else []


def stop_if_alive(pids: list[int]) -> None:
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_daemon_that_left_the_group_and_its_environment_is_stopped(sandbox, tmp_path):
    script, pid_file, marker = daemon_script(tmp_path)
    wait_pid = f'i=0; while [ ! -e "{pid_file}" ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done'
    # setsid: a session and group of its own; env -i: no MACP_* variables to be found by.
    leader = f'env -i setsid /bin/sh "{script}" </dev/null >/dev/null 2>&1 & {wait_pid}; exit 0'
    sandbox.write_tasks({"tasks": [{"id": "D", "command": leader}]})
    try:
        sandbox.controller("--once", check=True, timeout=120)
        assert not any(alive(pid) for pid in daemon_pids(pid_file)), "the orphan (and its child) was adopted by the controller and stopped"
        assert marker.read_text() == "term\n", "it got SIGTERM before SIGKILL"
    finally:
        stop_if_alive(daemon_pids(pid_file))


def test_a_daemon_of_an_interrupted_task_is_stopped_with_it(sandbox, tmp_path):
    script, pid_file, _marker = daemon_script(tmp_path)
    release = tmp_path / "release"
    leader = f'setsid /bin/sh "{script}" </dev/null >/dev/null 2>&1 & {held_command(release)}'
    sandbox.write_tasks({"tasks": [{"id": "I", "command": leader}]})
    controller = start_controller(sandbox, "--once")
    try:
        wait_for(pid_file.exists, timeout=120, what="the daemon to start")
        controller.send_signal(signal.SIGTERM)
        controller.communicate(timeout=60)
        assert controller.returncode == 143
        assert not any(alive(pid) for pid in daemon_pids(pid_file)), "the daemon went with the interrupted task"
        assert sandbox.task("I")["status"] == "pending"
    finally:
        release.touch()
        stop_if_alive(daemon_pids(pid_file))


def test_a_change_whose_event_could_not_be_written_is_logged_by_the_next_run(sandbox, tmp_path):
    import resource

    limit = 256 * 1024
    events = sandbox.orch / "events.ndjson"
    # The gate "fill" pads the log so that 369 bytes stay below the file-size limit: room for
    # its own gate.passed event (269 bytes), none for the task.completed that follows the
    # state change -- that append fails (EFBIG) after tasks.json says completed.
    fill = tmp_path / "fill.py"
    fill.write_text(f"import os\np = {str(events)!r}\nn = {limit - 369} - os.path.getsize(p)\nopen(p, 'a').write(' ' * (n - 1) + chr(10))\n")
    sandbox.write_config({"quality_gates": [{"name": "fill", "command": f"python3 {fill}"}]})
    sandbox.write_tasks({"tasks": [{"id": "E", "dispatch": "exec", "command": "true"}]})

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    first = sandbox.run("mosaic-orchestrator-run", "--repo", str(sandbox.repo), "--once", preexec_fn=small_disk)
    assert first.returncode == 74 and first.stderr.splitlines()[-1].startswith("mosaic-orchestrator-run: cannot write"), first.stderr
    assert sandbox.task("E")["status"] == "completed", "a full disk never turns a task into a failure"
    assert sandbox.events("E")[-1]["event_type"] == "gate.passed", "the case is forced: the log is one change behind"
    sandbox.controller("--once", check=True)
    logged = [e for e in sandbox.events("E") if e["event_type"] == "task.completed"]
    assert len(logged) == 1 and "logged on recovery" in logged[0]["message"]
    assert sandbox.events("E")[-1]["status"] == sandbox.task("E")["status"] == "completed"


KILLED_AT = """
import os, signal, sys
sys.path.insert(0, {tools!r})
import macp.taskstore as store
real = getattr(store, {point!r})
def killed(*args, **kwargs):
    if {after!r}:
        real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
setattr(store, {point!r}, killed)
from controller.macp_cli import main
main({argv!r})
"""


def macp_killed_at(sandbox, point: str, after: bool, *argv: str) -> subprocess.CompletedProcess:
    """Run ``mosaic macp ARGV`` and SIGKILL it at ``point`` of the queue write (a function of
    macp.taskstore), just before or just after it ran: the case is forced, not hoped for."""
    from conftest import TOOLS

    script = KILLED_AT.format(tools=str(TOOLS), point=point, after=after, argv=list(argv))
    proc = subprocess.run([sys.executable, "-c", script], cwd=sandbox.repo, env=sandbox.env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return proc


def test_a_command_killed_between_its_queue_write_and_its_event_has_the_event_logged_by_the_next_writer(sandbox):
    macp_killed_at(sandbox, "_fold", True, "submit", "--task-id", "A", "--command", "true")
    assert [task["id"] for task in sandbox.tasks()] == ["A"], "the queue write happened"
    assert sandbox.event_types("A") == [], "the case is forced: the event is not in the log"
    sandbox.macp("submit", "--task-id", "B", "--command", "true", check=True)
    assert sandbox.event_types("A") == ["task.submitted"] and sandbox.event_types("B") == ["task.submitted"]
    assert [event["task_id"] for event in sandbox.events()] == ["A", "B"], "in the order the changes were made"
    assert not (sandbox.orch / "events.outbox").exists()


def test_the_controller_logs_what_a_killed_command_left_before_it_runs_anything(sandbox):
    sandbox.macp("submit", "--task-id", "C", "--command", "true", check=True)
    macp_killed_at(sandbox, "_fold", True, "cancel", "C", "--reason", "not needed")
    assert sandbox.task("C")["status"] == "cancelled" and sandbox.event_types("C") == ["task.submitted"]
    sandbox.controller("--until-drained", check=True)
    assert sandbox.event_types("C") == ["task.submitted", "task.cancelled"]
    assert sandbox.events("C")[-1]["message"] == "not needed"


def test_a_command_killed_before_its_queue_write_leaves_no_event_behind(sandbox):
    sandbox.macp("submit", "--task-id", "D", "--command", "true", check=True)
    macp_killed_at(sandbox, "_fold", False, "cancel", "D")
    assert sandbox.task("D")["status"] == "pending", "the change never happened"
    sandbox.macp("submit", "--task-id", "E", "--command", "true", check=True)
    assert sandbox.event_types("D") == ["task.submitted"], "so its event is dropped, not logged"
    assert not (sandbox.orch / "events.outbox").exists()


@pytest.mark.slow
def test_sighup_stops_the_controller_like_sigterm_and_leaves_the_task_recoverable(sandbox, tmp_path):
    pidfile = tmp_path / "worker.pid"
    sandbox.write_tasks({"tasks": [{"id": "HUP", "dispatch": "exec", "command": f'echo $$ > "{pidfile}"; sleep 60'}]})
    controller = start_controller(sandbox, "--until-drained")
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the worker to write its pid")
    worker = int(pidfile.read_text())
    controller.send_signal(signal.SIGHUP)  # the terminal or SSH session closed
    _, stderr = controller.communicate(timeout=30)
    assert controller.returncode == 129 and "interrupted by signal 1" in stderr, stderr
    wait_for(lambda: not alive(worker), timeout=30, what="the worker to be stopped, not orphaned")
    task = sandbox.task("HUP")
    assert task["status"] == "pending" and task["attempts"] == 0 and task["claim"] is None
    assert sandbox.events("HUP")[-1]["event_type"] == "task.interrupted"


def test_a_drain_whose_reader_went_away_finishes_every_task(sandbox, tmp_path):
    release = tmp_path / "release"
    sandbox.write_tasks({"tasks": [
        {"id": "FIRST", "dispatch": "exec", "command": held_command(release)},
        {"id": "SECOND", "dispatch": "exec", "command": "true"},
    ]})
    env = {**sandbox.env, "PYTHONUNBUFFERED": "1"}  # every progress line is written at once: the case is forced
    drain = subprocess.Popen([str(BIN / "mosaic"), "macp", "drain"], cwd=sandbox.repo, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    assert drain.stdout is not None and drain.stderr is not None
    assert b"FIRST: started attempt" in drain.stdout.readline()
    drain.stdout.close()  # `drain | head -1`: the reader is gone
    release.touch()
    stderr = drain.stderr.read()
    assert drain.wait(timeout=60) == 0, stderr
    assert sandbox.task("FIRST")["status"] == "completed" and sandbox.task("SECOND")["status"] == "completed"
    assert b"Traceback" not in stderr and b"internal error" not in stderr


def test_a_running_task_edited_into_nonsense_is_set_aside_and_recovery_goes_on(sandbox):
    sandbox.orch.mkdir(parents=True)
    dead = {"pid": 999999, "host": "elsewhere", "started_at": "2026-01-01T00:00:00.000Z", "token": "dead-token"}
    (sandbox.orch / ".controller.lock").write_text(json.dumps(dead))
    sandbox.write_tasks({"tasks": [
        {"id": "BAD", "status": "running", "command": "true", "attempts": None, "claim": {**dead}},
        {"id": "LEFT", "status": "running", "command": "true", "attempts": 1, "claim": {**dead}},
        {"id": "NEW", "command": "true"},
    ]})
    for _ in range(2):  # every start, not only the first
        proc = sandbox.controller("--until-drained")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "task BAD not run: " in proc.stderr and "$.tasks[0].attempts" in proc.stderr
    assert sandbox.task("LEFT")["status"] == "completed" and sandbox.task("NEW")["status"] == "completed"
    assert sandbox.task("BAD")["attempts"] is None and sandbox.task("BAD")["status"] == "running", "left exactly as it is"


def test_an_editor_saving_tasks_json_in_place_during_a_run_never_stops_the_running_work(sandbox, tmp_path):
    first, second = tmp_path / "release-a", tmp_path / "release-b"
    original = [{"id": "A", "dispatch": "exec", "command": held_command(first)}, {"id": "B", "dispatch": "exec", "command": held_command(second)}]
    sandbox.write_tasks({"tasks": original})
    controller = start_controller(sandbox, "--until-drained")
    tasks_file = sandbox.orch / "tasks.json"
    try:
        wait_for(lambda: "task.started" in sandbox.event_types("A"), what="A to start")
        with tasks_file.open("r+") as handle:  # an editor writing in place, caught halfway
            handle.truncate(0)
            handle.write('{"tasks": [{"id": "A", "dis')
        first.touch()
        wait_for(lambda: "task.started" in sandbox.event_types("B"), what="A to end and B to start, the file still broken")
        assert sandbox.event_types("A")[-1] == "worktree.removed" and [e for e in sandbox.events("A") if e["event_type"] == "task.completed"]
        # the editor finishes its save: the queue as it had it, plus one task
        with tasks_file.open("r+") as handle:
            handle.truncate(0)
            handle.write(json.dumps({"tasks": [*original, {"id": "C", "dispatch": "exec", "command": "true"}]}))
        second.touch()
        _, stderr = controller.communicate(timeout=60)
    finally:
        first.touch()
        second.touch()
        if controller.poll() is None:
            controller.kill()
    assert controller.returncode == 0, stderr
    assert "cannot read" in stderr and "the run goes on with the queue as it was" in stderr
    assert {task["id"]: task["status"] for task in sandbox.tasks()} == {"A": "completed", "B": "completed", "C": "completed"}
    assert json.loads(tasks_file.read_text())["tasks"][0]["status"] == "completed", "at rest tasks.json is whole again"


def test_cancel_of_a_running_task_stops_it_while_its_drain_goes_on(sandbox, tmp_path):
    pidfile = tmp_path / "worker.pid"
    sandbox.write_tasks({"tasks": [
        {"id": "LONG", "dispatch": "exec", "command": f'echo $$ > "{pidfile}"; sleep 300'},
        {"id": "NEXT", "dispatch": "exec", "command": "true"},
    ]})
    controller = start_controller(sandbox, "--until-drained")
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=60, what="the worker to write its pid")
    worker = int(pidfile.read_text())
    proc = sandbox.macp("cancel", "LONG", "--reason", "wrong approach")
    assert proc.returncode == 0 and "cancel requested" in proc.stdout, proc.stderr
    _, stderr = controller.communicate(timeout=120)
    assert controller.returncode == 0, stderr
    wait_for(lambda: not alive(worker), timeout=30, what="the worker to die")
    task = sandbox.task("LONG")
    assert task["status"] == "cancelled" and task["claim"] is None
    [event] = [e for e in sandbox.events("LONG") if e["event_type"] == "task.cancelled"]
    assert event["message"] == "wrong approach (stopped while it ran)"
    assert sandbox.task("NEXT")["status"] == "completed", "the drain went on"
    assert not list((sandbox.orch / "cancel").glob("*.json")), "the request is done with"


def test_a_cancel_requested_of_a_crashed_controllers_task_holds_after_recovery(sandbox, tmp_path):
    pidfile = tmp_path / "worker.pid"
    sandbox.write_tasks({"tasks": [{"id": "HANG", "dispatch": "exec", "command": f'echo $$ > "{pidfile}"; sleep 300'}]})
    controller = start_controller(sandbox, "--until-drained")
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=60, what="the worker to write its pid")
    from macp.cancellation import write_request
    from macp.layout import Layout

    os.kill(controller.pid, signal.SIGSTOP)  # the request is written as to a live controller, which then dies
    write_request(Layout(sandbox.repo), sandbox.task("HANG"), "not needed any more")
    os.kill(controller.pid, signal.SIGKILL)
    controller.wait(timeout=60)
    sandbox.controller("--until-drained", check=True, timeout=120)
    assert sandbox.task("HANG")["status"] == "cancelled", "recovered to pending, then cancelled as asked: never run again"
    assert [e["event_type"] for e in sandbox.events("HANG")][-2:] == ["task.recovered", "task.cancelled"]
