"""Executors: where the commands of an attempt run (issue 24, docs/scale-out.md).

An executor takes a prepared :class:`~macp.procs.Command` -- argv, folder, environment, log,
time limits -- and returns a :class:`Handle` (or, when it cannot even start it, a
:class:`~macp.procs.ProcessResult` saying why). :class:`macp.pool.StepPool` advances every
handle of a run together, whatever executor made it:

- ``local`` (the default): a child process of the controller in its own process group
  (:class:`macp.procs.Child`); ``--workers N`` of them at once, multiplexed with selectors;
- ``slurm``: a job on a Slurm cluster (:class:`macp.slurm.SlurmExecutor`), polled with one
  ``squeue`` per round, which outlives the controller and is followed again after a crash.

Chosen by config ``executor.kind`` or ``--executor`` (:func:`make_executor`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, get_args

from macp.errors import MacpError
from macp.model import ExecutorConfig, ExecutorKind, Job
from macp.procs import Child, Command, ProcessResult
from macp.slurm import SlurmExecutor, SlurmSettings

KINDS = get_args(ExecutorKind)


class Handle(Protocol):
    """One started command, advanced without blocking: :meth:`fds` to watch, :meth:`on_ready`
    when one is readable, :meth:`step` at least by :meth:`wake_at` (monotonic seconds),
    :meth:`result` once :meth:`step` returned True; :meth:`stop` ends it (a grace, then a
    kill), :meth:`kill` at once; :meth:`release` when the attempt it belongs to is over
    (a Slurm job that runs an attempt's steps ends then). ``survives_controller``: left running when the controller
    stops, to be followed again (``Command.attach``); ``job``: what the task records of it
    (None for a local process)."""

    survives_controller: bool
    job: Job | None

    def fds(self) -> set[int]: ...

    def on_ready(self, fd: int) -> None: ...

    def wake_at(self) -> float: ...

    def step(self) -> bool: ...

    def stop(self) -> None: ...

    def kill(self) -> None: ...

    def release(self) -> None: ...

    def result(self) -> ProcessResult: ...


class Executor(Protocol):
    """Starts commands (:meth:`start`); ``name`` is its config ``kind``."""

    name: str

    def start(self, command: Command) -> Handle | ProcessResult: ...


class LocalExecutor:
    """Runs commands as child processes of the controller (:class:`macp.procs.Child`)."""

    name = "local"

    def start(self, command: Command) -> Handle | ProcessResult:
        """:meth:`macp.procs.Child.start`; a command to attach to is refused (a local process
        never outlives its controller)."""
        if command.attach:
            raise MacpError(f"the local executor cannot follow job {command.attach}: it was started by another executor")
        return Child.start(command)


def make_executor(config: ExecutorConfig, kind: str | None, repo_root: Path) -> Executor:
    """The executor ``kind`` names (None: config ``executor.kind``), set up from config
    ``executor``. Raises :class:`MacpError` (exit 2) for an unknown kind or a Slurm
    executor without Slurm's commands."""
    kind = kind or config["kind"]
    if kind == "local":
        return LocalExecutor()
    if kind == "slurm":
        settings = SlurmSettings(config["partition"], tuple(config["sbatch_args"]), config["poll_seconds"], config["heartbeat_seconds"])
        return SlurmExecutor(settings, repo_root)
    raise MacpError(f"unknown executor {kind!r}: expected one of {', '.join(KINDS)}")
