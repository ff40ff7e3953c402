"""Tell a provider failure from a task failure, and find when the provider is back (pure).

The two failure layers (seed 000, "Two Failure Layers"): an *execution failure* (the task ran
and produced wrong work) counts an attempt; a *provider failure* does not: the task moves to
another runtime (DESIGN.md, "The task lifecycle"). Classes (issue 8):

- ``rate_limit``, ``quota``, ``auth``, ``overloaded``, ``network``: what the provider
  answered, read from the runtime's structured output first (:mod:`macp.runtime_output`:
  HTTP status, vendor error type), then from its error message and diagnostics matched
  against text signatures kept in config;
- ``missing``: the runtime's binary is not installed (exit 127, or it could not start);
- ``misconfigured``: the runtime refused its own command line (untrusted folder, root
  guard, unknown flag);
- ``hang``: the runtime printed nothing for its idle timeout, or nothing at all since its
  start (its first-output timeout, or the task's deadline).

A run that exits 0 is a success unless its structured output reports an error: the text of a
successful run never makes a provider failure (an agent may well print "429" while working).
A run killed at the task's own timeout while it kept printing is an execution timeout.

Text is matched case-insensitively after :func:`normalise` (NFKC, typographic quotes and
dashes made plain, terminal escapes removed), so ``You’ve hit your usage limit`` matches
``you'?ve hit your usage limit``.

Reset times are parsed from the forms the CLIs print (``../shared/reference/agent-runtimes.md``
§1-§4, §7, and the captures in ``tests/data/runtimes/``): codex ``try again at 3:28 PM`` /
``try again at Nov 23rd, 2026 12:34 AM`` / ``try again in 2 days 17 hours 14 minutes`` /
``"resets_in_seconds": N``; Claude ``resets 3:50pm (Asia/Tokyo)`` / ``resets Apr 23 at 4pm
(America/Recife)`` / ``Claude AI usage limit reached|<epoch>`` / ``"resetsAt": <epoch>`` /
``retry_delay_ms``; Gemini ``reset after 1h49m8s`` / ``Please retry in 12.5s`` /
``Suggested retry after 37s`` / ``"retryDelay": "34s"`` / ``retryDelayMs: 37000``; HTTP
``Retry-After`` (seconds or an HTTP date) and ``retry-after-ms``. A reset more than
:data:`MAX_RESET_SECONDS` away is capped there, and the failure says so.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from macp.errors import EXIT_NOT_INSTALLED
from macp.runtime_output import RunReport
from macp.textview import strip_terminal_codes

FAILURE_CLASSES = ("rate_limit", "quota", "auth", "overloaded", "network", "missing", "misconfigured", "hang")
SIGNATURE_CLASSES = ("misconfigured", "auth", "quota", "rate_limit", "overloaded", "network")
WAITING_DOES_NOT_FIX = ("missing", "misconfigured", "auth")
MAX_RESET_SECONDS = 24 * 3600

_MONTHS = {name: number for number, name in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)}
_UNIT_SECONDS = {"d": 86400, "day": 86400, "h": 3600, "hour": 3600, "m": 60, "min": 60, "minute": 60, "s": 1, "sec": 1, "second": 1}
_NUMBER = r"(\d{1,15}(?:\.\d{1,6})?)"
_EPOCH = (
    re.compile(r"(?i)usage limit reached\|(\d{9,11})"),
    re.compile(r'(?i)"?\b(?:resetsAt|resets_at|overageResetsAt|quotaResetTimeStamp)"?\s*[:=]\s*"?(\d{9,11})'),
)
_SECONDS = (
    re.compile(r'(?i)"?\bresets_in_seconds"?\s*[:=]\s*' + _NUMBER),
    re.compile(r"(?i)\bretry-after\"?\s*[:=]\s*\"?" + _NUMBER + r"\"?\s*(?:$|[,;\s}])", re.MULTILINE),
    re.compile(r'(?i)"?\b(?:retryDelay|quotaResetDelay)"?\s*[:=]\s*"' + _NUMBER + r's"'),
    re.compile(r"(?i)\b(?:please retry in|suggested retry after)\s+" + _NUMBER + r"\s*s\b"),
)
_MILLISECONDS = (
    re.compile(r"(?i)\b(?:retry[-_]?after[-_]?ms|retry_?delay_?ms)\"?\s*[:=]\s*\"?" + _NUMBER),
    re.compile(r"(?i)\bretrying after\s+" + _NUMBER + r"\s*ms\b"),
)
_HTTP_DATE = re.compile(r"(?i)\bretry-after\"?\s*[:=]\s*\"?([A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT)")
_DURATION = re.compile(
    r"(?i)(?:try again in|reset after|resets in|retry after)\s+"
    r"((?:\d{1,9}(?:\.\d+)?\s*(?:days?|d|hours?|h|minutes?|mins?|m|seconds?|secs?|s)(?![a-z])[\s,and]*)+)"
)
_DURATION_PART = re.compile(r"(?i)(\d{1,9}(?:\.\d+)?)\s*(day|d|hour|h|min|m|sec|s)")
_CLOCK = re.compile(
    r"(?i)(?:try again at|resets?(?: at)?|reset at|limit will reset at)\s+"
    r"(?:(?P<month>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?,?\s*"
    r"(?:(?P<year>\d{4})\s*)?(?:at\s+)?)?"
    r"(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?\s*(?P<ampm>[ap]\.?m\.?)"
    r"(?:\s*\((?P<zone>[A-Za-z_]+(?:/[A-Za-z_+-]+)*)\))?"
)
_PLAIN = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201b": "'", "\u2032": "'", "\u201c": '"', "\u201d": '"',
                        "\u201e": '"', "\u2033": '"', "\u2013": "-", "\u2014": "-", "\u2212": "-", "\u00a0": " "})
_STATUS_CLASSES = {401: "auth", 403: "auth", 402: "quota", 429: "rate_limit", 529: "overloaded"}
_TYPE_CLASSES = {
    "rate_limit": "rate_limit", "rate_limit_error": "rate_limit", "billing_error": "quota",
    "authentication_failed": "auth", "authentication_error": "auth", "ProviderAuthError": "auth",
    "overloaded_error": "overloaded", "server_error": "network", "api_error": "network",
}


@dataclass(frozen=True)
class ProviderFailure:
    """A provider failure: its class (one of :data:`FAILURE_CLASSES`), when the provider said
    it would be back (None if it did not say), the text that gave it away, and whether the
    reset was capped at :data:`MAX_RESET_SECONDS`."""

    kind: str
    reset_at: datetime | None
    evidence: str
    reset_capped: bool = False


def normalise(text: str) -> str:
    """``text`` ready for signature matching: terminal escapes removed, NFKC, typographic
    quotes, primes and dashes made ASCII."""
    return unicodedata.normalize("NFKC", strip_terminal_codes(text)).translate(_PLAIN)


def classify_run(
    signatures: dict[str, list[str]],
    *,
    exit_code: int | None,
    idle_timed_out: bool,
    report: RunReport,
    now: datetime,
    local_zone: tzinfo | None = None,
) -> ProviderFailure | None:
    """Classify one run of an agent runtime; None when it is not a provider failure.

    ``signatures`` maps classes (:data:`SIGNATURE_CLASSES`) to regular expressions
    (case-insensitive, matched after :func:`normalise`). ``report`` is the run's output as
    :func:`macp.runtime_output.read_run` read it. Rules, in order: exit 127 or a failed start
    is ``missing``; an error in the structured output is classed by its HTTP status and
    vendor type, else by signatures over its message, then over the CLI's diagnostics;
    silence for the idle timeout is then ``hang``; a structured error with no class, and a
    run that exits 0 with no structured error, are no provider failure; any other run is
    classed by signatures over the CLI's diagnostics (all output for text runtimes).
    ``now`` anchors relative reset times; ``local_zone`` (default: the machine's) reads
    clock times without a zone.
    """
    if exit_code is None or exit_code == EXIT_NOT_INSTALLED:
        said = [line.strip() for line in report.text.splitlines() if line.strip()]  # `mosaic yolo` names the binary and what to do
        return ProviderFailure("missing", None, said[-1][:300] if said else "runtime not installed or could not start")
    found: tuple[str, str] | None = None
    texts = [normalise(report.text)]
    if report.error is not None:
        texts.insert(0, normalise(report.error))
        kind = _class_of(report.status, report.error_type, texts[0], signatures)
        evidence = report.error.strip().splitlines()[0][:300] if report.error.strip() else report.error_type or "error"
        found = (kind, evidence) if kind else _signature(texts[1], signatures)
    elif not idle_timed_out and exit_code != 0:
        found = _signature(texts[0], signatures)
    if found is None:
        return ProviderFailure("hang", None, "the runtime went silent and was stopped (nothing printed for its idle or first-output timeout)") if idle_timed_out else None
    reset_at, capped = parse_reset_time("\n".join([*texts, *report.hints]), now, local_zone)
    return ProviderFailure(found[0], reset_at, found[1], capped)


def _class_of(status: int | None, error_type: str | None, message: str, signatures: dict[str, list[str]]) -> str | None:
    """The class an error's status and vendor type name; quota beats rate_limit when the
    message says so; 5xx is ``network`` unless it says overloaded."""
    found = _signature(message, signatures)
    named = _TYPE_CLASSES.get(error_type or "") or _STATUS_CLASSES.get(status or 0)
    if named is None and status is not None and 500 <= status <= 599:
        named = "network"
    if named in ("rate_limit", "network") and found and found[0] in ("quota", "overloaded"):
        return found[0]
    return named or (found[0] if found else None)


def _signature(text: str, signatures: dict[str, list[str]]) -> tuple[str, str] | None:
    for kind in SIGNATURE_CLASSES:
        for pattern in signatures.get(kind, []):
            match = re.search(pattern, text, re.IGNORECASE)
            if match:
                return kind, _excerpt(text, match)
    return None


def _excerpt(output: str, match: re.Match) -> str:
    start = output.rfind("\n", 0, match.start()) + 1
    end = output.find("\n", match.end())
    return output[start : end if end != -1 else len(output)].strip()[:300]


def parse_reset_time(text: str, now: datetime, local_zone: tzinfo | None = None) -> tuple[datetime | None, bool]:
    """``(the latest reset time text names, capped)``: an aware UTC datetime or None, and
    whether it lay more than :data:`MAX_RESET_SECONDS` after ``now`` and was capped there.

    Relative forms count from ``now``. A clock time (no seconds) means the end of that
    minute; without a date it is the next such time whose minute has not ended (``try again at 9:32 PM`` read at 21:32:30 is now, not
    tomorrow). A named IANA zone (``(Europe/Lisbon)``) is honoured when the machine has zone
    data, else ``local_zone`` is used. Huge numbers never overflow: they are capped.
    """
    limit = now + timedelta(seconds=MAX_RESET_SECONDS)
    found: list[datetime] = []
    capped = False

    def add(seconds: float) -> None:
        nonlocal capped
        if seconds > MAX_RESET_SECONDS:
            capped = True
        found.append(now + timedelta(seconds=min(max(seconds, 0.0), MAX_RESET_SECONDS)))

    for pattern in _EPOCH:
        for match in pattern.finditer(text):
            add(int(match.group(1)) - now.timestamp())
    for pattern in _SECONDS:
        for match in pattern.finditer(text):
            add(float(match.group(1)))
    for pattern in _MILLISECONDS:
        for match in pattern.finditer(text):
            add(float(match.group(1)) / 1000)
    for match in _HTTP_DATE.finditer(text):
        try:
            add((parsedate_to_datetime(match.group(1)) - now).total_seconds())
        except (TypeError, ValueError):
            continue
    for match in _DURATION.finditer(text):
        seconds = sum(float(n) * _UNIT_SECONDS[unit.lower()] for n, unit in _DURATION_PART.findall(match.group(1)))
        if seconds:
            add(seconds)
    for match in _CLOCK.finditer(text):
        moment = _clock_time(match, now, local_zone)
        if moment is not None:
            add((moment - now).total_seconds())
    if not found:
        return None, False
    return min(max(found), limit).astimezone(timezone.utc), capped


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
        if not 1 <= int(match.group("day")) <= 31:
            return None
        year = int(match.group("year") or local_now.year)
        try:
            moment = datetime(year, _MONTHS[match.group("month").lower()[:3]], int(match.group("day")), hour, minute, tzinfo=zone)
        except ValueError:
            return None
        if not match.group("year") and moment < local_now - timedelta(days=1):
            moment = moment.replace(year=year + 1)
        return moment + timedelta(minutes=1)
    minute_end = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0) + timedelta(minutes=1)
    return minute_end if minute_end > local_now else minute_end + timedelta(days=1)
