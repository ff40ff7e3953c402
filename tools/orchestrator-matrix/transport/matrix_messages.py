"""What an event looks like in the room: pure functions from an event to message content.

Every event becomes one ``m.notice`` (client-server API, "m.room.message msgtypes") with:

- ``body``: one line for people — ``A · completed · attempt 1: all quality gates passed`` —
  and ``formatted_body`` (``org.matrix.custom.html``), the same with the task id in bold,
  everything HTML-escaped;
- ``m.relates_to`` ``m.thread`` to the task's first message (its *thread root*), so the
  room's main timeline shows one line per task (the spec's "Threading" module; with the
  reply fallback for clients without threads);
- ``m.mentions`` (the spec's "User and room mentions"): the configured users on
  ``task.escalated``/``task.failed``, nobody otherwise;
- ``dev.mosaicstack.macp.event_id``, the event's stable id, which lets a resend recognise an
  event already in the room whatever access token sent it, and the event itself under
  ``dev.mosaicstack.macp.event`` when it fits.

When events have been waiting (a rate-limited homeserver), a task's waiting events go in one
message instead (:func:`coalesced_content`): one line each, all their ids under
``dev.mosaicstack.macp.event_ids``.

Local paths are made relative to the repository (worktrees shown as ``…/<folder>``, the home
folder as ``~``); message text is capped at :data:`MAX_MESSAGE_CHARS` and the whole content
at :data:`CONTENT_BUDGET_BYTES` so it fits Synapse's 64 KiB event limit with room for the
envelope the server adds; an event delivered late shows when it happened.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import datetime

from macp import clock
from macp.jsontext import json_object

EVENT_ID_KEY = "dev.mosaicstack.macp.event_id"
EVENT_IDS_KEY = "dev.mosaicstack.macp.event_ids"  # every event of a coalesced message, in order
EVENT_KEY = "dev.mosaicstack.macp.event"
TRUNCATED_KEY = "dev.mosaicstack.macp.truncated"
MAX_MESSAGE_CHARS = 4000
CONTENT_BUDGET_BYTES = 48 * 1024  # the spec's event limit is 65536 bytes with signatures and hashes
MINIMAL_MESSAGE_CHARS = 200
CANONICAL_INT_MAX = 2**53 - 1  # the spec's "Canonical JSON": integers in [-(2**53)+1, 2**53-1], no floats
MENTION_EVENTS = ("task.escalated", "task.failed")
SUMMARY_EVENT = "controller.stopped"


@dataclass(frozen=True)
class RenderContext:
    """What rendering needs besides the event: the repository's name and the local paths to
    hide (absolute, without a trailing slash), who to mention, when an event counts as late
    (seconds) and the time of delivery."""

    repo_name: str
    repo_root: str
    worktree_base: str
    home: str
    mention_user_ids: tuple[str, ...]
    late_after_seconds: float
    now: datetime


def relative(text: str, context: RenderContext) -> str:
    """``text`` with the repository root, the worktree folder and the home folder replaced:
    ``/repo/.mosaic/x`` → ``.mosaic/x``, ``/home/u/src/r-worktrees/a`` → ``…/a``,
    ``/home/u/y`` → ``~/y``."""
    for prefix, shown in ((context.repo_root, ""), (context.worktree_base, "…/"), (context.home, "~/")):
        if prefix and prefix != "/":
            text = text.replace(prefix + "/", shown)
    return text.replace(context.repo_root, ".") if context.repo_root else text


def unicode_text(text: str) -> str:
    """``text`` with lone surrogates (``"\\udc80"`` in a log line is valid JSON but no
    Unicode) written out as ``\\udc80``: Synapse answers 500 to them, every time."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def room_value(value: object, context: RenderContext) -> object:
    """``value`` as a Matrix event may carry it: every string valid Unicode
    (:func:`unicode_text`) and made :func:`relative`, and numbers the spec's canonical JSON
    forbids (floats, integers beyond ±(2**53 - 1)), which Synapse refuses with
    ``M_BAD_JSON``, written as strings."""
    if isinstance(value, str):
        return relative(unicode_text(value), context)
    if isinstance(value, dict):
        return {unicode_text(str(key)): room_value(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [room_value(item, context) for item in value]
    if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool) and abs(value) > CANONICAL_INT_MAX):
        return str(value)
    return value


def capped(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was when cut."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters in all; see events.ndjson)"


def headline(event: dict, context: RenderContext) -> tuple[str, str]:
    """``(subject, what)`` of an event's line: the task id (or ``MACP <repo>``) and what
    happened (``completed``, ``retry scheduled · attempt 1``, ``gate failed``…)."""
    event_type = str(event.get("event_type") or "event")
    what = event_type.removeprefix("task.").replace(".", " ").replace("_", " ")
    if event.get("attempt") and not str(event.get("message") or "").startswith("attempt "):
        what += f" · attempt {event['attempt']}"
    subject = str(event.get("task_id") or f"MACP {context.repo_name}")
    if event_type == SUMMARY_EVENT:
        what = "run finished"
    return subject, what


def late_note(event: dict, context: RenderContext) -> str:
    """`` (at 2026-11-23 10:00:00 UTC)`` when the event is older than the late bound at
    delivery, else ``""``."""
    try:
        happened = clock.parse_timestamp(str(event.get("timestamp")))
    except ValueError:
        return ""
    if (context.now - happened).total_seconds() <= context.late_after_seconds:
        return ""
    return f" (at {happened.strftime('%Y-%m-%d %H:%M:%S')} UTC)"


def mentions_for(event: dict, context: RenderContext) -> list[str]:
    """The users to ping for ``event``: the configured ones on escalation and failure."""
    return list(context.mention_user_ids) if event.get("event_type") in MENTION_EVENTS else []


def message_content(event: dict, thread_root: str | None, context: RenderContext) -> dict:
    """The ``m.room.message`` content for ``event``; threaded under ``thread_root`` (a
    Matrix event id) when given. Fits :data:`CONTENT_BUDGET_BYTES`. Pure."""
    event = json_object(room_value(event, context))
    subject, what = headline(event, context)
    message = capped(str(event.get("message") or ""))
    late = late_note(event, context)
    users = mentions_for(event, context)
    text = f"{subject} · {what}" + (f": {message}" if message else "") + late
    markup = f"<b>{html.escape(subject)}</b> · {html.escape(what)}" + (f": {html.escape(message)}" if message else "") + html.escape(late)
    if users:
        text = " ".join(users) + " " + text
        markup = " ".join(f'<a href="https://matrix.to/#/{html.escape(user)}">{html.escape(user)}</a>' for user in users) + " " + markup
    content: dict = {
        "msgtype": "m.notice",
        "body": text,
        "format": "org.matrix.custom.html",
        "formatted_body": markup,
        "m.mentions": {"user_ids": users} if users else {},
        EVENT_ID_KEY: event.get("event_id"),
        EVENT_KEY: event,
    }
    if thread_root:
        content["m.relates_to"] = thread_relation(thread_root)
    if content_size(content) > CONTENT_BUDGET_BYTES:
        del content[EVENT_KEY]
        content[TRUNCATED_KEY] = True
    return content


def event_line(event: dict, context: RenderContext) -> tuple[str, str]:
    """``(text, html)`` of one event's line in a coalesced message: what happened and the
    message, with the late note (the task id is the message's own subject)."""
    event = json_object(room_value(event, context))
    _subject, what = headline(event, context)
    message = capped(str(event.get("message") or ""), MAX_MESSAGE_CHARS // 4)
    late = late_note(event, context)
    text = f"{what}" + (f": {message}" if message else "") + late
    return text, html.escape(text)


def coalesced_content(events: list[dict], thread_root: str | None, context: RenderContext) -> dict:
    """One ``m.room.message`` for several waiting events of one task (issue 22: a
    rate-limited homeserver must catch up): the task id, then one line per event, in order;
    the users to mention on any of them; every event's id under :data:`EVENT_IDS_KEY` (the
    first also under :data:`EVENT_ID_KEY`) so a resend recognises them all. Threaded under
    ``thread_root`` when given. Fits :data:`CONTENT_BUDGET_BYTES`. Pure."""
    subject, _what = headline(json_object(room_value(events[0], context)), context)
    lines = [event_line(event, context) for event in events]
    users = sorted({user for event in events for user in mentions_for(event, context)})
    prefix = " ".join(users) + " " if users else ""
    text = capped(f"{prefix}{subject} · {len(events)} events:\n" + "\n".join(f"- {line}" for line, _markup in lines))
    mentioned = " ".join(f'<a href="https://matrix.to/#/{html.escape(user)}">{html.escape(user)}</a>' for user in users)
    markup = (mentioned + " " if users else "") + f"<b>{html.escape(subject)}</b> · {len(events)} events:<ul>"
    markup += "".join(f"<li>{line_markup}</li>" for _line, line_markup in lines) + "</ul>"
    content: dict = {
        "msgtype": "m.notice",
        "body": text,
        "format": "org.matrix.custom.html",
        "formatted_body": markup if len(markup) <= 4 * MAX_MESSAGE_CHARS else html.escape(text),
        "m.mentions": {"user_ids": users} if users else {},
        EVENT_ID_KEY: events[0].get("event_id"),
        EVENT_IDS_KEY: [event.get("event_id") for event in events],
    }
    if thread_root:
        content["m.relates_to"] = thread_relation(thread_root)
    return content


def thread_relation(thread_root: str) -> dict:
    """``m.relates_to`` of a message in the thread of ``thread_root`` (with the reply
    fallback for clients without threads)."""
    return {"rel_type": "m.thread", "event_id": thread_root, "is_falling_back": True, "m.in_reply_to": {"event_id": thread_root}}


def minimal_content(content: dict) -> dict:
    """The smallest form of ``content`` (for an event the homeserver still refused): the first
    :data:`MINIMAL_MESSAGE_CHARS` of the line, the ids, the thread and the mentions."""
    smaller = {key: content[key] for key in ("msgtype", "m.mentions", EVENT_ID_KEY, EVENT_IDS_KEY, "m.relates_to") if key in content}
    smaller["body"] = content["body"][:MINIMAL_MESSAGE_CHARS] + "… (refused by the homeserver in full; see events.ndjson)"
    smaller[TRUNCATED_KEY] = True
    return smaller


def content_size(content: dict) -> int:
    """Bytes of ``content`` as JSON on the wire."""
    return len(json.dumps(content, ensure_ascii=False).encode("utf-8", "surrogatepass"))

