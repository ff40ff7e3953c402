"""Sync the docs/TASKS.md table with tasks.json (``mosaic macp sync``).

The table (Mosaic Stack orchestrator guide, seed 004 "Step 6"; DESIGN.md "TASKS.md sync")
has the columns ``id, status, description, issue, repo, branch, depends_on, blocks, agent,
started_at, completed_at, estimate, used``, plus the optional MACP columns ``type``,
``dispatch``, ``runtime``, ``command``, ``title``, ``priority``, ``max_attempts``. Header
names are matched case-insensitively, spaces and dashes read as ``_``. Missing columns take
config defaults. It is parsed with the GFM table rules (:mod:`macp.gfm_table`).

Table -> tasks.json (:func:`plan_sync`, pure):

- a row whose id is new becomes a task (statuses: not-started -> pending, done -> completed,
  failed -> failed; in-progress -> pending, since nothing is running it);
- for an existing task the fields the table owns are updated (title/description, issue,
  branch, depends_on, blocks, type, dispatch, runtime, command, priority, max_attempts,
  repo and estimate -- ``5K``, ``4.2K`` -> ``estimate_tokens``); status and the run fields
  belong to MACP;
- a running or gated task is never touched; a task is never deleted once it has history --
  only a task this sync created, still pending and never attempted, is removed when its
  row goes away;
- ``blocks`` is checked against ``depends_on`` and contradictions are reported.

tasks.json -> table (``--write-back``, :func:`controller.tasks_md_table.write_back_edits`): the ``status``, ``agent``,
``started_at``, ``completed_at`` and ``used`` (in the guide's format, ``4.2K``) cells are
rewritten from the tasks; every other byte of the file stays as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from controller.tasks_md_table import (
    EMPTY,
    Row,
    find_task_table,
    split_list,
    table_rows,
    write_back_edits,
)
from dispatcher.macp_dispatcher import branch_problem
from macp import clock
from macp.archive import archived_ids, archived_tasks
from macp.cliutil import note, out, repo_layout
from macp.config import load_config
from macp.errors import EXIT_OK, MacpError
from macp.estimates import calibrate
from macp.events import make_event, read_events
from macp.fsio import write_atomic
from macp.gfm_table import replace_cells
from macp.layout import confine
from macp.lifecycle import status_of
from macp.model import Config, Task, TaskChanges
from macp.recording import recorded
from macp.settings import max_attempts
from macp.taskstore import edit_tasks
from macp.usage import parse_tokens
from protocol.schemas import schema_errors
from protocol.validator import is_valid_date_time

SOURCE = "TASKS.md"
STATUS_FROM_TABLE = {
    "not-started": "pending",
    "in-progress": "pending",
    "done": "completed",
    "failed": "failed",
    "pending": "pending",
    "completed": "completed",
    "escalated": "escalated",
    "cancelled": "cancelled",
}
LIST_COLUMNS = ("depends_on", "blocks")
TEXT_FIELDS = ("issue", "branch", "type", "dispatch", "runtime", "command")
INT_FIELDS = ("priority", "max_attempts")
METADATA_FIELDS = ("repo",)


@dataclass
class SyncPlan:
    """What a sync does: tasks to add, per-task field changes, tasks to remove, and notes.

    ``problems`` stop the sync (nothing is written); ``notes`` and ``contradictions`` are
    reported and the sync goes on.
    """

    added: list[Task] = field(default_factory=list)
    updated: list[tuple[str, TaskChanges]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    contradictions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def owned_fields(row: Row, config: Config, is_new: bool) -> tuple[dict[str, Any], list[str]]:
    """The task fields ``row`` sets, and the problems found reading it."""
    values = row.values
    fields: dict[str, Any] = {}
    problems: list[str] = []
    if values.get("title"):
        fields["title"] = values["title"]
    if values.get("description"):
        fields.setdefault("title", values["description"])
        if "title" in values:
            fields["description"] = values["description"]
    for key in TEXT_FIELDS:
        if key in values and values[key].lower() not in EMPTY:
            fields[key] = values[key]
    for key in INT_FIELDS:
        if key in values and values[key].lower() not in EMPTY:
            try:
                fields[key] = int(values[key])
            except ValueError:
                problems.append(f"line {row.line}: {row.task_id}: {key} {values[key]!r} is not a whole number")
    for key in LIST_COLUMNS:
        if key in values:
            fields[key] = split_list(values[key])
    if values.get("estimate", "").lower() not in EMPTY:
        try:
            fields["estimate_tokens"], fields["estimate_source"] = parse_tokens(values["estimate"]), "given"
        except ValueError as exc:
            problems.append(f"line {row.line}: {row.task_id}: estimate {exc}")
    if is_new:
        # A row without a command is work for an agent (the Mosaic Stack guide's own table
        # has no command column): yolo, on the runtime the usual rule picks.
        fields.setdefault("dispatch", config["macp"]["default_dispatch"] if fields.get("command") else "yolo")
        fields.setdefault("title", row.task_id)
    return fields, problems


def agent_prompt(row: Row, fields: dict[str, Any], brief_dir: Path, repo_root: Path) -> TaskChanges:
    """What an agent task from ``row`` is told: ``brief_path`` = ``<brief_dir>/<id>.md``
    when that file exists, else a ``description`` made of the row's description, issue and
    branch. Returns the fields to add (none for a task that is not an agent's)."""
    if fields.get("dispatch") not in ("yolo", "acp"):
        return {}
    brief = brief_dir / f"{row.task_id}.md"
    if brief.is_file():
        return {"brief_path": str(brief.relative_to(repo_root))}
    lines = [row.values.get("description", "").strip() or row.task_id]
    lines += [f"{label}: {row.values[key].strip()}" for key, label in (("issue", "Issue"), ("branch", "Branch"))
              if row.values.get(key, "").strip().lower() not in EMPTY]
    return {"description": "\n\n".join([lines[0], "\n".join(lines[1:])]).strip()}


def plan_sync(
    rows: list[Row],
    tasks: list[Task],
    config: Config,
    now: str,
    source: str = SOURCE,
    with_history: frozenset[str] = frozenset(),
    prompt_for: Callable[[Row, dict[str, Any]], TaskChanges] = lambda _row, _fields: {},
    archived: frozenset[str] = frozenset(),
    branch_problem: Callable[[Task], str | None] = lambda _task: None,
) -> SyncPlan:
    """Compare the table's ``rows`` with ``tasks``; return the :class:`SyncPlan` (pure).

    ``source`` names the table file (new tasks record it in ``metadata.source``); only tasks
    from that file may be removed, and only while pending, never attempted, and not in
    ``with_history`` (ids with any event beyond ``task.submitted`` that a sync did not write:
    an interrupted or provider-failed task has 0 attempts but a history). ``prompt_for(row,
    fields)`` gives a new agent task its prompt fields (:func:`agent_prompt`). ``archived``:
    ids of archived tasks, which a row may depend on (rows of archived tasks are left out
    by the caller: an archived id is never used again). ``branch_problem(task)`` says why git
    would refuse a task's branch (:func:`dispatcher.macp_dispatcher.branch_problem`, the
    check ``submit`` makes)."""
    plan = SyncPlan()
    by_id = {task["id"]: task for task in tasks}
    seen: dict[str, int] = {}
    for row in rows:
        if row.task_id in seen:
            plan.problems.append(f"line {row.line}: duplicate id {row.task_id} (first on line {seen[row.task_id]})")
            continue
        seen[row.task_id] = row.line
        existing = by_id.get(row.task_id)
        fields, problems = owned_fields(row, config, existing is None)
        plan.problems += problems
        if existing is None:
            plan.added.append(_new_task(row, {**fields, **prompt_for(row, fields)}, config, now, plan, source))
        elif status_of(existing) in ("running", "gated"):
            plan.notes.append(f"{row.task_id}: {status_of(existing)}, left untouched")
        else:
            changes = _owned_changes(existing, fields, row)
            if changes:
                plan.updated.append((row.task_id, changes))
    known = set(by_id) | set(seen) | archived
    updates = dict(plan.updated)
    for task in [*plan.added, *(by_id[i] for i in updates)]:
        merged: Task = {**task, **updates.get(task["id"], {})}
        for dependency in merged.get("depends_on", []):
            if dependency not in known:
                plan.problems.append(f"line {seen.get(task['id'], 0)}: {task['id']}: unknown dependency {dependency}")
        errors = schema_errors("task", merged)
        if errors:
            plan.problems.append(f"line {seen.get(task['id'], 0)}: {task['id']}: {errors[0]}")
        elif problem := branch_problem(merged):
            plan.problems.append(f"line {seen.get(task['id'], 0)}: {problem}")
        elif merged.get("dispatch", "exec") == "exec" and not merged.get("command") and status_of(merged) not in ("completed", "cancelled"):
            plan.problems.append(f"line {seen.get(task['id'], 0)}: {task['id']}: an exec task needs a command (add a 'command' or 'dispatch' column)")
    for task in tasks:
        if task["id"] not in seen and (task.get("metadata") or {}).get("source") == source:
            if status_of(task) == "pending" and not task.get("attempts") and task["id"] not in with_history:
                plan.removed.append(task["id"])
            else:
                plan.notes.append(f"{task['id']}: no longer in the table but has history, kept")
    plan.contradictions = blocks_contradictions(rows)
    return plan


def _new_task(row: Row, fields: dict[str, Any], config: Config, now: str, plan: SyncPlan, source: str) -> Task:
    status_text = row.values.get("status", "").strip().lower() or "not-started"
    status = STATUS_FROM_TABLE.get(status_text)
    if status is None:
        plan.problems.append(f"line {row.line}: {row.task_id}: unknown status {status_text!r}")
        status = "pending"
    elif status_text == "in-progress":
        plan.notes.append(f"{row.task_id}: in-progress in the table but nothing runs it here; added as pending")
    metadata = {"source": source, **{k: row.values[k] for k in (*METADATA_FIELDS, "agent", "used") if row.values.get(k)}}
    fresh: dict[str, Any] = {"id": row.task_id, "status": status, **fields, "attempts": 0, "created_at": now, "metadata": metadata}
    for column in ("started_at", "completed_at"):
        if row.values.get(column) and is_valid_date_time(row.values[column]):
            fresh[column] = row.values[column]
    task = cast(Task, fresh)  # checked against task.schema.json (plan_sync) before anything is written
    task.setdefault("max_attempts", max_attempts(task, config))
    return task


def _owned_changes(task: Task, fields: dict[str, Any], row: Row) -> TaskChanges:
    changes = cast(TaskChanges, {key: value for key, value in fields.items() if task.get(key) != value})  # schema-checked (plan_sync)
    # an estimate is a field now (estimate_tokens); a copy kept in metadata by an earlier MACP goes
    stale = {"estimate"} if "estimate_tokens" in fields else set()
    kept = {key: value for key, value in (task.get("metadata") or {}).items() if key not in stale}
    metadata = {**kept, **{k: row.values[k] for k in METADATA_FIELDS if row.values.get(k)}}
    if metadata != (task.get("metadata") or {}):
        changes["metadata"] = metadata
    return changes


def blocks_contradictions(rows: list[Row]) -> list[str]:
    """Where ``blocks`` and ``depends_on`` disagree: "A blocks B, but B does not depend on A"."""
    depends = {row.task_id: set(split_list(row.values.get("depends_on", ""))) for row in rows}
    found = []
    for row in rows:
        for blocked in split_list(row.values.get("blocks", "")):
            if blocked not in depends:
                found.append(f"{row.task_id} blocks {blocked}, which is not in the table")
            elif row.task_id not in depends[blocked]:
                found.append(f"{row.task_id} blocks {blocked}, but {blocked} does not depend on {row.task_id}")
            if blocked in depends.get(row.task_id, set()):
                found.append(f"{row.task_id} blocks {blocked} and also depends on it")
    return found


def default_table_path(repo_root: Path) -> Path:
    """``docs/TASKS.md``, or ``docs/tasks.md`` when only that exists."""
    upper, lower = repo_root / "docs" / "TASKS.md", repo_root / "docs" / "tasks.md"
    return lower if lower.exists() and not upper.exists() else upper


def run_sync(args) -> int:
    """``mosaic macp sync [--file F] [--write-back] [--dry-run]``; returns the exit code."""
    layout = repo_layout(args.repo)
    config = load_config(layout.config_file)
    path = confine(Path(args.file) if args.file else default_table_path(layout.repo_root), layout.repo_root, "--file")
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise MacpError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise MacpError(f"{path}: not UTF-8 (byte {exc.start})") from None
    rows = table_rows(*find_task_table(text, str(path)))
    default = path == confine(default_table_path(layout.repo_root), layout.repo_root, "--file")
    source = SOURCE if default else str(path.relative_to(layout.repo_root.resolve()))
    with_history = frozenset(
        event["task_id"]
        for event in read_events(layout.events_file)
        if event.get("task_id") and event.get("event_type") != "task.submitted" and event.get("source") != "sync"
    )
    with recorded(edit_tasks(layout), layout.events_file) as (document, events):
        brief_dir = confine(config["macp"]["brief_dir"], layout.repo_root, "macp.brief_dir")
        prompt = lambda row, fields: agent_prompt(row, fields, brief_dir, layout.repo_root.resolve())  # noqa: E731
        archived = frozenset(archived_ids(layout.orch_dir) - {task["id"] for task in document.tasks})
        plan = plan_sync(
            [row for row in rows if row.task_id not in archived], document.tasks, config, clock.timestamp(), source, with_history, prompt, archived,
            lambda task: branch_problem(task, layout.repo_root),
        )
        plan.notes += [f"{row.task_id}: archived, left as it is" for row in rows if row.task_id in archived]
        for problem in plan.problems:
            note(f"{path}: {problem}")
        if plan.problems:
            raise MacpError(f"{path}: {len(plan.problems)} problem(s); nothing was changed")
        plan.notes += calibrate(plan.added, lambda: [*document.tasks, *archived_tasks(layout.orch_dir)])
        if not args.dry_run:
            apply_plan(document, plan)
            events.extend(sync_events(plan, document.tasks))
        tasks_after = document.tasks if not args.dry_run else simulate_plan(document.tasks, plan)
    prefix = "would " if args.dry_run else ""
    for task in plan.added:
        out(f"{prefix}add {task['id']} ({task.get('dispatch')}, {task['status']})")
    for task_id, changes in plan.updated:
        out(f"{prefix}update {task_id}: " + ", ".join(sorted(changes)))
    for task_id in plan.removed:
        out(f"{prefix}remove {task_id} (no longer in the table, never run)")
    for line in plan.notes:
        out(f"note: {line}")
    for line in plan.contradictions:
        note(f"{path}: contradiction: {line}")
    summary = f"{len(plan.added)} added, {len(plan.updated)} updated, {len(plan.removed)} removed"
    if args.write_back:
        edits = write_back_edits(rows, tasks_after + [task for task in archived_tasks(layout.orch_dir, note) if task["id"] in archived])
        for edit in edits:
            out(f"{prefix}write back {edit.task_id} {edit.column}: {edit.old!r} -> {edit.new!r}")
        if edits and not args.dry_run:
            write_atomic(path, replace_cells(text, [(edit.cell, edit.new) for edit in edits]))
        summary += f", {len(edits)} cell(s) written back"
    out(("dry run: " if args.dry_run else "sync: ") + summary)
    return EXIT_OK


def apply_plan(document, plan) -> None:
    """Carry out a sync plan on the locked tasks document."""
    now = clock.timestamp()
    document.tasks.extend(plan.added)
    for task_id, changes in plan.updated:
        document.replace({**document.get(task_id), **changes, "updated_at": now})
    document.tasks[:] = [task for task in document.tasks if task["id"] not in plan.removed]


def simulate_plan(tasks: list[Task], plan: SyncPlan) -> list[Task]:
    """The tasks as they would be after ``plan`` (for ``--dry-run``)."""
    updates = dict(plan.updated)
    kept: list[Task] = [{**task, **updates.get(task["id"], {})} for task in tasks if task["id"] not in plan.removed]
    return kept + plan.added


def sync_events(plan: SyncPlan, tasks: list[Task]) -> list[dict]:
    """One ``sync`` event per task the sync added, changed or removed (``tasks``: the queue
    after the sync)."""
    by_id = {task["id"]: task for task in tasks}
    events = [
        make_event("task.submitted", source="sync", task_id=task["id"], status=task["status"], attempt=0, message=f"from TASKS.md: {task.get('title', '')}")
        for task in plan.added
    ]
    for task_id, changes in plan.updated:
        task = by_id[task_id]
        events.append(make_event("task.updated", source="sync", task_id=task_id, status=status_of(task), attempt=task.get("attempts", 0), message="from TASKS.md: " + ", ".join(sorted(changes))))
    events += [make_event("task.updated", source="sync", task_id=task_id, status=None, message="removed: no longer in TASKS.md and never run") for task_id in plan.removed]
    return events
