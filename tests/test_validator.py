"""MACP's JSON Schema validator: error paths and messages, MACP's own schemas and templates."""

from __future__ import annotations

import json

import jsonschema
import pytest

from conftest import ROOT, TOOLS
from protocol.schemas import SCHEMA_NAMES, schema_errors
from protocol.validator import Registry, SchemaError, Validator, child_path, is_valid_date_time


def errors(schema, instance):
    return [(e.path, e.keyword) for e in Validator(schema).iter_errors(instance)]


def test_error_paths_point_at_the_offending_value():
    schema = {
        "type": "object",
        "properties": {"tasks": {"type": "array", "items": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}}},
    }
    instance = {"tasks": [{"id": "ok"}, {"id": 7}, {}]}
    assert errors(schema, instance) == [("$.tasks[1].id", "type"), ("$.tasks[2].id", "required")]


def test_union_types_and_integer_semantics():
    schema = {"type": ["integer", "null"]}
    assert Validator(schema).is_valid(None) and Validator(schema).is_valid(3) and Validator(schema).is_valid(3.0)
    assert not Validator(schema).is_valid(3.5) and not Validator(schema).is_valid(True)
    assert "expected integer or null, got boolean" in str(next(Validator(schema).iter_errors(True)))


def test_odd_keys_are_quoted_in_paths():
    assert child_path("$", "odd key") == '$["odd key"]'
    assert child_path("$", 'q"uote') == '$["q\\"uote"]'
    assert child_path("$.a", 0) == "$.a[0]"


@pytest.mark.parametrize(
    "text,valid",
    [
        ("2026-11-21T09:30:00Z", True),
        ("2026-11-21T09:30:00.123+02:00", True),
        ("2024-02-29T00:00:00Z", True),
        ("2026-02-29T00:00:00Z", False),
        ("2026-11-21 09:30:00Z", False),
        ("2026-11-21T09:30:00", False),
        ("2026-11-21T09:30:00Z\n", False),
        ("1998-12-31T23:59:60Z", True),
        ("1998-12-31T22:59:60Z", False),
    ],
)
def test_date_time_format(text, valid):
    assert is_valid_date_time(text) is valid


def test_unsupported_keywords_and_remote_refs_raise_instead_of_passing():
    with pytest.raises(SchemaError, match="unevaluatedProperties"):
        Validator({"unevaluatedProperties": False}).is_valid({})
    with pytest.raises(SchemaError, match="remote"):
        Validator({"$ref": "https://example.com/other.json"}).is_valid(1)


def test_refs_across_registered_schemas():
    a = {"$id": "https://x.test/a.json", "$defs": {"n": {"type": "integer"}}}
    b = {"$id": "https://x.test/b.json", "$ref": "a.json#/$defs/n"}
    validator = Validator(b, Registry([a, b]))
    assert validator.is_valid(1) and not validator.is_valid("1")


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_macp_schemas_are_valid_draft_2020_12(name):
    schema = json.loads((TOOLS / "protocol" / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_templates_are_valid():
    state = ROOT / "templates" / "repo" / ".mosaic" / "orchestrator"
    assert schema_errors("config", json.loads((state / "config.json").read_text())) == []
    assert json.loads((state / "tasks.json").read_text()) == {"tasks": []}
    config = json.loads((state / "config.json").read_text())
    brief_macp_section = {
        "worktree_base": "~/src/{repo}-{repo_hash}-worktrees",
        "default_dispatch": "exec",
        "default_runtime": "codex",
        "cleanup_worktrees": True,
        "brief_dir": "docs/tasks",
        "result_dir": ".mosaic/orchestrator/results",
    }
    assert {key: config["macp"][key] for key in brief_macp_section} == brief_macp_section
    assert list(config["runtimes"]) == ["codex", "claude", "opencode", "gemini", "goose"]
    assert all(runtime.get("failures") for runtime in config["runtimes"].values())


def test_task_schema_has_every_field_of_the_brief():
    props = json.loads((TOOLS / "protocol" / "task.schema.json").read_text())["properties"]
    brief_fields = {"type", "dispatch", "worktree", "branch", "brief_path", "result_path", "issue", "pr", "depends_on", "max_attempts", "attempts", "timeout_seconds"}
    assert brief_fields <= set(props)
    assert props["status"]["enum"][:6] == ["pending", "running", "gated", "completed", "failed", "escalated"]
    event = json.loads((TOOLS / "protocol" / "event.schema.json").read_text())["properties"]
    assert {"task.gated", "task.escalated", "task.retry.scheduled"} <= set(event["event_type"]["enum"])
    assert "dispatcher" in event["source"]["enum"]


def test_every_event_type_the_code_writes_is_in_the_event_schema():
    import re

    from macp.lifecycle import FINISHED

    schema = json.loads((TOOLS / "protocol" / "event.schema.json").read_text())
    known = set(schema["properties"]["event_type"]["enum"])
    written = set()
    for path in TOOLS.rglob("*.py"):
        written |= set(re.findall(r'"((?:task|gate|worktree|branch|queue|controller)\.[a-z_]+(?:\.[a-z_]+)?)"', path.read_text()))
    written |= {f"task.{status}" for status in FINISHED} | {"gate.passed", "gate.failed"}  # built as f"task.{status}", f"gate.{verdict}"
    assert written - known == set(), "an event type the code writes is missing from event.schema.json"
