"""Dependency checks (pure; seed 002 "Deadlock Detection", Airflow's upstream_failed).

- :func:`find_cycles`: dependency cycles among unfinished tasks, each as a path
  ``[a, b, c, a]`` (depth-first search; a task waiting on itself is a cycle too).
- :func:`doomed_tasks`: pending tasks that can never run because a dependency ended
  ``failed``, ``escalated`` (but not held for risk approval: :func:`is_dead_end`) or
  ``cancelled``, or does not exist -- transitively.
- :class:`KnownTasks`: tasks by id, the queue's and then the archive's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping

from macp.lifecycle import status_of
from macp.model import Task

DEAD_ENDS = frozenset({"failed", "escalated", "cancelled"})


def is_dead_end(task: Task) -> bool:
    """True when ``task`` can never complete as it stands: failed, cancelled, or escalated
    for any reason but a risk hold. A risk hold is a wait for a person's approval
    (``mosaic macp approve``), not a failure: its dependents wait with it (issue 22)."""
    return status_of(task) in DEAD_ENDS and not task.get("risk_hold")

# Finds a task that is not in the queue by id (the archive: macp.archive.ArchiveLookup).
Outside = Callable[[str], "Task | None"]


class KnownTasks(Mapping[str, Task]):
    """Tasks by id: the ``tasks`` of the queue, then what ``outside`` finds (the archive), so
    a dependency on an archived task is judged by its archived state (issue 22). Iterating
    and ``len`` cover the queue's tasks only."""

    def __init__(self, tasks: list[Task], outside: Outside | None = None) -> None:
        self._by_id = {task["id"]: task for task in tasks}
        self._outside = outside

    def __getitem__(self, task_id: str) -> Task:
        task = self._by_id.get(task_id)
        if task is None and self._outside is not None:
            task = self._outside(task_id)
        if task is None:
            raise KeyError(task_id)
        return task

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)


def find_cycles(tasks: list[Task]) -> list[list[str]]:
    """Every distinct dependency cycle among tasks that are not completed, in file order.

    Iterative depth-first search, O(tasks + dependencies): chains of any length, no
    recursion limit."""
    by_id = {task["id"]: task for task in tasks}
    live = {task["id"] for task in tasks if status_of(task) != "completed"}
    cycles: list[list[str]] = []
    seen_members: set[str] = set()
    done: set[str] = set()

    def live_dependencies(node: str) -> Iterator[str]:
        return (dependency for dependency in by_id[node].get("depends_on") or [] if dependency in live)

    for task in tasks:
        if task["id"] not in live or task["id"] in done:
            continue
        path, position = [task["id"]], {task["id"]: 0}
        stack = [live_dependencies(task["id"])]
        while stack:
            dependency = next(stack[-1], None)
            if dependency is None:
                node = path.pop()
                del position[node]
                done.add(node)
                stack.pop()
            elif dependency in position:
                cycle = [*path[position[dependency] :], dependency]
                if not seen_members.issuperset(cycle):
                    cycles.append(cycle)
                    seen_members.update(cycle)
            elif dependency not in done:
                position[dependency] = len(path)
                path.append(dependency)
                stack.append(live_dependencies(dependency))
    return cycles


def doomed_tasks(tasks: list[Task]) -> list[tuple[str, str]]:
    """``[(task id, reason)]`` for pending tasks whose dependencies can never complete.

    A dependency that is failed, escalated, cancelled, unknown, or itself doomed dooms its
    dependents (reported in dependency order, each with its first such dependency).
    Worklist propagation, O(tasks + dependencies).
    """
    by_id = {task["id"]: task for task in tasks}
    dependents: dict[str, list[Task]] = {}
    for task in tasks:
        if status_of(task) == "pending":
            for dependency in task.get("depends_on") or []:
                dependents.setdefault(dependency, []).append(task)
    doomed: dict[str, str] = {}
    queue = deque(task for task in tasks if status_of(task) == "pending")
    while queue:
        task = queue.popleft()
        if task["id"] in doomed:
            continue
        reason = _doom_reason(task, by_id, doomed)
        if reason is not None:
            doomed[task["id"]] = reason
            queue.extend(dependents.get(task["id"], []))
    return list(doomed.items())


def _doom_reason(task: Task, by_id: Mapping[str, Task], doomed: dict[str, str]) -> str | None:
    for dependency in task.get("depends_on") or []:
        other = by_id.get(dependency)
        if other is None:
            return f"dependency {dependency} does not exist"
        if dependency in doomed or is_dead_end(other):
            state = "can never run" if dependency in doomed else f"ended {status_of(other)}"
            return f"upstream failed: dependency {dependency} {state}"
    return None
