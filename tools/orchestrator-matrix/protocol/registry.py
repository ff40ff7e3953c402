"""Schemas addressable by URI, so ``$ref`` can cross between them (draft 2020-12 ``$id``,
``$anchor`` and JSON Pointer fragments; split from :mod:`protocol.walk`, issue 24).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urldefrag

from protocol.jsonvalues import SchemaError, join_uri


class Registry:
    """Schemas addressable by URI, so ``$ref`` can cross between them.

    ``Registry([task_schema, event_schema])`` indexes every ``$id`` and ``$anchor`` found in
    the given schemas. A schema without ``$id`` is reachable only from inside itself.
    """

    def __init__(self, schemas: list[Any] | None = None) -> None:
        self._resources: dict[str, Any] = {}
        self._bases: dict[int, str] = {}
        self._resolved: dict[tuple[str, str], tuple[Any, str]] = {}
        for schema in schemas or []:
            self.add(schema)

    def add(self, schema: Any) -> str:
        """Index ``schema`` and its embedded resources; return its base URI."""
        self._index(schema, "")
        return self.base_of(schema, "")

    def base_of(self, schema: Any, default: str) -> str:
        """The canonical base URI of ``schema`` if it declares ``$id``, else ``default``."""
        return self._bases.get(id(schema), default)

    def _index(self, schema: Any, base_uri: str) -> None:
        if isinstance(schema, dict):
            if isinstance(schema.get("$id"), str):
                base_uri = urldefrag(join_uri(base_uri, schema["$id"]))[0]
                self._bases[id(schema)] = base_uri
                self._resources.setdefault(base_uri, schema)
            elif base_uri not in self._resources:
                self._resources[base_uri] = schema
            if isinstance(schema.get("$anchor"), str):
                self._resources.setdefault(f"{base_uri}#{schema['$anchor']}", schema)
            for key, value in schema.items():
                if key in ("enum", "const"):
                    continue
                if key in ("properties", "patternProperties", "$defs", "dependentSchemas"):
                    if isinstance(value, dict):
                        for sub in value.values():
                            self._index(sub, base_uri)
                else:
                    self._index(value, base_uri)
        elif isinstance(schema, list):
            for item in schema:
                self._index(item, base_uri)

    def resolve(self, base_uri: str, ref: str) -> tuple[Any, str]:
        """Return ``(schema, base URI of its enclosing resource)`` for ``ref`` seen under ``base_uri``.

        Raises :class:`SchemaError` when the reference points outside the registry. A
        resolution is remembered: the registry's schemas are not changed once added.
        """
        found = self._resolved.get((base_uri, ref))
        if found is None:
            found = self._resolved[(base_uri, ref)] = self._resolve(base_uri, ref)
        return found

    def _resolve(self, base_uri: str, ref: str) -> tuple[Any, str]:
        document_uri, fragment = urldefrag(join_uri(base_uri, ref))
        if fragment and not fragment.startswith("/"):
            anchored = self._resources.get(f"{document_uri}#{fragment}")
            if anchored is None:
                raise SchemaError(f"cannot resolve $ref {ref!r}")
            return anchored, document_uri
        if document_uri not in self._resources:
            raise SchemaError(f"cannot resolve $ref {ref!r} (remote references are not supported)")
        schema = self._resources[document_uri]
        for raw_token in fragment.split("/")[1:] if fragment else []:
            token = unquote(raw_token).replace("~1", "/").replace("~0", "~")
            if isinstance(schema, list) and token.isdigit() and int(token) < len(schema):
                schema = schema[int(token)]
            elif isinstance(schema, dict) and token in schema:
                schema = schema[token]
            else:
                raise SchemaError(f"cannot resolve $ref {ref!r}")
            document_uri = self.base_of(schema, document_uri)
        return schema, document_uri
