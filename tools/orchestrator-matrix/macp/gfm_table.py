"""GitHub-Flavored-Markdown tables: parse them, and rewrite single cells in place (pure).

Rules from the GFM spec, "Tables (extension)" (0.29-gfm; ``conformance/gfm-tables``):

- a table is a header row, a delimiter row, then zero or more body rows;
- the delimiter row's cells are ``-`` runs with optional ``:`` at either end (alignment
  ``left``, ``center``, ``right``, or none); it must have as many cells as the header row,
  else there is no table;
- cells are split on unescaped ``|``; ``\\|`` is a literal pipe, inside code spans too (an
  unescaped pipe splits the cell even there); leading and trailing pipes are optional; cell
  text is trimmed;
- body rows with fewer cells are padded with empty cells, extra cells are dropped;
- the table ends at a blank line or at the start of another block (block quote, ATX heading,
  fenced code, thematic break, list item, HTML block); any other line, even one without a
  pipe, is a body row.

Every cell keeps its position (line, start and end column of its trimmed text) so that
:func:`replace_cells` can change one cell and leave every other byte of the file as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_DELIMITER_CELL = re.compile(r":?-+:?")
_BLOCK_START = re.compile(
    r" {0,3}(?:>|#{1,6}(?:[ \t]|$)|```|~~~|(?:\*[ \t]*){3,}$|(?:-[ \t]*){3,}$|(?:_[ \t]*){3,}$|[-+*][ \t]|\d{1,9}[.)][ \t]|<)"
)


@dataclass(frozen=True)
class Cell:
    """One cell: its text (trimmed, ``\\|`` unescaped) and where that text sits in the source:
    ``line`` (0-based) and the ``start``/``end`` columns of the trimmed raw text. A padding
    cell that does not exist in the source has ``start == end == -1`` and its ``column``
    (0-based) in the table."""

    text: str
    line: int
    start: int
    end: int
    column: int = -1

    @property
    def present(self) -> bool:
        return self.start >= 0


@dataclass
class Table:
    """A parsed table: header cells, column alignments, body rows (each exactly as wide as the
    header), and the 0-based line numbers of its first and last line."""

    header: list[Cell]
    alignments: list[str | None]
    rows: list[list[Cell]] = field(default_factory=list)
    first_line: int = 0
    last_line: int = 0

    def column(self, name: str) -> int | None:
        """Index of the header cell whose text is ``name`` (case-insensitive), or None."""
        wanted = name.strip().lower()
        for index, cell in enumerate(self.header):
            if cell.text.strip().lower() == wanted:
                return index
        return None


def split_row(line: str, number: int = 0) -> list[Cell]:
    """Split one table line into cells (GFM rules; positions refer to ``line``)."""
    cells: list[Cell] = []
    start = 0
    index = 0
    stripped_lead = len(line) - len(line.lstrip())
    if line[stripped_lead : stripped_lead + 1] == "|":
        start = stripped_lead + 1
        index = start
    bounds: list[tuple[int, int]] = []
    while index < len(line):
        char = line[index]
        if char == "\\" and index + 1 < len(line):
            index += 2
            continue
        if char == "|":
            bounds.append((start, index))
            start = index + 1
        index += 1
    tail = line[start:]
    if tail.strip() or not bounds:
        bounds.append((start, len(line)))
    for begin, end in bounds:
        raw = line[begin:end]
        left = begin + (len(raw) - len(raw.lstrip()))
        right = end - (len(raw) - len(raw.rstrip()))
        if right < left:
            left = right = begin + min(1, len(raw))
        cells.append(Cell(line[left:right].replace("\\|", "|"), number, left, right))
    return cells


def _delimiter(line: str) -> list[str | None] | None:
    """Alignments of a delimiter row, or None when ``line`` is not one."""
    if "-" not in line:
        return None
    cells = split_row(line)
    alignments: list[str | None] = []
    for cell in cells:
        text = cell.text.strip()
        if not _DELIMITER_CELL.fullmatch(text):
            return None
        left, right = text.startswith(":"), text.endswith(":")
        alignments.append("center" if left and right else "left" if left else "right" if right else None)
    return alignments


def _ends_table(line: str) -> bool:
    return not line.strip() or bool(_BLOCK_START.match(line))


def parse_tables(text: str) -> list[Table]:
    """Every table in the markdown ``text``, in order. Never raises for any string input."""
    lines = text.split("\n")
    tables: list[Table] = []
    number = 0
    while number + 1 < len(lines):
        header_line, delimiter_line = lines[number], lines[number + 1]
        alignments = None
        if "|" in header_line and not _ends_table(header_line) and len(header_line) - len(header_line.lstrip(" ")) < 4:
            alignments = _delimiter(delimiter_line)
        header = split_row(header_line, number) if alignments is not None else []
        if alignments is None or len(header) != len(alignments):
            number += 1
            continue
        table = Table(header, alignments, first_line=number, last_line=number + 1)
        row_number = number + 2
        while row_number < len(lines) and not _ends_table(lines[row_number]):
            cells = split_row(lines[row_number], row_number)[: len(header)]
            cells += [Cell("", row_number, -1, -1, column) for column in range(len(cells), len(header))]
            table.rows.append(cells)
            table.last_line = row_number
            row_number += 1
        tables.append(table)
        number = row_number
    return tables


def escape_cell(text: str) -> str:
    """``text`` made safe as cell content: pipes escaped, line breaks turned into spaces."""
    return re.sub(r"[\r\n]+", " ", text).replace("|", "\\|")


def _pipe_after(line: str, cell: Cell) -> int | None:
    """Where the pipe that closes ``cell`` sits in ``line``, or None (no closing pipe)."""
    trailing = len(line[cell.end :]) - len(line[cell.end :].lstrip(" "))
    return cell.end + trailing if line[cell.end + trailing : cell.end + trailing + 1] == "|" else None


def aligned_columns(lines: list[str], tables: list[Table]) -> set[tuple[int, int]]:
    """``(line, start)`` of every cell in a column whose closing pipes all sit at one
    offset, header and rows alike: a table laid out with spaces, whose layout a write must
    keep. In any other column a new text is written as it is, never padded."""
    aligned: set[tuple[int, int]] = set()
    for table in tables:
        for column in range(len(table.header)):
            cells = [table.header[column], *(row[column] for row in table.rows if row[column].present)]
            ends = {_pipe_after(lines[cell.line], cell) for cell in cells}
            if len(ends) == 1 and None not in ends:
                aligned.update((cell.line, cell.start) for cell in cells)
    return aligned


def _write_cell(line: str, cell: Cell, value: str, aligned: bool) -> str:
    """``line`` with ``cell``'s text replaced by ``value``. In an ``aligned`` column the pipes
    stay where they were when ``value`` fits in the cell and the spaces after it (one space is
    kept); elsewhere ``value`` takes its own width, with one space before the pipe."""
    trailing = len(line[cell.end :]) - len(line[cell.end :].lstrip(" "))
    followed = line[cell.end + trailing : cell.end + trailing + 1] == "|"
    room = cell.end - cell.start + max(0, trailing - 1) if followed and aligned else len(value)
    if len(value) <= room and (aligned or not followed):
        return line[: cell.start] + value.ljust(room) + line[cell.start + room :]
    if followed:  # one space, then the pipe (an empty cell keeps just the space before it)
        return line[: cell.start] + value + (" " if value else "") + line[cell.end + trailing :]
    gap = " " if line[cell.end : cell.end + 1] == "|" else ""
    return line[: cell.start] + value + gap + line[cell.end :]


def replace_cells(text: str, changes: list[tuple[Cell, str]]) -> str:
    """``text`` with each ``(cell, new text)`` written into that cell, everything else intact.

    The new text is escaped (:func:`escape_cell`). In a column laid out with spaces
    (:func:`aligned_columns`) a cell keeps its width when the new text fits; elsewhere the
    new text is not padded to the old one's width. A padding cell (a column the source row stops short of) is written in its own
    column: the row is first extended with empty cells up to it. A line's ``\\r`` (CRLF
    files) stays at its end.
    """
    lines = text.split("\n")
    aligned = aligned_columns(lines, parse_tables(text))
    by_line: dict[int, list[tuple[Cell, str]]] = {}
    for cell, value in changes:
        by_line.setdefault(cell.line, []).append((cell, escape_cell(value)))
    for number, edits in by_line.items():
        line, ending = (lines[number][:-1], "\r") if lines[number].endswith("\r") else (lines[number], "")
        for cell, value in sorted((edit for edit in edits if edit[0].present), key=lambda edit: -edit[0].start):
            line = _write_cell(line, cell, value, (cell.line, cell.start) in aligned)
        padded = {cell.column: value for cell, value in edits if not cell.present}
        if padded:
            line = _extend_row(line, padded)
        lines[number] = line + ending
    return "\n".join(lines)


def _extend_row(line: str, values: dict[int, str]) -> str:
    """``line`` with empty cells appended up to the highest column in ``values``, each of
    those columns holding its value."""
    have = len(split_row(line))
    body = line.rstrip()
    if not body.endswith("|") or body.endswith("\\|"):
        body += " |"
    for column in range(have, max(values) + 1):
        body += f" {values.get(column, '')} |"
    return body
