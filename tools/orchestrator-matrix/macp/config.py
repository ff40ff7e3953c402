"""Load a repository's config.json on top of MACP's defaults.

The defaults are the template ``templates/repo/.mosaic/orchestrator/config.json`` (the file
``mosaic macp init`` copies), so the documented template and the built-in behaviour cannot
drift apart. A user's config is merged over it: objects merge key by key, everything else
(lists, strings, numbers) replaces the default; a runtime set to ``null`` is removed from the
registry; a ``prices`` section replaces the shipped example price table whole. The result is validated against ``protocol/config.schema.json``.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from macp.errors import MacpError
from macp.fsio import read_json
from macp.model import Config, Task
from protocol.schemas import schema_errors
from protocol.validator import json_type_name

PROJECT_ROOT = Path(__file__).resolve().parents[3]
TEMPLATE_STATE_DIR = PROJECT_ROOT / "templates" / "repo" / ".mosaic" / "orchestrator"
# Sections merged key by key: in a user's config each must be an object too (``null`` would
# otherwise replace the defaults whole).
SECTIONS = ("matrix", "macp", "worker", "runtimes", "budget", "prices")


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


def max_attempts(task: Task, config: Config) -> int:
    """The task's attempt budget: its ``max_attempts``, else ``worker.max_attempts``."""
    return task.get("max_attempts") or config["worker"]["max_attempts"]


def timeout_seconds(task: Task, config: Config) -> int:
    """The bound on the task's worker and on each of its gates without their own, in
    seconds: its ``timeout_seconds``, else ``worker.timeout_seconds``."""
    return task.get("timeout_seconds") or config["worker"]["timeout_seconds"]


def idle_timeout(config: Config, runtime: str) -> int:
    """Seconds of silence after which ``runtime`` counts as hung: the runtime's own
    ``idle_timeout_seconds``, else ``worker.idle_timeout_seconds``."""
    spec = config["runtimes"].get(runtime)
    own = spec.get("idle_timeout_seconds") if spec else None
    return own or config["worker"]["idle_timeout_seconds"]


def first_output_timeout(config: Config, runtime: str) -> int:
    """Seconds after its start by which ``runtime`` must have printed something, else it
    counts as hung (issue 22: a CLI with no credentials or no network may print nothing and
    never exit): the runtime's own ``first_output_timeout_seconds``, else
    ``worker.first_output_timeout_seconds``."""
    spec = config["runtimes"].get(runtime)
    own = spec.get("first_output_timeout_seconds") if spec else None
    return own or config["worker"]["first_output_timeout_seconds"]


DEFAULT_RUNTIME_MAX_PARALLEL = 1  # two attempts never share one account's rate limit unless allowed


def runtime_max_parallel(config: Config, runtime: str) -> int:
    """How many attempts may run on ``runtime`` at once: ``runtimes.<name>.max_parallel``,
    else :data:`DEFAULT_RUNTIME_MAX_PARALLEL` (issue 12, docs/workers.md)."""
    spec = config["runtimes"].get(runtime)
    return (spec.get("max_parallel") if spec else None) or DEFAULT_RUNTIME_MAX_PARALLEL


def matrix_token_env(config: Config) -> str:
    """The environment variable holding the Matrix access token: ``matrix.token_env``, or
    ``MACP_MATRIX_TOKEN`` when that is empty. The transport reads it; workers never see it."""
    return (config.get("matrix") or {}).get("token_env") or "MACP_MATRIX_TOKEN"


@lru_cache(maxsize=16)
def repo_hash(repo_root: Path) -> str:
    """8 hex digits of the SHA-256 of the repository's resolved path: tells apart two
    repositories with the same folder name (``{repo_hash}`` in ``macp.worktree_base``)."""
    import hashlib  # here, not at the top: loading OpenSSL costs every command ~10 ms of start-up

    return hashlib.sha256(str(repo_root.resolve()).encode()).hexdigest()[:8]


def worktree_base(config: Config, repo_root: Path) -> Path:
    """``macp.worktree_base`` with ``{repo}`` (the repository's folder name),
    ``{repo_hash}`` (:func:`repo_hash`) and ``~`` expanded, as an absolute path."""
    template = config["macp"]["worktree_base"].replace("{repo}", repo_root.name).replace("{repo_hash}", repo_hash(repo_root))
    base = Path(os.path.expanduser(template))
    return base if base.is_absolute() else (repo_root / base)
