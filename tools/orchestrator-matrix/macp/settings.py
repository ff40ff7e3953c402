"""What a config setting means for one task or runtime (pure): the task's own value, else
the config's (issue 24: split from :mod:`macp.config`, which loads the config file, so the
pure core reads settings without importing file I/O). Every default lives in the template
config (``templates/repo/.mosaic/orchestrator/config.json``) or, for the few a template
cannot hold, here, named.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from macp.model import Config, Task


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
