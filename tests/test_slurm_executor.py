"""MACP on a real Slurm cluster (issue 24, section 4): drains with ``--executor slurm`` against
Debian's slurmctld and two slurmd nodes on loopback (tests/slurm_harness.py).

Each test forces the case it checks -- workers that wait for one another or for a file the
test creates, a controller killed while its job provably runs, a node's slurmd killed under a
job -- and asserts outcomes, never timings. Skipped, saying why, where Slurm is not
installed or the tests do not run as root.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time

import pytest
from slurm_harness import SlurmCluster, why_not_here
from test_durability import held_command, wait_for

from conftest import BIN, Sandbox

pytestmark = pytest.mark.skipif(why_not_here() is not None, reason=why_not_here() or "")

FAST = {"executor": {"kind": "slurm", "poll_seconds": 0.3, "heartbeat_seconds": 1}, "macp": {"retry_backoff_seconds": 0}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with SlurmCluster(tmp_path_factory.mktemp("slurm"), nodes=2) as running:
        yield running


def on_cluster(sandbox: Sandbox, cluster: SlurmCluster, config: dict | None = None) -> Sandbox:
    """``sandbox`` set up to drain on ``cluster``: its SLURM_CONF, and the Slurm executor in
    config with quick polling."""
    sandbox.env["SLURM_CONF"] = cluster.env["SLURM_CONF"]
    sandbox.write_config({**FAST, **(config or {})})
    return sandbox


def start_drain(sandbox: Sandbox, *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "mosaic"), "macp", "drain", *args], cwd=sandbox.repo, env=sandbox.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def start_held_job(sandbox: Sandbox, cluster: SlurmCluster, task_id: str, runs, release) -> subprocess.Popen:
    """Queue ``task_id`` (it notes each run in ``runs``, then waits for ``release``) on
    ``cluster``, start a drain, and return it once the job runs and is recorded."""
    on_cluster(sandbox, cluster)
    sandbox.write_tasks({"tasks": [{"id": task_id, "dispatch": "exec", "command": f'echo run >> "{runs}"; ' + held_command(release)}]})
    drain = start_drain(sandbox)
    wait_for(lambda: runs.exists() and jobs_of(sandbox, task_id), timeout=120, what="the job to start, recorded")
    return drain


@contextlib.contextmanager
def released_at_the_end(drain: subprocess.Popen, release):
    """Whatever happens inside, ``release`` the held job and leave no drain running."""
    try:
        yield
    finally:
        release.touch()
        if drain.poll() is None:
            os.killpg(drain.pid, signal.SIGKILL)
            drain.communicate(timeout=30)


def jobs_of(sandbox: Sandbox, task_id: str) -> list[dict]:
    return [event["metadata"]["job"] for event in sandbox.events(task_id) if event["event_type"] == "task.job.submitted"]


def test_tasks_run_as_slurm_jobs_with_the_same_outcomes_as_a_local_drain(cluster, tmp_path):
    tasks = [
        {"id": "OK", "dispatch": "exec", "command": 'echo "job $SLURM_JOB_ID"; echo done > out.txt', "quality_gates": ["test -f out.txt"]},
        {"id": "BROKEN", "dispatch": "exec", "command": "echo nope; exit 3", "max_attempts": 1},
        {"id": "GATE", "dispatch": "exec", "command": "true", "quality_gates": ["echo 'tests failed'; exit 1"], "max_attempts": 1},
        {"id": "FLAKY", "dispatch": "exec", "command": 'test "$MACP_ATTEMPT" -ge 2', "max_attempts": 2},
    ]
    outcomes = {}
    for executor in ("local", "slurm"):
        (tmp_path / executor).mkdir()
        sandbox = Sandbox(tmp_path / executor)
        on_cluster(sandbox, cluster, {"executor": {**FAST["executor"], "kind": executor}})
        sandbox.write_tasks({"tasks": tasks})
        proc = sandbox.macp("drain", timeout=300)
        assert proc.returncode == 1, proc.stderr  # BROKEN and GATE end failed / escalated
        outcomes[executor] = {task["id"]: (task["status"], task["attempts"]) for task in sandbox.tasks()}
        if executor == "slurm":
            slurm = sandbox
    assert outcomes["slurm"] == outcomes["local"] == {
        "OK": ("completed", 1), "BROKEN": ("failed", 1), "GATE": ("escalated", 1), "FLAKY": ("completed", 2)}
    worker, gate = jobs_of(slurm, "OK")
    assert (worker["step"], gate["step"]) == ("worker", "gate-1-test--f-out.txt")
    assert gate["id"] == worker["id"], "one job per attempt: the gate ran in the worker's job"
    wait_for(lambda: cluster.job_state(worker["id"]) == ("COMPLETED", "0:0"), timeout=60, what="the attempt's job to end, told to")
    assert worker["name"].startswith("macp-") and "-OK-a1-" in worker["name"]
    log = (slurm.orch / "logs" / "OK" / "attempt-1" / "worker.log").read_text()
    assert log == f"job {worker['id']}\n", "the job's own output, copied into the worker's log"
    assert slurm.result("GATE")["gate_results"][0]["output_tail"] == "tests failed\n"
    broken = jobs_of(slurm, "BROKEN")[0]["id"]
    wait_for(lambda: cluster.job_state(broken) == ("FAILED", "3:0"), timeout=60, what="BROKEN's job to end with the worker's own code")


def test_workers_n_keeps_n_jobs_running_at_once_and_no_more(cluster, sandbox, tmp_path):
    running, seen = tmp_path / "running", tmp_path / "seen"
    running.mkdir()
    # Each worker marks itself running, notes how many run now, and waits (bounded) until two
    # do: with --workers 2 the first two meet; the third starts only when one has ended.
    mark = f'touch "{running}/$MACP_TASK_ID"; ls "{running}" | wc -l >> "{seen}"'
    meet = (f'i=0; while [ "$(ls "{running}" | wc -l)" -lt 2 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; '
            f'[ $i -lt 600 ] || exit 9; sleep 1; rm "{running}/$MACP_TASK_ID"')
    on_cluster(sandbox, cluster)
    sandbox.write_tasks({"tasks": [{"id": "W1", "dispatch": "exec", "command": f"{mark}; {meet}"},
                                   {"id": "W2", "dispatch": "exec", "command": f"{mark}; {meet}"},
                                   {"id": "W3", "dispatch": "exec", "command": mark}]})
    proc = sandbox.macp("drain", "--workers", "2", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all(sandbox.task(f"W{n}")["status"] == "completed" for n in (1, 2, 3))
    counts = [int(line) for line in seen.read_text().split()]
    assert max(counts) == 2, f"two jobs ran at once, never three: {counts}"


def test_a_controller_killed_mid_job_is_followed_by_the_next_drain_and_the_command_runs_once(cluster, sandbox, tmp_path):
    runs, release = tmp_path / "runs", tmp_path / "release"
    first = start_held_job(sandbox, cluster, "ONCE", runs, release)
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate(timeout=30)
    [job] = jobs_of(sandbox, "ONCE")
    assert cluster.job_state(job["id"])[0] == "RUNNING", "the job outlives its controller"
    second = start_drain(sandbox)
    wait_for(lambda: any("followed to its end" in e["message"] for e in sandbox.events("ONCE")), timeout=120, what="recovery to follow the job")
    release.touch()
    stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stdout + stderr
    assert f"ONCE: following Slurm job {job['id']}" in stdout
    task = sandbox.task("ONCE")
    assert (task["status"], task["attempts"]) == ("completed", 1)
    assert runs.read_text() == "run\n", "the command ran exactly once"
    assert jobs_of(sandbox, "ONCE") == [job], "no second job was submitted for the worker"


def test_a_controller_killed_while_a_gate_runs_has_that_job_cancelled_and_the_attempt_run_again(cluster, sandbox, tmp_path):
    gates, release = tmp_path / "gates", tmp_path / "release"
    on_cluster(sandbox, cluster)
    sandbox.write_tasks({"tasks": [{"id": "GATED", "dispatch": "exec", "command": "true",
                                    "quality_gates": [f'echo "gate $SLURM_JOB_ID" >> "{gates}"; ' + held_command(release)]}]})
    first = start_drain(sandbox)
    wait_for(gates.exists, timeout=120, what="the gate to run")
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate(timeout=30)
    [worker, gate] = jobs_of(sandbox, "GATED")
    assert gate["id"] == worker["id"] and sandbox.task("GATED")["status"] == "gated"
    second = start_drain(sandbox)
    wait_for(lambda: cluster.job_state(gate["id"])[0] == "CANCELLED", timeout=120, what="recovery to cancel the job still running the gate")
    release.touch()
    stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stdout + stderr
    task = sandbox.task("GATED")
    assert (task["status"], task["attempts"]) == ("completed", 1), "the interrupted attempt did not count"
    again = jobs_of(sandbox, "GATED")[-1]["id"]
    assert gates.read_text() == f"gate {gate['id']}\ngate {again}\n" and again != gate["id"]


def test_sigterm_to_the_controller_leaves_the_job_running_and_the_task_recoverable(cluster, sandbox, tmp_path):
    runs, release = tmp_path / "runs", tmp_path / "release"
    first = start_held_job(sandbox, cluster, "STAY", runs, release)
    os.killpg(first.pid, signal.SIGTERM)
    stdout, _ = first.communicate(timeout=60)
    assert first.returncode == 143 and "STAY: left running as Slurm job" in stdout
    [job] = jobs_of(sandbox, "STAY")
    assert cluster.job_state(job["id"])[0] == "RUNNING" and sandbox.task("STAY")["status"] == "running"
    release.touch()
    proc = sandbox.macp("drain", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sandbox.task("STAY")["status"] == "completed" and runs.read_text() == "run\n"


def test_the_task_timeout_cancels_the_job_and_counts_as_an_attempt(cluster, sandbox, tmp_path):
    started = tmp_path / "started"
    on_cluster(sandbox, cluster)
    sandbox.write_tasks({"tasks": [{"id": "SLOW", "dispatch": "exec", "command": f'touch "{started}"; sleep 300', "timeout_seconds": 3,
                                    "max_attempts": 1}]})
    proc = sandbox.macp("drain", timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    task = sandbox.task("SLOW")
    assert (task["status"], task["attempts"], task["last_failure"]["kind"]) == ("failed", 1, "timeout")
    assert started.exists() and sandbox.result("SLOW")["timed_out"] is True
    [job] = jobs_of(sandbox, "SLOW")
    # MACP cancelled the job at the task's deadline, long before its --time (the job may still be COMPLETING)
    wait_for(lambda: cluster.job_state(job["id"])[0] == "CANCELLED", timeout=60, what="the job to end CANCELLED")


def test_cancel_of_a_running_task_cancels_its_job(cluster, sandbox, tmp_path):
    started = tmp_path / "started"
    on_cluster(sandbox, cluster)
    sandbox.write_tasks({"tasks": [{"id": "LONG", "dispatch": "exec", "command": f'touch "{started}"; sleep 300'},
                                   {"id": "NEXT", "dispatch": "exec", "command": "true", "depends_on": []}]})
    drain = start_drain(sandbox)
    wait_for(started.exists, timeout=120, what="the job to start")
    proc = sandbox.macp("cancel", "LONG", "--reason", "wrong approach")
    assert proc.returncode == 0, proc.stderr
    stdout, stderr = drain.communicate(timeout=300)
    assert drain.returncode == 0, stdout + stderr
    assert sandbox.task("LONG")["status"] == "cancelled" and sandbox.task("NEXT")["status"] == "completed"
    [job] = jobs_of(sandbox, "LONG")
    wait_for(lambda: cluster.job_state(job["id"])[0] == "CANCELLED", timeout=60, what="the job to end CANCELLED")


def test_a_node_lost_mid_job_never_runs_the_attempt_twice_at_once_and_does_not_count(sandbox, tmp_path_factory, tmp_path):
    journal, release = tmp_path / "journal", tmp_path / "release"
    # Each run notes its start and end; the first waits for the test, which releases it
    # only after Slurm has declared its node failed.
    command = f'echo "start $SLURM_JOB_ID" >> "{journal}"; ' + held_command(release) + f'; echo "end $SLURM_JOB_ID" >> "{journal}"'
    with SlurmCluster(tmp_path_factory.mktemp("slurm-node-failure"), nodes=2) as cluster:
        on_cluster(sandbox, cluster)
        sandbox.write_tasks({"tasks": [{"id": "NODE", "dispatch": "exec", "command": command, "max_attempts": 1}]})
        drain = start_drain(sandbox)
        with released_at_the_end(drain, release):
            wait_for(lambda: journal.exists() and jobs_of(sandbox, "NODE"), timeout=120, what="the job to start, recorded")
            [job] = jobs_of(sandbox, "NODE")
            node = dict(part.split("=", 1) for part in cluster.run("scontrol", "show", "job", job["id"]).stdout.split() if "=" in part)["NodeList"]
            cluster.processes[node].kill()  # the node's slurmd dies; the job's slurmstepd lives on, as after a partition
            wait_for(lambda: cluster.job_state(job["id"])[0] == "NODE_FAIL", timeout=180, what="Slurm to declare the node failed")
            release.touch()  # now the first copy ends, after Slurm gave it up: its result must be fenced off
            stdout, stderr = drain.communicate(timeout=300)
    assert drain.returncode == 0, stdout + stderr
    task = sandbox.task("NODE")
    assert (task["status"], task["attempts"]) == ("completed", 1), "the lost run did not burn the only attempt"
    lines = journal.read_text().split("\n")[:-1]
    first, second = (job["id"] for job in jobs_of(sandbox, "NODE"))
    assert lines == [f"start {first}", f"end {first}", f"start {second}", f"end {second}"], "never two copies at once"
    [lost] = [e for e in sandbox.events("NODE") if e["event_type"] == "task.interrupted"]
    assert "NODE_FAIL" in lost["message"] and "fenced off and ignored" in lost["message"]
    assert json.loads((sandbox.orch / "results" / "NODE.json").read_text())["status"] == "completed"


def test_slurmctld_restarted_mid_job_is_waited_out_and_the_job_completes_once(sandbox, tmp_path_factory, tmp_path):
    runs, release = tmp_path / "runs", tmp_path / "release"
    with SlurmCluster(tmp_path_factory.mktemp("slurm-restart"), nodes=2) as cluster:
        drain = start_held_job(sandbox, cluster, "WAIT", runs, release)
        with released_at_the_end(drain, release):
            cluster.stop_daemon("slurmctld")
            # Longer than a job's exit file may lag (macp.slurm.EXIT_FILE_WAIT_SECONDS): the
            # controller asks Slurm while nobody answers (tests/test_executor.py pins down that
            # an unanswered squeue is "unknown", never "ended"), and the job goes on.
            time.sleep(25)
            cluster.start_daemon("slurmctld")
            release.touch()
            stdout, stderr = drain.communicate(timeout=300)
    assert drain.returncode == 0, stdout + stderr
    assert sandbox.task("WAIT")["status"] == "completed" and runs.read_text() == "run\n"
