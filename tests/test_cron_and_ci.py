"""docs/cron-and-ci.md and the README work as pasted: the crontab line under cron's bare
environment, and the JUnit report against the JUnit schema subset CI tools read."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT

CRON_PATH = "/usr/bin:/bin"


def crontab_lines(path) -> list[str]:
    """The crontab lines of a markdown file's ```crontab blocks."""
    blocks = re.findall(r"```crontab\n(.*?)```", path.read_text(), re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("document", ["README.md", "docs/cron-and-ci.md"])
def test_the_crontab_line_works_under_crons_bare_environment(sandbox, document):
    if not shutil.which("python3", path=CRON_PATH) or not shutil.which("git", path=CRON_PATH):
        pytest.skip(f"python3 and git are not both in cron's PATH ({CRON_PATH}) on this machine")
    [line] = crontab_lines(ROOT / document)
    fields = line.split(None, 5)
    assert len(fields) == 6 and fields[:5] == ["*/10", "*", "*", "*", "*"], "five schedule fields, then the command"
    command = fields[5].replace("/opt/macp", str(ROOT)).replace("/srv/project", str(sandbox.repo))
    sandbox.macp("submit", "--task-id", "CRON", "--command", "echo from-cron > cron.txt", check=True)
    proc = subprocess.run(["env", "-i", f"PATH={CRON_PATH}", f"HOME={sandbox.home}", "/bin/sh", "-c", command],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    log = (sandbox.orch / "cron.log").read_text()
    assert "CRON: completed" in log and "this run:" in log
    assert sandbox.result("CRON")["status"] == "completed"
    assert "cron.log" in sandbox.git("status", "--porcelain", "--ignored", ".mosaic"), "the log is git-ignored"


def test_the_junit_report_matches_the_schema_ci_tools_read(sandbox, tmp_path):
    xmlschema = pytest.importorskip("xmlschema")
    sandbox.write_config({"quality_gates": [{"name": "unit", "command": "echo 'FAILED test_x - AssertionError'; exit 1"},
                                            {"name": "lint", "command": "true"}]})
    sandbox.write_tasks({"tasks": [
        {"id": "PASS", "dispatch": "exec", "command": "true", "quality_gates": ["true"]},
        {"id": "GATE", "dispatch": "exec", "command": "true"},
        {"id": "CRASH", "dispatch": "exec", "command": "printf 'bad \\001 byte\\n'; exit 4"},
    ]})
    sandbox.macp("drain")
    target = tmp_path / "junit.xml"
    proc = sandbox.macp("report", "--junit", str(target), check=True)
    assert "3 task(s)" in proc.stdout
    xmlschema.XMLSchema(str(ROOT / "tests" / "data" / "junit.xsd")).validate(str(target))
    root = ET.parse(target).getroot()
    suites = {suite.get("name"): suite for suite in root}
    assert (root.get("tests"), root.get("failures")) == ("6", "2"), "a worker case per task plus one per gate that ran"
    [failure] = suites["GATE"].findall("testcase[@name='unit']/failure")
    assert failure.get("type") == "test" and "AssertionError" in failure.text
    assert suites["GATE"].find("testcase[@name='lint']/failure") is None
    assert suites["CRASH"].find("testcase[@name='worker']/failure").get("type") == "worker"
    assert suites["PASS"].get("failures") == "0"
    proc = sandbox.macp("report", "--junit", str(sandbox.orch / "junit.xml"))
    assert proc.returncode == 2 and "inside MACP's state folder" in proc.stderr


def test_the_junit_report_parses_whatever_gates_print_or_are_named(sandbox, tmp_path):
    xmlschema = pytest.importorskip("xmlschema")
    # U+FFFE and U+FFFF are valid UTF-8 but no XML character; nor are C0 controls in names
    hostile_output = "printf 'not \\357\\277\\276 xml \\357\\277\\277 chars \\001\\n'; exit 1"
    sandbox.write_config({"quality_gates": [{"name": "unit\x1b[31m\x01", "command": f"{hostile_output} # \x07bell"}]})
    sandbox.write_tasks({"tasks": [
        {"id": "ODD", "dispatch": "exec", "command": "true"},
        {"id": "NEVER", "dispatch": "exec", "command": "true", "branch": "bad..name"},  # fails before any worker runs
    ]})
    sandbox.macp("drain")
    assert sandbox.result("NEVER")["exit_code"] is None, "the case is forced: this task never ran"
    target = tmp_path / "junit.xml"
    sandbox.macp("report", "--junit", str(target), check=True)
    xmlschema.XMLSchema(str(ROOT / "tests" / "data" / "junit.xsd")).validate(str(target))
    suites = {suite.get("name"): suite for suite in ET.parse(target).getroot()}
    [gate] = [case for case in suites["ODD"] if case.get("name") != "worker"]
    assert gate.get("name").startswith("unit") and "not  xml  chars" in gate.find("failure").text
    never = suites["NEVER"].find("testcase[@name='worker']/failure").get("message")
    assert "None" not in never and "valid git branch name" in never, never
