"""What the controller records and knows during one run (the base of
:class:`controller.mosaic_orchestrator.Controller`): the repository, config, owner and queue
session, and the one way a task's state changes -- a locked update and its event, as one
unit (:meth:`RunState.change`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from controller import recovery
from controller.planning import ledger_now
from macp import clock
from macp.admission_index import Admitter
from macp.archive import ArchiveLookup
from macp.budget import Ledger
from macp.errors import EXIT_OK, EXIT_TASKS_FAILED, EXIT_USAGE
from macp.events import append_event, make_event
from macp.executor import Executor, LocalExecutor
from macp.layout import Layout
from macp.lifecycle import status_of, transition
from macp.model import (
    Claim,
    Config,
    Task,
    TaskChanges,
    TaskStatus,
)
from macp.recording import recorded
from macp.signals import SignalGuard
from macp.taskstore import QueueSession
from transport.matrix_transport import MatrixTransport

PROG = "mosaic-orchestrator-run"


@dataclass
class RunSummary:
    """What one controller run did: the status each task it touched ended in, the seconds
    it spent on each, and the tasks it refused to run (id -> why)."""

    outcomes: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """2 when a task was refused (a user error to fix), else 1 when any task ended
        failed or escalated in this run, else 0 (docs/exit-codes.md)."""
        if self.refused:
            return EXIT_USAGE
        failed = any(status in ("failed", "escalated") for status in self.outcomes.values())
        return EXIT_TASKS_FAILED if failed else EXIT_OK


def one_line_title(task: Task) -> str:
    """The task's title (else its id) on one line, for commit messages."""
    title = " ".join((task.get("title") or task["id"]).split())
    return title[:200]


def warn_plain(line: str) -> None:
    """A progress line on stderr (when stdout carries the ``--json`` document)."""
    print(line, file=sys.stderr)


def warn(line: str) -> None:
    """One diagnostic line on stderr, prefixed with the controller's name."""
    print(f"{PROG}: {line}", file=sys.stderr)


class RunState:
    """What one controller run holds and records: its repository, config, signal guard and
    the controller lock's ``owner`` record, its queue session, summary and ledger.

    ``say`` receives one human-readable line per step (stdout by default).
    """

    def __init__(self, layout: Layout, config: Config, guard: SignalGuard, owner: Claim, say=print, refused: dict | None = None) -> None:
        self.layout = layout
        self.config = config
        self.guard = guard
        self.owner = owner
        self.say = say
        self.in_flight: dict[str, float] = {}  # claimed task id -> monotonic time of its claim
        self.summary = RunSummary(refused=dict(refused or {}))
        self.transport = MatrixTransport(layout, config)
        self.queue = QueueSession(layout)  # state changes are journaled (macp.journal)
        self.admitter = Admitter()  # admission kept across claims (macp.admission_index)
        self.archive = ArchiveLookup(layout.orch_dir)  # archived tasks by id: dependencies, the run's summary
        # An event could not be appended after a state change: the next controller must
        # log it on recovery, as after a crash (see run_controller).
        self.unlogged = False
        self.base: str | None = None  # the ref new branches start from, resolved once per run
        self.cancelling: dict[str, str] = {}  # task id -> why, for tasks being stopped on a cancel request
        self.executor: Executor = LocalExecutor()  # where commands run (macp.executor); run_controller sets the configured one
        self.auto_land = False  # land each task this run completes (drain --land, macp.auto_land)
        self.to_land: list[str] = []  # completed this run, to land when nothing runs

    @cached_property
    def ledger(self) -> Ledger:
        """What runs cost so far, for the budgets (:func:`controller.planning.ledger_now`),
        and then every run this controller records."""
        return ledger_now(self.layout, self.queue.snapshot().tasks, clock.now(), self.config)

    def refuse(self, task_id: str, problem: str) -> None:
        """Set ``task_id`` aside for this run, untouched, and say why on stderr."""
        self.summary.refused[task_id] = problem
        warn(f"task {task_id} not run: {problem}")

    # -- recording -----------------------------------------------------------------------

    def event(self, event_type: str, task: Task, message: str, *, source: str = "controller", **metadata: object) -> dict:
        """An event about ``task`` (its current status and attempt)."""
        return make_event(
            event_type,
            source=source,
            task_id=task["id"],
            status=status_of(task),
            attempt=task.get("attempts", 0),
            message=message,
            metadata=metadata,
        )

    def emit(self, event_type: str, task: Task, message: str, *, source: str = "controller", **metadata: object) -> None:
        """Append one event about ``task`` (:meth:`event`)."""
        try:
            append_event(self.layout.events_file, self.event(event_type, task, message, source=source, **metadata))
        except BaseException:
            self.mark_unlogged()
            raise

    def mark_unlogged(self) -> None:
        """A state change was written but its event was not: the next run logs it."""
        self.unlogged = True

    def change(
        self,
        task_id: str,
        new_status: TaskStatus | None,
        event_type: str,
        message: str,
        changes: TaskChanges | None = None,
        metadata: dict[str, Any] | None = None,
        source: str = "controller",
    ) -> Task:
        """Move ``task_id`` to ``new_status`` (None: keep its status) with ``changes`` and
        record ``event_type`` from ``source`` (with ``metadata``), as one unit
        (:func:`macp.recording.recorded`); returns the stored task."""
        with recorded(self.queue.edit(), self.layout.events_file, self.guard, self.mark_unlogged) as (document, events):
            task, now = document.get(task_id), clock.timestamp()
            task = transition(task, new_status, now, changes) if new_status else {**task, **(changes or {}), "updated_at": now}
            document.replace(task)
            events.append(self.event(event_type, task, message, source=source, **(metadata or {})))
        return task

    def update(self, task_id: str, changes: TaskChanges) -> Task:
        """Set fields of ``task_id`` without a status change; returns the stored task."""
        with self.guard.critical(), self.queue.edit() as document:
            task: Task = {**document.get(task_id), **changes, "updated_at": clock.timestamp()}
            document.replace(task)
        return task


    def hand_back(self, task_id: str, why: str) -> str:
        """Put ``task_id`` back to ``pending`` with its attempt not counted, as an
        interruption, because of ``why``: the machine's or the repository's problem (the
        machine's limits, a repository with no commit), not the task's (issue 22). Returns
        its status."""
        with recorded(self.queue.edit(), self.layout.events_file, self.guard, self.mark_unlogged) as (document, events):
            task = recovery.released(document.get(task_id))
            document.replace(task)
            events.append(self.event("task.interrupted", task, f"{why}; attempt not counted"))
        return status_of(task)
