"""Load MACP's own schemas and validate instances against them.

The four schemas live beside this module (``task``, ``event``, ``result``, ``config``
``.schema.json``). They share one :class:`~protocol.validator.Registry`, so
``config.schema.json`` can ``$ref`` the gate definition in ``task.schema.json``.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from protocol.validator import Registry, ValidationError, Validator

SCHEMA_DIR = Path(__file__).resolve().parent
SCHEMA_NAMES = ("task", "event", "result", "config", "runtimes")


def schema_path(name: str) -> Path:
    """Path of the schema called ``name`` (one of :data:`SCHEMA_NAMES`)."""
    return SCHEMA_DIR / f"{name}.schema.json"


@cache
def _registry() -> Registry:
    return Registry([json.loads(schema_path(name).read_text(encoding="utf-8")) for name in SCHEMA_NAMES])


@cache
def validator_for(name: str) -> Validator:
    """The cached validator of schema ``name``; raises ``KeyError`` for an unknown name."""
    if name not in SCHEMA_NAMES:
        raise KeyError(name)
    schema = json.loads(schema_path(name).read_text(encoding="utf-8"))
    return Validator(schema, _registry())


def schema_errors(name: str, instance: Any) -> list[ValidationError]:
    """Every error of ``instance`` against schema ``name`` (empty when valid)."""
    return list(validator_for(name).iter_errors(instance))
