"""The program's one clock, and its timestamp format.

All wall-clock reads go through :func:`now`, so tests and reruns can pin time with the
``MACP_NOW`` environment variable (an RFC 3339 timestamp). Timestamps are written in UTC as
``YYYY-MM-DDTHH:MM:SS.mmmZ`` (RFC 3339, accepted by the schemas' ``date-time`` format).
Durations use :func:`time.monotonic` instead and are unaffected by ``MACP_NOW``.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta, timezone

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6})\d*)?([Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)


def now() -> datetime:
    """The current time as an aware UTC datetime (``MACP_NOW`` when set)."""
    pinned = os.environ.get("MACP_NOW")
    if pinned:
        return parse_timestamp(pinned)
    return datetime.now(timezone.utc)


def format_timestamp(moment: datetime) -> str:
    """``moment`` as ``2026-11-21T09:30:00.000Z`` (UTC, millisecond precision)."""
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def timestamp() -> str:
    """:func:`now`, formatted by :func:`format_timestamp`."""
    return format_timestamp(now())


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 timestamp into an aware datetime; raises ``ValueError`` otherwise.

    Python 3.10's ``datetime.fromisoformat`` rejects ``Z``, hence this parser.
    """
    match = _RFC3339.fullmatch(text.strip())
    if not match:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    micro = int((match.group(7) or "0").ljust(6, "0"))
    zone = match.group(8)
    if zone in ("Z", "z"):
        tz = timezone.utc
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    return datetime(year, month, day, hour, minute, min(second, 59), micro, tzinfo=tz)
