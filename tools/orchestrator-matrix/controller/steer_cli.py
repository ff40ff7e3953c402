"""``mosaic macp retry``, ``edit``, ``cancel``, ``approve`` and ``complete``: a person steers
a task. Each change is one locked tasks.json update and one event (source ``cli``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from macp import clock
from macp.cancellation import write_request
from macp.cliutil import out, repo_layout
from macp.config import load_config
from macp.errors import EXIT_OK, MacpError
from macp.events import make_event
from macp.layout import Layout
from macp.lifecycle import status_of, transition
from macp.locks import live_holder
from macp.model import AcpState, Task, TaskChanges, TaskStatus
from macp.recording import recorded
from macp.redact import redact
from macp.taskstore import edit_tasks, find_known, load_tasks
from macp.textview import one_line
from protocol.schemas import schema_errors


def change_task(
    layout: Layout, task_id: str, decide: Callable[[Task], TaskChanges], new_status: TaskStatus, event: Callable[[Task, Task], dict]
) -> tuple[Task, Task]:
    """Under the tasks.json lock, move ``task_id`` to ``new_status`` and record
    ``event(before, after)`` with it (:func:`macp.recording.recorded`).

    ``decide(task)`` returns the field changes, or raises :class:`MacpError` to refuse.
    Returns ``(task before, task after)``.
    """
    with recorded(edit_tasks(layout), layout.events_file) as (document, events):
        before = document.get(task_id)
        after = transition(before, new_status, clock.timestamp(), decide(before))
        document.replace(after)
        events.append(event(before, after))
    return before, after


def cli_event(event_type: str, task: Task, message: str, **metadata: object) -> dict:
    """A ``cli`` event about ``task`` (its status and attempt)."""
    return make_event(
        event_type,
        source="cli",
        task_id=task["id"],
        status=status_of(task),
        attempt=task.get("attempts", 0),
        message=message,
        metadata=metadata,
    )


def cmd_retry(args) -> int:
    layout = repo_layout(args.repo)
    config = load_config(layout.config_file)
    if args.fresh:
        from dispatcher.macp_dispatcher import start_over

        task = load_tasks(layout).get(args.task_id)
        check_retryable(task)
        for line in start_over(task, layout.repo_root, config):
            out(f"{args.task_id}: {line}")

    def decide(task: Task) -> TaskChanges:
        check_retryable(task)
        budget = task.get("attempts", 0) + args.attempts
        fresh: TaskChanges = {"worktree": None, "base_commit": None, "stacked_on": [], "last_failure": None} if args.fresh else {}
        return {**RETRY_RESETS, "max_attempts": budget, **fresh}

    how = "from the base, in a new worktree" if args.fresh else "in its worktree"

    def event(before: Task, task: Task) -> dict:
        return cli_event(
            "task.retried",
            task,
            f"back to pending by hand ({how}); {args.attempts} more attempt(s), budget {task['max_attempts']}",
            previous_status=status_of(before),
            max_attempts=task["max_attempts"],
            fresh=args.fresh,
        )

    _before, task = change_task(layout, args.task_id, decide, "pending", event)
    out(f"{task['id']}: pending again ({args.attempts} more attempt(s))")
    for other in requeue_downstream(layout, task["id"]):
        out(f"{other['id']}: pending again (it was escalated only because {task['id']} failed)")
    return EXIT_OK


# Fields a retry clears: the claim, the outcome, waits, the provider-failure budget, an acp report.
RETRY_RESETS: TaskChanges = {
    "claim": None,
    "error": None,
    "escalation_reason": None,
    "upstream_failed": False,
    "not_before": None,
    "provider_failures": 0,
    "failed_runtimes": [],
    "acp": None,
}


def check_retryable(task: Task) -> None:
    """Refuse (MacpError) a task that is not failed, escalated or cancelled."""
    if status_of(task) not in ("failed", "escalated", "cancelled"):
        raise MacpError(f"task {task['id']} is {status_of(task)}; only failed, escalated or cancelled tasks can be retried")


def requeue_downstream(layout: Layout, task_id: str) -> list[Task]:
    """Put back to pending the tasks escalated only because ``task_id`` (or a task so
    escalated because of it) failed (``upstream_failed``); returns them."""
    requeued: list[Task] = []
    with recorded(edit_tasks(layout), layout.events_file) as (document, events):
        frontier = [task_id]
        while frontier:
            upstream = frontier.pop()
            for held in document.tasks:
                if status_of(held) == "escalated" and held.get("upstream_failed") and upstream in (held.get("depends_on") or []):
                    requeued.append(transition(held, "pending", clock.timestamp(), RETRY_RESETS))
                    document.replace(requeued[-1])
                    events.append(cli_event("task.retried", requeued[-1], f"back to pending: its dependency {task_id} is retried"))
                    frontier.append(held["id"])
    return requeued


EDITABLE = {
    "timeout": "timeout_seconds", "command": "command", "max_attempts": "max_attempts", "runtime": "runtime", "priority": "priority", "gate": "quality_gates",
    "estimate": "estimate_tokens", "max_tokens": "max_tokens", "max_cost_usd": "max_cost_usd",
}


def cmd_edit(args) -> int:
    """Change fields of a pending or escalated task; the event records old and new values."""
    layout = repo_layout(args.repo)
    config = load_config(layout.config_file)
    wanted = {field: getattr(args, option) for option, field in EDITABLE.items() if getattr(args, option) is not None}
    if not wanted:
        raise MacpError("nothing to change: give at least one of " + ", ".join("--" + option.replace("_", "-") for option in EDITABLE))
    if "estimate_tokens" in wanted:
        wanted["estimate_source"] = "given"
    if "runtime" in wanted and wanted["runtime"] not in config["runtimes"]:
        raise MacpError(f"unknown runtime {wanted['runtime']!r} (configured: {', '.join(config['runtimes']) or 'none'})")
    with recorded(edit_tasks(layout), layout.events_file) as (document, events):
        task = document.get(args.task_id)
        if status_of(task) not in ("pending", "escalated"):
            retry_first = f" (retry it first: mosaic macp retry {task['id']}, then edit it)" if status_of(task) in ("failed", "cancelled") else ""
            raise MacpError(f"task {task['id']} is {status_of(task)}; only pending or escalated tasks can be edited{retry_first}")
        changed = {field: {"from": task.get(field), "to": value} for field, value in wanted.items() if task.get(field) != value}
        edited = cast(Task, {**task, **wanted, "updated_at": clock.timestamp()})  # schema-checked next
        errors = schema_errors("task", edited)
        if errors:
            raise MacpError(f"invalid change: {errors[0]}")
        document.replace(edited)
        summary = ", ".join(f"{field} {one_line(str(change['to']))}" for field, change in changed.items())
        if changed:
            events.append(cli_event("task.updated", edited, f"edited by hand: {summary}", changes=changed))
    if not changed:
        out(f"{args.task_id}: nothing changed")
        return EXIT_OK
    out(f"{args.task_id}: {summary}")
    return EXIT_OK


def cmd_cancel(args) -> int:
    layout = repo_layout(args.repo)
    current, _archived = find_known(layout, args.task_id)
    claim = current.get("claim")
    holder = live_holder(layout.controller_lock) if claim else None
    if claim and holder is not None and holder.get("token") in (None, claim.get("token")):
        write_request(layout, current, args.reason or "cancelled by hand")
        out(f"{current['id']}: cancel requested; the running controller (pid {holder.get('pid')}) stops it and ends it cancelled")
        return EXIT_OK

    def decide(task: Task) -> TaskChanges:
        claim = task.get("claim")
        holder = live_holder(layout.controller_lock) if claim else None
        if claim and holder is not None and holder.get("token") in (None, claim.get("token")):
            raise MacpError(f"task {task['id']} is {status_of(task)} under a running controller that just started it; cancel it again")
        if status_of(task) in ("completed", "cancelled"):
            raise MacpError(f"task {task['id']} is already {status_of(task)}")
        return {"claim": None}

    _, task = change_task(layout, args.task_id, decide, "cancelled", lambda _before, task: cli_event("task.cancelled", task, args.reason or "cancelled by hand"))
    out(f"{task['id']}: cancelled")
    return EXIT_OK


def cmd_approve(args) -> int:
    layout = repo_layout(args.repo)

    def decide(task: Task) -> TaskChanges:
        if status_of(task) != "escalated" or not task.get("risk_hold"):
            raise MacpError(f"task {task['id']} is not held for risk review")
        return {"approved": True, "risk_hold": None, "escalation_reason": None}

    def event(before: Task, task: Task) -> dict:
        return cli_event("task.approved", task, f"approved past the risk hold on {before['risk_hold']!r}", risk_term=before["risk_hold"])

    _before, task = change_task(layout, args.task_id, decide, "pending", event)
    out(f"{task['id']}: approved; pending again")
    for other in requeue_downstream(layout, task["id"]):  # escalated by a MACP that took the hold for a failure
        out(f"{other['id']}: pending again (it was escalated only because {task['id']} was held)")
    return EXIT_OK


def cmd_complete(args) -> int:
    layout = repo_layout(args.repo)
    with recorded(edit_tasks(layout), layout.events_file) as (document, events):
        task = document.get(args.task_id)
        acp: AcpState = task.get("acp") or {}
        if task.get("dispatch") != "acp" or status_of(task) != "running" or not acp.get("requested_at"):
            raise MacpError(f"task {task['id']} is not an acp task waiting for its completion report")
        if acp.get("reported_at"):
            raise MacpError(f"task {task['id']} already has a completion report")
        reported_at = clock.timestamp()
        summary = redact(args.summary) if args.summary is not None else None  # text enters MACP's state redacted
        acp = {**acp, "reported_exit_code": args.exit_code, "reported_summary": summary, "reported_at": reported_at}
        task = {**task, "acp": acp, "updated_at": reported_at}
        document.replace(task)
        events.append(cli_event("task.acp.reported", task, f"external worker exited {args.exit_code}", exit_code=args.exit_code))
    out(f"{task['id']}: completion recorded (exit {args.exit_code}); the next drain runs its quality gates")
    return EXIT_OK
