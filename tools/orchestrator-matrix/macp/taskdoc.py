"""The queue as a document in memory (pure): tasks.json's tasks in file order, found by id
in O(1), changed in place with a log of what changed, checked against the task schema, and
serialised back in the shape it was read (issue 24: split from :mod:`macp.taskstore`,
which reads and writes it under its lock, so the pure core -- admission -- works on the
document without importing file I/O).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from macp.errors import MacpError
from macp.model import Task
from protocol.schemas import schema_errors


@dataclass
class TaskDocument:
    """The parsed tasks.json: ``tasks`` in file order, plus the top-level object it came in
    (``container``; ``None`` when the file is a bare list).

    Finding a task by id is O(1): a map id -> position is kept, a hit is checked against the
    list, and the map is rebuilt (one pass) when a hit is stale or an id is missing, so the
    list may be changed freely (append, filter) and a lookup is never wrong."""

    tasks: list[Task] = field(default_factory=list)
    container: dict | None = None
    label: str = "tasks.json"
    # whether an id is archived (the loader's lookup in the state folder's archive): an id
    # missing here but archived is refused by name, never called unknown
    archived: Callable[[str], bool] | None = field(default=None, repr=False, compare=False)
    _positions: dict[object, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    # ids given a new state through replace()/put() since this set was last cleared
    changed: set[str] = field(default_factory=set, init=False, repr=False, compare=False)
    # the events that record the change being made (macp.recording.recorded): written with it
    events: list[dict] = field(default_factory=list, init=False, repr=False, compare=False)
    # every id given a new state through replace()/put(), in order, for the life of this
    # document (macp.admission_index reads the changes since it last looked)
    change_log: list[str] = field(default_factory=list, init=False, repr=False, compare=False)

    def position(self, task_id: object) -> int | None:
        """Index of the task with ``task_id`` in ``tasks``, or None."""
        index = self._positions.get(task_id)
        if index is not None and index < len(self.tasks) and self.tasks[index].get("id") == task_id:
            return index
        self._positions = {task["id"]: number for number, task in enumerate(self.tasks) if isinstance(task, dict) and isinstance(task.get("id"), str)}
        return self._positions.get(task_id)

    def find(self, task_id: str) -> Task | None:
        """The task with ``task_id``, or None."""
        index = self.position(task_id)
        return None if index is None else self.tasks[index]

    def get(self, task_id: str) -> Task:
        """The task with ``task_id``; raises :class:`MacpError` otherwise: "unknown task", or
        for a task in the archive that it is archived and read-only."""
        task = self.find(task_id)
        if task is None:
            if self.archived is not None and self.archived(task_id):
                raise MacpError(f"task {task_id} is archived; archived tasks are read-only (mosaic macp show {task_id})")
            raise MacpError(f"unknown task: {task_id}")
        return task

    def replace(self, task: Task) -> None:
        """Put ``task`` in place of the stored task with the same id; raises
        :class:`MacpError` "unknown task" when there is none."""
        index = self.position(task["id"])
        if index is None:
            raise MacpError(f"unknown task: {task['id']}")
        self.tasks[index] = task
        self.changed.add(task["id"])
        self.change_log.append(task["id"])

    def put(self, task: Task) -> None:
        """Put ``task`` in place of the task with its id, or append it when there is none."""
        if self.position(task["id"]) is None:
            self.tasks.append(task)
            self.changed.add(task["id"])
            self.change_log.append(task["id"])
        else:
            self.replace(task)

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


def _task_lines(tasks: list[Task], indent: str) -> str:
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


def task_errors(document: TaskDocument, task: Task) -> list[str]:
    """Schema errors of one task, each as ``<json path in the file>: <reason>`` (a task not
    yet in ``document`` is given the position it would be appended at)."""
    index = document.position(task.get("id"))
    return _errors_at(document, len(document.tasks) if index is None else index, task)


def _errors_at(document: TaskDocument, index: int, task: Task) -> list[str]:
    prefix = document.json_path(index)
    return [f"{prefix}{error.path[1:]}: {error.message}" for error in schema_errors("task", task)]


def validate_tasks(document: TaskDocument) -> None:
    """Raise :class:`MacpError` with the first schema error of any task in ``document``."""
    for index, task in enumerate(document.tasks):
        errors = _errors_at(document, index, task)
        if errors:
            raise MacpError(f"{document.label}: {errors[0]}")
