"""What a run leaves: the worker's own report (docs/workers.md), what an agent run used
(docs/usage.md), and the task's result file -- built, validated against result.schema.json
and written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

from macp import clock
from macp.capture import read_log_tail
from macp.fsio import read_regular, write_atomic
from macp.jsontext import dump_json, loads
from macp.layout import Layout, confine_output
from macp.model import Config, FinalStatus, GateResult, Result, ResultDetails, Task, Usage
from macp.naming import dispatch_kind
from macp.prices import price_for, priced
from macp.redact import redact, redact_value
from macp.textview import one_line
from macp.usage import read_usage, reported_usage, unavailable
from macp.verdicts import SUMMARY_MAX_CHARS, bounded
from protocol.schemas import schema_errors

MAX_REPORT_BYTES = 65536


def read_worker_report(report_file: Path, task_id: str | None = None) -> dict:
    """The worker's optional JSON report (docs/workers.md), keeping only well-typed fields:
    ``summary`` (str, cut at 2,000 characters), ``files_changed`` (list of str), ``escalate``
    (bool), ``escalation_reason`` (str), ``pr`` (str), ``usage`` (what it used, a
    :class:`~macp.model.Usage`: :func:`macp.usage.reported_usage`); secrets in the strings
    are redacted here, before any view sees them. The Mosaic Stack guide's worker result
    (seed 004: ``task_id``, ``status`` success|failed, ``used`` like ``"5.2K"``,
    ``commit_sha``, ``notes``) is read too: ``notes`` as the summary when there is none,
    ``status: "failed"`` as ``failed`` True (a failed attempt whatever the exit code), the
    commit as ``commit_sha``; a report naming another task than ``task_id`` is ignored:
    ``{"note": why}``. Missing or malformed reports give ``{}``. A report that is not a
    regular file (a link, a FIFO) or is larger than :data:`MAX_REPORT_BYTES` is ignored:
    ``{"note": why}``; it is never followed or read whole, so a worker cannot make the
    controller block or read another file."""
    try:
        raw = read_regular(report_file, MAX_REPORT_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:  # a link, a FIFO, a folder (NotARegularFile), or unreadable
        return {"note": f"report.json ignored: {exc.strerror}"}
    if len(raw) > MAX_REPORT_BYTES:
        return {"note": f"report.json ignored: larger than {MAX_REPORT_BYTES} bytes"}
    try:
        report = loads(raw.decode("utf-8"))
    except ValueError:  # not UTF-8, not JSON, or nested too deeply to read
        return {}
    if not isinstance(report, dict):
        return {}
    if task_id is not None and isinstance(report.get("task_id"), str) and report["task_id"] != task_id:
        return {"note": f"report.json ignored: it is the report of task {redact(one_line(report['task_id']))[:128]}, not {task_id}"}
    types: dict[str, type] = {"summary": str, "escalate": bool, "escalation_reason": str, "pr": str, "commit_sha": str}
    kept: dict[str, Any] = {key: redact_value(value) for key, value in report.items() if key in types and isinstance(value, types[key])}
    if isinstance(report.get("notes"), str) and "summary" not in kept:
        kept["summary"] = redact(report["notes"])
    if report.get("status") == "failed":
        kept["failed"] = True
    if (usage := reported_usage(report)) is not None:
        kept["usage"] = usage
    if "summary" in kept:
        kept["summary"] = bounded(kept["summary"], SUMMARY_MAX_CHARS)
    files = report.get("files_changed")
    if isinstance(files, list) and all(isinstance(name, str) for name in files):
        kept["files_changed"] = [redact(name) for name in files]
    return kept


def run_usage(config: Config, runtime: str, log_path: Path) -> Usage:
    """What the agent run logged at ``log_path`` on ``runtime`` used: read from the
    runtime's structured output (:func:`macp.usage.read_usage`; the whole log, up to
    ``macp.max_log_bytes``) and priced from the price table when the runtime reported no
    cost (:mod:`macp.prices`). A run cut short reads as what it reported so far."""
    spec = config["runtimes"].get(runtime)
    output = read_log_tail(log_path, config["macp"]["max_log_bytes"])
    return priced(read_usage(output, spec.get("output", "text") if spec else "text"), price_for(config, runtime))


def default_result_path(task: Task, repo_root: Path, config: Config) -> str:
    """``<macp.result_dir>/<task-id>.json`` as a ``result_path`` (relative to the state folder)."""
    target = confine_output(Path(config["macp"]["result_dir"]) / f"{task['id']}.json", Layout(repo_root), "macp.result_dir")
    return os.path.relpath(target, Layout(repo_root.resolve()).orch_dir)


def result_file(task: Task, orch_dir: Path) -> Path:
    """Where the task's result goes: ``result_path`` (relative to the state folder) or
    ``results/<task-id>.json``, confined to an output folder (:func:`macp.layout.confine_output`:
    never under ``.git``, never on a state file)."""
    relative = task.get("result_path") or f"results/{task['id']}.json"
    return confine_output(orch_dir / relative, Layout(orch_dir.parents[1]), f"task {task['id']}: result_path")


def collect_result(
    task: Task, exit_code: int | None, gate_results: list[GateResult], orch_dir: Path, status: FinalStatus | None = None, details: ResultDetails | None = None
) -> Result:
    """Build the task's result (result.schema.json), validate it, and write it atomically
    (the brief's ``collect_result(task, exit_code, gate_results, orch_dir)``).

    ``status`` defaults to completed when the worker exited 0 and every gate passed (a gate
    result without ``passed``: exit code 0), else failed. ``details`` set the other fields
    (``summary``, ``files_changed``, ``error``, ``worktree_kept``, ``worker``: the final
    worker run, ...); a None detail keeps the default. Nothing is written unless the result
    validates (ValueError otherwise). Returns the result.
    """
    now = clock.timestamp()
    passed = exit_code == 0 and all(gate.get("passed", gate.get("exit_code") == 0) for gate in gate_results)
    status = status or ("completed" if passed else "failed")
    result: Result = {
        "task_id": task["id"],
        "status": status,
        "completed_at": now,
        "failed_at": None if status == "completed" else now,
        "exit_code": exit_code,
        "attempt": task.get("attempts", 0),
        "max_attempts": task.get("max_attempts", 1),
        "runtime": task.get("attempt_runtime") or task.get("runtime") or "",
        "runs": task.get("runs") or [],
        "dispatch": dispatch_kind(task),
        "worktree": task.get("worktree"),
        "branch": task.get("branch"),
        "pr": task.get("pr"),
        "base_commit": task.get("base_commit"),
        "stacked_on": task.get("stacked_on") or [],
        "commits": [],
        "worker": None,
        "summary": "",
        "files_changed": [],
        "gate_results": gate_results,
        "error": None,
        "escalation_reason": None,
        "timed_out": False,
        "worktree_kept": None,
        "kept_commits": [],
        "output_tail": "",
        "metadata": {},
    }
    if usage := task.get("usage"):  # an agent task: what its runs used, counted and not (issue 23)
        result["usage"], result["waste"] = usage, task.get("waste") or unavailable()
    result.update(cast(ResultDetails, {key: value for key, value in (details or {}).items() if value is not None}))
    result = cast(Result, redact_value(result))
    errors = schema_errors("result", result)
    if errors:
        raise ValueError(f"refusing to write an invalid result for {task['id']}: {errors[0]}")
    write_atomic(result_file(task, orch_dir), dump_json(result))
    return result
