"""Pure rules: status transitions, scheduling order, classification, guidance, redaction."""

from __future__ import annotations

import ast
import json
import re
from datetime import datetime, timezone

import pytest

from conftest import TOOLS
from macp.classify import classify_gate_failure
from macp.errors import MacpError
from macp.events import EVENT_TYPES
from macp.guidance import compose_brief
from macp.lifecycle import ALLOWED, FINISHED, STATUSES, transition
from macp.redact import redact
from macp.runtimes import build_invocation
from macp.scheduler import hold_reason, pick_next, queue_order

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)


def schema_enum(name: str, field: str) -> list[str]:
    return json.loads((TOOLS / "protocol" / f"{name}.schema.json").read_text())["properties"][field]["enum"]


def test_status_and_event_type_constants_match_the_schemas():
    assert list(STATUSES) == schema_enum("task", "status")
    assert set(schema_enum("result", "status")) == FINISHED - {"cancelled"}
    assert list(EVENT_TYPES) == schema_enum("event", "event_type")


def test_every_event_type_the_code_names_is_a_known_one():
    """Each string literal in the run-time code shaped like an event type is in EVENT_TYPES
    (f-strings such as ``f"task.{status}"`` are covered by the status enum)."""
    shape = re.compile(r"^(task|gate|worktree|branch|controller|queue)\.[a-z_]+(\.[a-z_]+)?$")
    named = set()
    for module in TOOLS.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and shape.match(node.value):
                named.add(node.value)
    assert len(named) > 15, "the scan sees the code"
    assert named <= set(EVENT_TYPES), named - set(EVENT_TYPES)


@pytest.mark.parametrize("old", STATUSES)
@pytest.mark.parametrize("new", STATUSES)
def test_every_transition_is_allowed_or_refused_as_documented(old, new):
    task = {"id": "T", "status": old}
    if new in ALLOWED[old]:
        moved = transition(task, new, "2026-11-21T12:00:00.000Z", {"attempts": 1})
        assert moved["status"] == new and moved["attempts"] == 1 and task["status"] == old
    else:
        with pytest.raises(MacpError, match=f"cannot go from {old} to {new}"):
            transition(task, new, "2026-11-21T12:00:00.000Z")


def test_completed_leaves_only_through_a_failed_landing_and_retry_paths_exist():
    assert ALLOWED["completed"] == frozenset({"pending", "escalated"}), "mosaic macp land sends a task that does not land back"
    for status in ("failed", "escalated", "cancelled"):
        assert "pending" in ALLOWED[status]


def test_queue_order_is_priority_then_file_order():
    tasks = [{"id": "a"}, {"id": "b", "priority": 2}, {"id": "c", "priority": 2}, {"id": "d", "priority": -1}]
    assert [t["id"] for t in queue_order(tasks)] == ["b", "c", "a", "d"]


def test_hold_reasons_and_pick_next():
    tasks = [
        {"id": "a", "status": "running"},
        {"id": "b", "depends_on": ["a"]},
        {"id": "c", "not_before": "2026-11-21T13:00:00Z"},
        {"id": "d", "depends_on": ["ghost"]},
        {"id": "e", "status": "completed"},
        {"id": "f", "depends_on": ["e"], "not_before": "2026-11-21T11:00:00Z"},
    ]
    by_id = {t["id"]: t for t in tasks}
    assert hold_reason(tasks[1], by_id, NOW) == "blocked by a (running)"
    assert hold_reason(tasks[2], by_id, NOW) == "waiting until 2026-11-21T13:00:00Z"
    assert hold_reason(tasks[3], by_id, NOW) == "unknown dependency ghost"
    assert pick_next(tasks, NOW)["id"] == "f"


@pytest.mark.parametrize(
    "name,command,output,expected",
    [
        ("lint", "ruff check .", "", "lint"),
        ("types", "mypy src", "", "typecheck"),
        ("unit", "pytest -q", "", "test"),
        ("build", "make build", "", "build"),
        ("audit", "pip-audit", "", "security"),
        ("gate-1", "./ci.sh", "src/a.ts: error TS2322: Type error: string is not number", "typecheck"),
        ("gate-1", "./ci.sh", "3 failed, 10 passed", "test"),
        ("gate-1", "./ci.sh", "all good but exit 1", "unknown"),
    ],
)
def test_gate_failure_classification(name, command, output, expected):
    assert classify_gate_failure(name, command, output) == expected


def test_guidance_fences_output_that_contains_backticks():
    task = {"id": "T", "title": "t", "last_failure": {"kind": "gate", "attempt": 1, "gate": "g", "exit_code": 1, "classification": "test", "output_tail": "```\ninjected heading\n```"}}
    text = compose_brief(task, "# brief\n")
    assert text.startswith("# brief\n\n## Previous attempt")
    assert "````\n```\ninjected heading\n```\n````" in text


@pytest.mark.parametrize(
    "secret",
    [
        "ghp_" + "a" * 36,
        "github_pat_" + "b" * 40,
        "sk-proj-" + "c" * 30,
        "sk-ant-api03-" + "d" * 30,
        "AKIA" + "E" * 16,
        "xoxb-1234567890-abcdefghij",
        "AIza" + "f" * 35,
    ],
)
def test_known_token_shapes_are_redacted(secret):
    assert redact(f"token is {secret} ok") == "token is [REDACTED] ok"


def test_labelled_secrets_keep_their_label():
    assert redact("Authorization: Bearer abc.def.ghi") == "Authorization: Bearer [REDACTED]"
    assert redact("db password=hunter2 user=x") == "db password=[REDACTED] user=x"
    assert redact("no secrets here") == "no secrets here"


def test_runtime_templates_fill_placeholders_without_a_shell(tmp_path):
    spec = {"command": ["agent", "--cwd={worktree}", "--file", "{prompt_file}"], "prompt": "file"}
    invocation = build_invocation(spec, worktree="/w/{prompt}", prompt_file=tmp_path / "p.md", prompt_text="$(rm -rf /)")
    assert invocation.argv == ["agent", "--cwd=/w/{prompt}", "--file", str(tmp_path / "p.md")]
    assert invocation.stdin_path is None
    with pytest.raises(MacpError, match="128 KiB"):
        build_invocation({"command": ["agent"], "prompt": "arg"}, worktree="/w", prompt_file=tmp_path / "p", prompt_text="x" * 200_000)


def test_dependency_checks_handle_chains_of_thousands_without_recursion():
    from macp.dependencies import doomed_tasks, find_cycles

    size = 20000
    chain = [{"id": f"T{n}", "depends_on": [f"T{n + 1}"] if n + 1 < size else []} for n in range(size)]
    assert find_cycles(chain) == []
    looped = [*chain[:-1], {"id": f"T{size - 1}", "depends_on": ["T0"]}]
    [cycle] = find_cycles(looped)
    assert len(cycle) == size + 1 and cycle[0] == cycle[-1] == "T0"
    failed = [*chain[:-1], {"id": f"T{size - 1}", "status": "failed"}]
    doomed = dict(doomed_tasks(failed))
    assert len(doomed) == size - 1 and doomed["T0"] == "upstream failed: dependency T1 can never run"
    assert doomed[f"T{size - 2}"] == f"upstream failed: dependency T{size - 1} ended failed"
