"""Check MACP's state files against their schemas (``mosaic macp validate``).

Each check returns one line per problem -- ``<file>: <JSON path>: <reason>``, with the line
number for ``events.ndjson`` (``<file>:<line>: ...``) and line and column for JSON syntax
errors -- and never raises for bad file contents.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from macp.archive import archive_files, archived_lines
from macp.cliutil import out, repo_layout
from macp.config import default_config, load_config, merge, signature_errors
from macp.errors import EXIT_OK, EXIT_TASKS_FAILED, MacpError
from macp.fsio import read_json
from macp.jsontext import loads, parse_json_text
from macp.layout import Layout, confine, confine_output
from macp.lifecycle import FINISHED, status_of
from macp.model import Config, Task
from macp.taskdoc import parse_tasks
from macp.taskstore import load_tasks
from protocol.schemas import validator_for
from protocol.validator import SchemaError, Validator

Check = Callable[[Any], list[str]]


def schema_check(validator: Validator, prefix: str = "") -> Check:
    """A check of one JSON value: each error as ``<prefix><path>: <message>``."""
    return lambda value: [f"{error.path.replace('$', '$' + prefix, 1)}: {error.message}" for error in validator.iter_errors(value)]


def config_check(config_validator: Validator) -> Check:
    """config.json: the schema, then every provider signature compiled (on the config as it
    takes effect, merged with the defaults)."""

    def check(value: Any) -> list[str]:
        problems = schema_check(config_validator)(value)
        if not problems and isinstance(value, dict):
            problems = signature_errors(merge(default_config(), value))
        return problems

    return check


def tasks_check(task_validator: Validator) -> Check:
    """tasks.json: its shape, then every task against the task schema."""

    def check(value: Any) -> list[str]:
        try:
            document = parse_tasks(value, "")
        except MacpError as exc:
            return [str(exc).lstrip(": ")]
        problems = []
        for index, task in enumerate(document.tasks):
            where = document.json_path(index)
            problems += [f"{where}{error.path[1:]}: {error.message}" for error in task_validator.iter_errors(task)]
        return problems

    return check


def journal_check(task_validator: Validator) -> Check:
    """One line of tasks.journal (macp.journal): the header, a fold mark, or a task state
    checked against the task schema."""

    def check(value: Any) -> list[str]:
        if isinstance(value, dict) and isinstance(value.get("task"), dict):
            return schema_check(task_validator, ".task")(value["task"])
        if isinstance(value, dict) and (isinstance(value.get("folding"), str) or "macp_journal" in value):
            return []
        return ["not a journal record (expected a task, a fold or the header)"]

    return check


def archive_check(task_validator: Validator) -> Check:
    """One line of ``archive/<YYYY-MM>.ndjson`` (macp.archive): a task in a final status,
    valid against the task schema."""

    def check(value: Any) -> list[str]:
        problems = schema_check(task_validator)(value)
        if not problems and status_of(value) not in FINISHED:
            problems.append(f"$.status: {status_of(value)!r} is not a final status; only finished tasks are archived")
        return problems

    return check


def duplicate_ids(layout: Layout) -> list[str]:
    """Ids used twice: by two archived lines, or by an archived task and one in the queue
    (an id is never used again once archived, docs/file-formats.md "archive")."""
    seen: dict[str, str] = {}
    problems = []
    for path, number, task, _problem in archived_lines(layout.orch_dir):
        if task is None:
            continue
        where = f"{path}:{number}"
        if task["id"] in seen:
            problems.append(f"{where}: task {task['id']} is archived twice (first at {seen[task['id']]})")
        seen.setdefault(task["id"], where)
    try:
        queue = load_tasks(layout).tasks
    except MacpError:
        return problems  # the schema checks report it
    problems += [f"{layout.tasks_file}: task {task['id']} is also archived at {seen[task['id']]}; an id is never used twice" for task in queue if task["id"] in seen]
    return problems


def _read_text(path: Path) -> tuple[str | None, list[str]]:
    try:
        return path.read_bytes().decode("utf-8"), []
    except OSError as exc:
        return None, [f"{path}: cannot read: {exc.strerror}"]
    except UnicodeDecodeError as exc:
        return None, [f"{path}: not UTF-8 (byte {exc.start})"]


def check_json_file(path: Path, check: Check) -> list[str]:
    """Problems of the JSON file ``path`` under ``check``."""
    text, problems = _read_text(path)
    if text is None:
        return problems
    try:
        value = parse_json_text(text, str(path))
    except MacpError as exc:
        return [str(exc)]
    return [f"{path}: {problem}" for problem in check(value)]


def check_ndjson_file(path: Path, check: Check) -> list[str]:
    """Problems of the NDJSON file ``path``: every non-blank line checked on its own."""
    text, problems = _read_text(path)
    if text is None:
        return problems
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{path}:{number}:{exc.colno}: invalid JSON: {exc.msg}")
            continue
        except ValueError as exc:  # nested deeper than the parser follows
            problems.append(f"{path}:{number}: invalid JSON: {exc}")
            continue
        problems += [f"{path}:{number}: {problem}" for problem in check(value)]
    return problems


def state_files(layout: Layout, result_dirs: list[Path]) -> list[tuple[Path, str]]:
    """``(file, kind)`` for every state file that exists: kinds ``config``, ``tasks``,
    ``journal``, ``events``, ``result``, ``runtimes``, ``archive``."""
    found = [(layout.config_file, "config"), (layout.tasks_file, "tasks"), (layout.tasks_journal, "journal"), (layout.events_file, "events"),
             (layout.runtimes_file, "runtimes")]
    files = [(path, kind) for path, kind in found if path.exists()]
    for folder in result_dirs:
        files += [(path, "result") for path in sorted(folder.glob("*.json"))]
    files += [(path, "archive") for path in archive_files(layout.orch_dir)]
    return files


def kind_of(path: Path) -> str | None:
    """The state-file kind a file name implies (``tasks.json`` -> ``tasks``), or None."""
    names = {"tasks.json": "tasks", "tasks.journal": "journal", "events.ndjson": "events", "config.json": "config", "runtimes.json": "runtimes"}
    if path.name in names:
        return names[path.name]
    if path.parent.name == "archive" and path.suffix == ".ndjson":
        return "archive"
    return "result" if path.parent.name == "results" and path.suffix == ".json" else None


def placement_problems(layout: Layout, check_task: Callable[[Task, Path, Config], None]) -> list[str]:
    """Paths that would leave where they must stay (docs/security.md "Paths"): the config's
    ``macp.brief_dir`` (inside the repository) and ``macp.result_dir`` (an output folder),
    and every task's paths, which ``check_task(task, repo_root, config)`` checks by raising
    :class:`MacpError`. Files that do not parse are left to the schema checks."""
    try:
        config = load_config(layout.config_file)
        document = parse_tasks(read_json(layout.tasks_file), str(layout.tasks_file)) if layout.tasks_file.exists() else None
    except MacpError:
        return []
    problems = []
    placements: list[tuple[Callable[[], object], str]] = [
        (lambda: confine(config["macp"]["brief_dir"], layout.repo_root, "macp.brief_dir"), f"{layout.config_file}: "),
        (lambda: confine_output(Path(config["macp"]["result_dir"]) / "TASK.json", layout, "macp.result_dir"), f"{layout.config_file}: "),
    ]
    if document is not None:
        for index, task in enumerate(document.tasks):
            placements.append((partial(check_task, task, layout.repo_root, config), f"{document.label}: {document.json_path(index)}: "))
    for check, prefix in placements:
        try:
            check()
        except MacpError as exc:
            problems.append(f"{prefix}{exc}")
    return problems


def run_validate(args, check_task: Callable[[Task, Path, Config], None]) -> int:
    """``mosaic macp validate [--schema FILE] [FILE...]``; returns 0, 1 (invalid) or raises.
    Without files it also checks where the state's paths lead (:func:`placement_problems`,
    with ``check_task`` checking one task's paths)."""
    layout = repo_layout(args.repo)
    if args.schema:
        if not args.files:
            raise MacpError("--schema needs the files to check")
        schema_file = Path(args.schema)
        try:
            validator = Validator(read_json(schema_file), validator_for("task").registry)
        except SchemaError as exc:
            raise MacpError(f"{schema_file}: {exc}") from None
        targets = [(Path(name), "ndjson" if name.endswith(".ndjson") else "json") for name in args.files]
        checks = {"json": schema_check(validator), "ndjson": schema_check(validator)}
    else:
        checks = {
            "config": config_check(validator_for("config")),
            "tasks": tasks_check(validator_for("task")),
            "journal": journal_check(validator_for("task")),
            "events": schema_check(validator_for("event")),
            "result": schema_check(validator_for("result")),
            "runtimes": schema_check(validator_for("runtimes")),
            "archive": archive_check(validator_for("task")),
        }
        if args.files:
            targets = []
            for name in args.files:
                kind = kind_of(Path(name))
                if kind is None:
                    raise MacpError(f"{name}: cannot tell which schema applies; pass --schema")
                targets.append((Path(name), kind))
        else:
            result_dirs = [layout.orch_dir / "results"]
            try:
                configured = confine(load_config(layout.config_file)["macp"]["result_dir"], layout.repo_root, "macp.result_dir")
                result_dirs += [configured] if configured not in result_dirs else []
            except MacpError:
                pass
            targets = state_files(layout, result_dirs)
    problems: list[str] = []
    for path, kind in targets:
        if kind in ("events", "ndjson", "journal", "archive"):
            problems += check_ndjson_file(path, checks[kind])
        else:
            problems += check_json_file(path, checks[kind])
    if not args.schema and not args.files and not problems:
        problems += duplicate_ids(layout) + placement_problems(layout, check_task)
    for problem in problems:
        out(problem)
    if problems:
        return EXIT_TASKS_FAILED
    out(f"{len(targets)} file(s) valid")
    return EXIT_OK
