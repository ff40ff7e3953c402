"""Text for a terminal (pure): one-line cells, cuts at word boundaries, tables, key/value views.

Human output never cuts a word in half: a cell that is too long ends at the last word that
fits, followed by ``…``. Control characters (newlines, terminal escapes) become spaces, so a
hostile title cannot move the cursor or forge a line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def strip_terminal_codes(text: str) -> str:
    """``text`` without ANSI escape sequences and control characters (tab, newline and
    carriage return stay)."""
    return _CONTROL.sub("", _ANSI.sub("", text))

ELLIPSIS = "…"


def one_line(text: str) -> str:
    """``text`` with control characters (newlines, escapes) shown as spaces, for tables."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text)


def fit(text: str, width: int) -> str:
    """``text`` on one line in at most ``width`` characters: cut after the last whole word
    that fits, then ``…`` (a single word longer than ``width`` is cut where it must be)."""
    text = " ".join(one_line(text).split())
    if len(text) <= width:
        return text
    room = max(1, width - len(ELLIPSIS))
    cut = text[: room + 1].rsplit(" ", 1)[0] if " " in text[: room + 1] else text[:room]
    return cut[:room].rstrip(" ,;:-") + ELLIPSIS


def render_table(rows: list[dict], columns: list[tuple[str, Callable[[dict], str]]]) -> list[str]:
    """Left-aligned text table with a header row; ``columns`` are ``(header, cell of a row)``."""
    cells = [[header for header, _ in columns]] + [[get(row) for _, get in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in cells]


def readable(value: object, indent: str = "") -> list[str]:
    """A JSON-like value as ``key: value`` lines for people: nulls and empty values left
    out, nested objects indented, multi-line text (an output tail) as an indented block,
    short lists of plain values joined by commas."""
    lines: list[str] = []
    if not isinstance(value, dict):
        return [f"{indent}{_scalar(value)}"]
    for key, item in value.items():
        if item is None or item == "" or item == [] or item == {}:
            continue
        if isinstance(item, dict):
            lines.append(f"{indent}{key}:")
            lines.extend(readable(item, indent + "  "))
        elif isinstance(item, list) and all(not isinstance(element, (dict, list)) for element in item):
            lines.append(f"{indent}{key}: {', '.join(_scalar(element) for element in item)}")
        elif isinstance(item, list):
            lines.append(f"{indent}{key}:")
            for element in item:
                nested = readable(element, indent + "    ")
                lines.append(f"{indent}  - {nested[0].lstrip()}" if nested else f"{indent}  -")
                lines.extend(nested[1:])
        elif isinstance(item, str) and "\n" in item.strip():
            lines.append(f"{indent}{key}: |")
            lines.extend(f"{indent}    {one_line(line)}".rstrip() for line in item.strip("\n").splitlines())
        else:
            lines.append(f"{indent}{key}: {_scalar(item)}")
    return lines


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return one_line(value)
    return one_line(json.dumps(value, ensure_ascii=False))


def duration_text(seconds: float) -> str:
    """``4.2s``, ``3m05s`` or ``2h07m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"
