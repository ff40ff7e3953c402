"""Admission at a cost in the tasks changed since the last claim, not in the queue (issue 11).

:func:`macp.admission.admit` reasons over every unfinished task at every claim, so a queue of
10,000 pending tasks made each claim cost ~30 ms. :class:`Admitter` gives the same
:class:`~macp.admission.Admission` as ``admit`` over the whole queue (a property test
checks one against the other after every change) from an index it keeps across claims and
brings up to date from the ids the :class:`~macp.taskstore.TaskDocument` changed since it
last looked (``change_log``):

- the *eligible* tasks -- pending, every dependency completed, not refused -- in a heap by
  queue order (priority, then file position), and those whose ``not_before`` was ahead
  when last seen in a heap by that time;
- each task's dependents, so a completion reconsiders only the tasks waiting for it;
- the active tasks (what :class:`~macp.admission.Busy` counts).

Dependency holds (cycles, dead upstream) need the whole graph. They are computed again
only after a change that can create one: a task added or its ``depends_on`` changed while
it is not completed, a task back to ``pending`` with a dependency not completed, a task
leaving ``completed``, or a task with pending dependents ending failed, escalated or
cancelled. Claims and completions -- nearly every change of a drain -- cannot.

A new document (the queue was read afresh) or a change to the refused tasks rebuilds the
index in one pass.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from macp.admission import Admission, Busy, Hold, Verdict, admission_view, consider, dependency_holds, dependency_ids, stand_in
from macp.budget import Ledger
from macp.clock import parse_timestamp
from macp.dependencies import DEAD_ENDS, KnownTasks, Outside
from macp.lifecycle import ACTIVE, status_of
from macp.model import Config, Task
from macp.scheduler import queue_rank
from macp.taskdoc import TaskDocument


@dataclass(frozen=True)
class _Seen:
    """What the index knows of one task (its refused stand-in when refused)."""

    status: str
    depends_on: tuple[str, ...]
    rank: int
    not_before: str | None


def _seen(task: Task) -> _Seen:
    return _Seen(status_of(task), tuple(dependency_ids(task)), queue_rank(task), task.get("not_before") or None)


class Admitter:
    """:func:`macp.admission.admit` for one long-lived :class:`TaskDocument` (the
    controller's queue session), incremental across calls; see the module docstring."""

    def __init__(self) -> None:
        self._reset(None, frozenset())

    def _reset(self, document: TaskDocument | None, refused: frozenset[str], outside: Outside | None = None) -> None:
        self._document = document
        self._refused = refused
        self._outside = outside
        self._outside_status: dict[str, str | None] = {}  # dependency id not in the queue -> its archived status
        self._consumed = 0
        self._seen: dict[str, _Seen] = {}
        self._dependents: dict[str, set[str]] = {}
        self._active: set[str] = set()
        # id -> (rank, position, generation) of its one live entry in _ready or _sleeping
        self._eligible: dict[str, tuple[int, int, int]] = {}
        self._generation = 0
        self._ready: list[tuple[int, int, str, int]] = []
        self._sleeping: list[tuple[datetime, int, str, int]] = []
        self._dirty = True

    def admit(
        self,
        document: TaskDocument,
        config: Config,
        runtime_state: dict,
        now: datetime,
        brief_text: Callable[[Task], str],
        refused: Mapping[str, str] | None = None,
        outside: Outside | None = None,
        ledger: Ledger | None = None,
    ) -> Admission:
        """What ``admit(document.tasks, config, runtime_state, now, brief_text, refused,
        outside, ledger)`` returns. The caller applies the holds before the next call, as the
        controller does. An archived task never changes, so what ``outside`` says of one is
        kept until the queue is read afresh."""
        refused = refused or {}
        if document is not self._document or self._refused != frozenset(refused) or outside is not self._outside:
            self._rebuild(document, frozenset(refused), outside)
        else:
            for task_id in dict.fromkeys(document.change_log[self._consumed :]):
                self._update(task_id, document.find(task_id))
        self._consumed = len(document.change_log)
        holds: list[Hold] = []
        if self._dirty:
            holds = dependency_holds(admission_view(document.tasks, refused, KnownTasks(document.tasks, outside)))
            self._dirty = bool(holds)  # until they are applied and come back as changes

        def judge(task: Task, busy: Busy) -> Verdict:
            return consider(task, busy, config, document.tasks, runtime_state, now, brief_text, ledger)

        return self._pick(document, now, judge, holds)

    # -- keeping the index ---------------------------------------------------------------

    def _rebuild(self, document: TaskDocument, refused: frozenset[str], outside: Outside | None) -> None:
        """Index ``document`` from nothing, in one pass and one heapify."""
        self._reset(document, refused, outside)
        for task in document.tasks:
            seen = self._seen[task["id"]] = _seen(stand_in(task) if task["id"] in refused else task)
            for dependency in seen.depends_on:
                self._dependents.setdefault(dependency, set()).add(task["id"])
            if seen.status in ACTIVE:
                self._active.add(task["id"])
        for position, task in enumerate(document.tasks):
            seen = self._seen[task["id"]]
            if seen.status == "pending" and task["id"] not in refused and self._dependencies_met(seen):
                self._generation += 1
                self._eligible[task["id"]] = (seen.rank, position, self._generation)
                self._ready.append((seen.rank, position, task["id"], self._generation))
        heapq.heapify(self._ready)

    def _update(self, task_id: str, task: Task | None) -> None:
        """Bring the index up to date with ``task`` (None: it is gone), the new state of
        ``task_id``."""
        old = self._seen.get(task_id)
        new = None if task is None else _seen(stand_in(task) if task_id in self._refused else task)
        if old == new:
            return
        for dependency in old.depends_on if old else ():
            self._dependents.get(dependency, set()).discard(task_id)
        for dependency in new.depends_on if new else ():
            self._dependents.setdefault(dependency, set()).add(task_id)
        if new is None:
            del self._seen[task_id]
        else:
            self._seen[task_id] = new
        # after the task's own entry is new: a task may depend on itself
        self._dirty = self._dirty or self._may_hold(task_id, old, new)
        if new is not None and new.status in ACTIVE:
            self._active.add(task_id)
        else:
            self._active.discard(task_id)
        self._reconsider(task_id)
        if (old is not None and old.status == "completed") != (new is not None and new.status == "completed"):
            for dependent in self._dependents.get(task_id, ()):
                self._reconsider(dependent)

    def _may_hold(self, task_id: str, old: _Seen | None, new: _Seen | None) -> bool:
        """True when the change from ``old`` to ``new`` can give a pending task a dependency
        hold (see the module docstring); conservative: True when in doubt."""
        if new is None:
            return True  # its dependents now wait for an unknown task
        unmet = not self._dependencies_met(new)
        if new.status != "completed" and unmet and (old is None or old.depends_on != new.depends_on or old.status == "completed"):
            return True
        if new.status == "pending" and unmet and (old is None or old.status != "pending"):
            return True
        ended = new.status in DEAD_ENDS and (old is None or old.status not in DEAD_ENDS)
        return ended and any(self._seen[d].status == "pending" for d in self._dependents.get(task_id, ()) if d in self._seen)

    def _dependencies_met(self, seen: _Seen) -> bool:
        """Every dependency is known, completed and not refused (a refused task's dependents
        wait for it, whatever its status); one not in the queue, when archived completed."""
        return all(self._dependency_status(d) == "completed" and d not in self._refused for d in seen.depends_on)

    def _dependency_status(self, task_id: str) -> str | None:
        """The status of dependency ``task_id``: in the queue, else archived, else None."""
        if (seen := self._seen.get(task_id)) is not None:
            return seen.status
        if task_id not in self._outside_status:
            archived = self._outside(task_id) if self._outside is not None else None
            self._outside_status[task_id] = status_of(archived) if archived is not None else None
        return self._outside_status[task_id]

    def _reconsider(self, task_id: str) -> None:
        """Give ``task_id`` a fresh heap entry when it is eligible, and end its old one."""
        seen = self._seen.get(task_id)
        self._eligible.pop(task_id, None)
        if seen is None or seen.status != "pending" or task_id in self._refused or not self._dependencies_met(seen):
            return
        assert self._document is not None
        position = self._document.position(task_id)
        assert position is not None
        self._generation += 1
        self._eligible[task_id] = (seen.rank, position, self._generation)
        heapq.heappush(self._ready, (seen.rank, position, task_id, self._generation))

    def _live(self, task_id: str, generation: int) -> bool:
        entry = self._eligible.get(task_id)
        return entry is not None and entry[2] == generation

    # -- the claim -----------------------------------------------------------------------

    def _pick(self, document: TaskDocument, now: datetime, judge: Callable[[Task, Busy], Verdict], holds: list[Hold]) -> Admission:
        """The loop of :func:`macp.admission.admit`, over the eligible tasks in queue order;
        ``judge(task, busy)`` is :func:`macp.admission.consider` with the call's inputs."""
        while self._sleeping and self._sleeping[0][0] <= now:
            _, _, task_id, generation = heapq.heappop(self._sleeping)
            if self._live(task_id, generation):
                rank, position, _ = self._eligible[task_id]
                heapq.heappush(self._ready, (rank, position, task_id, generation))
        busy = Busy.of([self._view(document, task_id) for task_id in self._active])
        examined: list[tuple[int, int, str, int]] = []
        try:
            while self._ready:
                entry = heapq.heappop(self._ready)
                task_id, generation = entry[2], entry[3]
                if not self._live(task_id, generation):
                    continue
                not_before = self._seen[task_id].not_before
                if not_before and (wakes := parse_timestamp(not_before)) > now:
                    heapq.heappush(self._sleeping, (wakes, entry[1], task_id, generation))
                    continue
                examined.append(entry)
                task = document.get(task_id)
                verdict = judge(task, busy)
                if isinstance(verdict, Hold):
                    holds.append(verdict)
                elif verdict is not None:
                    return Admission(task, *verdict, holds)
            return Admission(None, None, "", holds)
        finally:
            for entry in examined:
                heapq.heappush(self._ready, entry)

    def _view(self, document: TaskDocument, task_id: str) -> Task:
        task = document.get(task_id)
        return stand_in(task) if task_id in self._refused else task
