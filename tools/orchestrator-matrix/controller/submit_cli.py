"""``mosaic macp submit``: add tasks to the queue, one from the options or many from
``--from FILE`` in one locked update; an agent task without an estimate gets one calibrated
from finished tasks of its type (docs/usage.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from controller.init_cli import initialise
from macp import clock
from macp.archive import archived_ids, archived_tasks
from macp.cliutil import note, out, repo_layout, shortened
from macp.config import load_config
from macp.errors import EXIT_OK, MacpError
from macp.estimates import calibrate, estimate_note
from macp.events import make_event
from macp.jsontext import loads
from macp.layout import Layout, confine
from macp.model import Config, Dispatch, Task, TaskChanges
from macp.naming import resolve_runtime
from macp.recording import recorded
from macp.settings import max_attempts
from macp.taskstore import edit_tasks, load_tasks
from protocol.schemas import schema_errors


def split_ids(values: list[str] | None) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]`` (comma lists and repeated flags both work)."""
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def brief_path_for(args, layout: Layout, config: Config) -> str | None:
    """The brief path to record, relative to the repository: ``--brief`` (must exist inside the
    repository) or ``<brief_dir>/<task-id>.md`` when that file exists. A relative ``--brief``
    is read from the current folder when that lies inside the repository, else from the
    repository root (so ``--repo`` works from anywhere)."""
    if args.brief is None:
        folder = confine(config["macp"]["brief_dir"], layout.repo_root, "macp.brief_dir")
        default = folder / f"{args.task_id}.md"
        if not default.is_file():
            return None
        return str(confine(default, layout.repo_root, f"macp.brief_dir: {args.task_id}.md").relative_to(layout.repo_root.resolve()))
    path = Path(args.brief)
    if not path.is_absolute():
        cwd, root = Path.cwd().resolve(), layout.repo_root.resolve()
        path = (cwd if cwd == root or root in cwd.parents else root) / path
    resolved = confine(path, layout.repo_root, "--brief")
    if not resolved.is_file():
        raise MacpError(f"--brief: {args.brief} does not exist or is not a file")
    return str(resolved.relative_to(layout.repo_root.resolve()))


def implied_dispatch(args, default: Dispatch) -> Dispatch:
    """``--dispatch`` when given; else ``yolo`` when ``--runtime`` or ``--brief`` names an
    agent's work and no ``--command`` does (the brief's own ``submit`` example); else
    ``default`` (``macp.default_dispatch``)."""
    if args.dispatch:
        return args.dispatch
    if args.command is None and (args.runtime or args.brief):
        return "yolo"
    return default


def build_task(args, layout: Layout, config: Config) -> Task:
    """The new task from ``submit``'s arguments; raises :class:`MacpError` for bad input."""
    dispatch = implied_dispatch(args, config["macp"]["default_dispatch"])
    task: Task = {"id": args.task_id, "title": args.title or args.task_id, "status": "pending", "dispatch": dispatch}
    optional: TaskChanges = {
        "type": args.type,
        "runtime": args.runtime,
        "pin_runtime": args.pin_runtime,
        "command": args.command,
        "priority": args.priority,
        "exclusive_group": args.exclusive_group,
        "timeout_seconds": args.timeout,
        "branch": args.branch,
        "issue": args.issue,
        "description": args.description,
        "estimate_tokens": args.estimate,
        "max_tokens": args.max_tokens,
        "max_cost_usd": args.max_cost_usd,
    }
    task.update(cast(TaskChanges, {key: value for key, value in optional.items() if value is not None}))
    if args.estimate:
        task["estimate_source"] = "given"
    task["brief_path"] = brief_path_for(args, layout, config)
    task["depends_on"] = split_ids(args.depends_on)
    if args.gate:
        task["quality_gates"] = args.gate
    task["max_attempts"] = args.max_attempts or max_attempts(task, config)
    task["attempts"] = 0
    task["created_at"] = clock.timestamp()
    if dispatch == "exec" and not args.command:
        raise MacpError("an exec task needs --command")
    if args.pin_runtime and not args.runtime:
        raise MacpError("--pin-runtime needs --runtime: the runtime to pin the task to")
    if dispatch in ("yolo", "acp"):
        runtime = resolve_runtime(task, config)
        if runtime not in config["runtimes"]:
            known = ", ".join(config["runtimes"]) or "none"
            raise MacpError(f"unknown runtime {runtime!r} (configured: {known})")
    return task


def check_new_task(document, task: Task, archived: set[str]) -> None:
    """Refuse a duplicate id -- of a task in the queue or in the ``archived`` ids: an id is
    never used twice -- or a dependency that is neither in the queue nor archived (MacpError)."""
    if document.find(task["id"]):
        raise MacpError(f"task {task['id']} already exists")
    if task["id"] in archived:
        raise MacpError(f"task {task['id']} already exists (archived); choose another id")
    for dependency in task["depends_on"]:
        if dependency == task["id"] or (document.find(dependency) is None and dependency not in archived):
            raise MacpError(f"--depends-on: unknown task {dependency}")


def cmd_submit(args) -> int:
    layout = repo_layout(args.repo)
    config = load_config(layout.config_file)
    if args.from_file is not None:
        if args.task_id is not None:
            raise MacpError("--from and --task-id cannot be used together: put every task in the file")
        submissions = read_submissions(args.from_file)
    elif args.task_id is None:
        raise MacpError("--task-id is required (or --from FILE for many tasks)")
    else:
        submissions = [("", args)]
    tasks = []
    for where, spec in submissions:
        try:
            tasks.append(checked_task(spec, layout, config))
        except MacpError as exc:
            raise MacpError(f"{where}{exc}") from None
    archived = archived_ids(layout.orch_dir)
    queue = load_tasks(layout)
    add_checked(queue, submissions, tasks, archived)  # before anything is created
    calibrations = calibrate(tasks, lambda: [*queue.tasks, *archived_tasks(layout.orch_dir)])
    created = initialise(layout) if not layout.tasks_file.exists() else []
    if created:
        note(f"created {layout.orch_dir} from templates ({', '.join(created)})")
    with recorded(edit_tasks(layout), layout.events_file) as (document, events):
        # again under the lock: the queue may have moved (archive takes the same lock)
        add_checked(document, submissions, tasks, archived_ids(layout.orch_dir))
        events.extend(make_event("task.submitted", source="cli", task_id=task["id"], status="pending", attempt=0, message=task["title"]) for task in tasks)
    if args.from_file is None:
        estimate = estimate_note(tasks[0])
        out(f"submitted {tasks[0]['id']} ({tasks[0]['dispatch']}, pending" + (f"; {estimate}" if estimate else "") + ")")
    else:
        out(f"submitted {len(tasks)} task(s) from {args.from_file}")
    for line in calibrations:
        out(line)
    return EXIT_OK



def add_checked(document, submissions: Sequence[tuple[str, object]], tasks: list[Task], archived: set[str]) -> None:
    """Append ``tasks`` to ``document`` in order, each checked against what is already there
    and the ``archived`` ids (:func:`check_new_task`: no duplicate, dependencies known or
    earlier in the batch)."""
    for (where, _spec), task in zip(submissions, tasks, strict=True):
        try:
            check_new_task(document, task, archived)
        except MacpError as exc:
            raise MacpError(f"{where}{exc}") from None
        document.tasks.append(task)


def checked_task(spec, layout: Layout, config: Config) -> Task:
    """The new task from ``submit``'s arguments (or one ``--from`` line), checked against
    the task schema and git's branch rules; raises :class:`MacpError`."""
    task = build_task(spec, layout, config)
    errors = schema_errors("task", task)
    if errors:
        raise MacpError(f"invalid task: {errors[0]}")
    from dispatcher.macp_dispatcher import branch_problem

    problem = branch_problem(task, layout.repo_root)
    if problem:
        raise MacpError(problem)
    return task


# One line of `submit --from`: task fields (tasks.json names) -> submit's options.
SUBMISSION_FIELDS = {
    "id": "task_id", "title": "title", "description": "description", "type": "type", "dispatch": "dispatch",
    "runtime": "runtime", "pin_runtime": "pin_runtime", "brief": "brief", "command": "command", "depends_on": "depends_on", "priority": "priority", "exclusive_group": "exclusive_group",
    "max_attempts": "max_attempts", "timeout_seconds": "timeout", "branch": "branch", "issue": "issue", "quality_gates": "gate",
    "estimate_tokens": "estimate", "max_tokens": "max_tokens", "max_cost_usd": "max_cost_usd",
}


def check_submission_types(fields: dict[str, Any], where: str) -> None:
    """Refuse a ``submit --from`` line whose fields have the wrong JSON types or values, before
    anything is built from it: each is checked against its property in task.schema.json
    (``brief`` as ``brief_path``; ``depends_on`` may also be one id). Raises
    :class:`MacpError` ``<file>:<line>: invalid task: $.<field>: <reason>``."""
    candidate = {"brief_path" if name == "brief" else name: value for name, value in fields.items()}
    if isinstance(candidate.get("depends_on"), str):
        candidate["depends_on"] = [candidate["depends_on"]]
    candidate.setdefault("id", "")
    for error in schema_errors("task", candidate):
        if error.path != "$.id" or "id" in fields:
            raise MacpError(f"{where}invalid task: {error.path.replace('$.brief_path', '$.brief', 1)}: {error.message}")


def read_submissions(source: str) -> list[tuple[str, argparse.Namespace]]:
    """The tasks of ``submit --from FILE|-``: one JSON object per line (blank lines skipped),
    with tasks.json's field names (:data:`SUBMISSION_FIELDS`), each as submit's arguments
    and a ``"<file>:<line>: "`` prefix for its errors. Raises :class:`MacpError` for an
    unreadable file, a line that is not a JSON object, or an unknown field."""
    if source == "-" and sys.stdin is None:
        raise MacpError("--from -: stdin is closed; give the tasks on stdin or name a file")
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise MacpError(f"--from: cannot read {shortened(source)}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise MacpError(f"--from: {source} is not UTF-8 (byte {exc.start})") from None
    label = "stdin" if source == "-" else source
    submissions = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{label}:{number}: "
        try:
            fields = loads(line)
        except json.JSONDecodeError as exc:
            raise MacpError(f"{where}invalid JSON: {exc.msg} (column {exc.colno})") from None
        except ValueError as exc:
            raise MacpError(f"{where}invalid JSON: {exc}") from None
        if not isinstance(fields, dict):
            raise MacpError(f"{where}expected a JSON object (one task per line)")
        unknown = sorted(set(fields) - set(SUBMISSION_FIELDS))
        if unknown:
            raise MacpError(f"{where}unknown field(s): {', '.join(unknown)} (known: {', '.join(SUBMISSION_FIELDS)})")
        check_submission_types(fields, where)
        spec = argparse.Namespace(**dict.fromkeys(SUBMISSION_FIELDS.values()))
        for field, value in fields.items():
            setattr(spec, SUBMISSION_FIELDS[field], [value] if field == "depends_on" and isinstance(value, str) else value)
        submissions.append((where, spec))
    if not submissions:
        raise MacpError(f"--from: {label} holds no tasks")
    return submissions
