"""What one controller run did, for people (a table) and for CI scripts (one JSON document).

Every task the run touched gets a row -- failed ones included -- with its final status,
attempts, the time the run spent on it, its branch, its commits and a one-line reason (like
GNU parallel's joblog). ``drain --json`` / ``mosaic-orchestrator-run --json`` print the
document on stdout and the progress lines on stderr.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping

from macp.budget import dollars
from macp.events import make_event
from macp.lifecycle import STATUSES, status_of
from macp.model import Config, Result, Task
from macp.settings import max_attempts
from macp.textview import duration_text, fit, one_line, render_table
from macp.usage import format_tokens
from macp.usage_report import spend_of, spend_text


def reason_of(task: Task) -> str:
    """One line on why a touched task ended where it did ("" when it simply completed)."""
    status = status_of(task)
    if status in ("failed", "escalated"):
        return one_line(task.get("escalation_reason") or task.get("error") or "")
    if status == "pending" and task.get("last_failure"):
        return f"retry scheduled after attempt {task.get('attempts', 0)} failed"
    if status == "pending":
        return "back in the queue (attempt not counted)"
    if status == "running" and (task.get("acp") or {}).get("requested_at"):
        return "waiting for its acp completion report"
    if status == "completed" and (uncommitted := task.get("uncommitted_work")):
        return f"not committed: {uncommitted}"
    return ""


def task_rows(
    by_id: Mapping[str, Task], outcomes: dict[str, str], seconds: dict[str, float], read_result: Callable[[Task], Result | None], config: Config
) -> list[dict]:
    """One row per task in ``outcomes`` (the tasks the run touched, in the order it touched
    them, found through ``by_id``: the queue, then the archive -- a task archived while the
    run went on is still the run's): ``id``, ``status``, ``attempts``, ``max_attempts``
    (:func:`macp.settings.max_attempts`), ``duration_seconds`` (time this run spent on it),
    ``branch``, ``commits`` (from its result), ``reason``, ``result``, ``landed_commit``
    (``drain --land``), and what it spent
    (:func:`macp.usage_report.spend_of`: ``used_tokens``, ``cost_usd``, ``estimate_tokens``,
    ``waste_used_tokens``, ``waste_cost_usd``)."""
    rows = []
    for task_id in outcomes:
        task = by_id.get(task_id)
        if task is None:
            continue
        result = read_result(task)
        rows.append(
            {
                "id": task_id,
                "status": status_of(task),
                "attempts": task.get("attempts", 0),
                "max_attempts": max_attempts(task, config),
                "duration_seconds": round(seconds.get(task_id, 0.0), 3),
                "branch": task.get("branch"),
                "commits": (result.get("commits") if result else None) or [],
                "reason": reason_of(task),
                "result": task.get("result_path") if result else None,
                "landed_commit": task.get("landed_commit"),
                **spend_of(task),
            }
        )
    return rows


def summary_lines(rows: list[dict]) -> list[str]:
    """The human summary: a table that fits a terminal, reasons cut at a word boundary."""
    if not rows:
        return []
    columns = [
        ("TASK", lambda r: r["id"]),
        ("STATUS", lambda r: f"{r['status']}, landed" if r.get("landed_commit") else r["status"]),
        ("ATTEMPTS", lambda r: f"{r['attempts']}/{r['max_attempts']}"),
        ("TIME", lambda r: duration_text(r["duration_seconds"])),
        ("BRANCH", lambda r: fit(r["branch"] or "-", 32)),
        ("COMMITS", lambda r: str(len(r["commits"]))),
        ("SPENT", spend_text),
        ("REASON", lambda r: fit(r["reason"], 60)),
    ]
    return ["", "this run:", *render_table(rows, columns)]


def run_document(repo: str, started_at: str, finished_at: str, exit_code: int, rows: list[dict], tasks: list[Task], refused: dict[str, str]) -> dict:
    """The run as one JSON document: where and when, its exit code, every touched task's
    row, the tasks it refused, the queue's counts afterwards, and what the run's tasks
    spent (:func:`spent_total`)."""
    counts = Counter(status_of(task) for task in tasks)
    return {
        "repo": repo,
        "started_at": started_at,
        "finished_at": finished_at,
        "exit_code": exit_code,
        "tasks": rows,
        "refused": [{"id": task_id, "reason": reason} for task_id, reason in refused.items()],
        "queue": {status: counts[status] for status in STATUSES},
        "spent": spent_total(rows),
    }


def spent_total(rows: list[dict]) -> dict:
    """What the run's tasks spent, summed from their rows: ``used_tokens``, ``cost_usd``
    (of the tasks with a cost; ``unpriced_tasks`` used tokens without one) and the waste."""
    def total(key: str) -> float:
        return sum(row[key] or 0 for row in rows)

    return {
        "used_tokens": int(total("used_tokens")),
        "cost_usd": round(total("cost_usd"), 10),
        "unpriced_tasks": sum(1 for row in rows if row["used_tokens"] and row["cost_usd"] is None),
        "waste_used_tokens": int(total("waste_used_tokens")),
        "waste_cost_usd": round(total("waste_cost_usd"), 10),
    }


def spent_text(spent: dict) -> str:
    """`` · used 12.3K tokens, $0.42 (+ waste 1K, $0.01)``; empty when nothing was used."""
    if not spent["used_tokens"] and not spent["waste_used_tokens"]:
        return ""
    text = f" · used {format_tokens(spent['used_tokens'])} tokens, {dollars(spent['cost_usd'])}" + ("+?" if spent["unpriced_tasks"] else "")
    if spent["waste_used_tokens"]:
        text += f" (+ waste {format_tokens(spent['waste_used_tokens'])}, {dollars(spent['waste_cost_usd'])})"
    return text


def summary_event(rows: list[dict], seconds: float, exit_code: int) -> dict:
    """The ``controller.stopped`` event that ends a drain which touched tasks: the run's
    summary for the event log and the room (issue 13) -- ``3 task(s) in 12.0s: 2 completed,
    1 failed · used 3.2K tokens, $0.0060 — B failed`` -- with the counts, the unfinished
    tasks, the run's length (``seconds``), its exit code and what it spent
    (:func:`spent_total`) as metadata."""
    counts = Counter(row["status"] for row in rows)
    unfinished = {row["id"]: row["status"] for row in rows if row["status"] != "completed"}
    spent = spent_total(rows)
    line = f"{len(rows)} task(s) in {duration_text(seconds)}: " + ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s]) + spent_text(spent)
    listed = ", ".join(f"{task_id} {status}" for task_id, status in unfinished.items())
    return make_event(
        "controller.stopped",
        source="controller",
        message=f"{line} — {listed}" if listed else line,
        metadata={"counts": {s: counts[s] for s in STATUSES if counts[s]}, "unfinished": unfinished, "seconds": round(seconds, 3), "exit_code": exit_code,
                  "spent": spent},
    )
