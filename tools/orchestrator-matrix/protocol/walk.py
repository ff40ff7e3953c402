"""The JSON Schema (draft 2020-12) walk, standard library only: every error of an instance
(the values it compares are :mod:`protocol.jsonvalues`, the schemas it resolves ``$ref``
among :mod:`protocol.registry`).

:class:`SchemaWalk` applies a schema keyword by keyword and reports each failure; the public
:class:`protocol.validator.Validator` asks the compiled predicate (:mod:`protocol.fastcheck`)
first and walks only when it says no.

Supported keywords (JSON Schema Core and Validation, draft 2020-12):

- applicators: ``properties``, ``patternProperties``, ``additionalProperties``,
  ``propertyNames``, ``dependentSchemas``, ``prefixItems``, ``items``, ``allOf``, ``anyOf``, ``oneOf``, ``not``,
  ``if``/``then``/``else``, ``$ref`` (same-document JSON Pointers, ``$anchor``, and ``$id``
  based URIs among the schemas given to :class:`Registry`);
- assertions: ``type`` (including union types), ``enum``, ``const``, ``required``,
  ``dependentRequired``, ``minimum``, ``maximum``, ``exclusiveMinimum``,
  ``exclusiveMaximum``, ``multipleOf``, ``minLength``, ``maxLength``, ``pattern``,
  ``minItems``, ``maxItems``, ``uniqueItems``, ``minProperties``, ``maxProperties``;
- ``format: date-time`` (RFC 3339 ``date-time``), asserted unless ``format_assertion`` is off;
- boolean schemas. Annotation keywords (``title``, ``description``, ``default``, ...) are
  ignored.

Not supported (listed in docs/protocol.md): remote ``$ref`` (anything not in the registry),
``$dynamicRef``, ``unevaluated*``, ``contains``, formats other than ``date-time``, and
ECMA-262-only regular expression syntax such as ``\\p{Letter}``. A schema that uses one of
these keywords, an unresolvable ``$ref`` or a pattern Python cannot compile raises
:class:`SchemaError` when it is applied, rather than passing instances silently.

Errors carry the JSON path of the offending value: ``$`` is the instance itself,
``$.tasks[2].status`` a nested value, ``$["odd key"]`` a key that is not an identifier.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from protocol.jsonvalues import (
    SchemaError,
    ValidationError,
    _exact,
    _is_type,
    child_path,
    is_valid_date_time,
    json_equal,
    json_type_name,
)
from protocol.registry import Registry

if TYPE_CHECKING:
    from fractions import Fraction

UNSUPPORTED_KEYWORDS = frozenset(
    {
        "$dynamicRef",
        "$recursiveRef",
        "unevaluatedProperties",
        "unevaluatedItems",
        "contains",
        "minContains",
        "maxContains",
    }
)


class SchemaWalk:
    """Validate instances against one draft 2020-12 schema by walking it.

    ``SchemaWalk(schema, registry=None, format_assertion=True)``; ``registry`` lets ``$ref``
    reach other schemas. :meth:`iter_errors` yields :class:`ValidationError` for every
    failure; :meth:`is_valid` stops at the first. Raises :class:`SchemaError` for a schema
    it cannot apply.
    """

    def __init__(
        self, schema: Any, registry: Registry | None = None, *, format_assertion: bool = True
    ) -> None:
        self.schema = schema
        self.registry = registry if registry is not None else Registry()
        self.base_uri = self.registry.add(schema)
        self.format_assertion = format_assertion
        self._patterns: dict[str, re.Pattern[str]] = {}
        self._plans: dict[int, tuple[dict, list[tuple[str, Check]]]] = {}

    def iter_errors(self, instance: Any) -> Iterator[ValidationError]:
        """Yield every error of ``instance``, outermost first."""
        yield from self._validate(self.schema, instance, "$", self.base_uri)

    def is_valid(self, instance: Any) -> bool:
        """True when ``instance`` has no error."""
        return next(self.iter_errors(instance), None) is None

    def _pattern(self, pattern: str) -> re.Pattern[str]:
        compiled = self._patterns.get(pattern)
        if compiled is None:
            try:
                compiled = self._patterns[pattern] = re.compile(pattern)
            except re.error as exc:
                raise SchemaError(f"invalid pattern {pattern!r}: {exc}") from exc
        return compiled

    def _validate(self, schema: Any, instance: Any, path: str, base: str) -> Iterator[ValidationError]:
        if schema is True:
            return
        if schema is False:
            yield ValidationError(path, "false", "no value is allowed here")
            return
        if not isinstance(schema, dict):
            raise SchemaError(f"a schema must be an object or a boolean, not {json_type_name(schema)}")
        base = self.registry.base_of(schema, base)
        for keyword, check in self._plan(schema):
            try:
                yield from check(self, schema, instance, path, base)
            except (TypeError, ValueError, AttributeError, KeyError, IndexError, ArithmeticError) as exc:
                raise SchemaError(f"invalid value for keyword {keyword!r}: {exc}") from None
            except RecursionError:
                raise SchemaError("the schema nests too deeply or its $ref loops") from None

    def _plan(self, schema: dict) -> list[tuple[str, Check]]:
        """The keyword checks that apply to ``schema``, in :data:`_KEYWORDS` order, found
        once per schema object (a schema is not changed while it is validated against)."""
        cached = self._plans.get(id(schema))
        if cached is not None and cached[0] is schema:
            return cached[1]
        unsupported = UNSUPPORTED_KEYWORDS.intersection(schema)
        if unsupported:
            raise SchemaError(f"unsupported keyword {min(unsupported)!r}")
        plan = [(keyword, check) for keyword, check in _KEYWORDS if keyword in schema]
        self._plans[id(schema)] = (schema, plan)
        return plan

    def _any_valid(self, schemas: list[Any], instance: Any, path: str, base: str) -> list[bool]:
        return [next(self._validate(s, instance, path, base), None) is None for s in schemas]


Check = Callable[[SchemaWalk, dict, Any, str, str], Iterator[ValidationError]]


def _check_ref(v: SchemaWalk, schema: dict, instance: Any, path: str, base: str) -> Iterator[ValidationError]:
    target, target_base = v.registry.resolve(base, schema["$ref"])
    yield from v._validate(target, instance, path, target_base)


def _check_type(v: SchemaWalk, schema: dict, instance: Any, path: str, base: str) -> Iterator[ValidationError]:
    names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if not any(_is_type(instance, name) for name in names):
        expected = " or ".join(names)
        yield ValidationError(path, "type", f"expected {expected}, got {json_type_name(instance)}")


def _check_enum(v: SchemaWalk, schema: dict, instance: Any, path: str, base: str) -> Iterator[ValidationError]:
    if not any(json_equal(instance, option) for option in schema["enum"]):
        allowed = ", ".join(repr(option) for option in schema["enum"])
        yield ValidationError(path, "enum", f"{instance!r} is not one of: {allowed}")


def _check_const(v: SchemaWalk, schema: dict, instance: Any, path: str, base: str) -> Iterator[ValidationError]:
    if not json_equal(instance, schema["const"]):
        yield ValidationError(path, "const", f"expected {schema['const']!r}")


def _numeric(keyword: str, holds: Callable[[Fraction, Fraction], bool], relation: str) -> Check:
    def keyword_check(v: SchemaWalk, schema: dict, instance: Any, path: str, base: str) -> Iterator[ValidationError]:
        if _is_type(instance, "number") and not holds(_exact(instance), _exact(schema[keyword])):
            yield ValidationError(path, keyword, f"{instance!r} {relation} {schema[keyword]!r}")

    return keyword_check


def _check_multiple_of(v: SchemaWalk, schema: dict, instance: Any, path: str, base: str) -> Iterator[ValidationError]:
    if _is_type(instance, "number") and (_exact(instance) / _exact(schema["multipleOf"])).denominator != 1:
        yield ValidationError(path, "multipleOf", f"{instance!r} is not a multiple of {schema['multipleOf']!r}")


def _length(keyword: str, kind: str, measure: Callable[[Any], int], minimum: bool) -> Check:
    def keyword_check(v: SchemaWalk, schema: dict, instance: Any, path: str, base: str) -> Iterator[ValidationError]:
        if not _is_type(instance, kind):
            return
        size, limit = measure(instance), schema[keyword]
        if (size < limit) if minimum else (size > limit):
            bound = "at least" if minimum else "at most"
            yield ValidationError(path, keyword, f"has {size}, needs {bound} {limit}")

    return keyword_check


def _check_pattern(v: SchemaWalk, schema: dict, instance: Any, path: str, base: str) -> Iterator[ValidationError]:
    if isinstance(instance, str) and not v._pattern(schema["pattern"]).search(instance):
        yield ValidationError(path, "pattern", f"{instance!r} does not match {schema['pattern']!r}")


def _check_format(v: SchemaWalk, schema: dict, instance: Any, path: str, base: str) -> Iterator[ValidationError]:
    checked = v.format_assertion and schema["format"] == "date-time" and isinstance(instance, str)
    if checked and not is_valid_date_time(instance):
        yield ValidationError(path, "format", f"{instance!r} is not an RFC 3339 date-time")


def _check_required(v: SchemaWalk, schema: dict, instance: Any, path: str, base: str) -> Iterator[ValidationError]:
    if isinstance(instance, dict):
        for name in schema["required"]:
            if name not in instance:
                yield ValidationError(child_path(path, name), "required", "is required")


def _check_dependent_required(
    v: SchemaWalk, schema: dict, instance: Any, path: str, base: str
) -> Iterator[ValidationError]:
    if isinstance(instance, dict):
        for trigger, names in schema["dependentRequired"].items():
            if trigger in instance:
                for name in names:
                    if name not in instance:
                        yield ValidationError(child_path(path, name), "dependentRequired", f"is required by {trigger!r}")


def _check_dependent_schemas(
    v: SchemaWalk, schema: dict, instance: Any, path: str, base: str
) -> Iterator[ValidationError]:
    if isinstance(instance, dict):
        for trigger, subschema in schema["dependentSchemas"].items():
            if trigger in instance:
                yield from v._validate(subschema, instance, path, base)


def _check_properties(v: SchemaWalk, schema: dict, instance: Any, path: str, base: str) -> Iterator[ValidationError]:
    if isinstance(instance, dict):
        for name, subschema in schema["properties"].items():
            if name in instance:
                yield from v._validate(subschema, instance[name], child_path(path, name), base)


def _check_pattern_properties(
    v: SchemaWalk, schema: dict, instance: Any, path: str, base: str
) -> Iterator[ValidationError]:
    if isinstance(instance, dict):
        for pattern, subschema in schema["patternProperties"].items():
            for name, value in instance.items():
                if v._pattern(pattern).search(name):
                    yield from v._validate(subschema, value, child_path(path, name), base)


def _check_additional_properties(
    v: SchemaWalk, schema: dict, instance: Any, path: str, base: str
) -> Iterator[ValidationError]:
    if not isinstance(instance, dict):
        return
    known = schema.get("properties", {})
    patterns = [v._pattern(p) for p in schema.get("patternProperties", {})]
    for name, value in instance.items():
        if name in known or any(p.search(name) for p in patterns):
            continue
        if schema["additionalProperties"] is False:
            yield ValidationError(child_path(path, name), "additionalProperties", "is not an allowed property")
        else:
            yield from v._validate(schema["additionalProperties"], value, child_path(path, name), base)


def _check_property_names(v: SchemaWalk, schema: dict, instance: Any, path: str, base: str) -> Iterator[ValidationError]:
    if isinstance(instance, dict):
        for name in instance:
            for error in v._validate(schema["propertyNames"], name, child_path(path, name), base):
                yield ValidationError(error.path, "propertyNames", f"property name {name!r}: {error.message}")


def _check_prefix_items(v: SchemaWalk, schema: dict, instance: Any, path: str, base: str) -> Iterator[ValidationError]:
    if isinstance(instance, list):
        for index, (subschema, item) in enumerate(zip(schema["prefixItems"], instance, strict=False)):
            yield from v._validate(subschema, item, child_path(path, index), base)


def _check_items(v: SchemaWalk, schema: dict, instance: Any, path: str, base: str) -> Iterator[ValidationError]:
    if isinstance(instance, list):
        start = len(schema.get("prefixItems", []))
        for index in range(start, len(instance)):
            yield from v._validate(schema["items"], instance[index], child_path(path, index), base)


def _check_unique_items(v: SchemaWalk, schema: dict, instance: Any, path: str, base: str) -> Iterator[ValidationError]:
    if schema["uniqueItems"] is True and isinstance(instance, list):
        for i, first in enumerate(instance):
            for j in range(i + 1, len(instance)):
                if json_equal(first, instance[j]):
                    yield ValidationError(child_path(path, j), "uniqueItems", f"duplicates item {i}")
                    return


def _check_all_of(v: SchemaWalk, schema: dict, instance: Any, path: str, base: str) -> Iterator[ValidationError]:
    for subschema in schema["allOf"]:
        yield from v._validate(subschema, instance, path, base)


def _check_any_of(v: SchemaWalk, schema: dict, instance: Any, path: str, base: str) -> Iterator[ValidationError]:
    if not any(v._any_valid(schema["anyOf"], instance, path, base)):
        yield ValidationError(path, "anyOf", "matches none of the allowed forms")


def _check_one_of(v: SchemaWalk, schema: dict, instance: Any, path: str, base: str) -> Iterator[ValidationError]:
    matches = sum(v._any_valid(schema["oneOf"], instance, path, base))
    if matches == 0:
        yield ValidationError(path, "oneOf", "matches none of the allowed forms")
    elif matches > 1:
        yield ValidationError(path, "oneOf", f"matches {matches} forms where exactly one is allowed")


def _check_not(v: SchemaWalk, schema: dict, instance: Any, path: str, base: str) -> Iterator[ValidationError]:
    if all(v._any_valid([schema["not"]], instance, path, base)):
        yield ValidationError(path, "not", "matches a form that is not allowed")


def _check_if(v: SchemaWalk, schema: dict, instance: Any, path: str, base: str) -> Iterator[ValidationError]:
    branch = "then" if v._any_valid([schema["if"]], instance, path, base)[0] else "else"
    if branch in schema:
        yield from v._validate(schema[branch], instance, path, base)


_KEYWORDS: tuple[tuple[str, Check], ...] = (
    ("$ref", _check_ref),
    ("type", _check_type),
    ("enum", _check_enum),
    ("const", _check_const),
    ("minimum", _numeric("minimum", lambda x, m: x >= m, "is less than the minimum")),
    ("maximum", _numeric("maximum", lambda x, m: x <= m, "is greater than the maximum")),
    ("exclusiveMinimum", _numeric("exclusiveMinimum", lambda x, m: x > m, "must be greater than")),
    ("exclusiveMaximum", _numeric("exclusiveMaximum", lambda x, m: x < m, "must be less than")),
    ("multipleOf", _check_multiple_of),
    ("minLength", _length("minLength", "string", len, True)),
    ("maxLength", _length("maxLength", "string", len, False)),
    ("pattern", _check_pattern),
    ("format", _check_format),
    ("minItems", _length("minItems", "array", len, True)),
    ("maxItems", _length("maxItems", "array", len, False)),
    ("uniqueItems", _check_unique_items),
    ("minProperties", _length("minProperties", "object", len, True)),
    ("maxProperties", _length("maxProperties", "object", len, False)),
    ("required", _check_required),
    ("dependentRequired", _check_dependent_required),
    ("dependentSchemas", _check_dependent_schemas),
    ("properties", _check_properties),
    ("patternProperties", _check_pattern_properties),
    ("additionalProperties", _check_additional_properties),
    ("propertyNames", _check_property_names),
    ("prefixItems", _check_prefix_items),
    ("items", _check_items),
    ("allOf", _check_all_of),
    ("anyOf", _check_any_of),
    ("oneOf", _check_one_of),
    ("not", _check_not),
    ("if", _check_if),
)
