"""Which runtime a yolo/acp task runs on (pure; seed 000, "Provider Selection").

A task that names a runtime starts there, and with ``pin_runtime`` runs only there (a provider
failure then waits for that runtime, never moves on). A task that does not gets the runtime with the best
recorded success rate for its ``type`` -- finished tasks of that type, ``completed`` counting
as a success and ``failed``/``escalated`` as a failure, smoothed as (s+1)/(n+2) so a runtime
with no history scores 0.5 -- ties broken by config order with ``worker.runtime`` first, so
with no history the default runtime is chosen. With ``worker.selection`` ``cost`` (issue
23) it gets instead the runtime with the lowest cost per completed task of its type -- what
every run on it cost, waste included, over the tasks that completed on it -- runtimes that
completed none following in the same order as above. On failover the remaining runtimes follow in
config order, skipping those that already failed the task this round and those cooling down
after a provider named its reset time.
"""

from __future__ import annotations

from datetime import datetime

from macp.clock import parse_timestamp
from macp.lifecycle import status_of
from macp.model import Config, Task

SUCCESS = "completed"
FAILURES = ("failed", "escalated")


def success_rates(tasks: list[Task], task_type: str | None) -> dict[str, tuple[int, int]]:
    """``{runtime: (successes, finished)}`` over finished yolo/acp tasks of ``task_type``,
    each counted for the runtime its last attempt ran on."""
    rates: dict[str, tuple[int, int]] = {}
    for task in tasks:
        status = status_of(task)
        ran_on = task.get("attempt_runtime") or task.get("runtime")
        if task.get("type") != task_type or not ran_on or task.get("dispatch") not in ("yolo", "acp"):
            continue
        if status == SUCCESS or status in FAILURES:
            wins, total = rates.get(ran_on, (0, 0))
            rates[ran_on] = (wins + (status == SUCCESS), total + 1)
    return rates


def costs_per_completed(tasks: list[Task], task_type: str | None) -> dict[str, tuple[float, int]]:
    """``{runtime: (dollars, completed)}`` over finished yolo/acp tasks of ``task_type``:
    what every run on the runtime cost (waste included: provider failures spend like
    anything else) and how many of the tasks completed on it. Only runtimes with a
    completed task are listed; a run without a cost counts 0."""
    spent: dict[str, float] = {}
    completed: dict[str, int] = {}
    for task in tasks:
        status = status_of(task)
        if task.get("type") != task_type or task.get("dispatch") not in ("yolo", "acp") or not (status == SUCCESS or status in FAILURES):
            continue
        for run in task.get("runs") or []:
            usage = run.get("usage")
            cost = usage["cost_usd"] if usage is not None else None
            spent[run["runtime"]] = spent.get(run["runtime"], 0.0) + (cost or 0.0)
        if status == SUCCESS and (ran_on := task.get("attempt_runtime") or task.get("runtime")):
            completed[ran_on] = completed.get(ran_on, 0) + 1
    return {name: (spent.get(name, 0.0), count) for name, count in completed.items()}


def _by_cost(base: list[str], task: Task, tasks: list[Task]) -> tuple[list[str], str]:
    """``base`` ordered by cost per completed task of ``task``'s type (``worker.selection``
    ``cost``): runtimes with a completed task cheapest first, then the rest in ``base``
    order; and why the first."""
    costs = costs_per_completed(tasks, task.get("type"))
    known = sorted((name for name in base if name in costs), key=lambda name: (costs[name][0] / costs[name][1], base.index(name)))
    ranked = known + [name for name in base if name not in costs]
    kind = task.get("type") or "unset"
    if not known:
        return ranked, f"no completed task of type {kind} to price; default runtime {ranked[0]}"
    shown = ", ".join(f"{name} ${costs[name][0] / costs[name][1]:.4f}" for name in known)
    return ranked, f"lowest cost per completed task of type {kind} ({shown})"


def _score(record: tuple[int, int] | None) -> float:
    wins, total = record or (0, 0)
    return (wins + 1) / (total + 2)


def runtime_order(task: Task, config: Config, tasks: list[Task]) -> tuple[list[str], str]:
    """All configured runtimes in the order ``task`` should try them, and why the first.

    Returns ``(names, explanation)``; the explanation goes into the ``task.started`` event.
    """
    names = list(config.get("runtimes", {}))
    if task.get("runtime"):
        first = task["runtime"]
        if task.get("pin_runtime"):
            return [first], f"runtime {first} pinned by the task (no failover)"
        return [first] + [n for n in names if n != first], f"runtime {first} named by the task"
    default = config["worker"].get("runtime") or config["macp"]["default_runtime"]
    base = ([default] if default in names else []) + [n for n in names if n != default]
    if config["worker"].get("selection") == "cost":
        return _by_cost(base, task, tasks)
    rates = success_rates(tasks, task.get("type"))
    ranked = sorted(base, key=lambda name: (-_score(rates.get(name)), base.index(name)))
    if not rates:
        return ranked, f"no history for type {task.get('type') or 'unset'}; default runtime {ranked[0]}"
    shown = ", ".join(f"{n} {rates[n][0]}/{rates[n][1]}" for n in ranked if n in rates)
    return ranked, f"best success rate for type {task.get('type') or 'unset'} ({shown}); ties by config order"


def cooling_down(state: dict, now: datetime) -> dict[str, datetime]:
    """Runtimes unavailable at ``now`` (from runtimes.json) and when each is back."""
    until = {}
    for name, entry in state.get("runtimes", {}).items():
        moment = entry.get("unavailable_until")
        if moment and parse_timestamp(moment) > now:
            until[name] = parse_timestamp(moment)
    return until


def choose_runtime(task: Task, config: Config, tasks: list[Task], state: dict, now: datetime) -> tuple[str | None, str, datetime | None]:
    """``(runtime, explanation, back_at)`` for ``task``'s next attempt.

    ``runtime`` is None when every runtime is cooling down (``back_at`` then says when the
    first is back) or none is configured (``back_at`` None). When every runtime that is not
    cooling down has already failed the task, a new round starts with the first of them.
    """
    order, why = runtime_order(task, config, tasks)
    cooling = cooling_down(state, now)
    usable = [name for name in order if name not in cooling]
    if not usable:
        return None, "every runtime is cooling down", min(cooling.values()) if cooling else None
    failed = set(task.get("failed_runtimes") or [])
    name = next((n for n in usable if n not in failed), usable[0])
    if name != order[0]:
        why = f"{why}; skipped {', '.join(order[: order.index(name)])} (failed this task or cooling down)"
    return name, why, None
