"""Dependency checks (pure; seed 002 "Deadlock Detection", Airflow's upstream_failed).

- :func:`find_cycles`: dependency cycles among unfinished tasks, each as a path
  ``[a, b, c, a]`` (depth-first search; a task waiting on itself is a cycle too).
- :func:`doomed_tasks`: pending tasks that can never run because a dependency ended
  ``failed``, ``escalated`` or ``cancelled``, or does not exist -- transitively.
"""

from __future__ import annotations

from macp.lifecycle import status_of

DEAD_ENDS = frozenset({"failed", "escalated", "cancelled"})


def find_cycles(tasks: list[dict]) -> list[list[str]]:
    """Every distinct dependency cycle among tasks that are not completed, in file order."""
    by_id = {task["id"]: task for task in tasks}
    live = {task["id"] for task in tasks if status_of(task) != "completed"}
    cycles: list[list[str]] = []
    seen_members: set[str] = set()
    done: set[str] = set()

    def visit(node: str, path: list[str], on_path: set[str]) -> None:
        for dependency in by_id[node].get("depends_on") or []:
            if dependency not in live:
                continue
            if dependency in on_path:
                cycle = [*path[path.index(dependency):], dependency]
                if not seen_members.issuperset(cycle):
                    cycles.append(cycle)
                    seen_members.update(cycle)
            elif dependency not in done:
                visit(dependency, [*path, dependency], on_path | {dependency})
        done.add(node)

    for task in tasks:
        if task["id"] in live and task["id"] not in done:
            visit(task["id"], [task["id"]], {task["id"]})
    return cycles


def doomed_tasks(tasks: list[dict]) -> list[tuple[str, str]]:
    """``[(task id, reason)]`` for pending tasks whose dependencies can never complete.

    A dependency that is failed, escalated, cancelled, unknown, or itself doomed dooms its
    dependents (reported in dependency order).
    """
    by_id = {task["id"]: task for task in tasks}
    doomed: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for task in tasks:
            if status_of(task) != "pending" or task["id"] in doomed:
                continue
            for dependency in task.get("depends_on") or []:
                other = by_id.get(dependency)
                if other is None:
                    reason = f"dependency {dependency} does not exist"
                elif dependency in doomed or status_of(other) in DEAD_ENDS:
                    state = "can never run" if dependency in doomed else f"ended {status_of(other)}"
                    reason = f"upstream failed: dependency {dependency} {state}"
                else:
                    continue
                doomed[task["id"]] = reason
                changed = True
                break
    return list(doomed.items())
