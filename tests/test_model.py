"""The typed data model (macp/model.py) says what the JSON Schemas say (issue 12).

Each TypedDict is paired with the schema object it types: the same property names, the same
required names, and for each property the same JSON types and enum values. A TypedDict added
without a pair, or a schema property added without its key, fails here -- so the types mypy
checks the code against cannot drift from the documents the schemas check at run time.
"""

from __future__ import annotations

import json
import types
import typing

import pytest

from conftest import TOOLS
from macp import config_model, model
from macp.config import default_config

SCHEMAS = {name: json.loads((TOOLS / "protocol" / f"{name}.schema.json").read_text()) for name in ("task", "result", "config")}

# TypedDict -> (schema, JSON pointer of the object it types).
PAIRS = {
    model.Task: ("task", ""),
    model.Claim: ("task", "/properties/claim/oneOf/1"),
    model.Failure: ("task", "/$defs/failure"),
    model.AcpState: ("task", "/properties/acp/oneOf/1"),
    model.Job: ("task", "/properties/job/oneOf/1"),
    model.Run: ("task", "/properties/runs/items"),
    model.Usage: ("task", "/$defs/usage"),
    model.Variance: ("task", "/$defs/variance"),
    model.GateObject: ("task", "/$defs/gate/oneOf/1"),
    model.Result: ("result", ""),
    model.WorkerRun: ("result", "/properties/worker"),
    model.KeptCommit: ("result", "/properties/kept_commits/items"),
    model.BuildOutput: ("result", "/properties/build_output"),
    model.GateResult: ("result", "/properties/gate_results/items"),
    model.Config: ("config", ""),
    model.MatrixConfig: ("config", "/properties/matrix"),
    model.MacpConfig: ("config", "/properties/macp"),
    model.RiskConfig: ("config", "/properties/macp/properties/risk"),
    model.WorkerConfig: ("config", "/properties/worker"),
    model.RuntimeSpec: ("config", "/$defs/runtime"),
    model.BudgetConfig: ("config", "/properties/budget"),
    model.ExecutorConfig: ("config", "/properties/executor"),
    model.LandConfig: ("config", "/properties/land"),
    model.PricesConfig: ("config", "/properties/prices"),
    model.Price: ("config", "/$defs/price"),
}
# Built in code, never read from or written to a document as they are (TaskChanges and
# ResultDetails: parts of Task and Result, checked below).
INTERNAL = {model.GateSpec, model.TaskChanges, model.ResultDetails}
# The effective config has every key: the template supplies each default (macp.config).
FILLED_BY_THE_TEMPLATE = {model.Config, model.MatrixConfig, model.MacpConfig, model.WorkerConfig, model.BudgetConfig, model.ExecutorConfig, model.LandConfig}
# Written whole by MACP (macp.gates), though the schema lets a hand-made result leave keys out.
WRITTEN_WHOLE = {model.GateResult}
SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}


def pointer(schema: dict, path: str) -> dict:
    node = schema
    for part in path.split("/")[1:]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def resolve(schema_name: str, node: dict) -> dict:
    """Follow ``$ref`` (within one schema, or to another of MACP's schemas)."""
    while "$ref" in node:
        target, _, path = node["$ref"].partition("#")
        schema_name = target.removesuffix(".schema.json") or schema_name
        node = pointer(SCHEMAS[schema_name], path)
    return node


def schema_shape(schema_name: str, node: dict) -> tuple[set[str], set | None]:
    """(JSON types, enum values or None) a schema node accepts, through ``$ref`` and ``oneOf``."""
    node = resolve(schema_name, node)
    if "oneOf" in node:
        kinds: set[str] = set()
        values: set | None = set()
        for branch in node["oneOf"]:
            branch_kinds, branch_values = schema_shape(schema_name, branch)
            kinds |= branch_kinds
            values = None if values is None or branch_values is None else values | branch_values
        return kinds, values or None
    if "enum" in node:
        values = set(node["enum"])
        return {"null" if value is None else "string" for value in values}, values - {None} or None
    declared = node["type"]
    return set(declared if isinstance(declared, list) else [declared]), None


def python_shape(hint: object) -> tuple[set[str], set | None]:
    """(JSON types, Literal values or None) a Python type hint stands for."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        kinds: set[str] = set()
        values: set | None = None
        for arg in typing.get_args(hint):
            arg_kinds, arg_values = python_shape(arg)
            kinds |= arg_kinds
            values = arg_values if values is None else values | (arg_values or set())
        return kinds, values
    if origin is typing.Literal:
        return {"string"}, set(typing.get_args(hint))
    if origin is list:
        return {"array"}, None
    if origin is dict or typing.is_typeddict(hint):
        return {"object"}, None
    return {SCALARS[hint]}, None  # type: ignore[index]


@pytest.mark.parametrize("typed", PAIRS, ids=lambda typed: typed.__name__)
def test_each_typed_dict_has_the_schema_objects_keys_and_types(typed):
    schema_name, path = PAIRS[typed]
    node = resolve(schema_name, pointer(SCHEMAS[schema_name], path))
    properties = node["properties"]
    hints = typing.get_type_hints(typed)
    assert set(hints) == set(properties)
    required = set(typed.__required_keys__)
    if typed in FILLED_BY_THE_TEMPLATE | WRITTEN_WHOLE:
        assert required == set(hints)
    else:
        assert required == set(node.get("required", []))
    for key, hint in hints.items():
        assert python_shape(hint) == schema_shape(schema_name, properties[key]), key


@pytest.mark.parametrize(
    ("part", "whole", "left_out"),
    [(model.TaskChanges, model.Task, {"id"}), (model.ResultDetails, model.Result, {"task_id", "status", "completed_at"})],
    ids=["TaskChanges", "ResultDetails"],
)
def test_a_change_or_detail_may_set_every_field_but_the_required_ones(part, whole, left_out):
    hints = typing.get_type_hints(part)
    assert hints == {key: hint for key, hint in typing.get_type_hints(whole).items() if key not in left_out}
    assert not part.__required_keys__
    assert set(whole.__required_keys__) == left_out


def test_every_typed_dict_of_the_model_is_paired_with_a_schema():
    declared = {value for value in vars(model).values() if typing.is_typeddict(value) and value.__module__ in (model.__name__, config_model.__name__)}
    public = {typed for typed in declared if not typed.__name__.startswith("_")}
    assert public == set(PAIRS) | INTERNAL


@pytest.mark.parametrize("typed", sorted(FILLED_BY_THE_TEMPLATE, key=lambda typed: typed.__name__), ids=lambda typed: typed.__name__)
def test_the_template_config_supplies_every_key_the_config_type_requires(typed):
    template = default_config()
    section = {model.Config: template, model.MatrixConfig: template["matrix"], model.MacpConfig: template["macp"], model.WorkerConfig: template["worker"],
               model.BudgetConfig: template["budget"], model.ExecutorConfig: template["executor"],
               model.LandConfig: template["land"]}[typed]
    assert set(typed.__required_keys__) <= set(section)
