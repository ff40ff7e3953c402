"""The provider-failure classifier and reset-time parser on the real CLIs' outputs
(tests/data/runtimes/, captured by tests/live/capture_runtimes.py) and on the forms the
vendors print (../shared/reference/agent-runtimes.md)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from macp.clock import parse_timestamp
from macp.config import default_config
from macp.providers import MAX_RESET_SECONDS, classify_run, normalise, parse_reset_time
from macp.runtime_output import RunReport, read_run
from macp.verdicts import judge_agent_run, signatures

DATA = Path(__file__).resolve().parent / "data" / "runtimes"
CAPTURES = json.loads((DATA / "captures.json").read_text())
NOW = datetime(2026, 11, 22, 21, 32, 30, tzinfo=timezone.utc)
CONFIG = default_config()

# What each real output means. None: a success (the summary is the fake model's answer).
EXPECTED = {
    "codex-ok": None, "codex-401": "auth", "codex-429": "rate_limit", "codex-quota": "quota",
    "codex-500": "overloaded", "codex-503": "overloaded", "codex-529": "overloaded",
    "codex-never": "hang", "codex-refused": "network", "codex-unknown-flag": "misconfigured",
    "claude-ok": None, "claude-401": "auth", "claude-429": "rate_limit", "claude-quota": "rate_limit",
    "claude-500": "network", "claude-503": "network", "claude-529": "overloaded",
    "claude-never": "hang", "claude-refused": "network", "claude-root-guard": "misconfigured",
    "gemini-ok": None, "gemini-401": "auth", "gemini-429": "rate_limit", "gemini-quota": "quota",
    "gemini-500": "network", "gemini-503": "overloaded", "gemini-529": "overloaded",
    "gemini-never": "hang", "gemini-refused": "network", "gemini-untrusted": "misconfigured", "gemini-no-auth": "auth",
    "opencode-ok": None, "opencode-401": "auth", "opencode-429": "rate_limit", "opencode-quota": "quota",
    "opencode-500": "network", "opencode-503": "overloaded", "opencode-529": "overloaded",
    "opencode-never": "hang", "opencode-refused": "network",
}
# Reset times the outputs name, in seconds after the run (the fake API's Retry-After: 37 and
# its 90-minute quota), where the CLI passes them on.
EXPECTED_RESET = {"codex-quota": 5400, "gemini-429": 37, "gemini-quota": 5400, "opencode-429": 37}


def judge(name: str, now: datetime = NOW):
    record = CAPTURES[name]
    output = (DATA / f"{name}.txt").read_text()
    return judge_agent_run(CONFIG, record["cli"], exit_code=record["exit_code"], idle_timed_out=record["idle_timed_out"],
                           output=output, now=now, local_zone=timezone.utc)


def test_every_capture_has_an_expectation():
    assert sorted(CAPTURES) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_cli_output_is_classified(name):
    verdict = judge(name)
    kind = verdict.provider_failure.kind if verdict.provider_failure else None
    assert kind == EXPECTED[name], (verdict, (DATA / f"{name}.txt").read_text()[-800:])
    if EXPECTED[name] is None:
        assert verdict.summary == "FAKE-SUMMARY: the task is done." and verdict.reported_error is None


@pytest.mark.parametrize("name", sorted(EXPECTED_RESET))
def test_real_reset_times_are_read(name):
    record = CAPTURES[name]
    captured = parse_timestamp(record["captured_at"])
    failure = judge(name, now=captured).provider_failure
    assert failure is not None and failure.reset_at is not None
    seconds = (failure.reset_at - captured).total_seconds()
    assert abs(seconds - EXPECTED_RESET[name]) <= 120, (record, failure)


def test_a_typographic_apostrophe_is_read_like_a_plain_one():
    text = "You\u2019ve hit your usage limit. Try again later."
    assert normalise(text) == "You've hit your usage limit. Try again later."
    failure = classify_run(signatures(CONFIG, "goose"), exit_code=1, idle_timed_out=False, report=RunReport(text=text), now=NOW)
    assert failure is not None and failure.kind == "quota"


@pytest.mark.parametrize("text", [
    "Fixed the retry on HTTP 429 (Too Many Requests) and the rate limit handler.",
    "status: 429\nrate_limit_exceeded\nYou've hit your usage limit",
])
def test_a_run_that_exits_0_is_no_provider_failure_whatever_it_printed(text):
    for runtime in ("codex", "claude", "goose"):
        verdict = judge_agent_run(CONFIG, runtime, exit_code=0, idle_timed_out=False, output=text, now=NOW)
        assert verdict.provider_failure is None and verdict.reported_error is None


def test_exit_0_with_a_structured_error_is_judged_by_that_error():
    result = {"type": "result", "subtype": "success", "is_error": True, "api_error_status": 429, "result": "API Error: Rate limit reached"}
    verdict = judge_agent_run(CONFIG, "claude", exit_code=0, idle_timed_out=False, output=json.dumps(result), now=NOW)
    assert verdict.provider_failure is not None and verdict.provider_failure.kind == "rate_limit"
    turns = {"type": "result", "subtype": "error_max_turns", "is_error": True, "result": ""}
    verdict = judge_agent_run(CONFIG, "claude", exit_code=0, idle_timed_out=False, output=json.dumps(turns), now=NOW)
    assert verdict.provider_failure is None and verdict.reported_error == "error_max_turns", "a counted failure, not a success"


def test_a_transient_error_before_a_completed_turn_is_forgotten():
    lines = [{"type": "error", "message": "Reconnecting... 1/5 (stream disconnected before completion)"},
             {"type": "item.completed", "item": {"type": "agent_message", "text": "Done."}},
             {"type": "turn.completed", "usage": {}}]
    report = read_run("\n".join(json.dumps(line) for line in lines), "codex-json")
    assert report.error is None and report.final_message == "Done."


def test_missing_binary_and_silence():
    report = RunReport()
    assert classify_run({}, exit_code=127, idle_timed_out=False, report=report, now=NOW).kind == "missing"
    assert classify_run({}, exit_code=None, idle_timed_out=False, report=report, now=NOW).kind == "missing"
    assert classify_run({}, exit_code=143, idle_timed_out=True, report=report, now=NOW).kind == "hang"
    assert classify_run({}, exit_code=143, idle_timed_out=False, report=report, now=NOW) is None, "a task timeout is no hang"


def test_the_summary_is_bounded_at_a_word_boundary():
    text = "word " * 1000
    line = json.dumps({"type": "result", "subtype": "success", "is_error": False, "result": text})
    summary = judge_agent_run(CONFIG, "claude", exit_code=0, idle_timed_out=False, output=line, now=NOW).summary
    assert summary is not None and len(summary) <= 2000 and summary.endswith("word\u2026")


@pytest.mark.parametrize(("text", "seconds"), [
    ("Retry-After: 120", 120),
    ('"retry-after":"37"', 37),
    ("retry-after: Sun, 22 Nov 2026 21:40:00 GMT", 450),
    ('{"retry_after_ms": 5000}', 5),
    ('{"retry_delay_ms":41345}', 41.345),
    ("retryDelayMs: 37000,", 37),
    ("Please try again in 37s.", 37),
    ("Suggested retry after 37s.", 37),
    ("Please retry in 12.5s", 12.5),
    ('"retryDelay": "34s"', 34),
    ("Your quota will reset after 1h49m8s.", 6548),
    ("try again in 2 days 17 hours 14 minutes", MAX_RESET_SECONDS),
    ('"resets_in_seconds": 5400', 5400),
    ("Claude AI usage limit reached|1795469400", 86250),
    ("resets at 10:30pm", 3510),
    ("try again at 9:32 PM.", 30),
    ("try again at 9:31 PM.", 86400 - 30),
    ("You've hit your limit · resets 11pm (UTC)", 5310),
    ("or try again at Nov 23rd, 2026 12:34 AM.", 10950),
])
def test_reset_times_in_every_form(text, seconds):
    reset, _capped = parse_reset_time(text, NOW, timezone.utc)
    assert reset is not None, text
    assert abs((reset - NOW).total_seconds() - seconds) < 0.01, (text, reset)


def test_a_clock_time_in_this_minute_is_now_not_tomorrow():
    reset, capped = parse_reset_time("try again at 9:32 PM", NOW, timezone.utc)
    assert reset == datetime(2026, 11, 22, 21, 33, tzinfo=timezone.utc) and not capped


@pytest.mark.parametrize("text", ["Retry-After: 99999999999999", "usage limit reached|99999999999",
                                  '"retry_after_ms": 999999999999999', "try again in 999999999 days"])
def test_a_reset_far_away_is_capped_and_said_so_never_an_overflow(text):
    reset, capped = parse_reset_time(text, NOW, timezone.utc)
    if reset is not None:
        assert reset - NOW <= timedelta(seconds=MAX_RESET_SECONDS)
        assert capped
