"""Fuzzing (hypothesis): no input makes the TASKS.md parser or the JSON Schema validator raise
anything but their documented errors (the parser: nothing; the validator: SchemaError;
the sync reader: MacpError)."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.tasks_md_sync import find_task_table, plan_sync, table_rows
from macp.config import default_config
from macp.errors import MacpError
from macp.gfm_table import parse_tables, replace_cells
from protocol.validator import SchemaError, Validator

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TABLE_ALPHABET = string.ascii_letters + string.digits + " |\\-:`*#>~_=+\t\n" + "é数\u202e\x00"

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=8)
json_values = st.recursive(json_scalars, lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4), max_leaves=20)
KEYWORDS = [
    "type", "enum", "const", "required", "properties", "additionalProperties", "items", "prefixItems", "minimum",
    "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength", "maxLength", "pattern", "format",
    "minItems", "maxItems", "uniqueItems", "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "$ref", "$defs",
    "$id", "$anchor", "patternProperties", "propertyNames", "dependentRequired", "dependentSchemas",
    "minProperties", "maxProperties",
]
schemas = st.recursive(
    st.booleans() | st.dictionaries(st.sampled_from(KEYWORDS), json_values, max_size=3),
    lambda children: st.dictionaries(st.sampled_from(KEYWORDS), children | json_values | st.lists(children, max_size=3)
                                     | st.dictionaries(st.text(max_size=4), children, max_size=3), max_size=4),
    max_leaves=12,
)


@FUZZ
@given(st.text(alphabet=TABLE_ALPHABET, max_size=400))
def test_table_parser_never_raises_and_rows_match_the_header(text):
    for table in parse_tables(text):
        assert len(table.header) == len(table.alignments)
        assert all(len(row) == len(table.header) for row in table.rows)
        cells = [cell for row in table.rows for cell in row if cell.present]
        assert replace_cells(text, [(cell, cell.text) for cell in cells if "\r" not in cell.text]) is not None


@FUZZ
@given(st.text(alphabet=TABLE_ALPHABET, max_size=400))
def test_sync_reader_raises_only_macp_errors(text):
    try:
        rows = table_rows(*find_task_table(text, "TASKS.md"))
    except MacpError:
        return
    plan = plan_sync(rows, [], default_config(), "2026-11-21T00:00:00.000Z")
    assert all(isinstance(problem, str) for problem in plan.problems)


@FUZZ
@given(schemas, json_values)
def test_validator_raises_only_schema_errors(schema, instance):
    try:
        validator = Validator(schema)
        errors = list(validator.iter_errors(instance))
    except SchemaError:
        return
    assert all(error.path.startswith("$") for error in errors)
    assert validator.is_valid(instance) is (not errors)


@FUZZ
@given(schemas, json_values)
def test_the_compiled_predicate_never_accepts_what_the_walk_refuses(schema, instance):
    """protocol.fastcheck answers first; when it says valid, the schema walk must find no
    error and raise nothing (it is asked only when the predicate says no)."""
    try:
        validator = Validator(schema)
    except SchemaError:
        return
    try:
        errors = list(validator._validate(schema, instance, "$", validator.base_uri))
    except SchemaError:
        errors = None  # the walk cannot apply the schema: the predicate must not accept
    assert validator._accepts(instance) is (errors == [])
