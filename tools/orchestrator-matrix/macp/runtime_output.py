"""Read what an agent CLI said about its own run from its structured output (pure).

Each runtime in config names its output ``format`` (docs/runtimes.md); the formats and the
fields read come from the CLIs themselves (``../shared/reference/agent-runtimes.md``, and
captures of the real CLIs in ``tests/data/runtimes/``):

- ``codex-json`` (``codex exec --json``): JSON lines; ``turn.failed.error.message`` and
  ``error.message`` report a failure (``error`` also reports reconnects: a later
  ``turn.completed`` clears it); the last ``item.completed`` whose item is an
  ``agent_message`` is the final message.
- ``claude-stream-json`` (``claude -p --output-format stream-json --verbose``): the ``result``
  line's ``is_error``, ``api_error_status``, ``api_error_type`` and ``result``; an
  ``assistant`` line's ``error`` (``rate_limit``, ``billing_error``, ``authentication_failed``,
  ...); ``system``/``api_retry`` lines carry ``retry_delay_ms``; ``rate_limit_event`` with
  ``status: "rejected"`` carries ``resetsAt``.
- ``gemini-stream-json`` (``gemini --output-format stream-json``): ``result`` with
  ``status: "error"`` and ``error.message``; assistant ``message`` deltas make the final text.
- ``opencode-json`` (``opencode run --format json``): ``error`` lines whose ``error`` is a
  named error (``APIError`` with ``data.statusCode``, ``data.isRetryable``,
  ``data.responseHeaders``; ``ProviderAuthError``); ``text`` parts make the final text.
- ``text``: no structure; everything is text.

Lines that are not JSON objects are the CLI's own diagnostics (stderr, warnings): they are
kept apart as ``text`` so that text signatures never look inside the agent's conversation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from macp.jsontext import json_object, loads

FORMATS = ("codex-json", "claude-stream-json", "gemini-stream-json", "opencode-json", "text")


@dataclass(frozen=True)
class RunReport:
    """What one run's output says, whatever the CLI.

    ``structured``: at least one event of the runtime's format was read.
    ``error``: the failure the runtime reported in its structured output (its message), or
    None. ``status``: the HTTP status it names (401, 429, 529, ...), ``error_type``: its
    vendor error type or name (``rate_limit``, ``billing_error``, ``APIError``, ...).
    ``final_message``: the agent's last message (for the result's summary). ``text``: the
    lines that were not events (the CLI's own diagnostics), or the whole output for ``text``.
    ``hints``: structured fields that may name a reset time (``retry-after`` headers,
    ``retry_delay_ms``, ``resetsAt``), as ``"name: value"`` lines.
    """

    structured: bool = False
    error: str | None = None
    status: int | None = None
    error_type: str | None = None
    final_message: str | None = None
    text: str = ""
    hints: list[str] = field(default_factory=list)


def read_run(output: str, output_format: str) -> RunReport:
    """Parse ``output`` (a run's merged stdout/stderr) as ``output_format``.

    Unknown formats read as ``text``. Never raises on malformed input: lines that do not
    parse are text.
    """
    if output_format not in _READERS:
        return RunReport(text=output)
    events: list[dict] = []
    text_lines: list[str] = []
    for line in output.splitlines():
        event = _event(line)
        if event is None:
            text_lines.append(line)
        else:
            events.append(event)
    state = _Reading(text="\n".join(text_lines), structured=bool(events))
    reader = _READERS[output_format]
    for event in events:
        reader(state, event)
    return state.report()


class _Reading:
    """Mutable accumulator while events are read; :meth:`report` freezes it."""

    def __init__(self, text: str, structured: bool) -> None:
        self.text = text
        self.structured = structured
        self.error: str | None = None
        self.status: int | None = None
        self.error_type: str | None = None
        self.final: str | None = None
        self.parts: list[str] = []
        self.hints: list[str] = []

    def fail(self, message: object, status: object = None, error_type: object = None) -> None:
        self.error = str(message) if message not in (None, "") else (self.error or "the runtime reported an error")
        if isinstance(status, int) and not isinstance(status, bool):
            self.status = status
        if isinstance(error_type, str) and error_type:
            self.error_type = error_type

    def succeed(self) -> None:
        """A terminal success event: earlier errors were transient (a reconnect, a retry)."""
        self.error = self.status = self.error_type = None

    def hint(self, name: str, value: object) -> None:
        if value not in (None, ""):
            self.hints.append(f"{name}: {value}")

    def report(self) -> RunReport:
        final = self.final if self.final is not None else ("".join(self.parts) or None)
        return RunReport(self.structured, self.error, self.status, self.error_type, final, self.text, self.hints)


def structured_events(output: str) -> list[dict]:
    """The structured events in ``output`` (JSON objects with a string ``type``), in order."""
    return [event for line in output.splitlines() if (event := _event(line)) is not None]


def _event(line: str) -> dict | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = loads(line)
    except ValueError:  # not JSON, or nested too deeply to read
        return None
    return event if isinstance(event, dict) and isinstance(event.get("type"), str) else None


def _codex(state: _Reading, event: dict) -> None:
    kind = event["type"]
    if kind in ("turn.failed", "error"):
        error = event.get("error") if kind == "turn.failed" else event
        message = error.get("message") if isinstance(error, dict) else None
        state.fail(message or state.error)
    elif kind == "turn.completed":
        state.succeed()
    elif kind == "item.completed":
        item = json_object(event.get("item"))
        if item.get("type") == "agent_message" and isinstance(item.get("text"), str):
            state.final = item["text"]


def _claude(state: _Reading, event: dict) -> None:
    kind = event["type"]
    if kind == "result":
        if isinstance(event.get("result"), str):
            state.final = event["result"]
        if event.get("is_error") or str(event.get("subtype", "")).startswith("error"):
            errors = event.get("errors")
            detail = event.get("result") or (errors[0] if isinstance(errors, list) and errors else None) or event.get("subtype")
            state.fail(detail, event.get("api_error_status") or state.status, event.get("api_error_type") or state.error_type)
        else:
            state.succeed()
    elif kind == "assistant" and isinstance(event.get("error"), str):
        message = json_object(event.get("message"))
        texts: list[str] = [part["text"] for part in message.get("content") or [] if isinstance(part, dict) and isinstance(part.get("text"), str)]
        state.fail(" ".join(texts) or event["error"], event.get("api_error_status"), event["error"])
    elif kind == "system" and event.get("subtype") == "api_retry":
        state.hint("retry_delay_ms", event.get("retry_delay_ms"))
    elif kind == "rate_limit_event":
        info = json_object(event.get("rate_limit_info"))
        if info.get("status") == "rejected":
            state.hint("resetsAt", info.get("resetsAt"))
            state.fail(f"rate limit rejected ({info.get('rateLimitType') or 'unknown window'})", 429, "rate_limit")


def _gemini(state: _Reading, event: dict) -> None:
    kind = event["type"]
    if kind == "message" and event.get("role") == "assistant" and isinstance(event.get("content"), str):
        if not event.get("delta"):
            state.parts = []
        state.parts.append(event["content"])
    elif kind in ("tool_use", "tool_result"):
        state.parts = []
    elif kind == "error" or (kind == "result" and event.get("status") == "error"):
        error = json_object(event.get("error")) if isinstance(event.get("error"), dict) else event
        state.fail(error.get("message"), error.get("code") or error.get("status"), error.get("type"))
    elif kind == "result":
        state.succeed()


def _opencode(state: _Reading, event: dict) -> None:
    kind = event["type"]
    part = json_object(event.get("part"))
    if kind == "text" and isinstance(part.get("text"), str):
        state.final = part["text"]
    elif kind == "error":
        error = json_object(event.get("error"))
        data = json_object(error.get("data"))
        headers = json_object(data.get("responseHeaders"))
        for name in ("retry-after", "retry-after-ms"):
            state.hint(name, headers.get(name))
        state.fail(data.get("message") or error.get("name"), data.get("statusCode"), error.get("name"))


_READERS = {
    "codex-json": _codex,
    "claude-stream-json": _claude,
    "gemini-stream-json": _gemini,
    "opencode-json": _opencode,
}
