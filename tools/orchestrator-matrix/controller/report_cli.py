"""``mosaic macp report --junit FILE``: the quality-gate results as JUnit XML for CI systems.

JUnit XML is what CI tools read (GitHub Actions test reporters, GitLab, Jenkins): one
``<testsuite>`` per task that has a result, one ``<testcase>`` for its worker and one per
quality gate, with ``<failure>`` carrying the exit code, the failure class and the output
tail (already redacted); an agent task's suite carries what it used and cost as
``<property name="macp.used_tokens" ...>``. Only the elements and attributes of the common
JUnit schema are used (``testsuites``/``testsuite``/``properties``/``property``/``testcase``/
``failure``/``skipped``/``system-out``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from dispatcher.macp_dispatcher import result_file
from macp.archive import archived_tasks
from macp.cliutil import note, out, repo_layout
from macp.errors import EXIT_OK, MacpError
from macp.fsio import read_json, write_atomic
from macp.model import GateResult, Result
from macp.taskstore import load_tasks
from macp.textview import one_line
from macp.usage import used_tokens

# Characters XML 1.0 forbids anywhere (elements and attributes): C0 controls but tab, newline
# and carriage return; surrogates; U+FFFE and U+FFFF (https://www.w3.org/TR/xml/#charsets).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
MESSAGE_CHARS = 500


def xml_text(text: object) -> str:
    """``text`` as XML 1.0 may hold it: every character it forbids is dropped."""
    return _NOT_XML.sub("", str(text))


def node(parent: ET.Element | None, tag: str, text: str | None = None, **attributes: object) -> ET.Element:
    """A new element ``tag`` (under ``parent`` when given) whose attributes and text hold
    only characters XML allows (:func:`xml_text`): what a gate printed, its name and
    command, never make the report unparseable."""
    clean = {name: xml_text(value) for name, value in attributes.items()}
    element = ET.Element(tag, clean) if parent is None else ET.SubElement(parent, tag, clean)
    if text is not None:
        element.text = xml_text(text)
    return element


def junit_suites(results: list[Result]) -> ET.Element:
    """The ``<testsuites>`` element for ``results`` (result.schema.json documents)."""
    root = node(None, "testsuites", name="macp")
    totals = {"tests": 0, "failures": 0, "skipped": 0, "time": 0.0}
    for result in results:
        suite = node(root, "testsuite", name=result["task_id"], timestamp=result.get("completed_at", ""))
        if spend := spend_properties(result):
            properties = node(suite, "properties")
            for name, text in spend.items():
                node(properties, "property", name=f"macp.{name}", value=text)
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


def spend_properties(result: Result) -> dict[str, str]:
    """What an agent task used, as ``<property>`` values of its suite (docs/usage.md): its
    runtime, used tokens, input, cached and output tokens, cost and where the cost came
    from, the waste's used tokens and cost, its estimate and variance. Empty for a task
    without agent runs; a figure nobody has is left out."""
    usage = result.get("usage")
    if usage is None:
        return {}
    figures: dict[str, object] = {
        "runtime": result.get("runtime"),
        "used_tokens": used_tokens(usage),
        **{name: usage[name] for name in ("input_tokens", "cached_input_tokens", "output_tokens")},
        "cost_usd": usage["cost_usd"],
        "cost_source": usage["cost_source"],
        "completeness": usage["completeness"],
    }
    if waste := result.get("waste"):
        figures.update({"waste_used_tokens": used_tokens(waste), "waste_cost_usd": waste["cost_usd"]})
    if variance := result.get("variance"):
        figures.update({"estimate_tokens": variance["estimate_tokens"], "variance_percent": variance["percent"], "variance_level": variance["level"]})
    return {name: str(value) for name, value in figures.items() if value is not None}


def _worker_case(result: Result) -> ET.Element:
    worker = result.get("worker")
    seconds = (worker.get("duration_seconds") if worker else None) or 0
    case = node(None, "testcase", classname=f"macp.{result['task_id']}", name="worker", time=f"{seconds:.3f}")
    code = result.get("exit_code")
    if result["status"] != "completed" and (code != 0 or result.get("timed_out")):
        reason = "timed out" if result.get("timed_out") else ("did not run" if code is None else f"exit {code}")
        message = result.get("error") or result.get("escalation_reason") or reason
        node(case, "failure", result.get("output_tail", ""), message=one_line(message)[:MESSAGE_CHARS], type="worker")
    elif result["status"] == "escalated" and not result.get("gate_results"):
        node(case, "skipped", message=one_line(result.get("escalation_reason") or "escalated")[:MESSAGE_CHARS])
    return case


def _gate_case(task_id: str, gate: GateResult) -> ET.Element:
    case = node(None, "testcase", classname=f"macp.{task_id}", name=one_line(gate.get("name") or "gate"), time=f"{gate.get('duration_seconds', 0):.3f}")
    if not gate.get("passed"):
        how = "timed out" if gate.get("timed_out") else ("did not run" if gate.get("exit_code") is None else f"exit {gate.get('exit_code')}")
        message = one_line(f"{gate.get('command', '')}: {how}")[:MESSAGE_CHARS]
        node(case, "failure", gate.get("output_tail", ""), message=message, type=gate.get("classification") or "unknown")
    return case


def cmd_report(args) -> int:
    """Write the JUnit XML of every task that has a result -- archived tasks first, then the
    queue's -- to ``--junit FILE``."""
    layout = repo_layout(args.repo)
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
