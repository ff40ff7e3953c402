"""The TASKS.md table itself (the Mosaic Stack guide's docs/tasks.md, seed 004): its rows by
column, and the cells MACP writes back (``status``, ``agent``, ``started_at``,
``completed_at``, ``used``) -- every other byte of the file stays as it was. Header names
are matched case-insensitively, spaces and dashes read as ``_``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from macp.errors import MacpError
from macp.gfm_table import Cell, Table, parse_tables
from macp.lifecycle import status_of
from macp.model import Task
from macp.usage import format_tokens, used_tokens

STATUS_TO_TABLE = {
    "pending": "not-started",
    "running": "in-progress",
    "gated": "in-progress",
    "completed": "done",
    "failed": "failed",
    "escalated": "escalated",
    "cancelled": "cancelled",
}

EMPTY = {"", "-", "—", "n/a", "none"}

@dataclass(frozen=True)
class Row:
    """One body row: its task id, cell texts and cells by column name, and its line (1-based)."""

    task_id: str
    values: dict[str, str]
    cells: dict[str, Cell]
    line: int

def column_key(header: str) -> str:
    """``"Depends On"`` -> ``depends_on``."""
    return re.sub(r"[\s-]+", "_", header.strip().lower())

def find_task_table(text: str, label: str) -> tuple[Table, dict[str, int]]:
    """The first table with an ``id`` column, and its columns by key; MacpError if none."""
    for table in parse_tables(text):
        columns = {column_key(cell.text): index for index, cell in enumerate(table.header)}
        if "id" in columns:
            return table, columns
    raise MacpError(f"{label}: no table with an 'id' column")

def table_rows(table: Table, columns: dict[str, int]) -> list[Row]:
    """The body rows that have an id, with their cells by column key."""
    rows = []
    for cells in table.rows:
        values = {key: cells[index].text.strip() for key, index in columns.items()}
        if values["id"]:
            rows.append(Row(values["id"], values, {key: cells[index] for key, index in columns.items()}, cells[0].line + 1))
    return rows

def split_list(text: str) -> list[str]:
    """A comma (or space) separated id list; ``-``, ``—`` and empty mean none."""
    if text.strip().lower() in EMPTY:
        return []
    return [part for part in re.split(r"[,\s]+", text) if part]

def table_values(task: Task) -> dict[str, str]:
    """What write-back puts in the MACP-owned columns for ``task``: its status always; the
    agent (runtime, or dispatch) once MACP has run it; timestamps once MACP has them; the
    landed commit (12 hex digits) once ``mosaic macp land`` landed it. A cell
    MACP has nothing to say about is left as it is."""
    values = {"status": STATUS_TO_TABLE[status_of(task)]}
    if task.get("claim") or task.get("attempts"):
        values["agent"] = task.get("attempt_runtime") or task.get("runtime") or task.get("dispatch") or "legacy"
    for column in ("started_at", "completed_at"):
        if stamp := task.get(column):
            values[column] = str(stamp)
    if (usage := task.get("usage")) and usage["completeness"] != "unavailable":
        values["used"] = format_tokens(used_tokens(usage))
    if landed := task.get("landed_commit"):
        values["landed"] = landed[:12]
    return values

@dataclass(frozen=True)
class CellEdit:
    """A write-back change: the row's task, the column, the cell, its old and new text."""

    task_id: str
    column: str
    cell: Cell
    old: str
    new: str

def write_back_edits(rows: list[Row], tasks: list[Task]) -> list[CellEdit]:
    """Every MACP-owned cell (status, agent, started_at, completed_at, used, and the optional
    landed) that differs from the tasks."""
    by_id = {task["id"]: task for task in tasks}
    edits = []
    for row in rows:
        task = by_id.get(row.task_id)
        if task is None:
            continue
        for column, value in table_values(task).items():
            cell = row.cells.get(column)
            if cell is not None and cell.text.strip() != value:
                edits.append(CellEdit(row.task_id, column, cell, cell.text.strip(), value))
    return edits
