"""JSON and text as MACP reads and writes them (pure): strict parsing of JSON it did not
write, its own file format, and text made safe to store as UTF-8.

Split from :mod:`macp.fsio` (which does the file I/O) so the pure core -- usage reading,
redaction, agent output -- can parse without importing file operations (issue 24's
layering).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from macp.errors import MacpError


def utf8(text: str) -> bytes:
    """``text`` as UTF-8; a lone surrogate that reached it anyhow becomes U+FFFD
    (:func:`well_formed_text`) rather than make the write fail: MACP always writes its state."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return well_formed_text(text).encode("utf-8")


# "\ud83d": a JSON escape of a UTF-16 surrogate, which may stand alone (half an emoji cut off)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def well_formed_text(text: str) -> str:
    """``text`` with every lone UTF-16 surrogate replaced by U+FFFD, so it can be written as
    UTF-8: a surrogate comes from a ``\\ud83d`` escape in JSON (half an emoji from a cut
    stream) or from an argument that is not UTF-8 (Python's ``surrogateescape``)."""
    return _SURROGATE.sub("\ufffd", text)


def well_formed(value: Any) -> Any:
    """``value`` (decoded JSON) with :func:`well_formed_text` applied to every string in it,
    keys included; iterative, so no nesting depth can exhaust the stack."""
    if isinstance(value, str):
        return well_formed_text(value)
    if not isinstance(value, (dict, list)):
        return value
    root: list[Any] = [value]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        container, key = stack.pop()
        item = container[key]
        if isinstance(item, str):
            container[key] = well_formed_text(item)
        elif isinstance(item, list):
            stack.extend((item, index) for index in range(len(item)))
        elif isinstance(item, dict):
            fixed = {well_formed_text(name) if isinstance(name, str) else name: entry for name, entry in item.items()}
            container[key] = fixed
            stack.extend((fixed, name) for name in fixed)
    return root[0]


def loads(text: str | bytes) -> Any:
    """``json.loads`` for JSON MACP did not write itself -- an agent's output, a worker's
    report, a hand-edited file, a line of ``submit --from`` (issue 22): nesting deeper than
    the parser can follow raises ``ValueError`` like any other bad JSON (not
    ``RecursionError``); ``NaN``, ``Infinity`` and numbers no double holds (``1e999``)
    raise ``json.JSONDecodeError`` with their line and column (Python's own parser would
    take them, and no comparison with them means anything); lone surrogates in strings
    become U+FFFD (:func:`well_formed`), so whatever it decodes can be stored and printed."""
    raw = text if isinstance(text, str) else text.decode("utf-8", "replace")
    try:
        value = json.loads(raw, parse_constant=_not_a_number, parse_float=_finite)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except _NotFinite as exc:  # not JSON: NaN, Infinity, or a number beyond a double
        before = raw[: max(0, raw.find(exc.literal))]
        raise json.JSONDecodeError(f"{exc.literal} is not a JSON number MACP can use", raw, len(before)) from None
    return well_formed(value) if _SURROGATE_ESCAPE.search(raw) else value


class _NotFinite(ValueError):
    """A number JSON does not have (``NaN``, ``Infinity``) or no double holds (``1e999``)."""

    def __init__(self, literal: str) -> None:
        super().__init__(literal)
        self.literal = literal


def _not_a_number(literal: str) -> float:
    raise _NotFinite(literal)


def _finite(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _NotFinite(literal)
    return value


def json_object(value: object) -> dict[str, Any]:
    """``value`` when it is a JSON object (a dict), else ``{}``: for reading optional nested
    objects of documents MACP did not write (agent output, lock records)."""
    return value if isinstance(value, dict) else {}


def dump_json(value: Any) -> str:
    """Serialise ``value`` as MACP writes its files: 2-space indent, UTF-8, final newline."""
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def parse_json_text(text: str, label: str) -> Any:
    """Parse ``text``; on bad JSON raise MacpError ``<label>:<line>:<col>: invalid JSON: ...``."""
    if not text.strip():
        raise MacpError(f"{label}: file is empty, expected JSON")
    try:
        return loads(text)
    except json.JSONDecodeError as exc:
        raise MacpError(f"{label}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except ValueError as exc:
        raise MacpError(f"{label}: invalid JSON: {exc}") from None
