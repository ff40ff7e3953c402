"""Executors without a cluster (issue 24): the Slurm executor's command lines and parsing
(pure), its job wrapper run as a real child process, the local executor's limits, and a
drain asked for Slurm on a machine without it. The executor on a real cluster is in
tests/test_slurm_executor.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_durability import wait_for

from macp.errors import MacpError
from macp.executor import LocalExecutor
from macp.procs import Command
from macp.slurm import WRAPPER, SlurmExecutor, SlurmSettings, job_name, parse_job_id, parse_states, sbatch_argv, time_limit


def test_the_job_name_is_deterministic_and_names_repository_task_attempt_and_claim(tmp_path):
    name = job_name(tmp_path, "T-7", "2", "0123456789abcdef")
    assert name == job_name(tmp_path, "T-7", "2", "0123456789abcdef")
    assert name.startswith("macp-") and name.endswith("-T-7-a2-01234567")
    assert name != job_name(tmp_path / "other", "T-7", "2", "0123456789abcdef"), "another repository, another name"


def test_sbatch_gets_no_requeue_the_worktree_the_output_a_backstop_time_and_a_warning_signal(tmp_path):
    settings = SlurmSettings(partition="gpu", sbatch_args=("--mem=4G",))
    argv = sbatch_argv(settings, "macp-x", tmp_path / "wt", tmp_path / "worker.slurm.out", time_limit(600, 5), tmp_path / "w.py", tmp_path / "w.json")
    assert argv[:3] == ["sbatch", "--parsable", "--no-requeue"]
    assert {"--job-name=macp-x", f"--chdir={tmp_path / 'wt'}", f"--output={tmp_path / 'worker.slurm.out'}", "--export=ALL",
            "--signal=B:TERM@60", "--time=13", "--partition=gpu"} <= set(argv)
    assert argv[-3:] == ["--mem=4G", str(tmp_path / "w.py"), str(tmp_path / "w.json")], "the user's arguments last before the script"
    assert time_limit(None, 5) is None and "--time" not in " ".join(sbatch_argv(SlurmSettings(), "n", tmp_path, tmp_path, None, tmp_path, tmp_path))


def test_states_and_job_ids_are_read_as_squeue_sacct_and_sbatch_print_them():
    assert parse_states("12|RUNNING\n13|CANCELLED by 0\n13.batch|CANCELLED\n14|COMPLETED\n\n") == {
        "12": "RUNNING", "13": "CANCELLED", "14": "COMPLETED"}
    assert parse_job_id("42\n") == "42" and parse_job_id("42;cluster\n") == "42"
    with pytest.raises(MacpError, match="sbatch printed no job id"):
        parse_job_id("Submitted batch job 42")


def test_the_local_executor_never_pretends_to_follow_a_job(tmp_path):
    with pytest.raises(MacpError, match="cannot follow job 12"):
        LocalExecutor().start(Command(["true"], tmp_path, {}, tmp_path / "log", None, attach="12"))


def step_spec(folder: Path, step: str, argv: list[str], linger: float = 60) -> Path:
    """A step spec for the job wrapper (macp/slurm_wrapper.py) in ``folder``; returns its path."""
    spec = folder / f"{step}.job.json"
    spec.write_text(json.dumps({
        "argv": argv, "cwd": str(folder), "stdin": None, "output": str(folder / f"{step}.out"),
        "exit_file": str(folder / f"{step}.exit-{{job}}.json"), "heartbeat_file": str(folder / "alive-{job}"),
        "next_file": str(folder / "next-{job}.json"), "stop_file": str(folder / "stop-{job}"),
        "grace_seconds": 1, "heartbeat_seconds": 0.2, "linger_seconds": linger}))
    return spec


def run_wrapper(first: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WRAPPER), str(first)], env={**os.environ, "SLURM_JOB_ID": "7"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def exit_record(folder: Path, step: str) -> dict:
    return json.loads((folder / f"{step}.exit-7.json").read_text())


def test_the_job_wrapper_runs_each_step_it_is_handed_and_ends_when_told(tmp_path):
    proc = run_wrapper(step_spec(tmp_path, "worker", ["/bin/sh", "-c", "echo working; sleep 0.5; exit 3"]))
    wait_for((tmp_path / "worker.exit-7.json").exists, timeout=60, what="the first step's exit")
    assert (exit_record(tmp_path, "worker")["job_id"], exit_record(tmp_path, "worker")["exit_code"]) == ("7", 3)
    assert (tmp_path / "worker.out").read_text() == "working\n" and proc.poll() is None, "the job waits for its next step"
    gate = step_spec(tmp_path, "gate-1", ["/bin/sh", "-c", "echo gate in $PWD"])
    (tmp_path / "next-7.json").write_text(json.dumps({"spec": str(gate)}))
    wait_for((tmp_path / "gate-1.exit-7.json").exists, timeout=60, what="the handed step's exit")
    assert exit_record(tmp_path, "gate-1")["exit_code"] == 0 and (tmp_path / "gate-1.out").read_text() == f"gate in {tmp_path}\n"
    assert not (tmp_path / "next-7.json").exists(), "a hand-over is taken once"
    (tmp_path / "stop-7").touch()
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and output == "", "it ends when told, with the last step's code"
    assert (tmp_path / "alive-7").exists(), "it beat while it lived"


def test_the_job_wrapper_stops_its_step_on_sigterm_writes_its_exit_and_ends(tmp_path):
    started = tmp_path / "started"
    proc = run_wrapper(step_spec(tmp_path, "worker", ["/bin/sh", "-c", f'touch "{started}"; sleep 300 & wait']))
    wait_for(started.exists, timeout=60, what="the command to start")
    proc.send_signal(signal.SIGTERM)  # what scancel, or Slurm's warning before the time limit, sends
    proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert (exit_record(tmp_path, "worker")["exit_code"], exit_record(tmp_path, "worker")["signal"]) == (143, signal.SIGTERM)


def test_a_job_with_no_next_step_ends_after_it_lingered(tmp_path):
    proc = run_wrapper(step_spec(tmp_path, "worker", ["true"], linger=0.5))
    proc.communicate(timeout=60)
    assert proc.returncode == 0 and exit_record(tmp_path, "worker")["exit_code"] == 0


def test_a_drain_asked_for_slurm_where_there_is_none_is_one_line_and_exit_2(sandbox, tmp_path):
    tools = tmp_path / "tools"  # the machine's commands, Slurm's left out
    tools.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        for tool in Path(folder).glob("*") if Path(folder).is_dir() else ():
            if tool.name not in ("sbatch", "squeue", "scancel", "sacct") and not (tools / tool.name).is_symlink():
                (tools / tool.name).symlink_to(tool)
    sandbox.env["PATH"] = str(tools)
    sandbox.write_tasks({"tasks": [{"id": "T", "dispatch": "exec", "command": "true"}]})
    proc = sandbox.macp("drain", "--executor", "slurm")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "the Slurm executor needs sbatch, squeue, scancel on PATH" in proc.stderr
    assert sandbox.task("T").get("status") in (None, "pending") and not (sandbox.orch / ".controller.lock").exists()


def test_a_cluster_that_does_not_answer_leaves_a_jobs_state_unknown_never_ended(tmp_path, monkeypatch):
    for tool, script in {"sbatch": "exit 0", "scancel": "exit 0",
                         "squeue": 'echo "slurm_load_jobs error: Unable to contact slurm controller (connect failure)" >&2; exit 1',
                         "sacct": "exit 0"}.items():
        (tmp_path / tool).write_text(f"#!/bin/sh\n{script}\n")
        (tmp_path / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    executor = SlurmExecutor(SlurmSettings(), tmp_path)
    assert executor.states(["5", "6"]) == {}, "slurmctld down: unknown this round"
    assert executor.followable("5", tmp_path / "worker.log"), "an unknown job is followed, never run twice"
    (tmp_path / "squeue").write_text('#!/bin/sh\necho "slurm_load_jobs error: Invalid job id specified" >&2; exit 1\n')
    assert executor.states(["5"]) == {"5": "GONE"}, "an answer that names none of the jobs: gone"
