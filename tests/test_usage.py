"""Issue 23, part 1: what an agent run used, read exactly from each real CLI's output.

The captures in ``tests/data/runtimes`` are the real CLIs' output against the fake model API,
which reports distinct figures (1200 input tokens of which 200 cached, 70 output of which 30
reasoning; Anthropic's shape: 1000 not cached, 200 cache reads, 50 cache writes). Each CLI
passes them on in its own shape and meaning; MACP reads one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from macp.usage import combined, read_usage, sums_of, unavailable, usage_of

DATA = Path(__file__).resolve().parent / "data" / "runtimes"
FORMATS = {"codex": "codex-json", "claude": "claude-stream-json", "gemini": "gemini-stream-json", "opencode": "opencode-json"}
SAME_FIGURES = usage_of(input_tokens=1200, cached=200, output_tokens=70, reasoning=30)


@pytest.mark.parametrize("cli", ["codex", "gemini", "opencode"])
def test_a_real_clis_report_is_read_as_the_api_gave_it(cli):
    assert read_usage((DATA / f"{cli}-ok.txt").read_text(), FORMATS[cli]) == SAME_FIGURES


def test_claudes_report_counts_cache_reads_and_writes_as_input_and_its_cost_as_reported():
    usage = read_usage((DATA / "claude-ok.txt").read_text(), FORMATS["claude"])
    assert {key: usage[key] for key in ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "total_tokens")} == {
        "input_tokens": 1250, "cached_input_tokens": 200, "cache_write_tokens": 50, "output_tokens": 70, "total_tokens": 1320}
    assert usage["cost_source"] == "reported" and usage["cost_usd"] == pytest.approx(0.00569)


def test_codex_usage_is_cumulative_so_the_last_report_counts_and_a_failed_turn_has_none():
    turns = [{"type": "turn.completed", "usage": {"input_tokens": n * 100, "cached_input_tokens": 0, "output_tokens": n * 10}} for n in (1, 3)]
    output = "\n".join(json.dumps(turn) for turn in turns)
    assert read_usage(output, "codex-json") == usage_of(input_tokens=300, output_tokens=30)
    assert read_usage((DATA / "codex-429.txt").read_text(), "codex-json") == unavailable()


def test_opencode_steps_are_summed_and_a_run_cut_before_its_last_step_is_partial():
    step = {"type": "step_finish", "part": {"reason": "tool-calls", "cost": 0.25,
                                            "tokens": {"input": 100, "output": 10, "reasoning": 5, "cache": {"read": 20, "write": 3}}}}
    last = {"type": "step_finish", "part": {**step["part"], "reason": "stop"}}
    whole = read_usage("\n".join(json.dumps(event) for event in (step, last)), "opencode-json")
    assert whole == {**usage_of(input_tokens=246, cached=40, cache_write=6, output_tokens=30, reasoning=10, cost_usd=0.5)}
    assert read_usage(json.dumps(step), "opencode-json")["completeness"] == "partial", "killed before its final step"


def test_text_runtimes_and_silent_runs_have_no_figures():
    assert read_usage("I did the work.\n", "text") == unavailable()
    assert read_usage("", "claude-stream-json") == unavailable()


def test_sums_keep_counted_runs_apart_from_waste_and_say_how_complete_they_are():
    claude = usage_of(input_tokens=100, output_tokens=10, cost_usd=0.01)
    codex = usage_of(input_tokens=50, output_tokens=5)
    runs = [
        {"attempt": 1, "runtime": "claude", "counted": False, "usage": claude},  # a provider failure
        {"attempt": 1, "runtime": "codex", "counted": True, "usage": codex},
    ]
    sums = sums_of(runs)  # type: ignore[arg-type]
    assert sums["usage"] == codex and sums["waste"] == claude
    mixed = combined([claude, unavailable()])
    assert mixed["completeness"] == "partial" and mixed["cost_usd"] is None and mixed["total_tokens"] == 110


def test_a_provider_failures_usage_is_kept_as_waste_never_lost(sandbox):
    # claude answers 429 in an error result that still reports what it used; codex then does the work
    error = {"type": "result", "subtype": "error_during_execution", "is_error": True, "api_error_status": 429,
             "result": "API Error: 429 rate limit", "total_cost_usd": 0.002, "usage": {"input_tokens": 300, "output_tokens": 5}}
    sandbox.fake_cli("claude", f"cat > /dev/null\necho '{json.dumps(error)}'\nexit 1\n")
    done = {"type": "turn.completed", "usage": {"input_tokens": 800, "cached_input_tokens": 100, "output_tokens": 40, "reasoning_output_tokens": 10}}
    sandbox.fake_cli("codex", f"cat > /dev/null\necho '{json.dumps(done)}'\n")
    sandbox.write_config({"runtimes": {"opencode": None, "gemini": None, "goose": None}, "prices": {"runtimes": {}}})  # unpriced: the figures as read
    sandbox.macp("submit", "--task-id", "W", "--dispatch", "yolo", "--runtime", "claude", check=True)
    sandbox.macp("drain", check=True)
    result = sandbox.result("W")
    assert [(run["runtime"], run["counted"]) for run in result["runs"]] == [("claude", False), ("codex", True)]
    assert result["usage"] == usage_of(input_tokens=800, cached=100, output_tokens=40, reasoning=10)
    assert result["waste"] == usage_of(input_tokens=300, output_tokens=5, cost_usd=0.002)
    assert sandbox.task("W")["waste"] == result["waste"]
