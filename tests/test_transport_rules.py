"""The transport's pure rules: error classes, message content, ids, backoff, state (issue 13)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from transport.matrix_errors import RateLimited, Refused, Rejected, Unreachable, failure_from_reply
from transport.matrix_messages import (
    CONTENT_BUDGET_BYTES,
    EVENT_KEY,
    TRUNCATED_KEY,
    RenderContext,
    content_size,
    message_content,
    minimal_content,
)
from transport.matrix_rounds import backoff_seconds, parse_event, transaction_id
from transport.matrix_state import load_state

CONTEXT = RenderContext(
    repo_name="shop", repo_root="/srv/shop", worktree_base="/home/u/src/shop-worktrees", home="/home/u",
    mention_user_ids=("@alice:example.org",), late_after_seconds=60, now=datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc),
)


def event(**fields) -> dict:
    return {"event_id": "e1", "event_type": "task.completed", "task_id": "A", "status": "completed", "attempt": 1,
            "timestamp": "2026-11-23T12:00:00Z", "source": "controller", "message": "done", "metadata": {}, **fields}


@pytest.mark.parametrize("status, body, header, kind", [
    (429, {"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 1500}, None, RateLimited),
    (502, None, None, Unreachable),
    (500, {"errcode": "M_UNKNOWN"}, None, Unreachable),
    (413, {"errcode": "M_TOO_LARGE", "error": "event too large"}, None, Rejected),
    (400, {"errcode": "M_BAD_JSON"}, None, Rejected),
    (400, None, None, Rejected),
    (401, {"errcode": "M_UNKNOWN_TOKEN"}, None, Refused),
    (403, {"errcode": "M_FORBIDDEN"}, None, Refused),
    (404, {"errcode": "M_NOT_FOUND"}, None, Refused),
])
def test_replies_are_classed_by_what_a_retry_could_change(status, body, header, kind):
    failure = failure_from_reply(status, body, header)
    assert type(failure) is kind and failure.status == status


def test_a_429_waits_what_the_homeserver_asks():
    assert failure_from_reply(429, {"retry_after_ms": 1500}, "9").retry_after == 1.5
    assert failure_from_reply(429, {}, "7").retry_after == 7.0
    assert failure_from_reply(429, None, None).retry_after == 1.0
    assert failure_from_reply(200, {"event_id": "$x"}, None) is None


def test_content_is_escaped_relative_and_mentions_only_on_failure():
    content = message_content(event(message="wrote /srv/shop/out.txt in /home/u/src/shop-worktrees/a--1 <ok> & /home/u/x"), "$root", CONTEXT)
    assert content["body"] == "A · completed · attempt 1: wrote out.txt in …/a--1 <ok> & ~/x"
    assert content["formatted_body"] == "<b>A</b> · completed · attempt 1: wrote out.txt in …/a--1 &lt;ok&gt; &amp; ~/x"
    assert content["m.mentions"] == {} and content["m.relates_to"]["event_id"] == "$root"
    failed = message_content(event(event_type="task.failed", status="failed"), None, CONTEXT)
    assert failed["m.mentions"] == {"user_ids": ["@alice:example.org"]} and "m.relates_to" not in failed
    assert failed["body"].startswith("@alice:example.org A · failed")


def test_numbers_canonical_json_forbids_become_strings():
    content = message_content(event(metadata={"seconds": 0.5, "big": 2**60, "small": 3, "flag": True}), None, CONTEXT)
    assert content[EVENT_KEY]["metadata"] == {"seconds": "0.5", "big": str(2**60), "small": 3, "flag": True}


def test_a_late_event_says_when_it_happened():
    late = message_content(event(timestamp="2026-11-23T11:00:00Z"), None, CONTEXT)
    assert late["body"].endswith("(at 2026-11-23 11:00:00 UTC)")
    assert "(at" not in message_content(event(timestamp="2026-11-23T11:59:30Z"), None, CONTEXT)["body"]


def test_a_huge_event_is_shrunk_under_the_budget():
    huge = message_content(event(message="x" * 70_000, metadata={"tail": "y" * 70_000}), "$root", CONTEXT)
    assert content_size(huge) <= CONTENT_BUDGET_BYTES and huge[TRUNCATED_KEY] and EVENT_KEY not in huge
    assert "70000 characters in all" in huge["body"]
    smallest = minimal_content(huge)
    assert content_size(smallest) < 1000 and smallest["m.relates_to"] == huge["m.relates_to"]


def test_transaction_ids_are_event_ids_or_a_digest_for_odd_ones():
    assert transaction_id("0123abcd" * 4) == "0123abcd" * 4
    odd = transaction_id("a/b c" * 100)
    assert odd.startswith("sha256-") and len(odd) == 71 and odd == transaction_id("a/b c" * 100)


def test_malformed_lines_are_not_events():
    assert parse_event(b'{"event_id": "x", "event_type": "task.started"}\n')["event_id"] == "x"
    for raw in (b"not json\n", b'{"event_type": "task.started"}\n', b'["x"]\n', b'{"event_id": ""}\n', b'{"event_id": 5}\n'):
        assert parse_event(raw) is None


def test_backoff_doubles_to_a_bound():
    assert [backoff_seconds(n) for n in (1, 2, 3, 10, 100)] == [5.0, 10.0, 20.0, 300.0, 300.0]


def test_the_state_starts_at_an_older_cursor_file_and_survives_garbage(tmp_path):
    (tmp_path / ".transport-cursor").write_text("123\n")
    assert load_state(tmp_path).cursor == 123
    (tmp_path / ".transport-state.json").write_text(json.dumps({"cursor": 7, "unknown": 1}))
    assert load_state(tmp_path).cursor == 7
    (tmp_path / ".transport-state.json").write_text("{not json")
    assert load_state(tmp_path).cursor == 123
