#!/usr/bin/env python3
"""The wrapper every MACP Slurm job runs (issue 24): a standalone script, standard library only
and importing nothing of MACP, because it runs on a cluster node. One job runs one attempt:
the worker, then -- as the controller hands them over -- the gates. The Slurm executor
(:mod:`macp.slurm`) copies this file into the attempt folder and submits it with ``sbatch``:

    sbatch ... <attempt>/job.py <attempt>/<first step>.job.json

A step's spec (JSON) names ``argv``, ``cwd``, ``stdin`` (a file, or null for ``/dev/null``),
``output`` (the step's output file) and ``exit_file``; and for the job ``heartbeat_file``,
``next_file``, ``stop_file``, ``grace_seconds``, ``heartbeat_seconds`` and ``linger_seconds``.
``{job}`` in a path becomes the job's ``SLURM_JOB_ID``. The wrapper

- runs the step's ``argv`` in a session of its own, its output into the step's output file;
- touches the heartbeat file every ``heartbeat_seconds`` while the job lives, so the
  controller can tell a job whose node Slurm declared failed (``NODE_FAIL``) but whose process
  lives on from one that is really gone;
- on SIGTERM, SIGINT, SIGHUP or SIGUSR1 (``scancel``, or the ``--signal`` Slurm sends before the
  time limit) sends SIGTERM to the step's process group, SIGKILL after the grace, and ends
  the job after that step;
- when a step ends, stops what it left in its group, then writes the step's exit file
  atomically (a temporary file renamed over it): ``{"job_id", "exit_code", "signal",
  "started_at", "duration_seconds"}``, ``exit_code`` as the shell has it (128+N when killed
  by signal N). The exit file is what the controller trusts: Slurm's own accounting says
  ``0:0`` for a job that timed out or was cancelled, and lags behind a new one;
- then waits for the controller's next step: it takes the next-step file (renaming it, so
  it is taken once) and runs the spec it names; the stop file, a stop signal or
  ``linger_seconds`` without a next step end the job.

Exits with the last step's exit code.
"""

import json
import os
import signal
import subprocess
import sys
import time

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
WAIT_SECONDS = 0.2  # how often the next-step and stop files are looked for


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


class Job:
    """The job's state across its steps: its id, the stop signal once one came, the step
    running now (its process, when it got the signal)."""

    def __init__(self, job_id):
        self.job_id = job_id
        self.stopped = None  # (signal number, monotonic time) of the first stop signal
        self.proc = None
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.on_signal)

    def on_signal(self, signum, _frame):
        if self.stopped is None:
            self.stopped = (signum, time.monotonic())
        if self.proc is not None:
            signal_group(self.proc.pid, signal.SIGTERM)

    def path(self, template):
        return template.replace("{job}", self.job_id)

    def run_step(self, spec):
        """Run one step to its end and write its exit file; return its exit code."""
        started = time.time()
        heartbeat = self.path(spec["heartbeat_file"])
        stdin = open(spec["stdin"], "rb") if spec.get("stdin") else None  # noqa: SIM115 -- closed below
        output = open(spec["output"], "wb")  # noqa: SIM115 -- closed below
        try:
            proc = subprocess.Popen(spec["argv"], cwd=spec["cwd"], stdin=stdin or subprocess.DEVNULL, stdout=output,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            output.write(f"cannot start {spec['argv'][0]!r}: {exc.strerror or exc}\n".encode())
            code = 127
        else:
            code = self.wait(proc, spec, heartbeat)
        finally:
            output.close()
            if stdin is not None:
                stdin.close()
        write_exit(self.path(spec["exit_file"]), {
            "job_id": self.job_id,
            "exit_code": code,
            "signal": int(self.stopped[0]) if self.stopped else None,
            "started_at": started,
            "duration_seconds": round(time.time() - started, 3),
        })
        return code

    def wait(self, proc, spec, heartbeat):
        """Wait for the step's process ``proc``, beating; after a stop signal, SIGKILL once
        the grace is over. Stops what the step left in its group. Returns its exit code."""
        self.proc = proc
        if self.stopped is not None:  # the signal came while it started
            signal_group(proc.pid, signal.SIGTERM)
        beat(heartbeat)
        while True:
            try:
                code = proc.wait(timeout=spec["heartbeat_seconds"])
                break
            except subprocess.TimeoutExpired:
                beat(heartbeat)
                if self.stopped and time.monotonic() - self.stopped[1] >= spec["grace_seconds"]:
                    signal_group(proc.pid, signal.SIGKILL)
        self.proc = None
        if signal_group(proc.pid, signal.SIGTERM):  # what the step left running goes with it
            time.sleep(min(1.0, spec["grace_seconds"]))
            signal_group(proc.pid, signal.SIGKILL)
        return code if code >= 0 else 128 - code

    def next_spec(self, spec):
        """The spec of the step the controller hands over next, or None: the stop file, a
        stop signal, or ``linger_seconds`` without a next step."""
        next_file, stop_file = self.path(spec["next_file"]), self.path(spec["stop_file"])
        heartbeat = self.path(spec["heartbeat_file"])
        until = time.monotonic() + spec["linger_seconds"]
        beaten = 0.0
        while self.stopped is None and time.monotonic() < until and not os.path.exists(stop_file):
            taken = f"{next_file}.taken"
            try:
                os.rename(next_file, taken)
            except FileNotFoundError:
                if time.monotonic() - beaten >= spec["heartbeat_seconds"]:
                    beat(heartbeat)
                    beaten = time.monotonic()
                time.sleep(WAIT_SECONDS)
                continue
            with open(taken, encoding="utf-8") as handle:
                step_file = json.load(handle)["spec"]
            with open(step_file, encoding="utf-8") as handle:
                return json.load(handle)
        return None


def main(spec_path):
    """Run the job whose first step's spec is at ``spec_path``; return the last exit code."""
    job = Job(os.environ.get("SLURM_JOB_ID", ""))
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    code = 0
    while spec is not None:
        code = job.run_step(spec)
        spec = None if job.stopped else job.next_spec(spec)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
