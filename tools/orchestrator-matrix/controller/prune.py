"""``mosaic macp prune [--dry-run]``: remove what finished tasks leave behind and no longer need.

- The worktree of a task in a final status goes when nothing would be lost: no uncommitted
  work and no ignored files that look like secrets or data (build output does not count);
  commits no ref reaches are kept under ``refs/macp/…`` first, as at cleanup
  (:func:`dispatcher.cleanup_worktree`).
- A finished task's branch goes when the base holds its work exactly: merged (its tip is an
  ancestor of the base) or its changes are in the base byte for byte (merging it would
  change nothing: :func:`macp.gitops.content_in_base`, so a change of indentation only is
  never taken for landed). Its tip is kept under ``refs/macp/<task folder>/pruned`` first.

Everything else stays, and each line of output says why. The plan is made first and
``--dry-run`` prints it; a real run carries it out and says what git did, so the two agree
except where git refuses at the last moment (then the line says so). Runs under the
controller lock, so it never races a running controller (exit 75 when one runs, unless
``--wait``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dispatcher import macp_dispatcher as dispatcher
from macp import gitops
from macp.archive import archived_tasks
from macp.cliutil import note, out, repo_layout
from macp.config import load_config
from macp.errors import EXIT_OK
from macp.events import append_event, make_event
from macp.layout import Layout
from macp.lifecycle import FINISHED, status_of
from macp.locks import ControllerLock
from macp.model import Config, Task
from macp.naming import task_folder_name
from macp.taskstore import load_tasks
from macp.worktree_contents import why_kept


@dataclass
class Step:
    """One line of the plan: the ``task``'s worktree (``kind`` "worktree", ``target`` its
    path) or branch (``kind`` "branch", ``target`` its name); ``goes`` when it is to be
    removed, and ``reason``: why it stays, or for a branch how the base holds its work."""

    task: Task
    kind: str
    target: str
    goes: bool
    reason: str = ""

    def line(self, dry_run: bool) -> str:
        """The step as prune prints it."""
        verb = {"worktree": ("would remove", "removed"), "branch": ("would delete", "deleted")}[self.kind][0 if dry_run else 1]
        if not self.goes:
            return f"kept {self.kind} {self.target} ({self.task['id']}): {self.reason}"
        return f"{verb} {self.kind} {self.target} ({self.task['id']})" + (f": {self.reason}" if self.reason else "")


def cmd_prune(args) -> int:
    """Prune finished tasks' worktrees and landed branches; returns the exit code."""
    layout = repo_layout(args.repo)
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
    """Make the plan (:func:`plan`) and, unless ``dry_run``, carry it out; one line per
    worktree and branch, and one per unfinished task that has either."""
    lines = []
    for item in plan(layout, config):
        if isinstance(item, str):
            lines.append(item)
        else:
            lines.append(item.line(dry_run) if dry_run or not item.goes else carry_out(layout, config, item))
    return lines


def plan(layout: Layout, config: Config) -> list[Step | str]:
    """What prune would do: a :class:`Step` per finished task's existing worktree and
    branch -- archived tasks first, then the queue's in order -- and a line for each
    unfinished task that has one."""
    repo = layout.repo_root
    base = dispatcher.base_ref(repo, config)
    checked_out = {branch: path for path, worktree in gitops.registered_worktrees(repo).items() if (branch := worktree.branch)}
    items: list[Step | str] = []
    for task in [*archived_tasks(layout.orch_dir, note), *load_tasks(layout).tasks]:
        status = status_of(task)
        worktree = Path(named) if (named := task.get("worktree")) else None
        has_worktree = worktree is not None and worktree.exists()
        branch = task.get("branch") or ""
        has_branch = bool(branch) and gitops.branch_exists(repo, branch)
        if status not in FINISHED:
            if has_worktree or has_branch:
                items.append(f"kept {task['id']}: the task is {status}")
            continue
        worktree_kept: str | None = None
        if has_worktree:
            assert worktree is not None
            worktree_kept = why_kept(dispatcher.inspect_worktree(task, worktree, repo, config), config["macp"]["remove_ignored_files"])
            items.append(Step(task, "worktree", str(worktree), worktree_kept is None, worktree_kept or ""))
        if has_branch:
            items.append(branch_step(repo, task, branch, base, worktree if has_worktree and worktree_kept is None else None, checked_out))
    return items


def branch_step(repo: Path, task: Task, branch: str, base: str, leaving: Path | None, checked_out: dict[str, Path]) -> Step:
    """The plan for a finished task's ``branch``: it goes only when no worktree keeps it
    checked out (``leaving``: the task's own worktree, which this prune removes) and the
    base holds its work exactly."""
    where = checked_out.get(branch)
    if where is not None and where != (leaving.resolve() if leaving else None):
        own = (named := task.get("worktree")) is not None and Path(named).resolve() == where
        return Step(task, "branch", branch, False, "its worktree is still there" if own else f"it is checked out in {where}")
    if gitops.is_merged(repo, branch, base):
        return Step(task, "branch", branch, True, f"merged into {base}")
    try:
        if gitops.content_in_base(repo, branch, base):
            return Step(task, "branch", branch, True, f"its changes are in {base} exactly (squash, rebase or cherry-pick)")
    except gitops.GitError as exc:
        return Step(task, "branch", branch, False, f"cannot tell whether {base} holds its work: {exc}")
    return Step(task, "branch", branch, False, f"not in {base} yet")


def carry_out(layout: Layout, config: Config, step: Step) -> str:
    """Do ``step`` (one that goes) and log it; returns its line, saying "kept" with git's
    reason when git refuses now."""
    task = step.task
    if step.kind == "worktree":
        kept = dispatcher.cleanup_worktree(task, layout.repo_root, config)
        if kept:
            return Step(task, "worktree", step.target, False, kept).line(dry_run=False)
        _log(layout, "worktree.removed", task, f"{step.target} removed by prune")
        return step.line(dry_run=False)
    tip = gitops.resolve_commit(layout.repo_root, f"refs/heads/{step.target}")
    if tip is None:
        return Step(task, "branch", step.target, False, "it is gone already").line(dry_run=False)
    try:
        ref = gitops.keep_commit(layout.repo_root, f"refs/macp/{task_folder_name(task['id'])}/pruned", tip)
        gitops.delete_branch(layout.repo_root, step.target)
    except gitops.GitError as exc:
        return Step(task, "branch", step.target, False, f"git refused to delete it: {exc}").line(dry_run=False)
    copy = f"its tip {tip[:12]} is kept as {ref}"
    _log(layout, "branch.pruned", task, f"branch {step.target} deleted: {step.reason}; {copy}", ref=ref, commit=tip)
    return f"{step.line(dry_run=False)}; {copy}"


def _log(layout: Layout, event_type: str, task: Task, message: str, **metadata: object) -> None:
    event = make_event(
        event_type, source="cli", task_id=task["id"], status=status_of(task), attempt=task.get("attempts", 0), message=message, metadata=metadata
    )
    append_event(layout.events_file, event)
