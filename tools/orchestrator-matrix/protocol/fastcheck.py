"""A schema compiled into one predicate that says whether an instance is valid (issue 11).

:class:`~protocol.walk.SchemaWalk` walks the schema for every instance and builds an
error for every failure: about 14 µs a task, so checking 10,000 tasks at a controller's
start-up or for ``status --json`` cost more than the rest of the command. Nearly every
instance MACP checks is valid, so :func:`compile_schema` turns each schema object into a
closure, once, that only answers "valid?"; the validator asks it first and walks the schema
for the errors only when it says no.

The predicate accepts exactly what the validator accepts (a test checks both on the JSON
Schema Test Suite and on random schemas). Keywords it does not compile (``multipleOf``,
``uniqueItems``, ``dependent*``, ``patternProperties``, ``prefixItems``, anything
unsupported or malformed) make that schema object fall back to the validator's own walk, and
any exception -- a :class:`~protocol.jsonvalues.SchemaError` from that walk, a ``$ref``
loop -- is the caller's cue to run the full validation, which raises it properly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from protocol.jsonvalues import _exact, _is_type, is_valid_date_time, json_equal

if TYPE_CHECKING:
    from protocol.walk import SchemaWalk

Predicate = Callable[[Any], bool]
_TYPES = frozenset({"null", "boolean", "object", "array", "string", "number", "integer"})
_PLAIN_TYPES: dict[str, type | tuple[type, ...]] = {"object": dict, "array": list, "string": str}


def compile_schema(validator: SchemaWalk, schema: Any, base: str, cache: dict[tuple[int, str], tuple[Any, Predicate]]) -> Predicate:
    """The predicate of ``schema`` (seen under base URI ``base``), from ``cache`` when it
    was compiled before (keyed by the schema object and base; the schema is kept with it)."""
    key = (id(schema), base)
    found = cache.get(key)
    if found is not None and found[0] is schema:
        return found[1]
    predicate = _compile(validator, schema, base, cache)
    cache[key] = (schema, predicate)
    return predicate


def _compile(validator: SchemaWalk, schema: Any, base: str, cache: dict) -> Predicate:
    if schema is True:
        return lambda instance: True
    if schema is False:
        return lambda instance: False

    def walk(instance: Any) -> bool:  # the validator's own walk: the fallback
        return next(validator._validate(schema, instance, "$", base), None) is None

    if not isinstance(schema, dict):
        return walk
    base = validator.registry.base_of(schema, base)
    try:
        plan = validator._plan(schema)
        parts = [_KEYWORDS[keyword](validator, schema, base, cache) if keyword in _KEYWORDS else None for keyword, _ in plan]
    except Exception:  # noqa: BLE001 -- anything odd: this schema object is walked instead
        return walk
    checks = [part for part in parts if part is not None]
    if len(checks) != len(parts):
        return walk
    if len(checks) == 1:
        return checks[0]

    def every(instance: Any) -> bool:
        for check in checks:  # noqa: SIM110 -- a plain loop: all() over a generator costs more here
            if not check(instance):
                return False
        return True

    return every


def _sub(validator: SchemaWalk, schema: Any, base: str, cache: dict) -> Predicate:
    return compile_schema(validator, schema, base, cache)


def _type(validator: SchemaWalk, schema: dict, base: str, cache: dict) -> Predicate | None:
    names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if not names or not all(isinstance(name, str) and name in _TYPES for name in names):
        return None
    if len(names) == 1 and names[0] in _PLAIN_TYPES:
        kind = _PLAIN_TYPES[names[0]]
        return lambda instance: isinstance(instance, kind)
    return lambda instance: any(_is_type(instance, name) for name in names)


def _enum(validator: SchemaWalk, schema: dict, base: str, cache: dict) -> Predicate | None:
    options = schema["enum"]
    if not isinstance(options, list):
        return None
    if options and all(type(option) is str for option in options):
        strings = frozenset(options)
        return lambda instance: isinstance(instance, str) and instance in strings
    return lambda instance: any(json_equal(instance, option) for option in options)


def _const(validator: SchemaWalk, schema: dict, base: str, cache: dict) -> Predicate | None:
    expected = schema["const"]
    return lambda instance: json_equal(instance, expected)


def _bound(holds: Callable[[Any, Any], bool], keyword: str) -> Callable[..., Predicate | None]:
    def build(validator: SchemaWalk, schema: dict, base: str, cache: dict) -> Predicate | None:
        limit = schema[keyword]
        if isinstance(limit, bool) or not isinstance(limit, (int, float)):
            return None
        exact_limit = _exact(limit)

        def check(instance: Any) -> bool:
            if isinstance(instance, bool) or not isinstance(instance, (int, float)):
                return True
            if type(instance) is int and type(limit) is int:
                return holds(instance, limit)
            return holds(_exact(instance), exact_limit)

        return check

    return build


def _size(kind: type[str | list | dict], minimum: bool, keyword: str) -> Callable[..., Predicate | None]:
    def build(validator: SchemaWalk, schema: dict, base: str, cache: dict) -> Predicate | None:
        limit = schema[keyword]
        if isinstance(limit, bool) or not isinstance(limit, (int, float)):
            return None
        if minimum:
            return lambda instance: not isinstance(instance, kind) or len(instance) >= limit
        return lambda instance: not isinstance(instance, kind) or len(instance) <= limit

    return build


def _pattern(validator: SchemaWalk, schema: dict, base: str, cache: dict) -> Predicate | None:
    regex = validator._pattern(schema["pattern"])
    return lambda instance: not isinstance(instance, str) or regex.search(instance) is not None


def _format(validator: SchemaWalk, schema: dict, base: str, cache: dict) -> Predicate | None:
    if not (validator.format_assertion and schema["format"] == "date-time"):
        return lambda instance: True
    return lambda instance: not isinstance(instance, str) or is_valid_date_time(instance)


def _required(validator: SchemaWalk, schema: dict, base: str, cache: dict) -> Predicate | None:
    names = schema["required"]
    if not isinstance(names, list):
        return None
    return lambda instance: not isinstance(instance, dict) or all(name in instance for name in names)


def _properties(validator: SchemaWalk, schema: dict, base: str, cache: dict) -> Predicate | None:
    if not isinstance(schema["properties"], dict):
        return None
    checks = {name: _sub(validator, sub, base, cache) for name, sub in schema["properties"].items()}

    def check(instance: Any) -> bool:
        if isinstance(instance, dict):
            for name, value in instance.items():
                sub = checks.get(name)
                if sub is not None and not sub(value):
                    return False
        return True

    return check


def _additional(validator: SchemaWalk, schema: dict, base: str, cache: dict) -> Predicate | None:
    known = schema.get("properties", {})
    patterns = [validator._pattern(p) for p in schema.get("patternProperties", {})]
    rest = _sub(validator, schema["additionalProperties"], base, cache)

    def check(instance: Any) -> bool:
        if isinstance(instance, dict):
            for name, value in instance.items():
                if name not in known and not any(p.search(name) for p in patterns) and not rest(value):
                    return False
        return True

    return check


def _property_names(validator: SchemaWalk, schema: dict, base: str, cache: dict) -> Predicate | None:
    names = _sub(validator, schema["propertyNames"], base, cache)
    return lambda instance: not isinstance(instance, dict) or all(names(name) for name in instance)


def _items(validator: SchemaWalk, schema: dict, base: str, cache: dict) -> Predicate | None:
    if "prefixItems" in schema:
        return None
    item = _sub(validator, schema["items"], base, cache)
    return lambda instance: not isinstance(instance, list) or all(item(value) for value in instance)


def _each(validator: SchemaWalk, schema: dict, base: str, cache: dict, keyword: str) -> list[Predicate] | None:
    subs = schema[keyword]
    return [_sub(validator, sub, base, cache) for sub in subs] if isinstance(subs, list) else None


def _all_of(validator: SchemaWalk, schema: dict, base: str, cache: dict) -> Predicate | None:
    subs = _each(validator, schema, base, cache, "allOf")
    return None if subs is None else lambda instance: all(sub(instance) for sub in subs)


def _any_of(validator: SchemaWalk, schema: dict, base: str, cache: dict) -> Predicate | None:
    subs = _each(validator, schema, base, cache, "anyOf")
    # every form is tried, as the validator does, so a form it cannot apply is never skipped
    return None if subs is None else lambda instance: any([sub(instance) for sub in subs])


def _one_of(validator: SchemaWalk, schema: dict, base: str, cache: dict) -> Predicate | None:
    subs = _each(validator, schema, base, cache, "oneOf")
    return None if subs is None else lambda instance: sum(1 for sub in subs if sub(instance)) == 1


def _not(validator: SchemaWalk, schema: dict, base: str, cache: dict) -> Predicate | None:
    sub = _sub(validator, schema["not"], base, cache)
    return lambda instance: not sub(instance)


def _if(validator: SchemaWalk, schema: dict, base: str, cache: dict) -> Predicate | None:
    condition = _sub(validator, schema["if"], base, cache)
    then = _sub(validator, schema["then"], base, cache) if "then" in schema else None
    otherwise = _sub(validator, schema["else"], base, cache) if "else" in schema else None

    def check(instance: Any) -> bool:
        branch = then if condition(instance) else otherwise
        return branch is None or branch(instance)

    return check


def _ref(validator: SchemaWalk, schema: dict, base: str, cache: dict) -> Predicate | None:
    target, target_base = validator.registry.resolve(base, schema["$ref"])
    compiled: list[Predicate] = []  # compiled at first use: a $ref may reach its own schema

    def check(instance: Any) -> bool:
        if not compiled:
            compiled.append(_sub(validator, target, target_base, cache))
        return compiled[0](instance)

    return check


_KEYWORDS: dict[str, Callable[..., Predicate | None]] = {
    "$ref": _ref,
    "type": _type,
    "enum": _enum,
    "const": _const,
    "minimum": _bound(lambda x, m: x >= m, "minimum"),
    "maximum": _bound(lambda x, m: x <= m, "maximum"),
    "exclusiveMinimum": _bound(lambda x, m: x > m, "exclusiveMinimum"),
    "exclusiveMaximum": _bound(lambda x, m: x < m, "exclusiveMaximum"),
    "minLength": _size(str, True, "minLength"),
    "maxLength": _size(str, False, "maxLength"),
    "minItems": _size(list, True, "minItems"),
    "maxItems": _size(list, False, "maxItems"),
    "minProperties": _size(dict, True, "minProperties"),
    "maxProperties": _size(dict, False, "maxProperties"),
    "pattern": _pattern,
    "format": _format,
    "required": _required,
    "properties": _properties,
    "additionalProperties": _additional,
    "propertyNames": _property_names,
    "items": _items,
    "allOf": _all_of,
    "anyOf": _any_of,
    "oneOf": _one_of,
    "not": _not,
    "if": _if,
}
