"""The Slurm executor (issue 24, docs/scale-out.md): each command of an attempt -- the worker,
then each gate -- runs as one Slurm job, driven through Slurm's own commands (``sbatch
--parsable``, ``squeue``, ``sacct``, ``scancel``) as Snakemake, Nextflow and Toil drive it.

- A job runs :mod:`macp.slurm_wrapper` (copied into the attempt folder, which must be on a file
  system the nodes share), submitted with ``--no-requeue`` (Slurm otherwise runs a job again
  after a node failure while its first copy may still run), a deterministic name
  (:func:`job_name`), ``--chdir`` the worktree, ``--output`` in the attempt folder, ``--time``
  as a backstop past the task's timeout, and ``--signal=B:TERM@60`` so the wrapper can stop
  its command and write its exit before Slurm's limit.
- The job's exit file is the truth: Slurm reports ``0:0`` for timed-out and cancelled jobs
  and knows nothing yet of a job a moment old. One ``squeue`` call per poll round covers every
  job (:meth:`SlurmExecutor.states`); ``sacct -c`` only for a job ``squeue`` no longer knows.
- The controller keeps the task's deadline and idle limits itself and ``scancel``\\ s the job
  when one passes; ``--time`` only backs that up.
- ``NODE_FAIL``: the job's process may live on where Slurm cannot see it. The handle waits
  until its heartbeat goes stale or its exit file appears, then reports the job lost
  (:attr:`ProcessResult.lost`): never two copies of an attempt at once. Once Slurm has
  declared the job's node failed, the job's own result is fenced off and ignored (its exit
  file names its job id, so it can never pass for the next job's), and the attempt runs
  again, not counted.
- A job outlives the controller (:attr:`SlurmJob.survives_controller`): a controller that is
  stopped or crashes leaves it running, and the next one follows it by its id
  (``Command.attach``) instead of running the attempt again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import subprocess
import time
from pathlib import Path

from macp import clock
from macp.errors import MacpError
from macp.fsio import create_regular, write_atomic
from macp.procs import OWNER_ENV, Command, ProcessResult
from macp.slurm_handle import ENDED, GONE, SlurmJob, SlurmSettings

WRAPPER = Path(__file__).with_name("slurm_wrapper.py")
CLIENT_TIMEOUT_SECONDS = 60.0  # one sbatch, squeue, sacct or scancel call
LINGER_SECONDS = 120.0  # how long a job waits for its attempt's next step before it ends
SIGNAL_BEFORE_LIMIT_SECONDS = 60


def job_name(repo_root: Path, task_id: str, attempt: str, claim_token: str) -> str:
    """The deterministic job name of one attempt: ``macp-<repository hash>-<task>-a<attempt>-<claim>``
    (the repository's path hashed to 8 hex digits, the claim token's first 8)."""
    repo = hashlib.sha256(str(repo_root).encode()).hexdigest()[:8]
    return f"macp-{repo}-{task_id}-a{attempt}-{claim_token[:8]}"


def time_limit(timeout_seconds: float | None, grace_seconds: float) -> str | None:
    """``--time`` in whole minutes for a command MACP itself stops after ``timeout_seconds``:
    past the deadline, the grace and the wrapper's warning, so it only ever backs MACP up."""
    if timeout_seconds is None:
        return None
    return str(math.ceil((timeout_seconds + grace_seconds + 2 * SIGNAL_BEFORE_LIMIT_SECONDS) / 60))


def sbatch_argv(settings: SlurmSettings, name: str, cwd: Path, output: Path, minutes: str | None, script: Path, spec: Path) -> list[str]:
    """The ``sbatch`` command line of one job (see the module's docstring)."""
    argv = ["sbatch", "--parsable", "--no-requeue", f"--job-name={name}", f"--chdir={cwd}", f"--output={output}", "--export=ALL",
            f"--signal=B:TERM@{SIGNAL_BEFORE_LIMIT_SECONDS}"]
    if minutes is not None:
        argv.append(f"--time={minutes}")
    if settings.partition:
        argv.append(f"--partition={settings.partition}")
    return [*argv, *settings.sbatch_args, str(script), str(spec)]


def parse_job_id(stdout: str) -> str:
    """The job id ``sbatch --parsable`` printed (``id`` or ``id;cluster``). Raises
    :class:`MacpError` for anything else."""
    job_id = stdout.strip().split(";", 1)[0]
    if not job_id.isdigit():
        raise MacpError(f"sbatch printed no job id: {stdout.strip()[:200]!r}")
    return job_id


def parse_states(stdout: str) -> dict[str, str]:
    """``{job id: state}`` from ``squeue -o '%i|%T'`` or ``sacct -P -o JobID,State`` lines
    (steps such as ``12.batch`` and states such as ``CANCELLED by 0`` reduced to the job's)."""
    states = {}
    for line in stdout.splitlines():
        job_id, _, state = line.strip().partition("|")
        if job_id and state and "." not in job_id:
            states[job_id] = state.split()[0].rstrip("+")
    return states


class SlurmExecutor:
    """Runs commands as Slurm jobs of the cluster the environment's ``SLURM_CONF`` (or the
    machine's own config) names. ``repo_root`` and the controller's claim token (its
    ``MACP_OWNER_TOKEN``) make the job names. Raises :class:`MacpError` (exit 2) when
    Slurm's commands are not on PATH."""

    name = "slurm"

    def __init__(self, settings: SlurmSettings, repo_root: Path) -> None:
        self.settings = settings
        self.repo_root = repo_root
        self.watched: set[str] = set()
        self.known: dict[str, str] = {}
        self.attempt_jobs: dict[Path, str] = {}  # attempt folder -> the job running its steps
        self.names: dict[str, str] = {}  # job id -> name, for the jobs this executor submitted
        self.polled_at = -math.inf
        self.squeue_calls = 0
        missing = [tool for tool in ("sbatch", "squeue", "scancel") if shutil.which(tool) is None]
        if missing:
            raise MacpError(f"the Slurm executor needs {', '.join(missing)} on PATH")

    # -- the executor's interface -----------------------------------------------------------

    def start(self, command: Command) -> SlurmJob | ProcessResult:
        """Run ``command`` in its attempt's job: hand it to the job the attempt already has
        (it waits for its next step), else submit a job that starts with it; with
        ``command.attach``, follow that job. A :class:`ProcessResult` with ``spawn_error``
        when ``sbatch`` refuses the job. Raises ``OSError`` when the attempt folder cannot
        be written."""
        folder = command.log_path.parent
        folder.mkdir(parents=True, exist_ok=True)
        started_at = clock.timestamp()
        if command.attach:
            self.attempt_jobs[folder] = command.attach
            return self.follow(command, command.attach, started_at)
        spec = self.write_spec(command)
        job_id = self.attempt_jobs.get(folder)
        if job_id is not None and self.known.get(job_id) not in (*ENDED, GONE):
            write_atomic(folder / f"next-{job_id}.json", json.dumps({"spec": str(spec)}))
            return self.follow(command, job_id, started_at, handed=True)
        submitted = self.submit(command, spec)
        if isinstance(submitted, ProcessResult):
            return submitted
        return self.follow(command, submitted, started_at)

    def write_spec(self, command: Command) -> Path:
        """Write the job wrapper (once per attempt folder) and ``command``'s step spec
        (:mod:`macp.slurm_wrapper`); returns the spec's path."""
        folder, step = command.log_path.parent, command.log_path.stem
        script = folder / "job.py"
        if not script.exists():
            write_atomic(script, WRAPPER.read_text(encoding="utf-8"))
        spec = folder / f"{step}.job.json"
        write_atomic(spec, json.dumps({
            "argv": command.argv,
            "cwd": str(command.cwd),
            "stdin": str(command.stdin_path) if command.stdin_path else None,
            "output": str(folder / f"{step}.slurm.out"),
            "exit_file": str(folder / f"{step}.exit-{{job}}.json"),
            "heartbeat_file": str(folder / "job.alive-{job}"),
            "next_file": str(folder / "next-{job}.json"),
            "stop_file": str(folder / "stop-{job}"),
            "grace_seconds": command.grace_seconds,
            "heartbeat_seconds": self.settings.heartbeat_seconds,
            "linger_seconds": LINGER_SECONDS,
        }))
        return spec

    def submit(self, command: Command, spec: Path) -> str | ProcessResult:
        """Submit the attempt's job, starting with the step ``spec``; its id, or a
        :class:`ProcessResult` saying why ``sbatch`` refused it."""
        folder, env = command.log_path.parent, command.env
        token = env.get(OWNER_ENV) or os.environ.get(OWNER_ENV, "")
        name = job_name(self.repo_root, env.get("MACP_TASK_ID", "task"), env.get("MACP_ATTEMPT", "0"), token)
        seconds = None if command.timeout_seconds is None else command.timeout_seconds + command.later_seconds
        argv = sbatch_argv(self.settings, name, command.cwd, folder / "job-%j.out", time_limit(seconds, command.grace_seconds), folder / "job.py", spec)
        job_env = {key: value for key, value in env.items() if key != OWNER_ENV}  # a crash's clean-up must not kill a job that outlives it
        job_env.update({key: value for key, value in os.environ.items() if key.startswith("SLURM_") and key not in job_env})
        try:
            proc = subprocess.run(argv, env=job_env, capture_output=True, text=True, timeout=CLIENT_TIMEOUT_SECONDS, check=False)
            job_id = parse_job_id(proc.stdout) if proc.returncode == 0 else None
            error = proc.stderr.strip() or proc.stdout.strip()
        except (OSError, subprocess.TimeoutExpired, MacpError) as exc:
            job_id, error = None, str(exc)
        if job_id is None:
            message = f"sbatch refused the job: {error[:500]}"
            log = os.fdopen(create_regular(command.log_path), "wb")
            with log:
                log.write((message + "\n").encode())
            return ProcessResult(None, False, 0.0, message, command.log_path, len(message) + 1, False, message, started_at=clock.timestamp())
        self.attempt_jobs[folder] = job_id
        self.names[job_id] = name
        return job_id

    def follow(self, command: Command, job_id: str, started_at: str, handed: bool = False) -> SlurmJob:
        """A handle on job ``job_id`` running ``command``: submitted with it, ``handed`` it
        as its next step, or followed again after a controller crash."""
        self.watch(job_id)
        return SlurmJob(self, command, job_id, self.names.get(job_id, ""), started_at, handed)

    def watch(self, job_id: str) -> None:
        """Include ``job_id`` in the poll rounds, starting with one at once."""
        self.watched.add(job_id)
        self.polled_at = -math.inf

    def forget(self, job_id: str) -> None:
        """Stop watching ``job_id`` (its handle has ended)."""
        self.watched.discard(job_id)
        self.known.pop(job_id, None)

    def next_poll(self) -> float:
        """The monotonic time of the next ``squeue`` round."""
        return self.polled_at + self.settings.poll_seconds

    def state(self, job_id: str) -> str | None:
        """The job's state as of this poll round (one ``squeue`` for every watched job, at
        most once per ``poll_seconds``; ``sacct -c`` for those it no longer shows); None
        when neither could be asked."""
        if time.monotonic() >= self.next_poll():
            self.polled_at = time.monotonic()
            self.known = self.states(sorted(self.watched))
        return self.known.get(job_id)

    def states(self, job_ids: list[str]) -> dict[str, str]:
        """``{job id: state}`` for ``job_ids``: ``squeue`` once, then ``sacct -c`` for the jobs
        it does not show; :data:`GONE` for a job neither knows. A job Slurm could not be
        asked about (slurmctld unreachable, restarting) is left out: unknown this round,
        never taken for ended."""
        if not job_ids:
            return {}
        self.squeue_calls += 1
        found = self._query(["squeue", "-h", "--states=all", "-o", "%i|%T", "-j", ",".join(job_ids)])
        if found is None:
            return {}
        missing = [job for job in job_ids if job not in found]
        if missing:
            accounted = self._query(["sacct", "-c", "-n", "-P", "-o", "JobID,State", "-j", ",".join(missing)])
            if accounted is None:
                return found
            found.update(accounted)
            found.update({job: GONE for job in missing if job not in found})
        return found

    def followable(self, job_id: str, log_path: Path) -> bool:
        """True when job ``job_id``, running the command whose log is ``log_path``, can be
        followed to its end: it is queued or running, or its exit file is there."""
        if (log_path.parent / f"{log_path.stem}.exit-{job_id}.json").exists():
            return True
        state = self.states([job_id]).get(job_id)
        return state is None or state not in (*ENDED, GONE)  # unknown: followed, never run twice

    def find(self, task_id: str, attempt: int, claim_token: str) -> str | None:
        """The id of the job a controller with ``claim_token`` submitted for ``task_id``'s
        attempt ``attempt`` (found by its name, :func:`job_name`), or None."""
        name = job_name(self.repo_root, task_id, str(attempt), claim_token)
        found = self._query(["squeue", "-h", "--states=all", "-o", "%i|%T", f"--name={name}"])
        return min(found, key=int) if found else None

    def cancel(self, job_id: str, signal_name: str | None = None) -> None:
        """``scancel`` the job (with ``signal_name``: that signal to all of it instead)."""
        argv = ["scancel", *([f"--signal={signal_name}", "--full"] if signal_name else []), job_id]
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(argv, capture_output=True, timeout=CLIENT_TIMEOUT_SECONDS, check=False)

    def _query(self, argv: list[str]) -> dict[str, str] | None:
        """:func:`parse_states` of what ``argv`` prints; None when it could not answer.
        ``squeue -j`` fails with "Invalid job id specified" when it knows none of the ids:
        an answer (none of them), not a failure."""
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=CLIENT_TIMEOUT_SECONDS, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if proc.returncode != 0 and "Invalid job id" not in proc.stderr:
            return None
        return parse_states(proc.stdout)
