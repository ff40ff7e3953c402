"""Finished tasks moved out of tasks.json: ``archive/<YYYY-MM>.ndjson`` (seed 004's sprint archive).

One task per line, as it was when archived, in the file of the month it finished. The move
is crash-safe in this order: the lines are appended (and fsynced) first, then tasks.json is
rewritten without them; a crash in between leaves a task in both places, and the next
``archive`` finds it already archived and only drops it from tasks.json. Results and events
stay where they are.

Archived tasks stay known by id (issue 22): an id is never used again (``submit`` and
``sync`` refuse it), a dependency on an archived task is judged by its archived status,
and the read commands (``show``, ``log``, ``diff``, ``history``, ``report``, ``prune``)
find them; commands that would change a task refuse an archived one by name. Every line
read is checked against the task schema; one that is not a valid task is skipped with a
note naming its file and line, never fatal to the command reading it.
"""

from __future__ import annotations

import json
import mmap
import re
from collections.abc import Callable, Container, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import cast

from macp.clock import parse_timestamp
from macp.fsio import append_line
from macp.jsontext import loads
from macp.lifecycle import FINISHED, status_of
from macp.model import Task
from protocol.schemas import schema_errors

# The archive file of a task whose finish time cannot be read.
UNDATED = "undated"


def archive_dir(orch_dir: Path) -> Path:
    """``<state folder>/archive``."""
    return orch_dir / "archive"


def archive_files(orch_dir: Path) -> list[Path]:
    """The archive's files, oldest month first (``undated`` last)."""
    folder = archive_dir(orch_dir)
    return sorted(folder.glob("*.ndjson")) if folder.is_dir() else []


def line_problem(raw: bytes) -> tuple[Task | None, str | None]:
    """``(task, None)`` for an archive line that is a valid task, else ``(None, why)``."""
    try:
        value = loads(raw)
    except ValueError as exc:
        return None, f"not JSON ({exc})"
    if not isinstance(value, dict) or not isinstance(value.get("id"), str):
        return None, "not a task (a JSON object with a string id)"
    errors = schema_errors("task", value)
    if errors:
        return None, f"{errors[0].path}: {errors[0].message}"
    if status_of(cast(Task, value)) not in FINISHED:
        return None, f"status {status_of(cast(Task, value))!r} is not final"
    return cast(Task, value), None


def archived_lines(orch_dir: Path, months: Container[str] | None = None) -> Iterator[tuple[Path, int, Task | None, str | None]]:
    """``(file, line number, task, problem)`` for every non-blank line of the archive (of
    the ``months``' files, ``YYYY-MM``, when given), in order: a valid task with
    ``problem`` None, else ``task`` None and why."""
    for path in archive_files(orch_dir):
        if months is not None and path.stem not in months:
            continue
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, 1):
                if raw.strip():
                    yield (path, number, *line_problem(raw))


def archived_tasks(orch_dir: Path, skipped: Callable[[str], object] | None = None, months: Container[str] | None = None) -> Iterator[Task]:
    """Every valid archived task (of the ``months``, ``YYYY-MM``, when given), oldest month
    first. A line that is not one is skipped and reported through ``skipped("<file>:<line>:
    skipped: <why>")`` (default: not at all)."""
    for path, number, task, problem in archived_lines(orch_dir, months):
        if task is not None:
            yield task
        elif skipped is not None:
            skipped(f"{path}:{number}: skipped: {problem}")


# A line MACP wrote starts with the task's id (json.dumps keeps the key order of a task).
_LEADING_ID = re.compile(rb'^\{"id": ("(?:[^"\\]|\\.)*")')


def archived_ids(orch_dir: Path) -> set[str]:
    """The ids of every archived line, valid or not (an id is never used twice). Reads the
    id off the start of a line MACP wrote; other lines are decoded."""
    ids = set()
    for path in archive_files(orch_dir):
        with path.open("rb") as handle:
            for raw in handle:
                match = _LEADING_ID.match(raw)
                try:
                    value = json.loads(match.group(1)) if match else loads(raw).get("id")
                except (ValueError, AttributeError):
                    continue
                if isinstance(value, str):
                    ids.add(value)
    return ids


def find_archived(orch_dir: Path, task_id: str) -> Task | None:
    """The archived task ``task_id`` (a valid line), or None. Searches the raw bytes for the
    quoted id first (C speed), so only candidate lines are decoded."""
    needle = json.dumps(task_id, ensure_ascii=False).encode()
    for path in archive_files(orch_dir):
        with path.open("rb") as handle:
            if not handle.seek(0, 2):
                continue
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                position = 0
                while (hit := data.find(needle, position)) != -1:
                    start = data.rfind(b"\n", 0, hit) + 1
                    end = data.find(b"\n", hit)
                    end = len(data) if end == -1 else end
                    task, _problem = line_problem(data[start:end])
                    if task is not None and task["id"] == task_id:
                        return task
                    position = end
    return None


class ArchiveLookup:
    """:func:`find_archived` for one long run (the controller): archived tasks never change,
    so a task found is remembered; a miss is looked up again next time (the task may be
    archived meanwhile)."""

    def __init__(self, orch_dir: Path) -> None:
        self.orch_dir = orch_dir
        self._found: dict[str, Task] = {}

    def __call__(self, task_id: str) -> Task | None:
        task = self._found.get(task_id)
        if task is None and (task := find_archived(self.orch_dir, task_id)) is not None:
            self._found[task_id] = task
        return task


def finished_at(task: Task) -> str:
    """When the task reached its final status (``completed_at``, else ``updated_at``)."""
    return task.get("completed_at") or task.get("updated_at") or task.get("created_at") or ""


def archive_month(task: Task) -> str:
    """The archive file a task goes to: ``YYYY-MM`` of when it finished (UTC), or
    :data:`UNDATED` when that is not a timestamp. Never anything else, so no field of a
    task can name a path."""
    try:
        moment: datetime = parse_timestamp(finished_at(task))
    except ValueError:
        return UNDATED
    return moment.astimezone(timezone.utc).strftime("%Y-%m")


def archivable(tasks: list[Task], before: datetime | None) -> tuple[list[Task], list[str]]:
    """The final-status tasks to archive (finished before ``before`` when given), and why
    others were kept: a task that an unfinished task depends on stays, so no unfinished task
    waits on the archive, and a task that is not valid against the task schema stays until
    it is fixed (pure)."""
    needed = {dependency for task in tasks if status_of(task) not in FINISHED for dependency in task.get("depends_on") or []}
    chosen, kept = [], []
    for task in tasks:
        if status_of(task) not in FINISHED:
            continue
        stamp = finished_at(task)
        try:
            if before is not None and (not stamp or parse_timestamp(stamp) >= before):
                continue
        except ValueError:
            pass  # no readable finish time: the task fails the schema check below
        if task["id"] in needed:
            kept.append(f"kept {task['id']}: an unfinished task depends on it")
            continue
        errors = schema_errors("task", task)
        if errors:
            kept.append(f"kept {task['id']}: not a valid task ({errors[0].path}: {errors[0].message}); fix it first")
            continue
        chosen.append(task)
    return chosen, kept


def append_to_archive(orch_dir: Path, tasks: list[Task], already: set[str]) -> None:
    """Append ``tasks`` (minus ids in ``already``) to their month's archive file."""
    by_month: dict[str, list[str]] = {}
    for task in tasks:
        if task["id"] in already:
            continue
        by_month.setdefault(archive_month(task), []).append(json.dumps(task, ensure_ascii=False))
    for month, lines in by_month.items():
        append_line(archive_dir(orch_dir) / f"{month}.ndjson", "\n".join(lines))
