"""``mosaic macp report --junit FILE``: the quality-gate results as JUnit XML for CI systems.

JUnit XML is what CI tools read (GitHub Actions test reporters, GitLab, Jenkins): one
``<testsuite>`` per task that has a result, one ``<testcase>`` for its worker and one per
quality gate, with ``<failure>`` carrying the exit code, the failure class and the output
tail (already redacted). Only the elements and attributes of the common JUnit schema are used
(``testsuites``/``testsuite``/``testcase``/``failure``/``skipped``/``system-out``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from dispatcher.macp_dispatcher import result_file
from macp.archive import archived_tasks
from macp.cliutil import note, out, resolve_repo
from macp.errors import EXIT_OK, MacpError
from macp.fsio import read_json, write_atomic
from macp.layout import Layout
from macp.model import GateResult, Result
from macp.taskstore import load_tasks
from macp.textview import one_line

# XML 1.0 allows no control characters but tab, newline and carriage return.
_XML_SAFE = {code: None for code in (*range(0, 9), 11, 12, *range(14, 32))}


def junit_suites(results: list[Result]) -> ET.Element:
    """The ``<testsuites>`` element for ``results`` (result.schema.json documents)."""
    root = ET.Element("testsuites", name="macp")
    totals = {"tests": 0, "failures": 0, "skipped": 0, "time": 0.0}
    for result in results:
        suite = ET.SubElement(root, "testsuite", name=result["task_id"], timestamp=result.get("completed_at", ""))
        cases = [_worker_case(result), *(_gate_case(result["task_id"], gate) for gate in result.get("gate_results") or [])]
        counts = {"tests": len(cases), "failures": 0, "skipped": 0, "time": 0.0}
        for case in cases:
            suite.append(case)
            counts["failures"] += case.find("failure") is not None
            counts["skipped"] += case.find("skipped") is not None
            counts["time"] += float(case.get("time", "0"))
        for key, value in counts.items():
            suite.set(key, f"{value:.3f}" if key == "time" else str(value))
            totals[key] += value
        suite.set("errors", "0")
    for key, value in totals.items():
        root.set(key, f"{value:.3f}" if key == "time" else str(value))
    root.set("errors", "0")
    return root


def _worker_case(result: Result) -> ET.Element:
    worker = result.get("worker")
    seconds = (worker.get("duration_seconds") if worker else None) or 0
    case = ET.Element("testcase", classname=f"macp.{result['task_id']}", name="worker", time=f"{seconds:.3f}")
    code = result.get("exit_code")
    if result["status"] != "completed" and (code != 0 or result.get("timed_out")):
        reason = "timed out" if result.get("timed_out") else f"exit {code}"
        failure = ET.SubElement(case, "failure", message=one_line(result.get("error") or reason)[:500], type="worker")
        failure.text = _clean(result.get("output_tail", ""))
    elif result["status"] == "escalated" and not result.get("gate_results"):
        ET.SubElement(case, "skipped", message=one_line(result.get("escalation_reason") or "escalated")[:500])
    return case


def _gate_case(task_id: str, gate: GateResult) -> ET.Element:
    case = ET.Element("testcase", classname=f"macp.{task_id}", name=gate.get("name") or "gate", time=f"{gate.get('duration_seconds', 0):.3f}")
    if not gate.get("passed"):
        how = "timed out" if gate.get("timed_out") else f"exit {gate.get('exit_code')}"
        failure = ET.SubElement(case, "failure", message=f"{gate.get('command', '')}: {how}"[:500], type=gate.get("classification") or "unknown")
        failure.text = _clean(gate.get("output_tail", ""))
    return case


def _clean(text: str) -> str:
    return text.translate(_XML_SAFE)


def cmd_report(args) -> int:
    """Write the JUnit XML of every task that has a result -- archived tasks first, then the
    queue's -- to ``--junit FILE``."""
    layout = Layout(resolve_repo(args.repo))
    results: list[Result] = []
    for task in [*archived_tasks(layout.orch_dir, note), *load_tasks(layout).tasks]:
        path = result_file(task, layout.orch_dir)
        if path.exists():
            results.append(read_json(path))
    target = Path(args.junit)
    if target.exists() and target.is_dir():
        raise MacpError(f"--junit: {target} is a folder")
    if layout.orch_dir.resolve() in target.resolve().parents:
        raise MacpError(f"--junit: {target} is inside MACP's state folder; write the report elsewhere")
    root = junit_suites(results)
    tree = ET.ElementTree(root)
    ET.indent(tree)
    body = ET.tostring(root, encoding="unicode")
    write_atomic(target, '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n")
    out(f"wrote {target}: {len(results)} task(s), {root.get('tests')} test case(s), {root.get('failures')} failure(s)")
    return EXIT_OK
