"""The task's vocabulary (pure): how it runs (its dispatch kind, its runtime) and the names
MACP derives from it (its slug, branch and folder name).

The pure core needs them (admission keeps tasks that share a branch apart; a decision
depends on the dispatch kind and the runtime) as much as the dispatcher (worktrees, refs);
so they live here, below both (issue 24).
"""

from __future__ import annotations

import hashlib
import re

from macp.model import Config, Task


def slugify(text: str, max_length: int = 40) -> str:
    """Lower-case ``text`` to ``[a-z0-9-]``, runs of other characters become one ``-``."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:max_length].rstrip("-")


def branch_name(task: Task) -> str:
    """The task's ``branch``, else ``feat/<task-id>-<slug of title>`` (brief's convention);
    ``feat/<task-id>`` when the title adds nothing to the id."""
    if branch := task.get("branch"):
        return branch
    slug = slugify(task.get("title") or "")
    if not slug or slug == slugify(task["id"]):
        return f"feat/{task['id']}"
    return f"feat/{task['id']}-{slug}"


def task_folder_name(task_id: str) -> str:
    """The file-system name of a task's worktree folder and ``refs/macp/`` ref: the slug of
    the id (``[a-z0-9-]``), plus ``--`` and 8 hex digits of the id's SHA-256 when the slug
    differs from the id. So ``t-1`` stays ``t-1`` while ``T.1``, ``t_1`` and ``T-1`` get
    distinct names, also on case-insensitive file systems; a slug never holds ``--``, so a
    suffixed name can never equal another id's plain one."""
    slug = slugify(task_id, max_length=128) or "task"
    if slug == task_id:
        return slug
    return f"{slug}--{hashlib.sha256(task_id.encode()).hexdigest()[:8]}"


def dispatch_kind(task: Task) -> str:
    """``legacy`` for a task without ``dispatch``, else its dispatch (``exec``/``yolo``/``acp``)."""
    return task.get("dispatch") or "legacy"


def resolve_runtime(task: Task, config: Config) -> str:
    """The runtime the task's attempt runs on: ``attempt_runtime`` (what the controller chose
    for the current attempt, after failover too), else the task's ``runtime`` (the user's
    choice), else ``worker.runtime``, else ``macp.default_runtime``."""
    return task.get("attempt_runtime") or task.get("runtime") or config["worker"].get("runtime") or config["macp"]["default_runtime"]
