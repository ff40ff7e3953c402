"""Live: the real codex, claude, gemini and opencode CLIs (``make agent-clis``) run through
``mosaic macp drain`` against the fake model API on 127.0.0.1 (tests/live/).

Each failure case keeps only the CLI under test in the registry and allows one provider
failure, so the drain ends at once with the class the controller decided recorded in the
``task.provider.failed`` event. Skipped when the CLIs are not installed.
"""

from __future__ import annotations

import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tests" / "live"))
from agent_clis import BIN_DIR, PACKAGES, FakeApi, installed, point_at
from fake_model_api import ANSWER, QUOTA_RESET_SECONDS

from macp.clock import parse_timestamp
from macp.config import default_config
from macp.runtimes import running_as_root

pytestmark = [pytest.mark.live, pytest.mark.skipif(not all(installed(cli) for cli in PACKAGES), reason="run 'make agent-clis' first")]
DRAIN_SECONDS = 240


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with FakeApi(tmp_path_factory.mktemp("fake-api")) as server:
        yield server


def live(sandbox, api: FakeApi, cli: str, case: str, runtime: dict | None = None, macp: dict | None = None):
    """Point ``cli`` at ``case``, keep it alone in the registry, submit one yolo task, drain."""
    sandbox.env["PATH"] = f"{BIN_DIR}:{sandbox.env['PATH']}"
    sandbox.env.update(point_at(cli, sandbox.home, api.url(case)))
    runtimes: dict = {name: None for name in default_config()["runtimes"] if name != cli}
    runtimes[cli] = runtime or {}
    sandbox.write_config({"runtimes": runtimes, "macp": {"max_provider_failures": 1, **(macp or {})}})
    sandbox.macp("submit", "--task-id", "L1", "--title", "Say done", "--dispatch", "yolo", "--runtime", cli, check=True)
    return sandbox.macp("drain", timeout=DRAIN_SECONDS)


def provider_failure(sandbox) -> dict:
    [event] = [e for e in sandbox.events("L1") if e["event_type"] == "task.provider.failed"]
    task = sandbox.task("L1")
    assert task["status"] == "escalated" and task["attempts"] == 0, "a provider failure never counts an attempt"
    assert task["escalation_reason"].startswith("runtime unavailable: 1 provider failures")
    return event["metadata"]


@pytest.mark.parametrize("cli", sorted(PACKAGES))
def test_a_real_cli_completes_a_task_with_its_own_summary(sandbox, api, cli):
    proc = live(sandbox, api, cli, "ok")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    task = sandbox.task("L1")
    assert task["status"] == "completed" and task["attempts"] == 1 and task["attempt_runtime"] == cli
    result = sandbox.result("L1")
    assert result["summary"] == ANSWER, "taken from the CLI's structured output"
    assert [run["runtime"] for run in result["runs"]] == [cli]
    # the fake API reports 1200 input tokens (200 cached) and 70 output (30 reasoning); Anthropic's
    # shape: 1000 not cached, 200 cache reads, 50 cache writes (tests/live/fake_model_api.py)
    expected = EXPECTED_USAGE[cli]
    [run] = result["runs"]
    for where in (run["usage"], task["usage"], result["usage"]):
        assert {key: where[key] for key in expected} == expected, where
        assert where["completeness"] == "complete" and where["total_tokens"] == where["input_tokens"] + where["output_tokens"]
    assert result["waste"]["total_tokens"] == 0 and result["waste"]["completeness"] == "unavailable"
    usage = result["usage"]
    if cli in EXAMPLE_PRICES:  # no cost of their own: the shipped example price table prices them
        input_price, cached_price, output_price = EXAMPLE_PRICES[cli]
        cost = (1000 * input_price + 200 * cached_price + 70 * output_price) / 1e6
        assert (usage["cost_source"], usage["cost_usd"]) == ("price_table", pytest.approx(cost))
    else:  # claude and opencode (priced in its own config) report a cost: recorded as they printed it
        assert (usage["cost_source"], usage["cost_usd"]) == ("reported", pytest.approx(reported_cost(result, cli)))
        assert usage["cost_usd"] > 0


EXAMPLE_PRICES = {"codex": (1.25, 0.125, 10.0), "gemini": (1.25, 0.31, 10.0)}  # templates/.../config.json "prices"


def reported_cost(result: dict, cli: str) -> float:
    """The cost the CLI printed in its worker log: claude's final ``total_cost_usd``, the sum
    of opencode's ``step_finish`` costs."""
    import json
    from pathlib import Path

    lines = [json.loads(line) for line in (Path(result["metadata"]["log_dir"]) / "worker.log").read_text().splitlines() if line.startswith("{")]
    if cli == "claude":
        return [line for line in lines if line.get("type") == "result"][-1]["total_cost_usd"]
    return sum(line["part"]["cost"] for line in lines if line.get("type") == "step_finish")


EXPECTED_USAGE = {
    "codex": {"input_tokens": 1200, "cached_input_tokens": 200, "cache_write_tokens": 0, "output_tokens": 70, "reasoning_tokens": 30},
    "gemini": {"input_tokens": 1200, "cached_input_tokens": 200, "cache_write_tokens": 0, "output_tokens": 70, "reasoning_tokens": 30},
    "opencode": {"input_tokens": 1200, "cached_input_tokens": 200, "cache_write_tokens": 0, "output_tokens": 70, "reasoning_tokens": 30},
    "claude": {"input_tokens": 1250, "cached_input_tokens": 200, "cache_write_tokens": 50, "output_tokens": 70, "reasoning_tokens": 0},
}


@pytest.mark.parametrize(("cli", "case", "expected"), [
    ("claude", "429", "rate_limit"),
    ("codex", "429", "rate_limit"),
    ("codex", "quota", "quota"),
    ("gemini", "401", "auth"),
    ("opencode", "401", "auth"),
    ("claude", "529", "overloaded"),
    ("gemini", "refused", "network"),
    ("codex", "503", "overloaded"),
])
def test_a_real_provider_failure_is_classified_and_fails_over(sandbox, api, cli, case, expected):
    live(sandbox, api, cli, case)
    failure = provider_failure(sandbox)
    assert (failure["runtime"], failure["class"]) == (cli, expected), failure


def test_a_real_usage_limit_names_its_reset_time(sandbox, api):
    live(sandbox, api, "codex", "quota")
    failure = provider_failure(sandbox)
    started = parse_timestamp(sandbox.events("L1")[0]["timestamp"])
    waited = (parse_timestamp(failure["reset_at"]) - started).total_seconds()
    assert QUOTA_RESET_SECONDS - 120 <= waited <= QUOTA_RESET_SECONDS + 120, failure
    assert "You've hit your usage limit" in failure["evidence"].replace("\u2019", "'")


def test_a_real_cli_refusing_its_command_line_is_misconfigured(sandbox, api):
    command = [part for part in default_config()["runtimes"]["gemini"]["command"] if part != "--skip-trust"]
    live(sandbox, api, "gemini", "ok", runtime={"command": command})
    failure = provider_failure(sandbox)
    assert failure["class"] == "misconfigured" and "trusted" in failure["evidence"]


@pytest.mark.skipif(not running_as_root(), reason="the root guard only shows as root")
def test_claude_as_root_needs_is_sandbox_which_the_template_sets(sandbox, api):
    live(sandbox, api, "claude", "ok", runtime={"env_as_root": {"IS_SANDBOX": "0"}})
    failure = provider_failure(sandbox)
    assert failure["class"] == "misconfigured" and "root" in failure["evidence"]


def test_a_real_cli_that_is_not_installed_is_missing(sandbox, api):
    command = ["codex-not-installed", *default_config()["runtimes"]["codex"]["command"][1:]]
    live(sandbox, api, "codex", "ok", runtime={"command": command})
    assert provider_failure(sandbox)["class"] == "missing"


def test_a_real_cli_waiting_on_a_silent_api_is_a_hang(sandbox, api):
    live(sandbox, api, "claude", "never", runtime={"idle_timeout_seconds": 3}, macp={"kill_grace_seconds": 2})
    assert provider_failure(sandbox)["class"] == "hang"



def test_real_opencode_silent_on_an_api_that_never_answers_is_a_hang_at_its_first_output_timeout(sandbox, api):
    # opencode prints nothing while it waits for a model that never answers; its first-output
    # timeout (3 s here) finds it long before the idle timeout (600 s) or the task's deadline
    live(sandbox, api, "opencode", "never", runtime={"first_output_timeout_seconds": 3}, macp={"kill_grace_seconds": 2})
    failure = provider_failure(sandbox)
    assert failure["class"] == "hang", failure


def test_real_opencode_silent_until_a_short_task_deadline_is_a_hang_not_a_counted_attempt(sandbox, api):
    sandbox.env["PATH"] = f"{BIN_DIR}:{sandbox.env['PATH']}"
    sandbox.env.update(point_at("opencode", sandbox.home, api.url("never")))
    runtimes: dict = {name: None for name in default_config()["runtimes"] if name != "opencode"}
    sandbox.write_config({"runtimes": runtimes, "macp": {"max_provider_failures": 1, "kill_grace_seconds": 2}})
    sandbox.macp("submit", "--task-id", "L1", "--dispatch", "yolo", "--runtime", "opencode", "--timeout", "4", check=True)
    sandbox.macp("drain", timeout=DRAIN_SECONDS)
    assert provider_failure(sandbox)["class"] == "hang"
