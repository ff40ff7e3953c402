"""Tell a provider failure from a task failure, and find when the provider is back (pure).

The two failure layers (seed 000, "Two Failure Layers"): an *execution failure* (the task ran
and produced wrong work) counts an attempt; a *provider failure* (rate limit, quota, auth,
network/5xx, overload, a runtime that is not installed or hangs) does not: the task moves to
another runtime. Exit codes alone cannot tell them apart -- Claude Code and goose have exited
0 on a rate limit (``../shared/reference/agent-runtimes.md`` §0.3) -- so the output is
matched against each runtime's signatures, kept in config so users can update them.

Reset times are parsed from the forms the CLIs print (same reference, §1-§4, §7): codex
``try again at 3:28 PM`` / ``try again at Jul 5th, 2026 8:19 PM`` / ``try again in 2 days 17
hours 14 minutes`` / ``"resets_in_seconds": N``; Claude ``resets 3:50pm (Asia/Tokyo)`` /
``resets Apr 23 at 4pm (America/Recife)`` / ``Claude AI usage limit reached|<epoch>`` /
``"resetsAt": <epoch>``; Gemini ``reset after 1h49m8s`` / ``Please retry in 12.5s`` /
``"retryDelay": "34s"``; HTTP ``Retry-After: <seconds>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from macp.errors import EXIT_NOT_INSTALLED

FAILURE_CLASSES = ("rate_limit", "auth", "overloaded", "network", "missing", "hang")
SIGNATURE_CLASSES = ("rate_limit", "auth", "overloaded", "network")

_MONTHS = {name: number for number, name in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)}
_UNIT_SECONDS = {"d": 86400, "day": 86400, "h": 3600, "hour": 3600, "m": 60, "min": 60, "minute": 60, "s": 1, "sec": 1, "second": 1}
_EPOCH = (
    re.compile(r"(?i)usage limit reached\|(\d{9,11})"),
    re.compile(r'"(?:resetsAt|resets_at|overageResetsAt|quotaResetTimeStamp)"\s*:\s*"?(\d{9,11})'),
)
_SECONDS = (
    re.compile(r'(?i)"resets_in_seconds"\s*:\s*(\d+(?:\.\d+)?)'),
    re.compile(r"(?i)\bretry-after\s*[:=]\s*\"?(\d+(?:\.\d+)?)"),
    re.compile(r'(?i)"retryDelay"\s*:\s*"(\d+(?:\.\d+)?)s"'),
    re.compile(r"(?i)\bplease retry in (\d+(?:\.\d+)?)s\b"),
)
_DURATION = re.compile(
    r"(?i)(?:try again in|reset after|resets in|retry after)\s+"
    r"((?:\d+(?:\.\d+)?\s*(?:days?|d|hours?|h|minutes?|mins?|m|seconds?|secs?|s)(?![a-z])[\s,and]*)+)"
)
_DURATION_PART = re.compile(r"(?i)(\d+(?:\.\d+)?)\s*(day|d|hour|h|min|m|sec|s)")
_CLOCK = re.compile(
    r"(?i)(?:try again at|resets?(?: at)?|reset at|limit will reset at)\s+"
    r"(?:(?P<month>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?,?\s*"
    r"(?:(?P<year>\d{4})\s*)?(?:at\s+)?)?"
    r"(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?\s*(?P<ampm>[ap]\.?m\.?)"
    r"(?:\s*\((?P<zone>[A-Za-z_]+(?:/[A-Za-z_+-]+)*)\))?"
)


@dataclass(frozen=True)
class ProviderFailure:
    """A provider failure: its class (one of :data:`FAILURE_CLASSES`), when the provider said
    it would be back (None if it did not say), and the text that gave it away."""

    kind: str
    reset_at: datetime | None
    evidence: str


def classify_run(
    signatures: dict[str, list[str]],
    *,
    exit_code: int | None,
    timed_out: bool,
    output: str,
    now: datetime,
    local_zone: tzinfo | None = None,
) -> ProviderFailure | None:
    """Classify one run of an agent runtime; None when it is not a provider failure.

    ``signatures`` maps classes (rate_limit, auth, overloaded, network) to regular
    expressions (case-insensitive) matched against ``output``, whatever the exit code. Exit
    127 or a failed start is ``missing``; a timeout is ``hang``. ``now`` anchors relative
    reset times; ``local_zone`` (default: the machine's) reads clock times without a zone.
    """
    if exit_code is None or exit_code == EXIT_NOT_INSTALLED:
        return ProviderFailure("missing", None, "runtime not installed or could not start")
    for kind in SIGNATURE_CLASSES:
        for pattern in signatures.get(kind, []):
            match = re.search(pattern, output, re.IGNORECASE)
            if match:
                return ProviderFailure(kind, parse_reset_time(output, now, local_zone), _excerpt(output, match))
    if timed_out:
        return ProviderFailure("hang", None, "the runtime did not finish before its timeout")
    return None


def _excerpt(output: str, match: re.Match) -> str:
    start = output.rfind("\n", 0, match.start()) + 1
    end = output.find("\n", match.end())
    return output[start : end if end != -1 else len(output)].strip()[:300]


def parse_reset_time(text: str, now: datetime, local_zone: tzinfo | None = None) -> datetime | None:
    """The latest reset time ``text`` names (an aware UTC datetime), or None.

    Relative forms count from ``now``; clock times without a date are the next such time at
    or after ``now``; a named IANA zone (``(Europe/Lisbon)``) is honoured when the machine
    has zone data, else ``local_zone`` is used.
    """
    found: list[datetime] = []
    for pattern in _EPOCH:
        found += [datetime.fromtimestamp(int(m.group(1)), timezone.utc) for m in pattern.finditer(text)]
    for pattern in _SECONDS:
        found += [now + timedelta(seconds=float(m.group(1))) for m in pattern.finditer(text)]
    for match in _DURATION.finditer(text):
        seconds = sum(float(n) * _UNIT_SECONDS[unit.lower()] for n, unit in _DURATION_PART.findall(match.group(1)))
        if seconds:
            found.append(now + timedelta(seconds=seconds))
    for match in _CLOCK.finditer(text):
        moment = _clock_time(match, now, local_zone)
        if moment is not None:
            found.append(moment)
    return max(found).astimezone(timezone.utc) if found else None


def _zone(name: str | None, fallback: tzinfo) -> tzinfo:
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            return fallback
    return fallback


def _clock_time(match: re.Match, now: datetime, local_zone: tzinfo | None) -> datetime | None:
    zone = _zone(match.group("zone"), local_zone or now.astimezone().tzinfo or timezone.utc)
    hour = int(match.group("hour")) % 12 + (12 if match.group("ampm").lower().startswith("p") else 0)
    minute = int(match.group("minute") or 0)
    if hour > 23 or minute > 59:
        return None
    local_now = now.astimezone(zone)
    if match.group("month"):
        year = int(match.group("year") or local_now.year)
        try:
            moment = datetime(year, _MONTHS[match.group("month").lower()[:3]], int(match.group("day")), hour, minute, tzinfo=zone)
        except ValueError:
            return None
        if not match.group("year") and moment < local_now - timedelta(days=1):
            moment = moment.replace(year=year + 1)
        return moment
    moment = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return moment if moment >= local_now else moment + timedelta(days=1)
