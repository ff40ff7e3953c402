"""Issue 23, part 3: seeing what the work cost -- ``mosaic macp usage``, ``status``, the drain
summary (human, ``--json``, the ``controller.stopped`` event the Matrix room gets) and the
JUnit properties.

Three tasks run on fake CLIs that print the real CLIs' captures against the fake model API:
A (coding, estimate 1K) and B (review) on codex, 1070 used tokens each at the example price
$0.001975; W first on claude, whose 429 error result still reports 305 used tokens and
$0.002 (waste), then on codex. A is archived before ``usage`` is asked: it still counts.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

import pytest

from macp.usage_report import GROUPINGS
from transport.matrix_messages import RenderContext, message_content

DATA = Path(__file__).resolve().parent / "data" / "runtimes"
CODEX_USED, CODEX_COST = 1070, 0.001975
NUMBERS = ("runs", "input_tokens", "cached_input_tokens", "output_tokens", "used_tokens", "cost_usd", "unpriced_runs")


@pytest.fixture
def drained(sandbox):
    error = {"type": "result", "subtype": "error_during_execution", "is_error": True, "api_error_status": 429,
             "result": "API Error: 429 rate limit", "total_cost_usd": 0.002, "usage": {"input_tokens": 300, "output_tokens": 5}}
    sandbox.fake_cli("claude", f"cat > /dev/null\necho '{json.dumps(error)}'\nexit 1\n")
    sandbox.fake_cli("codex", f"cat > /dev/null\ncat {DATA / 'codex-ok.txt'}\n")
    sandbox.write_config({"runtimes": {"opencode": None, "gemini": None, "goose": None}, "macp": {"risk": {"enabled": False}}})
    sandbox.macp("submit", "--task-id", "A", "--runtime", "codex", "--type", "coding", "--estimate", "1K", check=True)
    sandbox.macp("submit", "--task-id", "B", "--runtime", "codex", "--type", "review", check=True)
    sandbox.macp("submit", "--task-id", "W", "--runtime", "claude", "--type", "review", check=True)
    proc = sandbox.macp("drain", "--json", check=True)
    return sandbox, json.loads(proc.stdout)


def usage_json(sandbox, *args: str) -> dict:
    return json.loads(sandbox.macp("usage", "--json", *args, check=True).stdout)


def test_usage_adds_up_in_every_grouping_archived_tasks_included(drained):
    sandbox, _ = drained
    sandbox.macp("archive", "--before", "2999-01-01", check=True)
    assert not sandbox.tasks(), "all three are archived"
    totals = []
    for by in GROUPINGS:
        document = usage_json(sandbox, "--by", by)
        for name in NUMBERS:
            assert sum(group[name] for group in document["groups"]) == pytest.approx(document["total"][name]), (by, name)
        assert sum(group["waste"]["used_tokens"] for group in document["groups"]) == document["total"]["waste"]["used_tokens"]
        totals.append(document["total"])
    assert all(total == totals[0] for total in totals), "every grouping has the same whole"
    total = totals[0]
    assert (total["runs"], total["used_tokens"], total["cost_usd"]) == (3, 3 * CODEX_USED, pytest.approx(3 * CODEX_COST))
    assert total["waste"] == {"runs": 1, "used_tokens": 305, "cost_usd": pytest.approx(0.002)}
    assert total["estimate"] == {"tasks": 1, "estimate_tokens": 1000, "used_tokens": CODEX_USED, "variance_percent": 7.0}


def test_usage_by_runtime_and_type_puts_each_run_where_it_belongs(drained):
    sandbox, _ = drained
    by_runtime = {group["key"]: group for group in usage_json(sandbox, "--by", "runtime")["groups"]}
    assert by_runtime["codex"]["runs"] == 3 and by_runtime["claude"]["runs"] == 0
    assert by_runtime["claude"]["waste"]["runs"] == 1, "the provider failure is claude's waste"
    by_type = {group["key"]: group for group in usage_json(sandbox, "--by", "type")["groups"]}
    assert (by_type["coding"]["runs"], by_type["review"]["runs"]) == (1, 2)
    assert by_type["coding"]["estimate"]["variance_percent"] == 7.0 and by_type["review"]["estimate"]["tasks"] == 0


def test_usage_since_keeps_later_runs_and_a_bad_date_is_one_line(drained):
    sandbox, _ = drained
    assert usage_json(sandbox, "--since", "2999-01-01")["groups"] == []
    assert usage_json(sandbox, "--since", "2000-01-01")["total"]["runs"] == 3
    proc = sandbox.macp("usage", "--since", "yesterday")
    assert proc.returncode == 2 and proc.stderr.strip().endswith("--since: 'yesterday' is not a date (YYYY-MM-DD) or an RFC 3339 timestamp")


def test_the_usage_table_has_a_total_and_names_the_example_prices(drained):
    sandbox, _ = drained
    lines = sandbox.macp("usage", check=True).stdout.splitlines()
    assert lines[0].split()[:7] == ["TASK", "RUNS", "INPUT", "CACHED", "OUTPUT", "USED", "COST"]
    total = next(line for line in lines if line.startswith("TOTAL"))
    assert total.split()[1:7] == ["3", "3.6K", "600", "210", "3.2K", "$0.0059"]
    assert any("shipped examples as of 2026-12-01" in line for line in lines)


def test_status_the_drain_summary_and_its_event_carry_tokens_and_cost(drained):
    sandbox, run = drained
    rows = {row["id"]: row for row in run["tasks"]}
    assert (rows["A"]["used_tokens"], rows["A"]["estimate_tokens"], rows["A"]["cost_usd"]) == (CODEX_USED, 1000, pytest.approx(CODEX_COST))
    assert (rows["W"]["waste_used_tokens"], rows["W"]["waste_cost_usd"]) == (305, pytest.approx(0.002))
    assert run["spent"] == {"used_tokens": 3 * CODEX_USED, "cost_usd": pytest.approx(3 * CODEX_COST), "unpriced_tasks": 0,
                            "waste_used_tokens": 305, "waste_cost_usd": pytest.approx(0.002)}
    status = {row["id"]: row for row in json.loads(sandbox.macp("status", "--json", check=True).stdout)["tasks"]}
    assert status["B"]["used_tokens"] == CODEX_USED and status["B"]["cost_usd"] == pytest.approx(CODEX_COST)
    assert "1.1K/1K $0.0020" in sandbox.macp("status", check=True).stdout
    [stopped] = [event for event in sandbox.events() if event["event_type"] == "controller.stopped"]
    assert "used 3.2K tokens, $0.0059 (+ waste 305, $0.0020)" in stopped["message"]
    context = RenderContext("project", str(sandbox.repo), "", "", (), 60, datetime.now(timezone.utc))
    assert "used 3.2K tokens, $0.0059" in message_content(stopped, None, context)["body"], "the room's end-of-drain summary"


def test_the_junit_report_carries_each_agent_tasks_spend_as_properties(drained):
    sandbox, _ = drained
    report = sandbox.repo.parent / "junit.xml"
    sandbox.macp("report", "--junit", str(report), check=True)
    xmlschema = pytest.importorskip("xmlschema")
    xmlschema.XMLSchema(str(Path(__file__).resolve().parent / "data" / "junit.xsd")).validate(str(report))
    suites = {suite.get("name"): suite for suite in ET.parse(report).getroot()}
    properties = {prop.get("name"): prop.get("value") for prop in suites["W"].find("properties")}
    assert properties["macp.runtime"] == "codex" and properties["macp.used_tokens"] == str(CODEX_USED)
    assert properties["macp.cost_source"] == "price_table" and float(properties["macp.cost_usd"]) == pytest.approx(CODEX_COST)
    assert properties["macp.waste_used_tokens"] == "305"
    assert suites["A"].find("properties").find("property[@name='macp.variance_level']").get("value") == "log"
    assert suites["A"][0].tag == "properties", "JUnit wants properties first"
