"""Finished tasks moved out of tasks.json: ``archive/<YYYY-MM>.ndjson`` (seed 004's sprint archive).

One task per line, as it was when archived, in the file of the month it finished. The move
is crash-safe in this order: the lines are appended (and fsynced) first, then tasks.json is
rewritten without them; a crash in between leaves a task in both places, and the next
``archive`` finds it already archived and only drops it from tasks.json. Results and events
stay where they are.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import cast

from macp.clock import parse_timestamp
from macp.fsio import append_line
from macp.lifecycle import FINISHED, status_of
from macp.model import Task


def archive_dir(orch_dir: Path) -> Path:
    """``<state folder>/archive``."""
    return orch_dir / "archive"


def archived_tasks(orch_dir: Path) -> Iterator[Task]:
    """Every archived task, oldest month first (undecodable lines are skipped)."""
    folder = archive_dir(orch_dir)
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.ndjson")):
        with path.open("rb") as handle:
            for raw in handle:
                try:
                    task = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(task, dict) and isinstance(task.get("id"), str):
                    yield cast(Task, task)  # archived from a checked queue


def finished_at(task: Task) -> str:
    """When the task reached its final status (``completed_at``, else ``updated_at``)."""
    return task.get("completed_at") or task.get("updated_at") or task.get("created_at") or ""


def archivable(tasks: list[Task], before: datetime | None) -> tuple[list[Task], list[str]]:
    """The final-status tasks to archive (finished before ``before`` when given), and why
    others were kept: a task that an unfinished task depends on stays, so no dependency
    ever points into the archive (pure)."""
    needed = {dependency for task in tasks if status_of(task) not in FINISHED for dependency in task.get("depends_on") or []}
    chosen, kept = [], []
    for task in tasks:
        if status_of(task) not in FINISHED:
            continue
        stamp = finished_at(task)
        if before is not None and (not stamp or parse_timestamp(stamp) >= before):
            continue
        if task["id"] in needed:
            kept.append(f"kept {task['id']}: an unfinished task depends on it")
            continue
        chosen.append(task)
    return chosen, kept


def append_to_archive(orch_dir: Path, tasks: list[Task], already: set[str]) -> None:
    """Append ``tasks`` (minus ids in ``already``) to their month's archive file."""
    by_month: dict[str, list[str]] = {}
    for task in tasks:
        if task["id"] in already:
            continue
        month = finished_at(task)[:7] or "undated"
        by_month.setdefault(month, []).append(json.dumps(task, ensure_ascii=False))
    for month, lines in by_month.items():
        append_line(archive_dir(orch_dir) / f"{month}.ndjson", "\n".join(lines))
