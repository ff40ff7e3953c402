"""Load a repository's config.json on top of MACP's defaults.

The defaults are the template ``templates/repo/.mosaic/orchestrator/config.json`` (the file
``mosaic macp init`` copies), so the documented template and the built-in behaviour cannot
drift apart. A user's config is merged over it: objects merge key by key, everything else
(lists, strings, numbers) replaces the default; a runtime set to ``null`` is removed from the
registry; a ``prices`` section replaces the shipped example price table whole. The result is validated against ``protocol/config.schema.json``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from macp.errors import MacpError
from macp.fsio import read_json
from macp.model import Config
from protocol.schemas import schema_errors
from protocol.validator import json_type_name

PROJECT_ROOT = Path(__file__).resolve().parents[3]
TEMPLATE_STATE_DIR = PROJECT_ROOT / "templates" / "repo" / ".mosaic" / "orchestrator"
# Sections merged key by key: in a user's config each must be an object too (``null`` would
# otherwise replace the defaults whole).
SECTIONS = ("matrix", "macp", "worker", "runtimes", "budget", "prices", "executor", "land")


def merge(defaults: Any, override: Any) -> Any:
    """Deep-merge ``override`` onto ``defaults`` (objects recursively, other values replace)."""
    if isinstance(defaults, dict) and isinstance(override, dict):
        merged = dict(defaults)
        for key, value in override.items():
            merged[key] = merge(defaults.get(key), value) if key in defaults else value
        return merged
    return override


def default_config() -> Config:
    """The template config (MACP's defaults) as a new dict."""
    return read_json(TEMPLATE_STATE_DIR / "config.json")


def load_config(config_file: Path | None) -> Config:
    """The effective config: defaults merged with ``config_file`` when it is given and exists.

    Raises :class:`MacpError` (exit 2) for bad JSON (file, line, column), a non-object
    document, or a schema violation (file, JSON path, reason).
    """
    config = default_config()
    if config_file is not None and config_file.exists():
        user = read_json(config_file)
        if not isinstance(user, dict):
            raise MacpError(f"{config_file}: expected a JSON object at the top level")
        for section in SECTIONS:
            if section in user and not isinstance(user[section], dict):
                raise MacpError(f"{config_file}: $.{section}: expected an object, got {json_type_name(user[section])}")
        config = merge(config, user)
        if "prices" in user:  # the user's table replaces the shipped example whole: never a mix of the two
            config["prices"] = user["prices"]
    config["runtimes"] = {name: spec for name, spec in config.get("runtimes", {}).items() if spec is not None}
    errors = schema_errors("config", config) or signature_errors(config)
    if errors:
        raise MacpError(f"{config_file}: {errors[0]}")
    return config


def signature_errors(config: Config) -> list[str]:
    """``$.path: not a valid regular expression (...)`` for every provider signature
    (``macp.provider_signatures``, ``runtimes.<name>.failures``) that Python's ``re`` cannot
    compile, so a bad pattern is refused when the config loads, not after a worker ran."""
    places = [("$.macp.provider_signatures", config["macp"].get("provider_signatures") or {})]
    places += [(f"$.runtimes.{name}.failures", spec.get("failures") or {}) for name, spec in config.get("runtimes", {}).items()]
    errors = []
    for where, signatures in places:
        for kind, patterns in signatures.items():
            for index, pattern in enumerate(patterns):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    errors.append(f"{where}.{kind}[{index}]: not a valid regular expression ({exc})")
    return errors
