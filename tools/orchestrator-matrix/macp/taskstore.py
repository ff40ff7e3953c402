"""Read and write ``tasks.json``: the queue and each task's current state.

The file is ``{"tasks": [...]}`` (other top-level keys are kept) or, for legacy queues, a bare
list; it is written back in the shape it was read. Every change goes through
:func:`edit_tasks`: exclusive lock, fresh read, change, atomic replace, unlock.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from macp.errors import MacpError
from macp.fsio import parse_json_text, write_atomic
from macp.layout import Layout
from macp.locks import exclusive_lock
from protocol.schemas import schema_errors


@dataclass
class TaskDocument:
    """The parsed tasks.json: ``tasks`` in file order, plus the top-level object it came in
    (``container``; ``None`` when the file is a bare list).

    Finding a task by id is O(1): a map id -> position is kept, a hit is checked against the
    list, and the map is rebuilt (one pass) when a hit is stale or an id is missing, so the
    list may be changed freely (append, filter) and a lookup is never wrong."""

    tasks: list[dict] = field(default_factory=list)
    container: dict | None = None
    label: str = "tasks.json"
    _positions: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def position(self, task_id: str) -> int | None:
        """Index of the task with ``task_id`` in ``tasks``, or None."""
        index = self._positions.get(task_id)
        if index is not None and index < len(self.tasks) and self.tasks[index].get("id") == task_id:
            return index
        self._positions = {task.get("id"): number for number, task in enumerate(self.tasks) if isinstance(task, dict)}
        return self._positions.get(task_id)

    def find(self, task_id: str) -> dict | None:
        """The task with ``task_id``, or None."""
        index = self.position(task_id)
        return None if index is None else self.tasks[index]

    def get(self, task_id: str) -> dict:
        """The task with ``task_id``; raises :class:`MacpError` "unknown task" otherwise."""
        task = self.find(task_id)
        if task is None:
            raise MacpError(f"unknown task: {task_id}")
        return task

    def replace(self, task: dict) -> None:
        """Put ``task`` in place of the stored task with the same id; raises
        :class:`MacpError` "unknown task" when there is none."""
        index = self.position(task["id"])
        if index is None:
            raise MacpError(f"unknown task: {task['id']}")
        self.tasks[index] = task

    def json_path(self, index: int) -> str:
        """JSON path of task number ``index`` in the file."""
        return f"$[{index}]" if self.container is None else f"$.tasks[{index}]"

    def fingerprint(self) -> str:
        """A compact serialisation for telling whether the document changed (Python's C
        JSON encoder: many times faster than the indenting one)."""
        return json.dumps(self.tasks if self.container is None else {**self.container, "tasks": self.tasks}, ensure_ascii=False)

    def to_json(self) -> str:
        """The document serialised in its original shape, one task per line (each line is
        the task as compact JSON): readable, diff-friendly, and written by the C encoder."""
        tasks = _task_lines(self.tasks, "    " if self.container is not None else "  ")
        if self.container is None:
            return tasks + "\n"
        tasks = f"{tasks[:-1]}  ]" if self.tasks else tasks
        fields = {key: json.dumps(value, ensure_ascii=False) for key, value in self.container.items()}
        fields["tasks"] = tasks  # in its place when the file had it, else last
        return "{\n" + ",\n".join(f"  {json.dumps(key, ensure_ascii=False)}: {text}" for key, text in fields.items()) + "\n}\n"


def _task_lines(tasks: list[dict], indent: str) -> str:
    """``[`` + one compact JSON task per line at ``indent`` + ``]``."""
    if not tasks:
        return "[]"
    return "[\n" + ",\n".join(indent + json.dumps(task, ensure_ascii=False) for task in tasks) + "\n]"


def parse_tasks(value: object, label: str) -> TaskDocument:
    """Check the shape of a decoded tasks.json and wrap it.

    Requires a list of objects, or an object whose ``tasks`` is one, with unique ``id``
    strings. Raises :class:`MacpError` naming the file and the JSON path of the problem.
    """
    if isinstance(value, list):
        document = TaskDocument(value, None, label)
    elif isinstance(value, dict):
        tasks = value.get("tasks", [])
        if not isinstance(tasks, list):
            raise MacpError(f"{label}: $.tasks: expected an array of tasks")
        document = TaskDocument(tasks, value, label)
    else:
        raise MacpError(f"{label}: expected {{\"tasks\": [...]}} or a list of tasks at the top level")
    seen: set[str] = set()
    for index, task in enumerate(document.tasks):
        where = document.json_path(index)
        if not isinstance(task, dict):
            raise MacpError(f"{label}: {where}: a task must be a JSON object")
        task_id = task.get("id")
        if not isinstance(task_id, str):
            raise MacpError(f"{label}: {where}.id: every task needs a string id")
        if task_id in seen:
            raise MacpError(f"{label}: {where}.id: duplicate task id {task_id!r}")
        seen.add(task_id)
    return document


def task_errors(document: TaskDocument, task: dict) -> list[str]:
    """Schema errors of one task, each as ``<json path in the file>: <reason>`` (a task not
    yet in ``document`` is given the position it would be appended at)."""
    index = document.position(task.get("id"))
    return _errors_at(document, len(document.tasks) if index is None else index, task)


def _errors_at(document: TaskDocument, index: int, task: dict) -> list[str]:
    prefix = document.json_path(index)
    return [f"{prefix}{error.path[1:]}: {error.message}" for error in schema_errors("task", task)]


def validate_tasks(document: TaskDocument) -> None:
    """Raise :class:`MacpError` with the first schema error of any task in ``document``."""
    for index, task in enumerate(document.tasks):
        errors = _errors_at(document, index, task)
        if errors:
            raise MacpError(f"{document.label}: {errors[0]}")


def load_tasks(layout: Layout, validate: bool = False) -> TaskDocument:
    """Read tasks.json (an empty queue when it does not exist).

    With ``validate`` every task is checked against ``task.schema.json``. Raises
    :class:`MacpError` for unreadable, malformed or invalid files.
    """
    path = layout.tasks_file
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return TaskDocument([], {}, str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MacpError(f"{path}: not UTF-8 (byte {exc.start})") from None
    document = parse_tasks(parse_json_text(text, str(path)), str(path))
    if validate:
        validate_tasks(document)
    return document


@contextmanager
def edit_tasks(layout: Layout) -> Iterator[TaskDocument]:
    """Lock tasks.json, yield a fresh :class:`TaskDocument`, and write it back atomically.

    The write happens only if the block finishes without an exception and the document
    changed. The lock is held for the block only, so keep the block short.
    """
    with exclusive_lock(layout.tasks_lock):
        document = load_tasks(layout)
        before = document.fingerprint()
        yield document
        if document.fingerprint() != before:
            write_atomic(layout.tasks_file, document.to_json())
