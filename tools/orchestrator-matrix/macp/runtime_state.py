"""``runtimes.json``: which runtimes are cooling down after a provider named a reset time.

"A runtime that reported a reset time is skipped for other tasks until then too" (issue 4):
the controller records the time here, and runtime selection (:mod:`macp.selection`) skips
the runtime until it has passed. Written atomically under the tasks.json lock; valid against
``protocol/runtimes.schema.json``.
"""

from __future__ import annotations

from datetime import datetime

from macp import clock
from macp.errors import MacpError
from macp.fsio import read_json, write_atomic
from macp.jsontext import dump_json
from macp.layout import Layout
from macp.locks import exclusive_lock
from protocol.schemas import schema_errors


def load_runtime_state(layout: Layout) -> dict:
    """The runtime state (``{"runtimes": {}}`` when there is none); MacpError if it is invalid."""
    if not layout.runtimes_file.exists():
        return {"runtimes": {}}
    state = read_json(layout.runtimes_file)
    errors = schema_errors("runtimes", state)
    if errors:
        raise MacpError(f"{layout.runtimes_file}: {errors[0]}")
    return state


def record_cooldown(layout: Layout, runtime: str, until: datetime, reason: str, evidence: str, task_id: str) -> None:
    """Mark ``runtime`` unavailable until ``until`` (keeping a later time already recorded)."""
    with exclusive_lock(layout.tasks_lock):
        state = load_runtime_state(layout)
        stamp = clock.format_timestamp(until)
        previous = state["runtimes"].get(runtime, {}).get("unavailable_until")
        if previous and previous >= stamp:
            return
        state["runtimes"][runtime] = {
            "unavailable_until": stamp,
            "reason": reason,
            "evidence": evidence,
            "task_id": task_id,
            "updated_at": clock.timestamp(),
        }
        write_atomic(layout.runtimes_file, dump_json(state))
