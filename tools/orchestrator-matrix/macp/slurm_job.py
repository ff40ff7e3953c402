#!/usr/bin/env python3
"""The wrapper every MACP Slurm job runs (issue 24): a standalone script, standard library only
and importing nothing of MACP, because it runs on a cluster node. The Slurm executor
(:mod:`macp.slurm`) copies it into the attempt folder and submits it with ``sbatch``:

    sbatch ... <attempt>/<step>.job.py <attempt>/<step>.job.json

The spec (JSON) names ``argv``, ``stdin`` (a file, or null for ``/dev/null``), ``exit_file`` and
``heartbeat_file`` (``{job}`` in them becomes the job's ``SLURM_JOB_ID``), ``grace_seconds`` and
``heartbeat_seconds``. The wrapper

- runs ``argv`` in a session of its own, its output going where the job's goes (``--output``);
- touches the heartbeat file every ``heartbeat_seconds`` while the command runs, so the
  controller can tell a job whose node Slurm declared failed (``NODE_FAIL``) but whose process
  lives on from one that is really gone;
- on SIGTERM, SIGINT, SIGHUP or SIGUSR1 (``scancel``, or the ``--signal`` Slurm sends before the
  time limit) sends SIGTERM to the command's process group, and SIGKILL after the grace;
- when the command ends, stops what it left in its group, then writes the exit file atomically
  (a temporary file renamed over it): ``{"job_id", "exit_code", "signal", "started_at",
  "duration_seconds"}``. ``exit_code`` follows the shell (128+N when killed by signal N). The
  exit file is what the controller trusts: Slurm's own accounting says ``0:0`` for a job that
  timed out or was cancelled, and lags behind a new one.

Exits with the command's exit code.
"""

import json
import os
import signal
import subprocess
import sys
import time

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)


def signal_group(pgid, signum):
    """Send ``signum`` to process group ``pgid``; False when the group is gone."""
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def beat(path):
    """Create ``path`` or set its modification time to now: the job is alive."""
    with open(path, "a", encoding="utf-8"):
        os.utime(path)


def write_exit(path, record):
    """Write ``record`` as JSON to ``path`` atomically (a temporary file, fsync'd, renamed)."""
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(record, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def main(spec_path):
    """Run the spec at ``spec_path``; return the command's exit code (shell convention)."""
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    job_id = os.environ.get("SLURM_JOB_ID", "")
    heartbeat = spec["heartbeat_file"].replace("{job}", job_id)
    started = time.time()
    stopped = []
    stdin = open(spec["stdin"], "rb") if spec.get("stdin") else None  # noqa: SIM115 -- closed below
    try:
        proc = subprocess.Popen(spec["argv"], stdin=stdin or subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        sys.stdout.write(f"cannot start {spec['argv'][0]!r}: {exc.strerror or exc}\n")
        sys.stdout.flush()
        write_exit(spec["exit_file"].replace("{job}", job_id), {"job_id": job_id, "exit_code": 127, "signal": None,
                                                                "started_at": started, "duration_seconds": 0.0})
        return 127
    finally:
        if stdin is not None:
            stdin.close()

    def forward(signum, _frame):
        stopped.append((signum, time.monotonic()))
        signal_group(proc.pid, signal.SIGTERM)

    for signum in STOP_SIGNALS:
        signal.signal(signum, forward)
    beat(heartbeat)
    while True:
        try:
            code = proc.wait(timeout=spec["heartbeat_seconds"])
            break
        except subprocess.TimeoutExpired:
            beat(heartbeat)
            if stopped and time.monotonic() - stopped[0][1] >= spec["grace_seconds"]:
                signal_group(proc.pid, signal.SIGKILL)
    if signal_group(proc.pid, signal.SIGTERM):  # what the command left running goes with it
        time.sleep(min(1.0, spec["grace_seconds"]))
        signal_group(proc.pid, signal.SIGKILL)
    exit_code = code if code >= 0 else 128 - code
    write_exit(spec["exit_file"].replace("{job}", job_id), {
        "job_id": job_id,
        "exit_code": exit_code,
        "signal": int(stopped[0][0]) if stopped else None,
        "started_at": started,
        "duration_seconds": round(time.time() - started, 3),
    })
    return exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
