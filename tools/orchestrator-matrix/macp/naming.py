"""The names MACP derives from a task (pure): its slug, branch and folder name.

Part of the task's vocabulary that the pure core needs (admission keeps tasks that share a
branch apart) as much as the dispatcher (worktrees, refs); so it lives here, below both.
"""

from __future__ import annotations

import hashlib
import re

from macp.model import Task


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
