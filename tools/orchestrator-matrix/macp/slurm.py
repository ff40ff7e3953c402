"""The Slurm executor (issue 24, docs/scale-out.md): each command of an attempt -- the worker,
then each gate -- runs as one Slurm job, driven through Slurm's own commands (``sbatch
--parsable``, ``squeue``, ``sacct``, ``scancel``) as Snakemake, Nextflow and Toil drive it.

- A job runs :mod:`macp.slurm_job` (copied into the attempt folder, which must be on a file
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
from dataclasses import dataclass
from pathlib import Path

from macp import clock
from macp.capture import OutputCapture
from macp.errors import MacpError
from macp.fsio import create_regular, read_regular, write_atomic
from macp.model import Job
from macp.procs import OWNER_ENV, Command, ProcessResult

WRAPPER = Path(__file__).with_name("slurm_job.py")
ENDED = frozenset({"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "REVOKED",
                   "SPECIAL_EXIT", "TIMEOUT"})
GONE = "GONE"  # neither squeue nor sacct knows the job
EXIT_FILE_WAIT_SECONDS = 20.0  # how long an exit file may lag behind Slurm saying the job ended (shared file systems)
CLIENT_TIMEOUT_SECONDS = 60.0  # one sbatch, squeue, sacct or scancel call
STALE_HEARTBEATS = 3  # a job whose heartbeat is this many periods old is gone
LINGER_SECONDS = 120.0  # how long a job waits for its attempt's next step before it ends
SIGNAL_BEFORE_LIMIT_SECONDS = 60


@dataclass(frozen=True)
class SlurmSettings:
    """config ``executor`` for Slurm: ``partition`` (None: the cluster's default),
    ``sbatch_args`` added to every ``sbatch``, ``poll_seconds`` between ``squeue`` rounds and
    ``heartbeat_seconds`` between the wrapper's heartbeats."""

    partition: str | None = None
    sbatch_args: tuple[str, ...] = ()
    poll_seconds: float = 2.0
    heartbeat_seconds: float = 10.0


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
        (:mod:`macp.slurm_job`); returns the spec's path."""
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


class SlurmJob:
    """One command running as a Slurm job, advanced like a local
    :class:`~macp.procs.Child` (:class:`macp.pool.StepPool`): no file descriptors to watch,
    :meth:`step` by :meth:`wake_at`. The job's output file is read as it grows and copied,
    redacted and cut, into the command's log, as a local command's output is."""

    def __init__(self, executor: SlurmExecutor, command: Command, job_id: str, name: str, started_at: str, handed: bool = False) -> None:
        self.executor = executor
        self.command = command
        self.job_id = job_id
        self.name = name
        self.started_at = started_at
        folder, step = command.log_path.parent, command.log_path.stem
        self.folder = folder
        self.output = folder / f"{step}.slurm.out"
        self.exit_file = folder / f"{step}.exit-{job_id}.json"
        self.heartbeat = folder / f"job.alive-{job_id}"
        self.next_file = folder / f"next-{job_id}.json" if handed else None  # the hand-over the job has not taken yet
        # What the task records of a job just submitted (a job followed again is recorded already).
        self.job: Job | None = None if command.attach else {"executor": "slurm", "id": job_id, "name": name, "step": step}
        self.survives_controller = step == "worker"  # a gate job is cancelled with its controller; the worker's is followed again
        self.log_handle = os.fdopen(create_regular(command.log_path), "wb")
        self.capture = OutputCapture(self.log_handle, command.max_log_bytes, command.tail_bytes)
        self.read_bytes = 0
        self.began = time.monotonic()
        self.running_since: float | None = None
        self.last_output = self.began
        self.ended_seen: float | None = None  # when Slurm was first seen saying the job ended
        self.stopped: str | None = None  # "deadline", "idle" or "cancel" when MACP ended it
        self.stop_until = math.inf
        self.killed = False
        self.superseded = False  # Slurm declared its node failed before its result came
        self.exit: dict | None = None
        self.state: str | None = None
        self.lost: str | None = None
        self.refused: ProcessResult | None = None  # a withdrawn step sbatch would not take again

    def fds(self) -> set[int]:
        return set()

    def on_ready(self, fd: int) -> None:  # pragma: no cover -- never watches a descriptor
        return None

    def wake_at(self) -> float:
        """The next poll round, or sooner a deadline, an idle limit or the end of a grace."""
        moments = [self.executor.next_poll(), self.stop_until]
        deadline = self.deadline()
        if deadline is not None and self.stopped is None:
            moments.append(deadline)
        return max(time.monotonic(), min(moments))

    def deadline(self) -> float | None:
        """When the task's timeout ends: counted from when the job started running."""
        if self.command.timeout_seconds is None or self.running_since is None:
            return None
        return self.running_since + self.command.timeout_seconds

    def step(self) -> bool:
        """Read new output, ask Slurm (once per round for all jobs), and act: a passed
        deadline or idle limit cancels the job; an exit file, or Slurm saying the job ended
        and no exit file after :data:`EXIT_FILE_WAIT_SECONDS`, ends it. True when
        :meth:`result` is ready."""
        self._read_output()
        now = time.monotonic()
        state = self.executor.state(self.job_id) or self.state
        self.state = state
        if state == "NODE_FAIL":  # Slurm gave the attempt up: whatever its process still writes is not its outcome
            self.superseded = True
        if self.superseded:
            return self._after_node_failure(now)
        if self.exit is not None or self._read_exit():
            return True
        if state == "RUNNING" and self.running_since is None:
            self.running_since = now
        if (state in ENDED or state == GONE) and self._withdrawn():
            return self._resubmit()
        if state in ENDED or state == GONE:
            self.ended_seen = self.ended_seen if self.ended_seen is not None else now
            return now - self.ended_seen >= EXIT_FILE_WAIT_SECONDS
        deadline = self.deadline()
        if self.stopped is None and deadline is not None and now >= deadline:
            self._stop("deadline", now)
        elif self.stopped is None and self.running_since is not None and self._silent(now):
            self._stop("idle", now)
        elif self.stopped is not None and now >= self.stop_until and not self.killed:
            self.killed = True
            self.executor.cancel(self.job_id, "KILL")
        return False

    def release(self) -> None:
        """The attempt is over: its job ends now instead of waiting for a next step."""
        if self.executor.attempt_jobs.get(self.folder) == self.job_id:
            del self.executor.attempt_jobs[self.folder]
        with contextlib.suppress(OSError):
            write_atomic(self.folder / f"stop-{self.job_id}", "")

    def stop(self) -> None:
        """Cancel the job (``mosaic macp cancel``, or a gate job when its controller stops)."""
        if self.stopped is None:
            self._stop("cancel", time.monotonic())

    def kill(self) -> None:
        """SIGKILL all of the job at once."""
        self.executor.cancel(self.job_id, "KILL")
        self.killed = True

    def result(self) -> ProcessResult:
        """How the job ended: its exit file's code (else 143 when MACP stopped it, 137 when
        Slurm ended it without one); its output, redacted, in the command's log and tail;
        ``lost`` after a node failure. The job's raw output file is removed."""
        if self.refused is not None:
            self.log_handle.close()
            self.executor.forget(self.job_id)
            return self.refused
        self._read_output()
        if self.exit is None and self.lost is None:
            self.capture.feed(f"\n[macp: Slurm job {self.job_id} ended {self.state or 'unseen'} without an exit file]\n".encode())
        self.capture.close()
        self.log_handle.close()
        with contextlib.suppress(OSError):
            self.output.unlink()
        self.executor.forget(self.job_id)
        if self.exit is not None and self.lost is None:
            exit_code = int(self.exit.get("exit_code", 1))
            duration = float(self.exit.get("duration_seconds") or 0.0)
        else:
            exit_code = 143 if self.stopped else 137
            duration = round(time.monotonic() - self.began, 3)
        timed_out = self.stopped == "deadline" or (self.stopped is None and self.state == "TIMEOUT")
        return ProcessResult(exit_code, timed_out, duration, self.capture.tail_text(), self.command.log_path, self.capture.written,
                             self.capture.truncated, idle_timed_out=self.stopped == "idle", started_at=self.started_at, lost=self.lost)

    # -- inside ----------------------------------------------------------------------------

    def _stop(self, why: str, now: float) -> None:
        self.stopped = why
        self.stop_until = now + self.command.grace_seconds + self.executor.settings.poll_seconds
        self.executor.cancel(self.job_id)

    def _silent(self, now: float) -> bool:
        idle, first = self.command.idle_timeout_seconds, self.command.first_output_timeout_seconds
        if idle is not None and now - self.last_output >= idle:
            return True
        return first is not None and self.read_bytes == 0 and self.running_since is not None and now - self.running_since >= first

    def _withdrawn(self) -> bool:
        """True when this step was handed to a job that ended without taking it, and the
        hand-over is now withdrawn (renamed away: the job can no longer take it)."""
        if self.next_file is None:
            return False
        try:
            os.rename(self.next_file, self.next_file.with_name(self.next_file.name + ".withdrawn"))
        except OSError:
            return False
        return True

    def _resubmit(self) -> bool:
        """Run the withdrawn step in a job of its own; True when even that cannot be
        submitted (:meth:`result` says why)."""
        submitted = self.executor.submit(self.command, self.folder / f"{self.command.log_path.stem}.job.json")
        if isinstance(submitted, ProcessResult):
            self.refused = submitted
            return True
        self.executor.forget(self.job_id)
        self.job_id, self.next_file, self.state, self.running_since = submitted, None, None, None
        self.exit_file = self.folder / f"{self.command.log_path.stem}.exit-{submitted}.json"
        self.heartbeat = self.folder / f"job.alive-{submitted}"
        self.executor.watch(submitted)
        return False

    def _read_output(self) -> None:
        try:
            chunk = read_regular(self.output, offset=self.read_bytes)
        except OSError:
            return
        if chunk:
            self.capture.feed(chunk)
            self.read_bytes += len(chunk)
            self.last_output = time.monotonic()

    def _read_exit(self) -> bool:
        try:
            self.exit = json.loads(read_regular(self.exit_file))
        except (OSError, ValueError):
            return False
        return True

    def _after_node_failure(self, now: float) -> bool:
        """Slurm gave the job up (``NODE_FAIL``): wait until its process is surely gone -- its exit file appears (fenced off: ignored) or its
        heartbeat is :data:`STALE_HEARTBEATS` periods old -- then report it lost."""
        try:
            beat = self.heartbeat.stat().st_mtime
        except OSError:
            beat = 0.0
        finished = self.exit is not None or self._read_exit()
        stale = time.time() - beat >= STALE_HEARTBEATS * self.executor.settings.heartbeat_seconds
        if not finished and not stale:
            return False
        ended = f"; its process ended later with exit {self.exit.get('exit_code')}, a result fenced off and ignored" if finished and self.exit else ""
        self.lost = f"Slurm job {self.job_id} lost: its node failed (NODE_FAIL){ended}"
        return True
