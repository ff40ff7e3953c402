"""MACP's JSON Schema (draft 2020-12) validator, standard library only (docs/protocol.md).

:class:`Validator` answers from the schema's compiled predicate (:mod:`protocol.fastcheck`)
first and walks the schema for the errors (:class:`protocol.walk.SchemaWalk`) only when it
says no: nearly every instance MACP checks is valid, and the predicate is several times
faster than the walk. The supported keywords, the errors and what raises
:class:`SchemaError` are the walk's. The names MACP's other modules use are exported here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from protocol.fastcheck import Predicate, compile_schema
from protocol.jsonvalues import SchemaError, ValidationError, child_path, is_valid_date_time, json_type_name
from protocol.registry import Registry
from protocol.walk import SchemaWalk

__all__ = ["Registry", "SchemaError", "ValidationError", "Validator", "child_path", "is_valid_date_time", "json_type_name"]


class Validator(SchemaWalk):
    """Validate instances against one draft 2020-12 schema: ``Validator(schema,
    registry=None, format_assertion=True)`` (see :class:`~protocol.walk.SchemaWalk`)."""

    def __init__(self, schema: Any, registry: Registry | None = None, *, format_assertion: bool = True) -> None:
        super().__init__(schema, registry, format_assertion=format_assertion)
        self._predicate: Predicate | None = None

    def iter_errors(self, instance: Any) -> Iterator[ValidationError]:
        """Yield every error of ``instance``, outermost first (none, at the predicate's
        cost, when it is valid)."""
        if self._accepts(instance):
            return
        yield from super().iter_errors(instance)

    def _accepts(self, instance: Any) -> bool:
        """True when the compiled predicate finds ``instance`` valid; False when it does not
        or cannot tell (the walk then finds the errors, or raises the SchemaError)."""
        if self._predicate is None:
            self._predicate = compile_schema(self, self.schema, self.base_uri, {})
        try:
            return self._predicate(instance)
        except Exception:  # noqa: BLE001 -- the walk raises the proper SchemaError, or finds errors
            return False
