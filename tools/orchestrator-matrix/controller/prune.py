"""``mosaic macp prune [--dry-run]``: remove what finished tasks leave behind and no longer need.

- The worktree of a task in a final status goes when nothing would be lost: no uncommitted
  or (unless ``macp.remove_ignored_files``) ignored files; commits no ref reaches are kept
  under ``refs/macp/…`` first, as at cleanup (:func:`dispatcher.cleanup_worktree`).
- A finished task's branch goes when the base already has its work: merged
  (``git branch --merged``) or, for a squash or rebase merge, every commit has an
  equivalent patch in the base (``git cherry`` prints only ``-`` lines).

Everything else stays, and each line of output says why. Runs under the controller lock,
so it never races a running controller (exit 75 when one runs, unless ``--wait``).
"""

from __future__ import annotations

from pathlib import Path

from dispatcher import macp_dispatcher as dispatcher
from macp import gitops
from macp.cliutil import out, resolve_repo
from macp.config import load_config
from macp.errors import EXIT_OK
from macp.events import append_event, make_event
from macp.layout import Layout
from macp.lifecycle import FINISHED, status_of
from macp.locks import ControllerLock
from macp.model import Config, Task
from macp.taskstore import load_tasks
from macp.worktree_contents import why_kept


def branch_landed(repo: Path, branch: str, base: str) -> str | None:
    """How the base already holds ``branch``'s work (``"merged into X"``, ``"its patches
    are in X"``), or None when it does not."""
    if gitops.is_merged(repo, branch, base):
        return f"merged into {base}"
    if gitops.patches_upstream(repo, branch, base):
        return f"its patches are in {base} (squash or rebase merge)"
    return None


def cmd_prune(args) -> int:
    """Prune finished tasks' worktrees and landed branches; returns the exit code."""
    layout = Layout(resolve_repo(args.repo))
    config = load_config(layout.config_file)
    lock = ControllerLock(layout.controller_lock)
    lock.acquire(wait=args.wait)
    try:
        lines = prune(layout, config, dry_run=args.dry_run)
    finally:
        lock.release(clean=lock.previous is None)
    for line in lines or ["nothing to prune"]:
        out(line)
    return EXIT_OK


def prune(layout: Layout, config: Config, *, dry_run: bool) -> list[str]:
    """Do (or with ``dry_run`` describe) the pruning; one line per worktree and branch."""
    repo = layout.repo_root
    base = dispatcher.base_ref(repo, config)
    verbs = ("would remove", "would delete") if dry_run else ("removed", "deleted")
    lines = []
    for task in load_tasks(layout).tasks:
        status = status_of(task)
        worktree = Path(named) if (named := task.get("worktree")) else None
        branch = task.get("branch")
        if status not in FINISHED:
            if (worktree and worktree.exists()) or (branch and gitops.branch_exists(repo, branch)):
                lines.append(f"kept {task['id']}: the task is {status}")
            continue
        if worktree and worktree.exists():
            lines.append(_prune_worktree(layout, config, task, worktree, dry_run, verbs[0]))
        if branch and gitops.branch_exists(repo, branch):
            lines.append(_prune_branch(layout, task, branch, base, dry_run, verbs[1], worktree))
    return lines


def _prune_worktree(layout: Layout, config: Config, task: Task, worktree: Path, dry_run: bool, verb: str) -> str:
    if dry_run:
        kept = why_kept(dispatcher.inspect_worktree(task, worktree, layout.repo_root, config), config["macp"]["remove_ignored_files"])
    else:
        kept = dispatcher.cleanup_worktree(task, layout.repo_root, config)
        if kept is None:
            _log(layout, "worktree.removed", task, f"{worktree} removed by prune")
    if kept:
        return f"kept worktree {worktree} ({task['id']}): {kept}"
    return f"{verb} worktree {worktree} ({task['id']})"


def _prune_branch(layout: Layout, task: Task, branch: str, base: str, dry_run: bool, verb: str, worktree: Path | None) -> str:
    if worktree is not None and worktree.exists() and not dry_run:
        return f"kept branch {branch} ({task['id']}): its worktree is still there"
    landed = branch_landed(layout.repo_root, branch, base)
    if landed is None:
        return f"kept branch {branch} ({task['id']}): not in {base} yet"
    if not dry_run:
        gitops.delete_branch(layout.repo_root, branch)
        _log(layout, "branch.pruned", task, f"branch {branch} deleted: {landed}")
    return f"{verb} branch {branch} ({task['id']}): {landed}"


def _log(layout: Layout, event_type: str, task: Task, message: str) -> None:
    event = make_event(event_type, source="cli", task_id=task["id"], status=status_of(task), attempt=task.get("attempts", 0), message=message)
    append_event(layout.events_file, event)
