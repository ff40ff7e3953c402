"""The real Slurm cluster the Slurm executor will be tested against (issue 24, section 4):
Debian's packages, one slurmctld and two slurmd nodes on loopback (tests/slurm_harness.py).

These tests pin down the facts the executor builds on, on the cluster itself: a job submitted
with ``sbatch --parsable`` runs on a node, ``scontrol`` reports its state and its own exit
code, ``scancel`` ends a running job, and the cluster stops by PID leaving nothing behind.
Skipped, saying why, where Slurm is not installed or the tests do not run as root.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from slurm_harness import SlurmCluster, why_not_here

pytestmark = pytest.mark.skipif(why_not_here() is not None, reason=why_not_here() or "")


def wait_for_state(cluster: SlurmCluster, job_id: str, states: set[str], timeout: float = 60) -> tuple[str, str]:
    """Poll ``scontrol`` (bounded) until ``job_id`` is in one of ``states``."""
    deadline = time.monotonic() + timeout
    state = ("", "")
    while time.monotonic() < deadline:
        state = cluster.job_state(job_id)
        if state[0] in states:
            return state
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} stayed {state} (waited for {states})")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with SlurmCluster(tmp_path_factory.mktemp("slurm"), nodes=2) as running:
        yield running


def test_the_cluster_has_two_idle_nodes(cluster):
    assert cluster.node_states() == {"n1": "idle", "n2": "idle"}


def test_a_job_runs_on_a_node_and_its_own_exit_code_is_reported(cluster, tmp_path):
    output = tmp_path / "out.txt"
    job = cluster.run("sbatch", "--parsable", "--no-requeue", "--job-name", "macp-smoke", "--chdir", str(tmp_path),
                      "--output", str(output), "--wrap", "echo ran in $PWD; exit 3").stdout.strip()
    assert job.isdigit()
    assert wait_for_state(cluster, job, {"FAILED", "COMPLETED"}) == ("FAILED", "3:0")
    assert output.read_text() == f"ran in {tmp_path}\n"


def test_scancel_ends_a_running_job(cluster, tmp_path):
    started = tmp_path / "started"
    job = cluster.run("sbatch", "--parsable", "--no-requeue", "--output", "/dev/null",
                      "--wrap", f"touch {started}; sleep 120").stdout.strip()
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert started.exists(), "the job started"
    cluster.run("scancel", job)
    assert wait_for_state(cluster, job, {"CANCELLED"})[0] == "CANCELLED"


def test_the_cluster_stops_by_pid_and_leaves_no_daemon(tmp_path):
    cluster = SlurmCluster(tmp_path / "c", nodes=1)
    cluster.start()
    pids = [process.pid for process in cluster.processes.values()]
    cluster.stop()
    assert not cluster.processes
    assert all(not Path(f"/proc/{pid}").exists() for pid in pids), "stopped and reaped"
