"""The policy after an attempt as a pure function (issue 12): ``macp.decide.decide`` and its
parts, tested without git, processes or files."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from conftest import TOOLS  # noqa: F401 -- puts the program on sys.path
from macp import clock
from macp.config import default_config
from macp.decide import AttemptOutcome, decide

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


def config(**macp: object) -> dict:
    settings = default_config()
    settings["macp"].update(macp)
    return settings


def task(dispatch: str = "exec", attempts: int = 1, max_attempts: int = 3, **fields: object) -> dict:
    return {"id": "T", "dispatch": dispatch, "command": "true", "status": "running", "attempts": attempts, "max_attempts": max_attempts, **fields}


def gate(passed: bool, classification: str = "unknown") -> dict:
    return {"name": "tests", "passed": passed, "exit_code": 0 if passed else 1, "classification": classification, "output_tail": "boom", "timed_out": False}


def test_a_clean_exit_runs_the_gates_then_completes():
    first = decide(task(), AttemptOutcome(0), None, config(), NOW)
    assert (first.action, first.status, first.event_type) == ("gates", "gated", "task.gated")
    done = decide(task(), AttemptOutcome(0, output_tail="ok"), [gate(True)], config(), NOW)
    assert (done.action, done.status, done.event_type) == ("finish", "completed", "task.completed")
    assert done.ending.gate_results == [gate(True)] and done.ending.output_tail == "ok"


def test_a_legacy_task_has_no_gated_step_and_a_failing_gate_fails_it():
    assert decide(task("legacy", max_attempts=1), AttemptOutcome(0), None, config(), NOW).status is None
    ended = decide(task("legacy", max_attempts=1), AttemptOutcome(0), [gate(False)], config(), NOW)
    assert (ended.action, ended.status) == ("finish", "failed")


def test_a_failed_attempt_is_retried_after_an_exponential_backoff():
    settings = config(retry_backoff_seconds=30, retry_backoff_max_seconds=3600)
    second = decide(task(attempts=2), AttemptOutcome(1, output_tail="bad"), None, settings, NOW)
    assert (second.action, second.status, second.event_type) == ("retry", "pending", "task.retry.scheduled")
    assert second.changes["not_before"] == clock.format_timestamp(NOW + timedelta(seconds=60))
    assert second.changes["last_failure"]["kind"] == "worker" and second.changes["claim"] is None
    assert "retry 3/3 scheduled" in second.message


def test_the_last_attempt_ends_failed_with_the_reason():
    ended = decide(task(attempts=3), AttemptOutcome(2, timed_out=True), None, config(), NOW)
    assert (ended.action, ended.status) == ("finish", "failed")
    assert ended.ending.last_failure["kind"] == "timeout" and "after 3 attempt(s)" in ended.ending.error


def test_a_gate_failure_on_the_last_attempt_is_escalated_and_a_gate_that_cannot_run_is_never_retried():
    ended = decide(task(attempts=3), AttemptOutcome(0), [gate(False)], config(), NOW)
    assert (ended.status, ended.ending.last_failure["gate"]) == ("escalated", "tests")
    unrunnable = decide(task(attempts=1), AttemptOutcome(0), [gate(False, "config")], config(), NOW)
    assert unrunnable.status == "escalated" and "not retried" in unrunnable.ending.escalation_reason


def test_a_worker_that_asks_for_a_person_is_escalated():
    ended = decide(task(), AttemptOutcome(0, report={"escalate": True, "escalation_reason": "needs a key"}), None, config(), NOW)
    assert (ended.status, ended.ending.escalation_reason) == ("escalated", "needs a key")


def test_a_silent_agent_fails_over_to_the_next_runtime_without_counting_the_attempt():
    agent = task("yolo", attempts=1, runtime="codex", attempt_runtime="codex")
    decision = decide(agent, AttemptOutcome(None, idle_timed_out=True), None, config(), NOW, tasks=[agent], runtime_state={"runtimes": {}})
    assert (decision.action, decision.status, decision.event_type) == ("failover", "pending", "task.provider.failed")
    assert decision.changes["attempts"] == 0 and decision.changes["failed_runtimes"] == ["codex"]
    assert decision.metadata["next_runtime"] != "codex"


def test_when_every_runtime_is_cooling_down_the_task_waits_for_the_first_back():
    agent = task("yolo", attempts=1, runtime="codex", attempt_runtime="codex")
    back = {name: NOW + timedelta(hours=n + 1) for n, name in enumerate(config()["runtimes"])}
    state = {"runtimes": {name: {"unavailable_until": clock.format_timestamp(at)} for name, at in back.items()}}
    decision = decide(agent, AttemptOutcome(None, idle_timed_out=True), None, config(), NOW, tasks=[agent], runtime_state=state)
    assert decision.changes["not_before"] == clock.format_timestamp(min(back.values()))


def test_past_the_provider_failure_cap_the_task_is_escalated_with_its_own_event_first():
    agent = task("yolo", attempts=1, runtime="codex", attempt_runtime="codex", provider_failures=2)
    decision = decide(agent, AttemptOutcome(None, idle_timed_out=True), None, config(max_provider_failures=3), NOW, tasks=[agent])
    assert (decision.action, decision.status, decision.event_type) == ("finish", "escalated", "task.provider.failed")
    assert decision.changes["provider_failures"] == 3 and decision.ending.escalation_reason.startswith("runtime unavailable")


def test_deciding_twice_gives_the_same_decision():
    inputs = (task(attempts=1), AttemptOutcome(1, output_tail="x"), None, config(retry_backoff_seconds=5), NOW)
    assert decide(*inputs) == decide(*inputs)
