"""A task's git worktree (the dispatcher's part of an attempt): where it goes, the base its
branch starts from (its completed dependencies' work stacked on), creating or reusing it,
starting over, and at the end what it holds, the commits to keep and its removal -- never
when that would lose work (docs/durability.md "Cleanup never loses work").
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from macp import gitops
from macp.config import load_config
from macp.errors import MacpError
from macp.layout import Layout, confine, resolved_root
from macp.model import Config, KeptCommit, Task
from macp.naming import branch_name, task_folder_name
from macp.settings import worktree_base
from macp.worktree_contents import WorktreeContents, discard_gate_output, read_contents, read_gate_record, why_kept


class WorktreeError(MacpError):
    """The task's worktree could not be created; the task fails at once (brief, Task 4)."""


class NoCommitYet(MacpError):
    """The repository has no commit yet, so no worktree can start anywhere: the user's to
    fix, not the task's failure (issue 22) -- the attempt is not counted."""


class StackConflict(MacpError):
    """Merging the task's dependencies into its new branch conflicted (``paths``); the
    fresh worktree and branch were removed again. A counted failure of the attempt."""

    def __init__(self, message: str, paths: list[str]) -> None:
        super().__init__(message)
        self.paths = paths


def branch_problem(task: Task, repo_root: Path) -> str | None:
    """Why git would refuse the task's branch (its ``branch``, else the default
    :func:`branch_name`), or None. The one check of every way a task comes in: ``submit``,
    ``submit --from`` and TASKS.md ``sync`` alike (git's own rules, ``git check-ref-format
    --branch``, and no leading ``-``). The default branch of an id without ``.`` is always
    valid -- ids are ``[A-Za-z0-9_-]`` then, slugs ``[a-z0-9-]``; git's ref rules only bite
    on ``..``, ``.lock`` or a trailing ``.`` -- so that case costs no git process (a batch
    submit has thousands)."""
    if not task.get("branch") and "." not in task["id"]:
        return None
    branch = branch_name(task)
    if gitops.is_valid_branch_name(repo_root, branch):
        return None
    what = "its branch" if task.get("branch") else "its default branch"
    return f"task {task['id']}: {what} {branch!r} is not a valid git branch name" + ("" if task.get("branch") else "; give one with --branch")


def worktree_path(task: Task, repo_root: Path, config: Config) -> Path:
    """``<worktree_base>/<task folder name>`` (:func:`task_folder_name`), or the task's
    ``worktree`` if it lies inside the base."""
    base = worktree_base(config, repo_root)
    if worktree := task.get("worktree"):
        return confine(os.path.expanduser(worktree), base, f"task {task['id']}: worktree")
    return resolved_root(base) / task_folder_name(task["id"])


def base_ref(repo_root: Path, config: Config) -> str:
    """``macp.base_ref`` (default ``origin/main``) when it names a commit, else ``HEAD``."""
    configured = config["macp"].get("base_ref")
    if configured and gitops.resolve_commit(repo_root, configured):
        return configured
    return "HEAD"


class PreparedWorktree(NamedTuple):
    """The task's worktree, whether it was just ``created``, the ``base_commit`` the task
    started from, and what was ``repaired`` on the way (left by a crash; for the event)."""

    path: Path
    created: bool
    base_commit: str | None
    repaired: list[str]


def stacked_branches(task: Task, by_id: Mapping[str, Task], repo_root: Path, config: Config) -> list[str]:
    """The branches a new task branch starts from (``macp.stack_dependencies``, DESIGN.md
    "Worktrees"): those of its dependencies, in ``depends_on`` order, that completed with
    commits on their branch since the commit they started from (``by_id`` finds them: the
    queue's tasks, and archived ones through :class:`macp.dependencies.KnownTasks`). []
    when stacking is off."""
    if not config["macp"]["stack_dependencies"]:
        return []
    branches = []
    for dependency in task.get("depends_on") or []:
        other = by_id.get(dependency)
        branch, base = (other.get("branch"), other.get("base_commit")) if other else (None, None)
        if other is None or other.get("status") != "completed" or not branch or not base or not gitops.branch_exists(repo_root, branch):
            continue
        tip = gitops.resolve_commit(repo_root, f"refs/heads/{branch}")
        if tip and tip != base and branch not in branches:
            branches.append(branch)
    return branches


def prepare_worktree(
    task: Task, repo_root: Path, config: Config, stack: list[str] | None = None, base: str | None = None
) -> PreparedWorktree:
    """Create or reuse the task's worktree.

    A new branch starts from ``stack`` when given (:func:`stacked_branches`): the first
    branch's tip, with the others merged in (a conflict raises :class:`StackConflict`
    after removing the fresh worktree and branch); else from ``base`` (default
    :func:`base_ref`; the controller resolves it once per run). The base commit returned is
    the commit the task's own work starts from (after those merges).

    A retry finds the worktree registered on the task's branch and reuses it, so the worker
    continues from its partial work; a stale ``index.lock`` a crash left in it is removed
    first. A worktree whose creation was cut short (still locked ``initializing``) holds no
    work: it is removed and created again. An existing branch without a worktree is checked
    out again (branches are never deleted). A first attempt whose folder does not exist
    skips listing the worktrees: git is asked to add it at once, and only when it refuses
    are stale registrations pruned and the add tried again. Raises :class:`NoCommitYet`
    when git refuses because the repository has no commit yet, :class:`WorktreeError`
    when the branch name breaks git's rules, the path is occupied by something else, or git
    refuses.
    """
    branch = branch_name(task)
    if not gitops.is_valid_branch_name(repo_root, branch):
        raise WorktreeError(f"task {task['id']}: {branch!r} is not a valid git branch name")
    path = worktree_path(task, repo_root, config)
    repaired: list[str] = []
    try:
        if path.exists() or task.get("worktree"):
            reused = _reuse(repo_root, path, branch, task, repaired)
            if reused is not None:
                return reused
        if path.exists():
            raise WorktreeError(f"{path} exists and is not a worktree of this repository; move it away")
        path.parent.mkdir(parents=True, exist_ok=True)
        if gitops.branch_exists(repo_root, branch):
            _add(repo_root, path, branch, None)
            return PreparedWorktree(path, True, task.get("base_commit") or gitops.resolve_commit(repo_root, branch), repaired)
        stack = stack or []
        start = f"refs/heads/{stack[0]}" if stack else base or base_ref(repo_root, config)
        _add(repo_root, path, branch, start)
        for other in stack[1:]:
            _merge_or_undo(repo_root, path, branch, other)
        return PreparedWorktree(path, True, gitops.resolve_commit(path, "HEAD"), repaired)
    except gitops.GitError as exc:
        drop_empty_folders(path)
        if gitops.resolve_commit(repo_root, "HEAD") is None:
            raise NoCommitYet(f"{repo_root} has no commit yet; commit first (git commit --allow-empty -m 'initial commit'), then drain again") from None
        raise WorktreeError(str(exc)) from None


def _reuse(repo_root: Path, path: Path, branch: str, task: Task, repaired: list[str]) -> PreparedWorktree | None:
    """The task's registered worktree made ready for reuse, or None when there is none to
    reuse (a worktree whose creation was cut short is discarded; ``repaired`` says so)."""
    gitops.prune_worktrees(repo_root)
    registered = gitops.registered_worktrees(repo_root)
    if path in registered and registered[path].locked == gitops.CREATION_CUT_SHORT:
        gitops.discard_worktree(repo_root, path)
        repaired.append(f"removed {path}: its creation was cut short (locked: {gitops.CREATION_CUT_SHORT})")
        return None
    if path not in registered:
        return None
    if registered[path].branch != branch:
        raise WorktreeError(f"{path} is a worktree of branch {registered[path].branch!r}, not {branch!r}")
    if gitops.clear_stale_index_lock(path):
        repaired.append(f"removed a stale index.lock of {path} left by a git that was stopped halfway")
    return PreparedWorktree(path, False, task.get("base_commit"), repaired)


def _add(repo_root: Path, path: Path, branch: str, start: str | None) -> None:
    """``git worktree add``; when git refuses because of a stale registration (a worktree
    folder deleted by hand), prune and try once more."""
    try:
        gitops.add_worktree(repo_root, path, branch, start)
    except gitops.GitError:
        gitops.prune_worktrees(repo_root)
        gitops.add_worktree(repo_root, path, branch, start)


def _merge_or_undo(repo_root: Path, path: Path, branch: str, other: str) -> None:
    """Merge ``other`` into the fresh worktree of ``branch``; on a conflict remove the
    worktree and the branch again (they hold only MACP's merges) and raise StackConflict."""
    try:
        gitops.merge_branch(path, other)
    except gitops.MergeConflict as exc:
        gitops.discard_worktree(repo_root, path)
        with contextlib.suppress(gitops.GitError):  # it holds only MACP's merges; a branch left is reused
            gitops.delete_branch(repo_root, branch)
        raise StackConflict(f"{exc}: the dependencies' work does not merge; resolve it on their branches", exc.paths) from None


def start_over(task: Task, repo_root: Path, config: Config) -> list[str]:
    """Make room for a fresh start of ``task`` (``retry --fresh``): keep its branch tip under
    ``refs/macp/<task folder>/before-fresh-<attempts>``, remove its worktree and delete the
    branch, so the next attempt starts from the base in a new worktree. Nothing is lost:
    a worktree with uncommitted work refuses (:class:`MacpError`), and every commit stays
    reachable from a ref. Returns what was done, one line each."""
    done: list[str] = []
    branch = task.get("branch") or branch_name(task)
    worktree = Path(named) if (named := task.get("worktree")) else None
    if worktree is not None and worktree.exists():
        kept = cleanup_worktree(task, repo_root, config)
        if kept:
            raise MacpError(f"task {task['id']}: its worktree holds {kept}; commit or remove them before --fresh")
        done.append(f"removed worktree {worktree}")
    tip = gitops.resolve_commit(repo_root, f"refs/heads/{branch}") if gitops.branch_exists(repo_root, branch) else None
    if tip:
        ref = gitops.keep_commit(repo_root, f"refs/macp/{task_folder_name(task['id'])}/before-fresh-{task.get('attempts', 0)}", tip)
        gitops.delete_branch(repo_root, branch)
        done.append(f"branch {branch} reset; its old tip {tip[:12]} is kept as {ref}")
    return done


def inspect_worktree(task: Task, worktree: Path, repo_root: Path, config: Config) -> WorktreeContents:
    """What the task's ``worktree`` holds besides its commits, by kind
    (:func:`macp.worktree_contents.read_contents`, with the task's gate-output record).
    Raises :class:`~macp.gitops.GitError`."""
    return read_contents(worktree, config["macp"], read_gate_record(Layout(repo_root).task_log_dir(task["id"])))


def preserve_commits(task: Task, worktree: Path) -> list[KeptCommit]:
    """Keep every commit the worktree's HEAD reached that no ref reaches any more (a worker
    that committed on a detached HEAD) under ``refs/macp/<task>/<attempt>`` (then ``-2``,
    ``-3``, ...: :func:`macp.gitops.keep_commit` never overwrites a ref); returns
    ``[{"ref", "commit"}]`` for the result. Idempotent: a kept commit is reachable."""
    ref = f"refs/macp/{task_folder_name(task['id'])}/{task.get('attempts', 0)}"
    return [{"ref": gitops.keep_commit(worktree, ref, commit), "commit": commit} for commit in gitops.unreachable_commits(worktree)]


def cleanup_worktree(task: Task, repo_root: Path | None = None, config: Config | None = None, contents: WorktreeContents | None = None) -> str | None:
    """Remove the task's worktree unless that would lose work; the branch always stays.

    Uncommitted work keeps it, and so do ignored files that look like secrets or data
    (``macp.keep_ignored``) unless ``macp.remove_ignored_files``
    (:func:`macp.worktree_contents.why_kept`). Build output goes with it, and what the
    gates left is undone first, so that git's own refusal to remove a dirty worktree still
    guards the worker's work. Commits no ref reaches are kept under refs first
    (:func:`preserve_commits`). Returns None when the worktree was removed (or was already
    gone), else why it was kept, e.g. ``"2 uncommitted paths: a.py, b.py"``. ``repo_root``
    defaults to the repository the worktree belongs to, ``config`` to its config.
    ``contents``: the caller has just inspected the worktree (:func:`inspect_worktree`)
    and kept its commits, so only the removal is left.
    """
    worktree = task.get("worktree")
    if not worktree:
        return None
    path = Path(worktree)
    if not path.exists():
        return None
    if repo_root is None:
        common = gitops.git(["rev-parse", "--path-format=absolute", "--git-common-dir"], path).stdout.strip()
        repo_root = Path(common).parent
    config = config if config is not None else load_config(Layout(repo_root).config_file)
    inspected_here = contents is None
    contents = contents or inspect_worktree(task, path, repo_root, config)
    kept = why_kept(contents, config["macp"]["remove_ignored_files"])
    if kept:
        return kept
    if inspected_here:
        preserve_commits(task, path)
    try:
        discard_gate_output(path, contents)
        gitops.remove_worktree(repo_root, path)
    except (gitops.GitError, OSError) as exc:
        return f"git refused to remove it: {exc}"
    drop_empty_folders(path)
    return None


def drop_empty_folders(worktree: Path) -> None:
    """Remove ``worktree``'s folder and then the worktree base above it, each only when it is
    empty: no empty folders pile up under ``macp.worktree_base`` after a removal or a
    creation git refused (the base is made again when a worktree needs it)."""
    for folder in (worktree, worktree.parent):
        with contextlib.suppress(OSError):
            folder.rmdir()
