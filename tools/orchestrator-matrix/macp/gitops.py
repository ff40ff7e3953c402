"""Thin wrappers over the git command line (worktrees, refs, status).

Every call runs ``git`` with an argv list (never a shell), ``GIT_TERMINAL_PROMPT=0`` and
``LC_ALL=C``; user-supplied names are passed after ``--`` or validated first, so a value
such as ``--upload-pack=...`` is never read as an option. Failures raise :class:`GitError`
carrying git's own message.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import NamedTuple

from macp.errors import Interrupted, MacpError

COMMIT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class GitError(MacpError):
    """A git command failed; the message is git's stderr (first line)."""


def git(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``git <args>`` in ``cwd``; return the CompletedProcess (text mode).

    A git step always finishes (issue 9): git runs in its own session, so a Ctrl-C to the
    terminal's process group never reaches it, and a SIGINT/SIGTERM that interrupts the
    caller meanwhile (:class:`~macp.errors.Interrupted`, ``KeyboardInterrupt``) is held
    until git has exited, then raised. git's output goes to temporary files, not pipes: if
    the controller is killed, git still finishes instead of dying of SIGPIPE halfway (and
    leaving lock files). Raises :class:`GitError` when ``check`` is true and git exits
    non-zero, or when git is not installed.
    """
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            child = subprocess.Popen(
                ["git", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
            )
        except FileNotFoundError:
            raise GitError("git is not installed (or not on PATH)") from None
        returncode = _wait_uninterrupted(child)
        out.seek(0)
        err.seek(0)
        proc = subprocess.CompletedProcess(
            ["git", *args], returncode, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")
        )
    if check and proc.returncode != 0:
        raise GitError(f"git {args[0]}: {git_reason(proc)}")
    return proc


def git_reason(proc: subprocess.CompletedProcess) -> str:
    """Why git failed, in one line: its first ``fatal:`` or ``error:`` line (what git says
    went wrong), never a progress line such as ``Preparing worktree (new branch …)``; else
    the last line it printed, else its exit code."""
    lines = [line.strip() for line in f"{proc.stderr}\n{proc.stdout}".splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line
    return lines[-1] if lines else f"exit {proc.returncode}"


def _wait_uninterrupted(child: subprocess.Popen) -> int:
    """Wait for ``child`` to exit, holding back an interruption until it has; returns its
    exit code. Unbounded on purpose: git steps are local and short, and SIGKILL still works."""
    held: BaseException | None = None
    while True:
        try:
            returncode = child.wait()
            break
        except (Interrupted, KeyboardInterrupt) as exc:
            held = held or exc
    if held is not None:
        raise held
    return returncode


def toplevel(path: Path) -> Path:
    """The root of the repository's main worktree, from anywhere inside it or inside one of
    its linked worktrees (a task's worktree): the folder holding git's common dir
    (``<main>/.git``), else -- a linked worktree of a bare repository -- the worktree's own
    root. Raises MacpError "not a git repository" otherwise."""
    if not path.is_dir():
        raise MacpError(f"not a directory: {path}")
    proc = git(["rev-parse", "--path-format=absolute", "--show-toplevel", "--git-common-dir"], path, check=False)
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or len(lines) != 2:
        raise MacpError(f"not a git repository: {path}")
    own_root, common_dir = Path(lines[0]).resolve(), Path(lines[1]).resolve()
    if common_dir.name == ".git" and common_dir.is_dir():
        return common_dir.parent
    return own_root


def resolve_commit(repo: Path, ref: str) -> str | None:
    """The commit id ``ref`` names in ``repo``, or None when it names no commit."""
    proc = git(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"], repo, check=False)
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def is_valid_branch_name(repo: Path, name: str) -> bool:
    """True when git accepts ``name`` as a branch name (``git check-ref-format --branch``)
    and it cannot be read as an option or as revision syntax (``-x``, ``@``, ``HEAD``)."""
    if not name or name.startswith("-") or name in ("@", "HEAD"):
        return False
    return git(["check-ref-format", "--branch", name], repo, check=False).returncode == 0


def branch_exists(repo: Path, branch: str) -> bool:
    """True when ``refs/heads/<branch>`` exists."""
    return git(["show-ref", "--verify", "--quiet", f"refs/heads/{branch}"], repo, check=False).returncode == 0


class Worktree(NamedTuple):
    """One registered worktree: its checked-out branch (None if detached) and the reason
    it is locked (None if it is not)."""

    branch: str | None
    locked: str | None


# git writes this lock reason while ``git worktree add`` is still checking files out and
# removes it when done (builtin/worktree.c): a worktree still locked so was cut short.
CREATION_CUT_SHORT = "initializing"


def registered_worktrees(repo: Path) -> dict[Path, Worktree]:
    """Worktrees git knows for ``repo`` (``git worktree list --porcelain``): resolved path
    -> :class:`Worktree`."""
    proc = git(["worktree", "list", "--porcelain"], repo)
    found: dict[Path, Worktree] = {}
    current: Path | None = None
    for line in proc.stdout.splitlines():
        if line.startswith("worktree "):
            current = Path(line[len("worktree ") :]).resolve()
            found[current] = Worktree(None, None)
        elif current is not None and line.startswith("branch "):
            found[current] = found[current]._replace(branch=line[len("branch ") :].removeprefix("refs/heads/"))
        elif current is not None and (line == "locked" or line.startswith("locked ")):
            found[current] = found[current]._replace(locked=line[len("locked ") :] or "locked")
    return found


def discard_worktree(repo: Path, path: Path) -> None:
    """Remove the worktree at ``path`` whatever its state -- for one whose creation was cut
    short (:data:`CREATION_CUT_SHORT`), which holds no work: unlock, ``remove --force``, and
    when git cannot (a half-written folder) delete the folder and prune."""
    git(["worktree", "unlock", "--end-of-options", str(path)], repo, check=False)
    if git(["worktree", "remove", "--force", "--end-of-options", str(path)], repo, check=False).returncode != 0:
        shutil.rmtree(path, ignore_errors=True)
        prune_worktrees(repo)


def clear_stale_index_lock(worktree: Path) -> bool:
    """Delete the worktree's ``index.lock`` (in its git folder), which a git killed halfway
    leaves behind and which makes every later ``git add`` fail. Call it only when no git can
    be running there (the task's claim is held and its workers are stopped). Returns True
    when a lock file was removed."""
    proc = git(["rev-parse", "--absolute-git-dir"], worktree, check=False)
    if proc.returncode != 0:
        return False
    lock = Path(proc.stdout.strip()) / "index.lock"
    try:
        lock.unlink()
    except FileNotFoundError:
        return False
    return True


def prune_worktrees(repo: Path) -> None:
    """``git worktree prune``: forget worktrees whose folders are gone."""
    git(["worktree", "prune"], repo)


def add_worktree(repo: Path, path: Path, branch: str, base: str | None) -> None:
    """Check ``branch`` out at ``path``; create the branch from ``base`` when ``base`` is given."""
    if base is None:
        git(["worktree", "add", "--end-of-options", str(path), branch], repo)
    else:
        git(["worktree", "add", "-b", branch, "--end-of-options", str(path), base], repo)


def remove_worktree(repo: Path, path: Path) -> None:
    """``git worktree remove`` (no force: git itself refuses a dirty worktree)."""
    git(["worktree", "remove", "--end-of-options", str(path)], repo)


class WorktreeStatus(NamedTuple):
    """A worktree's paths that differ from its HEAD (``git status``): ``changed`` tracked
    paths (modified, staged, deleted, renamed), ``untracked`` ones, and those ``.gitignore``
    hides (``ignored``; a wholly ignored folder once, ending in ``/``)."""

    changed: list[str]
    untracked: list[str]
    ignored: list[str]

    @property
    def dirty(self) -> list[str]:
        """Every path that is not committed and not ignored."""
        return self.changed + self.untracked


def worktree_status(worktree: Path, with_ignored: bool = False) -> WorktreeStatus:
    """The worktree's :class:`WorktreeStatus` from one ``git status`` (ignored paths only
    ``with_ignored``)."""
    args = ["status", "--porcelain=v1", "-z", "--untracked-files=all"] + (["--ignored=matching"] if with_ignored else [])
    entries = iter(git(args, worktree).stdout.split("\0"))
    status = WorktreeStatus([], [], [])
    for entry in entries:
        if entry.startswith("!! "):
            status.ignored.append(entry[3:])
        elif entry.startswith("?? "):
            status.untracked.append(entry[3:])
        elif len(entry) > 3:
            status.changed.append(entry[3:])
            if entry[0] in "RC":
                next(entries, None)
    return status


def restore_from_head(worktree: Path, paths: list[str]) -> None:
    """Put tracked ``paths`` back as HEAD has them, in the index and the worktree (``git
    checkout HEAD -- PATHS``, names taken literally)."""
    git(["--literal-pathspecs", "checkout", "-q", "HEAD", "--", *paths], worktree)


def unreachable_commits(worktree: Path) -> list[str]:
    """Commits the worktree's HEAD has pointed at (its reflog) that no ref reaches any more:
    the tips only, newest first. A worker that committed on a detached HEAD leaves them."""
    logged = git(["reflog", "show", "--format=%H", "HEAD", "--"], worktree, check=False).stdout.split()
    if not logged:
        return []
    # Not "--all": it counts every worktree's HEAD, and this HEAD goes with the worktree.
    tips = git(["for-each-ref", "--format=%(objectname)"], worktree).stdout.split()
    proc = git(["rev-list", "--parents", *dict.fromkeys(logged), "--not", *dict.fromkeys(tips)], worktree)
    lines = [line.split() for line in proc.stdout.splitlines() if line.strip()]
    lost = [line[0] for line in lines]
    parents = {parent for line in lines for parent in line[1:]}
    return [commit for commit in lost if commit not in parents]


# Names tried after ``ref`` itself when it already holds another commit: ``ref-2``, ``ref-3``, ...
MAX_KEPT_NAMES = 1000


def keep_commit(repo: Path, ref: str, commit: str) -> str:
    """Keep ``commit`` under ``ref`` (under ``refs/``) so git never collects it, and return
    the ref that holds it. A ref is never overwritten (issue 22): when ``ref`` already holds
    another commit, ``ref-2``, ``ref-3``, ... are tried; one already holding ``commit`` is
    used as it is. Each name is created with ``git update-ref REF COMMIT ""``, which git
    refuses atomically when the ref exists, so a racing writer cannot be overwritten either.
    Raises :class:`GitError`."""
    for number in range(1, MAX_KEPT_NAMES + 1):
        name = ref if number == 1 else f"{ref}-{number}"
        if git(["update-ref", "--no-deref", name, commit, ""], repo, check=False).returncode == 0:
            return name
        if resolve_commit(repo, name) == commit:
            return name
    raise GitError(f"git update-ref: {ref} and {MAX_KEPT_NAMES - 1} numbered names after it are taken")


# Used only when git knows no identity at all (no user.email, no GIT_AUTHOR_* variables).
FALLBACK_IDENTITY = ["-c", "user.name=MACP", "-c", "user.email=macp@localhost"]


def _identity(worktree: Path) -> list[str]:
    """``-c`` options giving git MACP's name, only when git knows no author at all."""
    return [] if git(["var", "GIT_AUTHOR_IDENT"], worktree, check=False).returncode == 0 else FALLBACK_IDENTITY


class MergeConflict(GitError):
    """Merging a branch into a worktree conflicted; ``paths`` are the conflicting files.
    The merge has been aborted."""

    def __init__(self, branch: str, paths: list[str]) -> None:
        shown = ", ".join(paths[:5]) + (", ..." if len(paths) > 5 else "")
        super().__init__(f"merging {branch} conflicts in {shown or 'the index'}")
        self.paths = paths


def merge_branch(worktree: Path, branch: str, message: str | None = None) -> None:
    """Merge ``refs/heads/<branch>`` into the worktree's HEAD (a merge commit, ``message``
    or ``Merge <branch>``, hooks skipped). Raises :class:`MergeConflict` (after ``git merge
    --abort``) on a conflict, :class:`GitError` when git refuses otherwise."""
    proc = git([*_identity(worktree), "merge", "--no-ff", "--no-verify", "-m", message or f"Merge {branch}", f"refs/heads/{branch}"], worktree,
               check=False)
    if proc.returncode != 0:
        _merge_failed(worktree, branch, proc)


def squash_branch(worktree: Path, branch: str, message: str) -> None:
    """Apply ``refs/heads/<branch>``'s changes to the worktree's HEAD as one commit with
    ``message`` (``git merge --squash``, hooks skipped); no commit when HEAD holds them
    already. Raises :class:`MergeConflict` (the worktree reset) or :class:`GitError`."""
    proc = git(["merge", "--squash", f"refs/heads/{branch}"], worktree, check=False)
    if proc.returncode != 0:
        _merge_failed(worktree, branch, proc)
    if git(["diff", "--cached", "--quiet"], worktree, check=False).returncode != 0:
        git([*_identity(worktree), "commit", "--quiet", "--no-verify", "-m", message], worktree)


def rebase_copy(worktree: Path, branch: str) -> None:
    """Replay the commits of ``refs/heads/<branch>`` that the worktree's (detached) HEAD
    lacks on top of it, on a detached copy: the branch itself is never rewritten. Raises
    :class:`MergeConflict` (the worktree back at its HEAD) on a conflict, :class:`GitError`
    when git refuses otherwise."""
    tip = git(["rev-parse", "HEAD"], worktree).stdout.strip()
    base = git(["merge-base", tip, f"refs/heads/{branch}"], worktree).stdout.strip()
    git(["checkout", "--quiet", "--detach", f"refs/heads/{branch}"], worktree)
    proc = git([*_identity(worktree), "rebase", "--quiet", "--no-verify", "--onto", tip, base], worktree, check=False)
    if proc.returncode == 0:
        return
    conflicted = [path for path in git(["diff", "--name-only", "--diff-filter=U", "-z"], worktree, check=False).stdout.split("\0") if path]
    git(["rebase", "--abort"], worktree, check=False)
    git(["checkout", "--quiet", "--force", "--detach", tip], worktree)
    if conflicted:
        raise MergeConflict(branch, conflicted)
    raise GitError(f"git rebase {branch}: {git_reason(proc)}")


def _merge_failed(worktree: Path, branch: str, proc: subprocess.CompletedProcess) -> None:
    """Raise what a failed ``git merge`` of ``branch`` means, after undoing it."""
    conflicted = git(["diff", "--name-only", "--diff-filter=U", "-z"], worktree, check=False).stdout.split("\0")
    if git(["merge", "--abort"], worktree, check=False).returncode != 0:  # a squash leaves no merge to abort
        git(["reset", "--hard", "--quiet", "HEAD"], worktree, check=False)
    paths = [path for path in conflicted if path]
    if paths:
        raise MergeConflict(branch, paths)
    raise GitError(f"git merge {branch}: {git_reason(proc)}")


def delete_branch(repo: Path, branch: str) -> None:
    """Delete ``branch`` (``git branch -D``). Raises :class:`GitError` with git's reason when
    git refuses (the branch is checked out in a worktree)."""
    git(["branch", "-D", "--end-of-options", branch], repo)


def is_merged(repo: Path, branch: str, base: str) -> bool:
    """True when ``refs/heads/<branch>`` is an ancestor of ``base`` (``git merge-base
    --is-ancestor``): the base holds every commit of the branch."""
    return git(["merge-base", "--is-ancestor", f"refs/heads/{branch}", f"{base}^{{commit}}"], repo, check=False).returncode == 0


def content_in_base(repo: Path, branch: str, base: str) -> bool:
    """True when merging ``branch`` into ``base`` would change nothing: the base already
    holds the branch's changes, byte for byte, however they got there (a squash or rebase
    merge, a cherry-pick). ``git merge-tree --write-tree`` (git 2.38+) merges without a
    worktree; the result must be the base's own tree. Exact, unlike ``git cherry``, whose
    patch ids ignore whitespace: a change of indentation only is not in the base. Raises
    :class:`GitError` when git cannot tell (an older git)."""
    upstream = f"{base}^{{commit}}"
    proc = git(["merge-tree", "--write-tree", "--no-messages", upstream, f"refs/heads/{branch}"], repo, check=False)
    if proc.returncode == 1:
        return False  # the merge conflicts: the base does not hold the branch's change as it is
    if proc.returncode != 0:
        raise GitError(f"git merge-tree: {git_reason(proc)}")
    merged = proc.stdout.split("\n", 1)[0].strip()
    return merged == git(["rev-parse", f"{upstream}^{{tree}}"], repo).stdout.strip()


def commit_all(worktree: Path, message: str, leave_out: list[str] | None = None) -> str | None:
    """Commit everything uncommitted in ``worktree`` (``git add -A``: ignored files stay
    out) but the paths in ``leave_out`` (they stay as they are, uncommitted) with
    ``message``; returns the new commit id, or None when there was nothing to commit. The
    author comes from git's config (MACP's own name only when git has none); hooks are
    skipped (``--no-verify``): the quality gates are MACP's checks. Raises
    :class:`GitError` when git refuses."""
    git(["add", "-A", "--", "."], worktree)
    if leave_out:
        git(["--literal-pathspecs", "reset", "-q", "--", *leave_out], worktree)
    if git(["diff", "--cached", "--quiet"], worktree, check=False).returncode == 0:
        return None
    git([*_identity(worktree), "commit", "-q", "--no-verify", "-m", message], worktree)
    return git(["rev-parse", "HEAD"], worktree).stdout.strip()


def commits_since(worktree: Path, base_commit: str) -> list[str]:
    """Ids of the commits on the worktree's HEAD since ``base_commit``, oldest first
    (``git rev-list --reverse BASE..HEAD``). Raises :class:`GitError` for a ``base_commit``
    that is not a full commit id."""
    _require_commit_id(base_commit)
    return git(["rev-list", "--reverse", f"{base_commit}..HEAD", "--"], worktree).stdout.split()


def diff(repo: Path, base_commit: str, branch: str, stat: bool = False) -> str:
    """``git diff BASE...refs/heads/BRANCH`` (what the branch changed since it left
    ``base_commit``; ``stat``: the summary only). Raises :class:`GitError`."""
    _require_commit_id(base_commit)
    return git(["diff", "--no-color", *(["--stat"] if stat else []), f"{base_commit}...refs/heads/{branch}", "--"], repo).stdout


def _require_commit_id(value: str) -> None:
    if not COMMIT_ID.fullmatch(value):
        raise GitError(f"base_commit {value[:80]!r} is not a commit id")


def changed_files(worktree: Path, base_commit: str, untracked: list[str] | None = None) -> list[str]:
    """Paths that differ from ``base_commit``: committed, uncommitted and untracked, sorted.
    ``untracked``: the worktree's untracked files when the caller has just read them (a
    ``git status`` of :func:`worktree_status`), so git is not asked twice.

    ``base_commit`` comes from tasks.json, so it must be a full commit id: anything else
    (``--output=FILE`` would make git write a file) raises :class:`GitError`."""
    _require_commit_id(base_commit)
    names = set(git(["diff", "--name-only", "-z", base_commit, "--"], worktree).stdout.split("\0"))
    if untracked is None:
        untracked = git(["ls-files", "--others", "--exclude-standard", "-z"], worktree).stdout.split("\0")
    names.update(untracked)
    names.discard("")
    return sorted(names)
