"""What happens after an attempt (pure): the controller applies the :class:`Decision`.

Like claiming (:mod:`macp.admission`), the policy after a worker exits is a function of its
inputs only -- the task, how the attempt went, the gates' results, the config and the time --
with no file, process or clock access (issue 12). The controller turns a Decision into state
changes, events, a result file and a worktree cleanup.

The rules (DESIGN.md "The task lifecycle", docs/failures.md):

- an agent (yolo) run whose output shows a provider failure (rate limit, auth, missing
  binary; :mod:`macp.verdicts`) does not count: the task fails over to the next runtime, waits
  for the earliest reset, or is escalated past ``macp.max_provider_failures``;
- a run whose runtime's own report took the task past its cap (``max_tokens``,
  ``max_cost_usd``; :mod:`macp.budget`) is a counted failure of class ``budget``: the task
  is ``escalated`` and its worktree kept, whatever the run's exit code;
- a worker report with ``escalate`` ends the task ``escalated``;
- a non-zero exit, a timeout, an error the agent reported or a worker report with
  ``status: "failed"`` (the guide's worker result) is a failed attempt;
- a worker that exited 0 has its gates run (``gated``, not for legacy tasks); all passing
  ends it ``completed``, a failing one is a failed attempt ending ``escalated`` (``failed``
  for a legacy task);
- a failed attempt is retried after ``retry_backoff_seconds * 2**(attempt-1)`` (capped)
  while attempts remain, except a gate that cannot run at all (class ``config``), which goes
  to a person at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from macp import clock, verdicts
from macp.budget import overrun
from macp.guidance import failure_summary
from macp.model import Config, Failure, FinalStatus, GateResult, Task, TaskChanges, TaskStatus, Usage, WorkerRun
from macp.naming import dispatch_kind, resolve_runtime
from macp.providers import WAITING_DOES_NOT_FIX, ProviderFailure
from macp.selection import cooling_down, runtime_order

PROVIDER_FAILED = "task.provider.failed"  # the event of a run that failed at the provider: it does not count


@dataclass(frozen=True)
class AttemptOutcome:
    """How a worker ended: exit code (None if it never started), whether it timed out (at the
    task's deadline, or for silence: ``idle_timed_out``), its output tail, its JSON report
    (docs/workers.md), a spawn error, its log (None for an acp report), when it ran
    (``run``: ``started_at``, ``duration_seconds``), the end of its log (``output``, what
    provider failures are judged from; defaults to the tail), whether it printed nothing
    at all (``silent``) and what it used (``usage``, priced; None when not an agent run)."""

    exit_code: int | None
    timed_out: bool = False
    output_tail: str = ""
    report: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    idle_timed_out: bool = False
    log_path: Path | None = None
    run: WorkerRun | None = None
    output: str | None = None
    silent: bool = False
    usage: Usage | None = None

    @property
    def stopped_for_silence(self) -> bool:
        """Cut short without having said anything worth waiting for: silent for its idle or
        first-output timeout, or silent from its start until the task's deadline. For an agent
        runtime that is a provider ``hang`` (issue 22: a CLI with no credentials or no
        network may print nothing and never exit), never a counted attempt."""
        return self.idle_timed_out or (self.timed_out and self.silent)


@dataclass(frozen=True)
class Ending:
    """What the result file of a task that ends now records (``status``: completed, failed
    or escalated)."""

    status: FinalStatus
    exit_code: int | None
    gate_results: list[GateResult] = field(default_factory=list)
    output_tail: str = ""
    timed_out: bool = False
    report: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    escalation_reason: str | None = None
    last_failure: Failure | None = None
    worker_run: WorkerRun | None = None
    keep_worktree: str | None = None  # why the worktree stays whatever it holds (a spent budget: a person picks it up)

    @property
    def message(self) -> str:
        """The line of the task's final event: why it ended so."""
        return {"completed": "all quality gates passed", "failed": self.error or "failed", "escalated": self.escalation_reason or "escalated"}[self.status]


@dataclass(frozen=True)
class Cooldown:
    """A runtime out of use for every task until ``until`` (runtimes.json)."""

    runtime: str
    until: datetime
    kind: str
    evidence: str


@dataclass(frozen=True)
class Decision:
    """What to do next with a task after (part of) an attempt.

    ``action``: ``gates`` (run the quality gates, then decide again with their results),
    ``retry`` / ``failover`` (back to ``pending`` with ``changes``, one ``event_type`` event),
    or ``finish`` (end as ``ending`` says; a provider escalation first records ``changes``
    and its ``event_type`` event without a status change). ``cooldown`` is recorded before
    anything else; ``say`` is the line for the person watching."""

    action: Literal["gates", "retry", "failover", "finish"]
    status: TaskStatus | None = None
    event_type: str = ""
    message: str = ""
    changes: TaskChanges = field(default_factory=TaskChanges)
    metadata: dict[str, Any] = field(default_factory=dict)
    ending: Ending | None = None
    cooldown: Cooldown | None = None
    say: str | None = None

    @property
    def counts_attempt(self) -> bool:
        """False after a provider failure: the run does not count as an attempt, and what
        it used is waste (issue 23)."""
        return self.event_type != PROVIDER_FAILED


def decide(task: Task, outcome: AttemptOutcome, gate_results: list[GateResult] | None, config: Config, now: datetime, tasks: list[Task] | None = None,
           runtime_state: dict | None = None) -> Decision:
    """The decision after the worker of ``task``'s current attempt ended as ``outcome``;
    ``gate_results`` None when the gates have not run yet. ``tasks`` and ``runtime_state``
    (runtimes.json) are read only on a provider failure, to pick the runtime to fail over to."""
    report = outcome.report
    reported_error = None
    if dispatch_kind(task) == "yolo":
        verdict = verdicts.judge_agent_run(
            config,
            resolve_runtime(task, config),
            exit_code=outcome.exit_code,
            idle_timed_out=outcome.stopped_for_silence,
            output=outcome.output if outcome.output is not None else outcome.output_tail,
            now=now,
        )
        if verdict.provider_failure is not None:
            return provider_failed(task, verdict.provider_failure, outcome, config, tasks or [], runtime_state or {}, now)
        reported_error = verdict.reported_error
        if verdict.summary and not report.get("summary"):
            report = {**report, "summary": verdict.summary}
    if report.get("failed") and not reported_error:  # the guide's worker result: status "failed"
        reported_error = f"the worker reported status failed: {report.get('summary') or 'no notes'}"
    details: dict[str, Any] = {"exit_code": outcome.exit_code, "output_tail": outcome.output_tail, "timed_out": outcome.timed_out, "report": report,
               "error": outcome.error, "worker_run": outcome.run}
    if gate_results is None and outcome.usage is not None and (over := overrun(task, outcome.usage, config)):
        spent: Failure = {"kind": "worker", "attempt": task["attempts"], "exit_code": outcome.exit_code, "classification": "budget", "output_tail": outcome.output_tail}
        return finish(Ending("escalated", escalation_reason=over, last_failure=spent, keep_worktree=over, **details))
    if report.get("escalate"):
        reason = report.get("escalation_reason") or "the worker asked for a person"
        return finish(Ending("escalated", escalation_reason=reason, **details))
    if outcome.exit_code != 0 or outcome.timed_out or reported_error:
        failure: Failure = {
            "kind": "timeout" if outcome.timed_out else "worker",
            "attempt": task["attempts"],
            "exit_code": outcome.exit_code,
            "classification": "unknown",
            "output_tail": outcome.output_tail,
        }
        if reported_error:
            failure["reported_error"] = reported_error
        return attempt_failed(task, failure, "failed", [], details, config, now)
    # A legacy task (no dispatch) keeps the pre-MACP lifecycle: no `gated` step, and a
    # failing gate ends it `failed`, never `escalated` (DESIGN.md "The task lifecycle").
    legacy = dispatch_kind(task) == "legacy"
    if gate_results is None:
        return Decision("gates", None if legacy else "gated", "" if legacy else "task.gated", "worker exited 0; running the quality gates")
    failing = next((gate for gate in gate_results if not gate["passed"]), None)
    if failing is None:
        return finish(Ending("completed", gate_results=gate_results, **details))
    gate_failure: Failure = {
        "kind": "gate",
        "attempt": task["attempts"],
        "exit_code": failing["exit_code"],
        "gate": failing["name"],
        "classification": failing["classification"] or "unknown",  # always set on a failing gate
        "output_tail": failing["output_tail"],
    }
    return attempt_failed(task, gate_failure, "failed" if legacy else "escalated", gate_results, details, config, now)


def finish(ending: Ending) -> Decision:
    """End the task as ``ending`` says."""
    return Decision("finish", ending.status, f"task.{ending.status}", ending.message, ending=ending)


def attempt_failed(
    task: Task, failure: Failure, final_status: FinalStatus, gate_results: list[GateResult], details: dict[str, Any], config: Config, now: datetime
) -> Decision:
    """Retry with guidance while attempts remain; otherwise end in ``final_status``. A gate
    that could not run at all (``config``: command not found) is not retried: no change to
    the work fixes it, so it goes to a person at once. ``details`` are the :class:`Ending`
    fields the worker gave (exit code, output tail, report, ...)."""
    what = failure_summary(failure)
    if failure.get("classification") == "config":
        what += "; the gate's command cannot run here: fix it in config (not retried)"
    elif task["attempts"] < task["max_attempts"]:
        return Decision(
            "retry",
            "pending",
            "task.retry.scheduled",
            f"attempt {task['attempts']} failed: {what}; retry {task['attempts'] + 1}/{task['max_attempts']} scheduled",
            changes={"claim": None, "last_failure": failure, "acp": None, "not_before": retry_at(task["attempts"], config, now)},
            metadata={"failure": failure},
            say=f"{task['id']}: attempt {task['attempts']} failed ({what}); retry scheduled",
        )
    reason = f"{what} after {task['attempts']} attempt(s)"
    if final_status == "escalated":
        return finish(Ending("escalated", gate_results=gate_results, escalation_reason=reason, last_failure=failure, **details))
    return finish(Ending("failed", gate_results=gate_results, last_failure=failure, **{**details, "error": details.get("error") or reason}))


def retry_at(attempt: int, config: Config, now: datetime) -> str | None:
    """``not_before`` for the retry after counted attempt ``attempt``: base * 2**(attempt-1)
    seconds, capped (``macp.retry_backoff_seconds`` / ``..._max_seconds``); None when base is 0."""
    base = config["macp"]["retry_backoff_seconds"]
    if not base:
        return None
    delay = min(config["macp"]["retry_backoff_max_seconds"], base * 2 ** min(attempt - 1, 64))
    return clock.format_timestamp(now + timedelta(seconds=delay))


def provider_failed(task: Task, failure: ProviderFailure, outcome: AttemptOutcome, config: Config, tasks: list[Task], runtime_state: dict,
                    now: datetime) -> Decision:
    """A provider failure (docs/failures.md; seed 000 "Two Failure Layers"): the attempt does
    not count. The task fails over to the next runtime that has not failed it this round and
    is not cooling down (the task's own ``runtime``, the user's choice, is never
    overwritten); when every runtime has failed it waits until the earliest reset a provider
    named, else ``macp.provider_cooldown_seconds`` -- except for failures waiting does not
    fix (a missing binary, a bad command line, bad credentials), after which a new round
    starts at once. Past ``macp.max_provider_failures`` it is escalated ("runtime
    unavailable"). A reset time in the future cools the runtime down for every task."""
    runtime = resolve_runtime(task, config)
    reset = clock.format_timestamp(failure.reset_at) if failure.reset_at else None
    if failure.reset_capped:
        reset = f"{reset} (capped at 24 h)"
    cooldown = Cooldown(runtime, failure.reset_at, failure.kind, failure.evidence) if failure.reset_at and failure.reset_at > now else None
    count = task.get("provider_failures", 0) + 1
    failed = [*(task.get("failed_runtimes") or []), runtime]
    what = f"{runtime}: {failure.kind}" + (f" until {reset}" if reset else "") + f" ({failure.evidence})"
    metadata = {"runtime": runtime, "class": failure.kind, "reset_at": reset, "evidence": failure.evidence, "provider_failures": count}
    base: TaskChanges = {"attempts": task["attempts"] - 1, "provider_failures": count, "claim": None}
    said = f"{task['id']}: provider failure on {what}; attempt not counted"
    if count >= config["macp"]["max_provider_failures"]:
        reason = f"runtime unavailable: {count} provider failures, the last {what}"
        ending = Ending("escalated", exit_code=outcome.exit_code, output_tail=outcome.output_tail, escalation_reason=reason)
        return Decision("finish", "escalated", PROVIDER_FAILED, what, {**base, "failed_runtimes": failed}, metadata, ending, cooldown, said)
    cooling = cooling_down(runtime_state, now)
    if cooldown is not None:  # recorded before the next runtime is picked; a later time already recorded stays
        cooling = {**cooling, runtime: max(cooldown.until, cooling.get(runtime, cooldown.until))}
    order, _ = runtime_order({**task, "failed_runtimes": failed}, config, tasks)
    remaining = [name for name in order if name not in failed and name not in cooling]
    if remaining:
        message = f"{what}; failing over to {remaining[0]}"
        return Decision("failover", "pending", PROVIDER_FAILED, message, {**base, "failed_runtimes": failed},
                        {**metadata, "next_runtime": remaining[0]}, cooldown=cooldown, say=said)
    back = sorted(cooling.values())
    if back:
        until = back[0]
    elif failure.kind in WAITING_DOES_NOT_FIX:
        message = f"{what}; every runtime failed, starting a new round (waiting does not fix {failure.kind})"
        return Decision("failover", "pending", PROVIDER_FAILED, message, {**base, "failed_runtimes": []}, metadata, cooldown=cooldown, say=said)
    else:
        until = now + timedelta(seconds=config["macp"]["provider_cooldown_seconds"])
    not_before = clock.format_timestamp(until)
    message = f"{what}; every runtime failed, waiting until {not_before}"
    return Decision("failover", "pending", PROVIDER_FAILED, message, {**base, "failed_runtimes": [], "not_before": not_before},
                    {**metadata, "not_before": not_before}, cooldown=cooldown, say=f"{said}\n{task['id']}: every runtime failed; waiting until {not_before}")
