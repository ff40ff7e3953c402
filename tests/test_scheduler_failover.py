"""Two failure layers and the scheduler: failover, reset times, selection, backoff,
dependencies and risk holds, with fake vendor CLIs printing their real messages
(../shared/reference/agent-runtimes.md)."""

from __future__ import annotations

import json

import pytest

CODEX_LIMIT = (
    "You've hit your usage limit. Upgrade to Pro (https://chatgpt.com/explore/pro), visit "
    "https://chatgpt.com/codex/settings/usage to purchase more credits or try again at 3:28 PM."
)
CLAUDE_LIMIT = "You've hit your limit · resets 4pm (UTC)"
NOW = "2026-11-21T12:00:00Z"


@pytest.fixture
def agents(sandbox):
    """Pin the clock and the zone; keep only codex and claude in the registry."""
    sandbox.env.update({"MACP_NOW": NOW, "TZ": "UTC"})
    sandbox.write_config({"runtimes": {"opencode": None, "gemini": None, "goose": None}})
    return sandbox


def limited(sandbox, name: str, message: str, exit_code: int = 1, ok_flag: str | None = None) -> None:
    """A fake runtime that prints ``message`` and exits ``exit_code`` -- or, once the file
    ``$HOME/<ok_flag>`` exists, does the work."""
    work = f'echo "{name} was here" > {name}.txt; git add {name}.txt; git commit -qm {name}; exit 0'
    gate = f'if [ -f "$HOME/{ok_flag}" ]; then {work}; fi\n' if ok_flag else ""
    sandbox.fake_cli(name, f"cat > /dev/null\n{gate}printf '%s\\n' {json.dumps(message)}\nexit {exit_code}\n")


def working(sandbox, name: str) -> None:
    sandbox.fake_cli(name, f'cat > /dev/null; echo "{name} was here" > {name}.txt; git add {name}.txt; git commit -qm {name}')


def provider_events(sandbox, task_id):
    return [e for e in sandbox.events(task_id) if e["event_type"] == "task.provider.failed"]


def test_codex_rate_limited_then_claude_completes_with_attempts_still_1(agents):
    limited(agents, "codex", CODEX_LIMIT)
    working(agents, "claude")
    agents.macp("submit", "--task-id", "Y1", "--dispatch", "yolo", "--runtime", "codex", check=True)
    agents.macp("drain", check=True)
    task = agents.task("Y1")
    assert task["status"] == "completed" and task["attempts"] == 1 and task["attempt_runtime"] == "claude"
    assert task["runtime"] == "codex", "the user's choice is not overwritten by failover"
    [failure] = provider_events(agents, "Y1")
    assert failure["metadata"]["runtime"] == "codex" and failure["metadata"]["class"] == "quota"
    assert failure["metadata"]["reset_at"] == "2026-11-21T15:29:00.000Z", "3:28 PM without seconds: the end of that minute"
    assert failure["metadata"]["next_runtime"] == "claude"
    started = [e for e in agents.events("Y1") if e["event_type"] == "task.started"]
    assert [e["metadata"]["runtime"] for e in started] == ["codex", "claude"]
    assert agents.result("Y1")["files_changed"] == ["claude.txt"]
    state = json.loads((agents.orch / "runtimes.json").read_text())
    assert state["runtimes"]["codex"]["unavailable_until"] == "2026-11-21T15:29:00.000Z"
    # the reset time holds for other tasks too: the next codex task goes straight to claude
    agents.macp("submit", "--task-id", "Y2", "--dispatch", "yolo", "--runtime", "codex", check=True)
    agents.macp("drain", check=True)
    started = [e for e in agents.events("Y2") if e["event_type"] == "task.started"]
    assert [e["metadata"]["runtime"] for e in started] == ["claude"]
    assert "skipped codex" in started[0]["metadata"]["runtime_selection"]
    assert provider_events(agents, "Y2") == []


def test_a_run_that_exits_0_is_a_success_whatever_its_text_says(agents):
    agents.fake_cli("claude", 'cat > /dev/null; echo "handled HTTP 429 rate limit errors" > fix.txt; git add fix.txt; git commit -qm fix\n'
                    'echo "Added a retry for status 429 (Too Many Requests, rate limit exceeded)"')
    agents.macp("submit", "--task-id", "Z", "--dispatch", "yolo", "--runtime", "claude", check=True)
    agents.macp("drain", check=True)
    task = agents.task("Z")
    assert task["status"] == "completed" and task["attempts"] == 1 and task["attempt_runtime"] == "claude"
    assert provider_events(agents, "Z") == [], "the work is kept and claude is not cooled down"
    assert not (agents.orch / "runtimes.json").exists()


def test_exit_0_with_an_error_in_the_structured_output_is_a_provider_failure(agents):
    result = {"type": "result", "subtype": "success", "is_error": True, "api_error_status": 429,
              "result": "API Error: Rate limit reached", "duration_api_ms": 0}
    limited(agents, "claude", json.dumps(result), exit_code=0)
    working(agents, "codex")
    agents.write_config({"runtimes": {"opencode": None, "gemini": None, "goose": None}, "quality_gates": ["true"]})
    agents.macp("submit", "--task-id", "Z", "--dispatch", "yolo", "--runtime", "claude", check=True)
    agents.macp("drain", check=True)
    task = agents.task("Z")
    assert task["status"] == "completed" and task["attempt_runtime"] == "codex" and task["attempts"] == 1
    assert provider_events(agents, "Z")[0]["metadata"]["class"] == "rate_limit"
    assert agents.event_types("Z").count("task.gated") == 1, "the limited run never reached the gates"


def test_every_runtime_limited_waits_until_the_parsed_reset_then_runs(agents):
    limited(agents, "codex", CODEX_LIMIT, ok_flag="codex-back")
    limited(agents, "claude", CLAUDE_LIMIT)
    agents.macp("submit", "--task-id", "W", "--dispatch", "yolo", "--runtime", "codex", check=True)
    drain = agents.macp("drain", check=True)
    task = agents.task("W")
    assert task["status"] == "pending" and task["attempts"] == 0
    assert task["not_before"] == "2026-11-21T15:29:00.000Z", "the earliest reset named (codex 15:28, claude 16:00)"
    assert task["runtime"] == "codex" and task["failed_runtimes"] == []
    assert "W: waiting until 2026-11-21T15:29:00.000Z" in drain.stdout
    status = json.loads(agents.macp("status", "--json", check=True).stdout)["tasks"][0]
    assert status["view"] == "waiting" and status["runtime"] == "codex"
    # a drain before the reset does nothing
    agents.env["MACP_NOW"] = "2026-11-21T15:00:00Z"
    agents.macp("drain", check=True)
    assert agents.task("W")["status"] == "pending"
    # after the reset, codex is back
    (agents.home / "codex-back").touch()
    agents.env["MACP_NOW"] = "2026-11-21T15:30:00Z"
    agents.macp("drain", check=True)
    task = agents.task("W")
    assert task["status"] == "completed" and task["attempt_runtime"] == "codex" and task["attempts"] == 1


def test_a_silent_runtime_is_a_hang_and_fails_over(agents):
    agents.fake_cli("codex", "sleep 30")
    working(agents, "claude")
    agents.write_config({"runtimes": {"opencode": None, "gemini": None, "goose": None, "codex": {"idle_timeout_seconds": 1}},
                         "macp": {"kill_grace_seconds": 1}})
    agents.macp("submit", "--task-id", "H", "--dispatch", "yolo", "--runtime", "codex", "--timeout", "120", check=True)
    agents.macp("drain", check=True, timeout=60)
    task = agents.task("H")
    assert task["status"] == "completed" and task["attempt_runtime"] == "claude" and task["attempts"] == 1
    assert provider_events(agents, "H")[0]["metadata"]["class"] == "hang"


def test_a_runtime_busy_until_the_task_timeout_is_an_execution_timeout(agents):
    agents.fake_cli("codex", "cat > /dev/null; while true; do echo still working; sleep 0.2; done")
    working(agents, "claude")
    agents.write_config({"runtimes": {"opencode": None, "gemini": None, "goose": None}, "macp": {"kill_grace_seconds": 1}})
    agents.macp("submit", "--task-id", "T", "--dispatch", "yolo", "--runtime", "codex", "--timeout", "2", check=True)
    assert agents.macp("drain", timeout=60).returncode == 1
    task = agents.task("T")
    assert task["status"] == "failed" and task["attempts"] == 1 and task["last_failure"]["kind"] == "timeout"
    assert provider_events(agents, "T") == [], "busy work is no provider failure: no failover, the attempt counts"


def test_provider_failure_cap_escalates_as_runtime_unavailable(agents):
    agents.write_config({"runtimes": {"opencode": None, "gemini": None, "goose": None}, "macp": {"max_provider_failures": 3}})
    limited(agents, "codex", "stream disconnected before completion: connection reset")
    limited(agents, "claude", 'API Error: 500 {"type":"error","error":{"type":"api_error","message":"Internal server error"}}')
    agents.macp("submit", "--task-id", "N", "--dispatch", "yolo", check=True)
    for _ in range(3):
        agents.macp("drain")
        agents.env["MACP_NOW"] = "2026-11-21T13:00:00Z"
    task = agents.task("N")
    assert task["status"] == "escalated" and task["attempts"] == 0
    assert task["escalation_reason"].startswith("runtime unavailable: 3 provider failures")
    classes = [e["metadata"]["class"] for e in provider_events(agents, "N")]
    assert classes == ["network", "network", "network"]
    assert agents.result("N")["status"] == "escalated"


def test_runtime_selection_by_history_for_the_task_type(agents):
    agents.write_tasks({"tasks": [
        {"id": "old1", "type": "coding", "dispatch": "yolo", "runtime": "codex", "status": "failed"},
        {"id": "old2", "type": "coding", "dispatch": "yolo", "runtime": "codex", "status": "escalated"},
        {"id": "old3", "type": "coding", "dispatch": "yolo", "runtime": "claude", "status": "completed"},
        {"id": "old4", "type": "research", "dispatch": "yolo", "runtime": "claude", "status": "failed"},
    ]})
    working(agents, "claude")
    working(agents, "codex")
    agents.macp("submit", "--task-id", "C", "--type", "coding", "--dispatch", "yolo", check=True)
    agents.macp("submit", "--task-id", "R", "--type", "research", "--dispatch", "yolo", check=True)
    agents.macp("submit", "--task-id", "D", "--type", "deploy", "--dispatch", "yolo", "--title", "Document", check=True)
    agents.write_config({"runtimes": {"opencode": None, "gemini": None, "goose": None}, "macp": {"risk": {"enabled": False}}})
    agents.macp("drain", check=True)
    started = {e["task_id"]: e["metadata"] for e in agents.events() if e["event_type"] == "task.started"}
    assert started["C"]["runtime"] == "claude"
    assert started["C"]["runtime_selection"] == "best success rate for type coding (claude 1/1, codex 0/2); ties by config order"
    assert started["R"]["runtime"] == "codex", "claude failed research before"
    assert started["D"]["runtime"] == "codex" and "no history for type deploy" in started["D"]["runtime_selection"]


def test_backoff_delays_retries_exponentially(agents):
    agents.write_config({"macp": {"retry_backoff_seconds": 60, "retry_backoff_max_seconds": 100}})
    agents.macp("submit", "--task-id", "B", "--command", "exit 1", "--max-attempts", "3", check=True)
    agents.macp("drain")
    assert agents.task("B")["not_before"] == "2026-11-21T12:01:00.000Z"
    assert "waiting until 2026-11-21T12:01:00.000Z" in agents.macp("status", check=True).stdout
    agents.env["MACP_NOW"] = "2026-11-21T12:01:00Z"
    agents.macp("drain")
    assert agents.task("B")["not_before"] == "2026-11-21T12:02:40.000Z", "60 * 2 capped at 100"
    agents.env["MACP_NOW"] = "2026-11-21T12:03:00Z"
    assert agents.macp("drain").returncode == 1
    assert agents.task("B")["status"] == "failed" and agents.task("B")["attempts"] == 3


def test_dependency_chain_runs_in_order(sandbox, tmp_path):
    log = tmp_path / "order.log"
    sandbox.write_tasks({"tasks": [
        {"id": "C", "dispatch": "exec", "command": f"echo C >> {log}", "depends_on": ["B"], "priority": 10},
        {"id": "B", "dispatch": "exec", "command": f"echo B >> {log}", "depends_on": ["A"], "priority": 5},
        {"id": "A", "dispatch": "exec", "command": f"echo A >> {log}"},
    ]})
    sandbox.macp("drain", check=True)
    assert log.read_text().split() == ["A", "B", "C"]


def test_cycle_is_reported_with_its_path_and_escalated_before_anything_runs(sandbox, tmp_path):
    log = tmp_path / "ran.log"
    sandbox.write_tasks({"tasks": [
        {"id": "a", "command": f"echo a >> {log}", "depends_on": ["b"]},
        {"id": "b", "command": f"echo b >> {log}", "depends_on": ["a"]},
        {"id": "c", "command": f"echo c >> {log}", "depends_on": ["a"]},
        {"id": "free", "command": f"echo free >> {log}"},
    ]})
    proc = sandbox.macp("drain")
    assert proc.returncode == 1
    assert sandbox.task("a")["escalation_reason"] == "dependency cycle: a -> b -> a"
    assert sandbox.task("b")["escalation_reason"] == "dependency cycle: a -> b -> a"
    assert sandbox.task("c")["escalation_reason"] == "upstream failed: dependency a ended escalated"
    assert log.read_text().split() == ["free"]
    assert "a: escalated (dependency cycle: a -> b -> a)" in proc.stdout
    assert sandbox.events("a")[0]["metadata"]["cycle"] == ["a", "b", "a"]
    assert sandbox.result("c")["status"] == "escalated"


def test_upstream_failure_escalates_dependents_transitively(sandbox):
    sandbox.write_tasks({"tasks": [
        {"id": "up", "dispatch": "exec", "command": "exit 1"},
        {"id": "mid", "dispatch": "exec", "command": "true", "depends_on": ["up"]},
        {"id": "down", "dispatch": "exec", "command": "true", "depends_on": ["mid"]},
        {"id": "other", "dispatch": "exec", "command": "true"},
    ]})
    proc = sandbox.macp("drain")
    assert proc.returncode == 1
    assert {t["id"]: t["status"] for t in sandbox.tasks()} == {"up": "failed", "mid": "escalated", "down": "escalated", "other": "completed"}
    assert sandbox.task("mid")["escalation_reason"] == "upstream failed: dependency up ended failed"
    assert sandbox.task("down")["escalation_reason"] == "upstream failed: dependency mid can never run"
    assert "queue: 1 completed, 1 failed, 2 escalated" in proc.stdout


def test_blocked_and_ready_views_name_the_blocking_task(sandbox):
    sandbox.write_tasks({"tasks": [
        {"id": "slow", "status": "running", "command": "true"},
        {"id": "after", "command": "true", "depends_on": ["slow"]},
        {"id": "now", "command": "true"},
    ]})
    lines = sandbox.macp("status", check=True).stdout.splitlines()
    assert any(line.split()[:2] == ["after", "blocked"] and line.endswith("blocked by slow (running)") for line in lines)
    assert any(line.split()[:2] == ["now", "ready"] for line in lines)


def test_risky_yolo_brief_waits_for_approve(agents):
    working(agents, "codex")
    (agents.repo / "docs" / "tasks").mkdir(parents=True)
    (agents.repo / "docs" / "tasks" / "R1.md").write_text("# Ship it\nRun the database migration on production.\n")
    agents.macp("submit", "--task-id", "R1", "--dispatch", "yolo", "--runtime", "codex", check=True)
    agents.macp("submit", "--task-id", "E1", "--title", "deploy docs", "--command", "true", check=True)
    proc = agents.macp("drain")
    assert proc.returncode == 1
    task = agents.task("R1")
    assert task["status"] == "escalated" and task["risk_hold"] == "production"
    assert "mosaic macp approve R1" in task["escalation_reason"]
    assert not (agents.home / "src").exists() or not list((agents.home / "src").rglob("codex.txt")), "nothing was dispatched"
    assert agents.task("E1")["status"] == "completed", "exec tasks are not covered by the default risk policy"
    assert agents.macp("approve", "E1").returncode == 2
    approved = agents.macp("approve", "R1", check=True)
    assert approved.stdout == "R1: approved; pending again\n"
    agents.macp("drain", check=True)
    assert agents.task("R1")["status"] == "completed" and agents.task("R1")["approved"] is True
    assert agents.event_types("R1")[:4] == ["task.submitted", "task.escalated", "task.approved", "task.started"]


def test_risk_policy_can_be_turned_off(agents):
    working(agents, "codex")
    agents.write_config({"macp": {"risk": {"enabled": False}}})
    agents.macp("submit", "--task-id", "R2", "--title", "rm -rf the build folder", "--dispatch", "yolo", check=True)
    agents.macp("drain", check=True)
    assert agents.task("R2")["status"] == "completed"


def test_missing_runtimes_escalate_after_the_cap_without_waiting_a_cooldown(agents):
    agents.write_config({"runtimes": {"opencode": None, "gemini": None, "goose": None,
                                      "codex": {"command": ["codex-not-installed"]}, "claude": {"command": ["claude-not-installed"]}},
                         "macp": {"max_provider_failures": 4}})
    agents.macp("submit", "--task-id", "M", "--dispatch", "yolo", "--runtime", "codex", check=True)
    assert agents.macp("drain").returncode == 1
    task = agents.task("M")
    assert task["status"] == "escalated" and task["attempts"] == 0 and not task.get("not_before")
    assert task["escalation_reason"].startswith("runtime unavailable: 4 provider failures")
    assert [(e["metadata"]["runtime"], e["metadata"]["class"]) for e in provider_events(agents, "M")] == [
        ("codex", "missing"), ("claude", "missing"), ("codex", "missing"), ("claude", "missing")]
    assert not (agents.orch / "runtimes.json").exists(), "a missing binary is no rate limit: no cooldown"


def test_a_risk_hold_is_a_wait_for_its_dependents_not_a_failure(agents):
    working(agents, "codex")
    agents.macp("submit", "--task-id", "HELD", "--title", "deploy the site", "--dispatch", "yolo", "--runtime", "codex", check=True)
    agents.macp("submit", "--task-id", "AFTER", "--command", "test -f codex.txt", "--depends-on", "HELD", check=True)
    for _ in range(2):  # a second drain once escalated dependents for good
        agents.macp("drain")
        assert agents.task("HELD")["status"] == "escalated" and agents.task("AFTER")["status"] == "pending"
    status = agents.macp("status", check=True).stdout
    assert "blocked by HELD (held for approval: mosaic macp approve HELD)" in status
    agents.macp("approve", "HELD", check=True)
    agents.macp("drain", check=True)
    assert agents.task("HELD")["status"] == "completed"
    after = agents.task("AFTER")
    assert after["status"] == "completed" and not after.get("escalation_reason"), "it ran from HELD's work"


def test_approve_brings_back_dependents_an_older_run_escalated_for_the_hold(agents):
    working(agents, "codex")
    reason = "upstream failed: dependency HELD ended escalated"
    agents.write_tasks({"tasks": [
        {"id": "HELD", "title": "deploy", "dispatch": "yolo", "runtime": "codex", "status": "escalated", "risk_hold": "deploy",
         "escalation_reason": "risk hold: the task mentions 'deploy'"},
        {"id": "AFTER", "dispatch": "exec", "command": "true", "depends_on": ["HELD"], "status": "escalated",
         "escalation_reason": reason, "upstream_failed": True},
    ]})
    out = agents.macp("approve", "HELD", check=True).stdout
    assert "AFTER: pending again (it was escalated only because HELD was held)" in out
    agents.macp("drain", check=True)
    assert agents.task("AFTER")["status"] == "completed" and agents.task("AFTER")["escalation_reason"] is None


def silent_forever(sandbox, name: str) -> None:
    """A runtime with no credentials or no network: it prints nothing and never exits."""
    sandbox.fake_cli(name, "cat > /dev/null\nexec sleep 600\n")


def test_a_runtime_silent_until_the_task_deadline_is_a_hang_not_a_counted_attempt(agents):
    silent_forever(agents, "codex")
    working(agents, "claude")
    agents.write_config({"runtimes": {"opencode": None, "gemini": None, "goose": None}, "macp": {"kill_grace_seconds": 1}})
    # the task's deadline (2 s) comes long before the idle (600 s) and first-output (180 s) timeouts
    agents.macp("submit", "--task-id", "S", "--dispatch", "yolo", "--runtime", "codex", "--timeout", "2", check=True)
    agents.macp("drain", check=True, timeout=120)
    [failure] = provider_events(agents, "S")
    assert (failure["metadata"]["runtime"], failure["metadata"]["class"]) == ("codex", "hang")
    task = agents.task("S")
    assert task["status"] == "completed" and task["attempts"] == 1 and task["attempt_runtime"] == "claude", "failed over, nothing counted"


def test_a_runtime_silent_from_its_start_is_stopped_at_its_first_output_timeout(agents):
    silent_forever(agents, "codex")
    agents.write_config({"runtimes": {"opencode": None, "gemini": None, "goose": None, "claude": None, "codex": {"first_output_timeout_seconds": 1}},
                         "macp": {"kill_grace_seconds": 1, "max_provider_failures": 1}})
    agents.macp("submit", "--task-id", "F", "--dispatch", "yolo", "--runtime", "codex", check=True)  # task timeout 3600 s, idle 600 s
    proc = agents.macp("drain", timeout=120)
    assert proc.returncode == 1 and "went silent" in proc.stdout, proc.stdout
    [failure] = provider_events(agents, "F")
    assert failure["metadata"]["class"] == "hang"
    assert agents.task("F")["attempts"] == 0 and agents.task("F")["escalation_reason"].startswith("runtime unavailable")


def test_an_exec_task_silent_until_its_deadline_is_still_a_counted_timeout(agents):
    agents.macp("submit", "--task-id", "E", "--command", "sleep 600", "--timeout", "1", check=True)
    agents.write_config({"runtimes": {"opencode": None, "gemini": None, "goose": None}, "macp": {"kill_grace_seconds": 1}})
    assert agents.macp("drain", timeout=120).returncode == 1
    assert agents.task("E")["status"] == "failed" and agents.task("E")["attempts"] == 1, "silence is only a provider's fault for agents"


def test_a_pinned_runtime_never_fails_over_and_a_missing_binary_is_named_with_the_fix(agents):
    working(agents, "claude")  # would take the task if failover were allowed
    agents.write_config({"runtimes": {"opencode": None, "gemini": None, "goose": None, "codex": {"command": ["codex-not-installed", "exec", "-"]}},
                         "macp": {"max_provider_failures": 2}})
    agents.macp("submit", "--task-id", "PIN", "--dispatch", "yolo", "--runtime", "codex", "--pin-runtime", check=True)
    assert agents.macp("drain").returncode == 1
    assert [e["metadata"]["runtime"] for e in provider_events(agents, "PIN")] == ["codex", "codex"], "never moved to claude"
    task = agents.task("PIN")
    assert task["status"] == "escalated" and task["attempts"] == 0 and task["pin_runtime"] is True
    assert "codex-not-installed: not found on PATH; install codex-not-installed" in task["escalation_reason"]
    assert "or remove runtimes.codex from config.json" in task["escalation_reason"]


def test_submit_help_says_runtimes_fail_over_and_pinning_needs_a_runtime(agents):
    help_text = " ".join(agents.macp("submit", "--help", check=True).stdout.split())
    assert "fails over to the other configured runtimes" in help_text and "--pin-runtime" in help_text
    proc = agents.macp("submit", "--task-id", "X", "--dispatch", "yolo", "--pin-runtime")
    assert proc.returncode == 2 and "--pin-runtime needs --runtime" in proc.stderr


def test_edit_of_a_failed_task_says_to_retry_it_first(agents):
    agents.macp("submit", "--task-id", "F", "--command", "false", check=True)
    agents.macp("drain")
    proc = agents.macp("edit", "F", "--timeout", "60")
    assert proc.returncode == 2 and "retry it first: mosaic macp retry F, then edit it" in proc.stderr
