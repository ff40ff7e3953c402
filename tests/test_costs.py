"""Issue 23, part 2: prices, estimates against what tasks used, learnings, and budgets that
stop work before it starts.

The fake codex prints the real codex's capture against the fake model API (1200 input tokens
of which 200 cached, 70 output of which 30 reasoning): 1070 used tokens (1000 not cached +
70 out), priced by the shipped example table at (1000 x 1.25 + 200 x 0.125 + 70 x 10) / 1e6
= $0.001975.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from macp.budget import Ledger, budget_verdict, estimated_cost
from macp.config import default_config, merge
from macp.estimates import calibrated_estimate, variance_level
from macp.prices import price_for, price_note, priced
from macp.usage import format_tokens, parse_tokens, read_usage, usage_of, used_tokens

DATA = Path(__file__).resolve().parent / "data" / "runtimes"
CODEX_USED = 1070
CODEX_COST = 0.001975


def codex_reports(sandbox, marker: str | None = None) -> None:
    """A codex that reports the real capture's figures (and, with ``marker``, leaves a file
    saying it ran)."""
    touch = f"touch {marker}\n" if marker else ""
    sandbox.fake_cli("codex", f"cat > /dev/null\n{touch}cat {DATA / 'codex-ok.txt'}\n")


def only_codex(extra: dict | None = None) -> dict:
    return merge({"runtimes": {"claude": None, "opencode": None, "gemini": None, "goose": None}, "macp": {"risk": {"enabled": False}}}, extra or {})


# -- the unit, the guide's format, the variance ---------------------------------------------


@pytest.mark.parametrize(("text", "tokens"), [("800", 800), ("5K", 5000), ("15K", 15000), ("4.2K", 4200), ("12.8k", 12800), ("1.5M", 1_500_000)])
def test_the_guides_token_figures_read_and_write_back_alike(text, tokens):
    assert parse_tokens(text) == tokens
    assert parse_tokens(format_tokens(tokens)) == tokens


@pytest.mark.parametrize("text", ["", "K", "5 tokens", "-3K", "1e3", "five"])
def test_a_figure_that_is_not_one_is_refused(text):
    with pytest.raises(ValueError, match="not a token figure"):
        parse_tokens(text)


@pytest.mark.parametrize(("percent", "level"), [(0, "log"), (-30, "log"), (30.1, "flag"), (50, "flag"), (-50.1, "learning"), (100, "learning"), (100.1, "critical")])
def test_the_guides_variance_thresholds_apply_to_its_size(percent, level):
    assert variance_level(percent) == level


def test_used_tokens_leave_cache_hits_out():
    usage = read_usage((DATA / "codex-ok.txt").read_text(), "codex-json")
    assert used_tokens(usage) == CODEX_USED


def test_a_calibrated_estimate_is_the_median_used_of_completed_tasks_of_the_type():
    def done(used: int, kind: str | None = "coding", status: str = "completed") -> dict:
        return {"id": f"T{used}", "type": kind, "status": status, "usage": usage_of(input_tokens=used)}

    finished = [done(1000), done(3000), done(2000), done(9000, status="failed"), done(7000, kind="review"), done(5000, kind=None)]
    assert calibrated_estimate("coding", finished) == (2000, 3)
    assert calibrated_estimate(None, finished) == (5000, 1)
    assert calibrated_estimate("deploy", finished) is None


# -- prices ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("cli", "cost"), [("codex", CODEX_COST), ("gemini", (1000 * 1.25 + 200 * 0.31 + 70 * 10) / 1e6)])
def test_the_price_table_prices_the_runtimes_that_report_no_cost(cli, cost):
    config = default_config()
    usage = priced(read_usage((DATA / f"{cli}-ok.txt").read_text(), f"{cli}-{'json' if cli == 'codex' else 'stream-json'}"), price_for(config, cli))
    assert usage["cost_source"] == "price_table" and usage["cost_usd"] == pytest.approx(cost)
    assert "shipped examples as of 2026-12-01" in price_note(config), "an example price never passes for a bill"


def test_a_reported_cost_is_never_replaced_and_a_model_has_its_own_price():
    config = merge(default_config(), {"runtimes": {"codex": {"model": "gpt-mini"}}})
    config["prices"] = {"runtimes": {"codex": {"input": 1.0, "output": 1.0, "models": {"gpt-mini": {"input": 0.1, "cached_input": 0.01, "output": 0.4}}}}}
    reported = usage_of(input_tokens=100, output_tokens=10, cost_usd=0.5)
    assert priced(reported, price_for(config, "codex")) == reported
    assert priced(usage_of(input_tokens=1_000_000, output_tokens=1_000_000), price_for(config, "codex"))["cost_usd"] == pytest.approx(0.5)
    assert price_note(config) == "", "the user's own table is no example"


def test_a_users_price_table_replaces_the_shipped_example_whole(sandbox):
    sandbox.write_config({"prices": {"as_of": "2026-11-30", "runtimes": {"claude": {"input": 3, "output": 15}}}})
    from macp.config import load_config

    config = load_config(sandbox.orch / "config.json")
    assert price_for(config, "codex") is None and price_for(config, "claude") == {"input": 3, "output": 15}
    assert not config["prices"].get("example")


# -- estimates, used write-back, variance, learnings -----------------------------------------

GUIDE_TABLE = """# Tasks

| id | status | description | issue | repo | branch | depends_on | blocks | agent | started_at | completed_at | estimate | used |
| ---------- | ----------- | ---------------------------- | ----- | ---- | ------------ | ---------- | ---------- | ----- | ---------- | ------------ | -------- | ---- |
| MS-SEC-001 | not-started | SEC-API-1: sanitize the input | #337 | api | fix/security | | MS-SEC-002 | | | | 1K | |
| MS-SEC-002 | not-started | SEC-API-2: check the token | #337 | api | fix/security-2 | MS-SEC-001 | | | | | 500 | |
"""


def test_the_guides_table_gets_used_written_back_with_the_variance_and_learning_of_each_task(sandbox):
    codex_reports(sandbox)
    sandbox.write_config(only_codex())
    (sandbox.repo / "docs").mkdir()
    (sandbox.repo / "docs" / "TASKS.md").write_text(GUIDE_TABLE)
    sandbox.macp("sync", check=True)
    assert [(task["estimate_tokens"], task["estimate_source"]) for task in sandbox.tasks()] == [(1000, "given"), (500, "given")]
    drained = sandbox.macp("drain", check=True)
    assert "used 1.1K of an estimated 1K (+7.0 %, log)" in drained.stdout
    assert "used 1.1K of an estimated 500 (+114.0 %, critical)" in drained.stdout

    first, second = sandbox.task("MS-SEC-001"), sandbox.task("MS-SEC-002")
    assert first["variance"] == {"estimate_tokens": 1000, "used_tokens": CODEX_USED, "percent": 7.0, "level": "log"}
    assert second["variance"]["level"] == "critical" and sandbox.result("MS-SEC-002")["variance"] == second["variance"]
    assert sandbox.result("MS-SEC-001")["estimate_tokens"] == 1000
    assert sandbox.result("MS-SEC-001")["usage"]["cost_usd"] == pytest.approx(CODEX_COST)
    variance_events = [event for event in sandbox.events() if event["event_type"] == "task.variance"]
    assert [(event["task_id"], event["metadata"]["level"]) for event in variance_events] == [("MS-SEC-001", "log"), ("MS-SEC-002", "critical")]

    learnings = json.loads((sandbox.orch / "learnings.json").read_text())["learnings"]
    assert [(entry["task_id"], entry["estimate"], entry["used"], entry["variance_percent"], entry["runtime"]) for entry in learnings] == [
        ("MS-SEC-002", "500", "1.1K", 114.0, "codex")], "only the 50 %+ levels leave a learning"

    sandbox.macp("sync", "--write-back", check=True)
    rows = [line for line in (sandbox.repo / "docs" / "TASKS.md").read_text().splitlines() if line.startswith("| MS-")]
    assert all(row.rstrip().endswith("| 1.1K |") for row in rows), rows
    assert all("| done |" in row for row in rows)


def test_a_learnings_file_of_the_guides_keeps_its_own_keys(sandbox):
    codex_reports(sandbox)
    (sandbox.repo / "docs").mkdir()
    guide_file = sandbox.repo / "docs" / "orchestrator-learnings.json"
    guide_file.write_text(json.dumps({"project": "mosaic-stack", "learnings": [{"task_id": "OLD"}]}))
    sandbox.write_config(only_codex({"macp": {"learnings_file": "docs/orchestrator-learnings.json"}}))
    sandbox.macp("submit", "--task-id", "T", "--runtime", "codex", "--estimate", "400", check=True)
    sandbox.macp("drain", check=True)
    document = json.loads(guide_file.read_text())
    assert document["project"] == "mosaic-stack"
    assert [entry["task_id"] for entry in document["learnings"]] == ["OLD", "T"]


def test_a_task_submitted_without_an_estimate_gets_one_calibrated_from_its_type_and_says_so(sandbox):
    codex_reports(sandbox)
    sandbox.write_config(only_codex())
    sandbox.macp("submit", "--task-id", "FIRST", "--runtime", "codex", "--type", "coding", check=True)
    assert "estimate_tokens" not in sandbox.task("FIRST"), "nothing to calibrate from yet"
    sandbox.macp("drain", check=True)
    submitted = sandbox.macp("submit", "--task-id", "NEXT", "--runtime", "codex", "--type", "coding", check=True)
    assert "estimate 1.1K, calibrated" in submitted.stdout
    assert "the median used of 1 completed coding task(s)" in submitted.stdout
    assert (sandbox.task("NEXT")["estimate_tokens"], sandbox.task("NEXT")["estimate_source"]) == (CODEX_USED, "calibrated")
    other = sandbox.macp("submit", "--task-id", "DOCS", "--runtime", "codex", "--type", "documentation", check=True)
    assert "calibrated" not in other.stdout and "estimate_tokens" not in sandbox.task("DOCS")


@pytest.mark.parametrize("bad", ["lots", "0", "-1K"])
def test_a_bad_estimate_is_one_line_and_changes_nothing(sandbox, bad):
    proc = sandbox.macp("submit", "--task-id", "T", "--runtime", "codex", "--estimate", bad)
    assert proc.returncode == 2 and "--estimate" in proc.stderr and "Traceback" not in proc.stderr
    assert not (sandbox.orch / "tasks.json").exists()


# -- budgets --------------------------------------------------------------------------------


def test_a_per_task_cap_the_estimate_would_pass_escalates_before_any_run(sandbox):
    marker = sandbox.repo.parent / "codex-ran"
    codex_reports(sandbox, str(marker))
    sandbox.write_config(only_codex())
    sandbox.macp("submit", "--task-id", "BIG", "--runtime", "codex", "--estimate", "8K", "--max-tokens", "5K", check=True)
    drained = sandbox.macp("drain")
    assert drained.returncode == 1
    task = sandbox.task("BIG")
    assert task["status"] == "escalated" and not marker.exists() and not task.get("runs")
    assert task["escalation_reason"] == "budget: the task has used 0 of its max_tokens 5K and its estimate is 8K"
    assert sandbox.result("BIG")["escalation_reason"] == task["escalation_reason"]


def test_a_run_whose_own_report_passes_its_cap_is_a_counted_budget_failure_and_keeps_its_worktree(sandbox):
    codex_reports(sandbox)
    sandbox.write_config(only_codex())
    sandbox.macp("submit", "--task-id", "OVER", "--runtime", "codex", "--max-tokens", "1K", "--max-attempts", "3", check=True)
    sandbox.macp("drain")
    task = sandbox.task("OVER")
    assert task["status"] == "escalated" and task["attempts"] == 1, "never retried: a retry cannot meet a spent cap"
    assert task["last_failure"]["classification"] == "budget"
    assert task["escalation_reason"] == "budget: the task used 1.1K, its max_tokens is 1K"
    assert sandbox.worktree("OVER").is_dir() and sandbox.result("OVER")["worktree_kept"] == task["escalation_reason"]
    sandbox.macp("retry", "OVER", check=True)  # the cap not raised: nothing is left to spend
    sandbox.macp("drain")
    again = sandbox.task("OVER")
    assert again["status"] == "escalated" and len(again["runs"]) == 1, "escalated again before any run"
    assert again["escalation_reason"] == "budget: the task has used 1.1K of its max_tokens 1K"


def test_claude_stopping_itself_at_the_cap_it_was_given_is_a_budget_failure_not_a_retry(sandbox):
    # what the real claude prints when --max-budget-usd stops it (its "budget_exhausted" result)
    stopped = {"type": "result", "subtype": "error_max_budget_usd", "is_error": True, "num_turns": 3, "total_cost_usd": 0.5,
               "errors": ["Reached maximum budget ($0.5)"], "usage": {"input_tokens": 9000, "output_tokens": 800}}
    sandbox.fake_cli("claude", f"cat > /dev/null\necho work > work.txt\necho '{json.dumps(stopped)}'\nexit 1\n")
    sandbox.write_config({"runtimes": {"codex": None, "opencode": None, "gemini": None, "goose": None}, "macp": {"risk": {"enabled": False}}})
    sandbox.macp("submit", "--task-id", "CAP", "--runtime", "claude", "--max-cost-usd", "0.5", "--max-attempts", "3", check=True)
    sandbox.macp("drain")
    task = sandbox.task("CAP")
    assert (task["status"], task["attempts"], task["last_failure"]["classification"]) == ("escalated", 1, "budget")
    assert task["escalation_reason"] == "budget: the task spent $0.50, its max_cost_usd is $0.50"
    assert (sandbox.worktree("CAP") / "work.txt").read_text() == "work\n", "its work is kept for a person"


def test_a_daily_budget_spent_makes_the_next_task_wait_for_the_next_utc_day(sandbox):
    sandbox.env["MACP_NOW"] = "2026-12-04T12:00:00Z"  # one UTC day throughout, whenever the test runs
    codex_reports(sandbox)
    sandbox.write_config(only_codex({"budget": {"daily_usd": 0.003}}))
    for task_id in ("A", "B", "C"):
        sandbox.macp("submit", "--task-id", task_id, "--runtime", "codex", "--estimate", "1K", check=True)
    sandbox.macp("drain", check=True)
    # A's estimate is priced at the input price ($0.00125) and A costs $0.001975; B's estimate
    # is priced at A's measured rate ($0.001846): $0.00382 > $0.003
    assert [sandbox.task(task_id)["status"] for task_id in "ABC"] == ["completed", "pending", "pending"]
    waiting = sandbox.task("B")
    assert waiting["not_before"] == "2026-12-05T00:00:00.000Z"
    updates = [event for event in sandbox.events("B") if event["event_type"] == "task.updated"]
    assert updates and updates[-1]["metadata"]["budget"] is True
    assert "today's runs cost $0.0020 of the daily $0.0030" in updates[-1]["message"]


def test_a_per_run_budget_leaves_the_rest_for_the_next_run(sandbox):
    codex_reports(sandbox)
    sandbox.write_config(only_codex({"budget": {"per_run_usd": 0.0015}}))
    for task_id in ("A", "B"):
        sandbox.macp("submit", "--task-id", task_id, "--runtime", "codex", check=True)
    sandbox.macp("drain", check=True)
    assert [sandbox.task(task_id)["status"] for task_id in "AB"] == ["completed", "pending"]
    assert "not_before" not in sandbox.task("B") or sandbox.task("B")["not_before"] is None
    sandbox.macp("drain", check=True)
    assert sandbox.task("B")["status"] == "completed", "a new run has a new budget"


def test_a_runtime_that_takes_a_cap_gets_what_is_left_of_the_tasks_on_its_command_line(sandbox):
    argv_file = sandbox.repo.parent / "claude-argv"
    result = {"type": "result", "subtype": "success", "is_error": False, "result": "done", "total_cost_usd": 0.1,
              "usage": {"input_tokens": 10, "output_tokens": 5}}
    sandbox.fake_cli("claude", f'cat > /dev/null\necho "$@" > {argv_file}\necho \'{json.dumps(result)}\'\n')
    sandbox.write_config({"runtimes": {"codex": None, "opencode": None, "gemini": None, "goose": None}})
    sandbox.macp("submit", "--task-id", "C", "--runtime", "claude", "--max-cost-usd", "0.75", check=True)
    sandbox.macp("drain", check=True)
    assert argv_file.read_text().split()[-2:] == ["--max-budget-usd", "0.75"]
    assert sandbox.task("C")["usage"]["cost_usd"] == pytest.approx(0.1)


def test_estimated_costs_use_the_measured_rate_once_there_is_one():
    config = default_config()
    ledger = Ledger()
    assert estimated_cost(1000, "codex", config, ledger) == pytest.approx(1000 * 1.25 / 1e6), "the input price: runs are mostly input"
    assert estimated_cost(1000, "goose", config, ledger) is None
    ledger.add({"attempt": 1, "runtime": "codex", "at": "2026-12-04T10:00:00Z", "usage": usage_of(input_tokens=2000, output_tokens=0, cost_usd=0.002)})
    assert estimated_cost(1000, "codex", config, ledger) == pytest.approx(0.001)


def test_a_task_whose_estimate_is_more_than_a_whole_day_is_escalated_not_left_waiting():
    from datetime import datetime, timezone

    config = merge(default_config(), {"budget": {"daily_usd": 0.01}})
    verdict = budget_verdict({"id": "T", "estimate_tokens": 100_000}, "codex", config, Ledger(), datetime(2026, 12, 4, tzinfo=timezone.utc))
    assert verdict == ("escalate", "budget: its estimated cost $0.12 is more than the whole daily budget $0.01", None)


def test_a_dry_run_shows_the_budget_and_the_cap_a_runtime_would_get(sandbox):
    sandbox.write_config({"budget": {"daily_usd": 5, "task_max_cost_usd": 0.5}, "macp": {"risk": {"enabled": False}}})
    sandbox.macp("submit", "--task-id", "C", "--runtime", "claude", check=True)
    plan = sandbox.macp("drain", "--dry-run", check=True).stdout
    assert "budget: today's runs (UTC) cost $0.00 of the daily $5.00" in plan
    assert "budget: a task without its own cap has max_cost_usd $0.50" in plan
    assert "budget: costs from the price table are the shipped examples as of 2026-12-01" in plan
    assert "--max-budget-usd 0.5 <" in plan, "the claude command line as it would run"


# -- workers' own reports, cost-based selection -----------------------------------------------


def exec_reporting(sandbox, task_id: str, report: dict, exit_code: int = 0) -> None:
    """Submit an exec task whose worker writes ``report`` to ``$MACP_REPORT`` and exits."""
    command = f"printf '%s' '{json.dumps(report)}' > \"$MACP_REPORT\"; exit {exit_code}"
    sandbox.macp("submit", "--task-id", task_id, "--dispatch", "exec", "--command", command, check=True)


def test_the_guides_worker_result_is_a_report_whose_used_counts(sandbox):
    sandbox.write_config({"macp": {"risk": {"enabled": False}}})
    exec_reporting(sandbox, "G", {"task_id": "G", "status": "success", "used": "5.2K", "commit_sha": "abc123", "notes": "sanitized the input"})
    sandbox.macp("edit", "G", "--estimate", "5K", check=True)
    sandbox.macp("drain", check=True)
    task, result = sandbox.task("G"), sandbox.result("G")
    assert [(run["runtime"], run["counted"], used_tokens(run["usage"])) for run in task["runs"]] == [("exec", True, 5200)]
    assert result["summary"] == "sanitized the input" and result["metadata"]["reported_commit"] == "abc123"
    assert task["variance"] == {"estimate_tokens": 5000, "used_tokens": 5200, "percent": 4.0, "level": "log"}


def test_a_worker_reporting_status_failed_is_a_failed_attempt_whatever_its_exit_code(sandbox):
    exec_reporting(sandbox, "F", {"task_id": "F", "status": "failed", "used": "1K", "notes": "tests would not pass"})
    sandbox.macp("drain")
    task = sandbox.task("F")
    assert task["status"] == "failed" and task["last_failure"]["reported_error"] == "the worker reported status failed: tests would not pass"
    assert used_tokens(task["usage"]) == 1000, "what a failed attempt used counts too"


def test_a_report_of_another_task_is_ignored_and_says_so(sandbox):
    exec_reporting(sandbox, "MINE", {"task_id": "THEIRS", "status": "failed", "used": "9K", "notes": "not yours"})
    sandbox.macp("drain", check=True)
    task, result = sandbox.task("MINE"), sandbox.result("MINE")
    assert task["status"] == "completed" and not task.get("runs")
    assert result["metadata"]["report_note"] == "report.json ignored: it is the report of task THEIRS, not MINE"


def test_an_exec_workers_usage_object_keeps_its_reported_cost(sandbox):
    exec_reporting(sandbox, "U", {"usage": {"input_tokens": 3000, "cached_input_tokens": 1000, "output_tokens": 100, "cost_usd": 0.04}})
    sandbox.macp("drain", check=True)
    usage = sandbox.result("U")["usage"]
    assert (usage["input_tokens"], usage["cached_input_tokens"], usage["output_tokens"]) == (3000, 1000, 100)
    assert (usage["cost_usd"], usage["cost_source"], used_tokens(usage)) == (0.04, "reported", 2100)


def test_cost_selection_picks_the_runtime_cheapest_per_completed_task_of_the_type():
    from macp.selection import runtime_order

    def done(task_id: str, runtime: str, cost: float, status: str = "completed") -> dict:
        run = {"attempt": 1, "runtime": runtime, "counted": True, "usage": usage_of(input_tokens=10, cost_usd=cost)}
        return {"id": task_id, "type": "coding", "dispatch": "yolo", "status": status, "attempt_runtime": runtime, "runs": [run]}

    history = [done("A", "codex", 0.02), done("E", "codex", 0.0, "failed"),
               done("B", "claude", 0.01), done("C", "claude", 0.05, "failed"), done("D", "claude", 0.01)]
    config = merge(default_config(), {"worker": {"selection": "cost"}})
    order, why = runtime_order({"id": "NEW", "type": "coding", "dispatch": "yolo"}, config, history)
    # claude: $0.07 over 2 completed = $0.035; codex: $0.02 over 1 = $0.02 -- though claude's
    # success rate is the better one (2 of 3 against 1 of 2)
    assert order[:2] == ["codex", "claude"] and why == "lowest cost per completed task of type coding (codex $0.0200, claude $0.0350)"
    assert runtime_order({"id": "NEW", "type": "review", "dispatch": "yolo"}, config, history)[1] == "no completed task of type review to price; default runtime codex"
    assert runtime_order({"id": "NEW", "type": "coding", "dispatch": "yolo"}, default_config(), history)[0][0] == "claude", "selection by success"


# -- interrupted runs are waste, never lost ----------------------------------------------------

STEP = {"type": "step_finish", "part": {"reason": "tool-calls", "cost": 0.03,
                                        "tokens": {"input": 900, "output": 40, "reasoning": 10, "cache": {"read": 100, "write": 0}}}}


def opencode_cut_short(sandbox, started: Path) -> None:
    """An opencode that reports one finished step, waits until the controller has it in the
    worker log (so a kill cannot come before it is there: the case is forced, not hoped
    for), says it is under way, and works on."""
    log = sandbox.orch / "logs" / "CUT" / "attempt-1" / "worker.log"
    sandbox.fake_cli("opencode", f"cat > /dev/null\necho '{json.dumps(STEP)}'\n"
                                 f"i=0; while ! grep -q step_finish '{log}' 2>/dev/null && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\n"
                                 f"touch {started}\nsleep 60\n")
    sandbox.write_config({"runtimes": {"codex": None, "claude": None, "gemini": None, "goose": None}, "macp": {"risk": {"enabled": False}}})
    sandbox.macp("submit", "--task-id", "CUT", "--runtime", "opencode", check=True)


def assert_kept_as_waste(task: dict) -> None:
    assert task["status"] == "pending" and task["attempts"] == 0
    [run] = task["runs"]
    assert (run["runtime"], run["counted"], run["usage"]["completeness"]) == ("opencode", False, "partial")
    assert task["waste"]["cost_usd"] == pytest.approx(0.03) and used_tokens(task["waste"]) == 950
    assert task["usage"]["completeness"] == "unavailable", "nothing counted"


def cut_short(sandbox, tmp_path: Path, signum: int) -> None:
    """Run CUT's opencode until it has reported its first step, then send ``signum`` to the
    controller and wait for it to go."""
    from test_durability import start_controller, wait_for

    started = tmp_path / "started"
    opencode_cut_short(sandbox, started)
    controller = start_controller(sandbox, "--until-drained")
    wait_for(started.exists, timeout=60, what="opencode to report its first step")
    controller.send_signal(signum)
    controller.communicate(timeout=60)


@pytest.mark.slow
def test_what_a_run_stopped_by_a_signal_used_is_kept_as_waste(sandbox, tmp_path):
    cut_short(sandbox, tmp_path, signal.SIGTERM)
    assert_kept_as_waste(sandbox.task("CUT"))


@pytest.mark.slow
def test_what_a_run_cut_by_a_controller_crash_used_is_kept_as_waste_on_recovery(sandbox, tmp_path):
    cut_short(sandbox, tmp_path, signal.SIGKILL)
    sandbox.fake_cli("opencode", "cat > /dev/null\nexit 3\n")  # the next run fails fast: recovery is what is looked at
    sandbox.controller("--once")
    assert "task.recovered" in sandbox.event_types("CUT"), "the crash was recovered"
    first = sandbox.task("CUT")["runs"][0]
    assert (first["counted"], first["usage"]["completeness"], first["usage"]["cost_usd"]) == (False, "partial", pytest.approx(0.03))


def test_a_task_archived_today_still_counts_toward_todays_budget(sandbox):
    sandbox.env["MACP_NOW"] = "2026-12-04T12:00:00Z"
    codex_reports(sandbox)
    sandbox.write_config(only_codex({"budget": {"daily_usd": 0.003}}))
    sandbox.macp("submit", "--task-id", "A", "--runtime", "codex", check=True)
    sandbox.macp("drain", check=True)
    sandbox.macp("archive", check=True)
    sandbox.macp("submit", "--task-id", "B", "--runtime", "codex", "--estimate", "1K", check=True)
    plan = sandbox.macp("drain", "--dry-run", check=True).stdout
    assert "budget: today's runs (UTC) cost $0.0020 of the daily $0.0030" in plan
    sandbox.macp("drain", check=True)
    assert sandbox.task("B")["status"] == "pending" and sandbox.task("B")["not_before"] == "2026-12-05T00:00:00.000Z"
