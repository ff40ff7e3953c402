"""The prompt/brief a worker receives for an attempt (pure).

Attempt 1 gets the task's brief (or, without one, its title and description). A retry gets
the same text plus a "Previous attempt" section built from ``task["last_failure"]``: which
gate or exit code failed, its classification, and the output tail (DESIGN.md, "Guided
retries"). An agent's brief ends with :func:`report_section`: how to leave the JSON report
MACP reads into the result (docs/workers.md), since an agent never writes one unless told.
"""

from __future__ import annotations

import re

from macp.landing import landing_failure_text
from macp.model import Failure, Task


def _fence(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def base_brief(task: Task, brief_text: str | None) -> str:
    """The brief itself, or a heading built from the task's title and description."""
    if brief_text is not None:
        return brief_text
    lines = [f"# {task['id']}: {task.get('title') or task['id']}"]
    if task.get("description"):
        lines += ["", task["description"]]
    return "\n".join(lines) + "\n"


def failure_summary(failure: Failure) -> str:
    """One sentence naming what failed, e.g. ``gate `test` (test) exited 1``."""
    if failure["kind"] == "gate":
        return (
            f"quality gate `{failure.get('gate')}` ({failure.get('classification', 'unknown')}) "
            f"exited {failure.get('exit_code')}"
        )
    if failure["kind"] == "timeout":
        return "the worker timed out and was stopped"
    if failure["kind"] == "land":
        return landing_failure_text(failure)
    if failure["kind"] == "merge":
        return f"its dependencies' branches do not merge (conflicts in {', '.join(failure.get('conflicts') or []) or 'the index'})"
    if failure.get("reported_error"):
        return f"the runtime reported an error (exit code {failure.get('exit_code')}): {failure['reported_error'][:200]}"
    return f"the worker exited with code {failure.get('exit_code')}"


def previous_attempt_section(failure: Failure) -> str:
    """Markdown "Previous attempt" section describing ``failure``."""
    tail = failure.get("output_tail") or "(no output)"
    fence = _fence(tail)
    return (
        "\n## Previous attempt\n\n"
        f"Attempt {failure['attempt']} failed: {failure_summary(failure)}.\n"
        f"Failure class: {failure.get('classification', 'unknown')}.\n\n"
        "Output tail:\n\n"
        f"{fence}\n{tail.rstrip()}\n{fence}\n\n"
        "Fix the cause above, keep the work already in this worktree, and finish the task.\n"
    )


def report_section(report_file: str) -> str:
    """Markdown "Report" section telling an agent how to report (docs/workers.md)."""
    return (
        "\n## Report\n\n"
        f"When you are done, write a JSON report to the file named by `$MACP_REPORT` ({report_file}):\n\n"
        '```json\n{"summary": "what you did, in a few sentences", "files_changed": ["path/one.py"], '
        '"escalate": false, "escalation_reason": null}\n```\n\n'
        'Set "escalate" to true, with the reason, if a person must decide something before this task can be finished. '
        "Commit your work on the current branch.\n"
    )


def compose_brief(task: Task, brief_text: str | None, report_file: str | None = None) -> str:
    """The full text for the next attempt of ``task``; ``report_file`` (for agents) adds the
    report instruction at the end."""
    text = base_brief(task, brief_text)
    failure = task.get("last_failure")
    if failure:
        text = text.rstrip("\n") + "\n" + previous_attempt_section(failure)
    if report_file:
        text = text.rstrip("\n") + "\n" + report_section(report_file)
    return text
