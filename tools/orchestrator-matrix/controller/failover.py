"""Provider failures: the attempt does not count, the task moves to another runtime
(docs/failures.md; seed 000 "Two Failure Layers").

On a provider failure the task goes back to ``pending``; its next attempt runs on the next
runtime that has not failed it this round and is not cooling down (:mod:`macp.selection`
picks it; the task's own ``runtime``, the user's choice, is never overwritten). When every
runtime has failed it waits until the earliest reset time a provider named, else
``macp.provider_cooldown_seconds`` -- except for failures that waiting does not fix (a
missing binary, a misconfigured command line, bad credentials), after which a new round
starts at once. Past ``macp.max_provider_failures`` it is escalated as "runtime
unavailable". A reset time puts the runtime in cooldown for every task (runtimes.json).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from dispatcher import macp_dispatcher as dispatcher
from macp import clock
from macp.providers import WAITING_DOES_NOT_FIX, ProviderFailure
from macp.runtime_state import load_runtime_state, record_cooldown
from macp.selection import cooling_down, runtime_order

if TYPE_CHECKING:
    from controller.mosaic_orchestrator import Controller, WorkerOutcome


def provider_failed(ctl: Controller, task: dict, failure: ProviderFailure, outcome: WorkerOutcome) -> str:
    """A provider failure: the attempt does not count; fail over to the next runtime, or
    wait for the earliest reset when every runtime failed, or escalate past the cap."""
    runtime, now = dispatcher.resolve_runtime(task, ctl.config), clock.now()
    reset = clock.format_timestamp(failure.reset_at) if failure.reset_at else None
    if failure.reset_capped:
        reset = f"{reset} (capped at 24 h)"
    if failure.reset_at and failure.reset_at > now:
        record_cooldown(ctl.layout, runtime, failure.reset_at, failure.kind, failure.evidence, task["id"])
    count = task.get("provider_failures", 0) + 1
    failed = [*(task.get("failed_runtimes") or []), runtime]
    what = f"{runtime}: {failure.kind}" + (f" until {reset}" if reset else "") + f" ({failure.evidence})"
    metadata = {"runtime": runtime, "class": failure.kind, "reset_at": reset, "evidence": failure.evidence, "provider_failures": count}
    base = {"attempts": task["attempts"] - 1, "provider_failures": count, "claim": None}
    ctl.say(f"{task['id']}: provider failure on {what}; attempt not counted")
    if count >= ctl.config["macp"]["max_provider_failures"]:
        task = ctl.update(task["id"], **base, failed_runtimes=failed)
        with ctl.guard.critical():
            ctl.emit("task.provider.failed", task, what, **metadata)
        reason = f"runtime unavailable: {count} provider failures, the last {what}"
        return ctl.finish(task, "escalated", exit_code=outcome.exit_code, output_tail=outcome.output_tail, escalation_reason=reason)
    tasks = ctl.queue.snapshot().tasks
    state = load_runtime_state(ctl.layout)
    probe = {**task, "failed_runtimes": failed}
    order, _ = runtime_order(probe, ctl.config, tasks)
    remaining = [name for name in order if name not in failed and name not in cooling_down(state, now)]
    if remaining:
        message = f"{what}; failing over to {remaining[0]}"
        ctl.change(task["id"], "pending", "task.provider.failed", message, {**metadata, "next_runtime": remaining[0]}, **base, failed_runtimes=failed)
        return "pending"
    back = sorted(cooling_down(state, now).items(), key=lambda item: item[1])
    if back:
        until = back[0][1]
    elif failure.kind in WAITING_DOES_NOT_FIX:
        message = f"{what}; every runtime failed, starting a new round (waiting does not fix {failure.kind})"
        ctl.change(task["id"], "pending", "task.provider.failed", message, metadata, **base, failed_runtimes=[])
        return "pending"
    else:
        until = now + timedelta(seconds=ctl.config["macp"]["provider_cooldown_seconds"])
    not_before = clock.format_timestamp(until)
    message = f"{what}; every runtime failed, waiting until {not_before}"
    ctl.change(task["id"], "pending", "task.provider.failed", message, {**metadata, "not_before": not_before}, **base, failed_runtimes=[], not_before=not_before)
    ctl.say(f"{task['id']}: every runtime failed; waiting until {not_before}")
    return "pending"
