"""Which runtime a yolo/acp task runs on (pure; seed 000, "Provider Selection").

A task that names a runtime starts there, and with ``pin_runtime`` runs only there (a provider
failure then waits for that runtime, never moves on). A task that does not gets the runtime with the best
recorded success rate for its ``type`` -- finished tasks of that type, ``completed`` counting
as a success and ``failed``/``escalated`` as a failure, smoothed as (s+1)/(n+2) so a runtime
with no history scores 0.5 -- ties broken by config order with ``worker.runtime`` first, so
with no history the default runtime is chosen. On failover the remaining runtimes follow in
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
