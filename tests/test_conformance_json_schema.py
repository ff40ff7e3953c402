"""The official JSON Schema Test Suite (draft 2020-12) against MACP's validator.

Data: ``../shared/conformance/json-schema-test-suite/`` (skipped cleanly when absent, as in
a user's clone). Every group passes except those in :data:`SKIPPED`, the one documented skip
list (docs/protocol.md); a skipped group must make the validator raise SchemaError, never
pass or fail instances silently.
"""

from __future__ import annotations

import json

import pytest

from conftest import SHARED
from protocol.validator import SchemaError, Validator

SUITE = SHARED / "conformance" / "json-schema-test-suite" / "draft2020-12"
REMOTE = "needs a remote $ref (the draft 2020-12 meta-schema), which MACP never fetches"
UNEVALUATED = "uses unevaluatedProperties, which MACP's schemas do not use"
ECMA_REGEX = "uses an ECMA-262 Unicode property escape (\\p{...}), which Python's re lacks"
SKIPPED = {
    ("defs.json", "validate definition against metaschema"): REMOTE,
    ("ref.json", "remote ref, containing refs itself"): REMOTE,
    ("not.json", "collect annotations inside a 'not', even if collection is disabled"): UNEVALUATED,
    ("ref.json", "ref creates new scope when adjacent to keywords"): UNEVALUATED,
    ("pattern.json", "pattern with Unicode property escape requires unicode mode"): ECMA_REGEX,
    ("patternProperties.json", "patternProperties with Unicode property escape"): ECMA_REGEX,
}


def suite_groups():
    if not SUITE.is_dir():
        return []
    files = sorted(SUITE.glob("*.json")) + sorted((SUITE / "optional" / "format").glob("date-time.json"))
    return [(path, group) for path in files for group in json.loads(path.read_text())]


GROUPS = suite_groups()


@pytest.mark.skipif(not GROUPS, reason="../shared/conformance is not present (a user's clone)")
@pytest.mark.parametrize("path,group", GROUPS, ids=[f"{p.name}:{g['description']}" for p, g in GROUPS])
def test_suite_group(path, group):
    key = (path.name, group["description"])
    if key in SKIPPED:
        with pytest.raises(SchemaError):
            validator = Validator(group["schema"])
            for test in group["tests"]:
                validator.is_valid(test["data"])
        pytest.skip(SKIPPED[key])
    validator = Validator(group["schema"])
    for test in group["tests"]:
        assert validator.is_valid(test["data"]) is test["valid"], test["description"]


@pytest.mark.skipif(not GROUPS, reason="../shared/conformance is not present (a user's clone)")
def test_suite_pass_count_is_reported(capsys):
    passed = sum(len(g["tests"]) for p, g in GROUPS if (p.name, g["description"]) not in SKIPPED)
    with capsys.disabled():
        print(f"\nJSON Schema Test Suite draft 2020-12: {passed} tests in {len(GROUPS) - len(SKIPPED)} groups "
              f"checked, {len(SKIPPED)} groups on the documented skip list")
    assert passed > 700
