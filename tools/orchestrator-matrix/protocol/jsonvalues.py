"""JSON values as JSON Schema (draft 2020-12) sees them, standard library only: equality
(``1 == 1.0``, ``true != 1``), type names, exact numbers for ``multipleOf`` and the bounds,
RFC 3339 ``date-time``, JSON paths of nested values, URI resolution for ``$ref``, and the
two kinds of error the validator reports (split from :mod:`protocol.walk`, issue 24).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urldefrag, urljoin

if TYPE_CHECKING:
    from fractions import Fraction

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HAS_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


class SchemaError(Exception):
    """The schema itself cannot be used: an unresolvable ``$ref``, an unsupported keyword, a
    keyword with a malformed value, or a ``$ref`` loop. The only error the validator raises."""


@dataclass(frozen=True)
class ValidationError:
    """One reason an instance is invalid.

    ``path`` is the JSON path of the offending value (``$.a[0].b``), ``keyword`` the schema
    keyword that failed and ``message`` a sentence a person can act on.
    """

    path: str
    keyword: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def child_path(path: str, key: str | int) -> str:
    """Return the JSON path of ``key`` (an object key or an array index) below ``path``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENTIFIER.match(key):
        return f"{path}.{key}"
    escaped = key.replace("\\", "\\\\").replace('"', '\\"')
    return f'{path}["{escaped}"]'


def join_uri(base: str, ref: str) -> str:
    """Resolve ``ref`` against ``base`` (RFC 3986), also for ``urn:`` bases that urljoin skips."""
    if not base or _HAS_SCHEME.match(ref):
        return ref
    if ref.startswith("#"):
        return urldefrag(base)[0] + ref
    return urljoin(base, ref)


def is_valid_date_time(text: str) -> bool:
    """True when ``text`` is an RFC 3339 ``date-time`` (leap seconds only at 23:59:60 UTC)."""
    match = _DATE_TIME.fullmatch(text)
    if not match:
        return False
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    if not 1 <= month <= 12 or not 1 <= day <= _days_in_month(year, month):
        return False
    if hour > 23 or minute > 59 or second > 60:
        return False
    offset_hours = int(match.group(10) or 0)
    offset_minutes = int(match.group(11) or 0)
    if offset_hours > 23 or offset_minutes > 59:
        return False
    if second == 60:
        sign = -1 if match.group(9) == "+" else 1
        utc_minutes = (hour * 60 + minute + sign * (offset_hours * 60 + offset_minutes)) % 1440
        return utc_minutes == 23 * 60 + 59
    return True


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: ``1 == 1.0`` but ``true != 1``; arrays and objects compare deeply."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _is_type(value: Any, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if name == "number":
        return True
    if name == "integer":
        return isinstance(value, int) or (math.isfinite(value) and value.is_integer())
    raise SchemaError(f"unknown type {name!r}")


def json_type_name(value: Any) -> str:
    """The JSON Schema type name of ``value`` (``null``, ``boolean``, ``integer``, ...)."""
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _is_type(value, name):
            return name
    return type(value).__name__


def _exact(number: float) -> Fraction:
    """``number`` as an exact fraction (a float by its shortest repr), for multipleOf and the
    bounds. decimal and fractions are imported here: most commands never compare numbers."""
    from decimal import Decimal
    from fractions import Fraction

    if isinstance(number, int):
        return Fraction(number)
    return Fraction(Decimal(repr(number)))
