"""Thin wrappers over the git command line (worktrees, refs, status).

Every call runs ``git`` with an argv list (never a shell), ``GIT_TERMINAL_PROMPT=0`` and
``LC_ALL=C``; user-supplied names are passed after ``--`` or validated first, so a value
such as ``--upload-pack=...`` is never read as an option. Failures raise :class:`GitError`
carrying git's own message.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

from macp.errors import MacpError

COMMIT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class GitError(MacpError):
    """A git command failed; the message is git's stderr (first line)."""


def git(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``git <args>`` in ``cwd``; return the CompletedProcess (text mode).

    git's output goes to temporary files, not pipes: if the controller is killed, git still
    finishes its operation instead of dying of SIGPIPE halfway (and leaving lock files).
    Raises :class:`GitError` when ``check`` is true and git exits non-zero, or when git is
    not installed.
    """
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            returncode = subprocess.run(
                ["git", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, check=False
            ).returncode
        except FileNotFoundError:
            raise GitError("git is not installed (or not on PATH)") from None
        out.seek(0)
        err.seek(0)
        proc = subprocess.CompletedProcess(
            ["git", *args], returncode, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")
        )
    if check and proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}").splitlines()[0]
        raise GitError(f"git {args[0]}: {detail}")
    return proc


def toplevel(path: Path) -> Path:
    """The worktree root containing ``path``; raises MacpError "not a git repository" otherwise."""
    if not path.is_dir():
        raise MacpError(f"not a directory: {path}")
    proc = git(["rev-parse", "--show-toplevel"], path, check=False)
    if proc.returncode != 0:
        raise MacpError(f"not a git repository: {path}")
    return Path(proc.stdout.strip()).resolve()


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


def registered_worktrees(repo: Path) -> dict[Path, str | None]:
    """Worktrees git knows for ``repo``: resolved path -> checked-out branch (None if detached)."""
    proc = git(["worktree", "list", "--porcelain"], repo)
    found: dict[Path, str | None] = {}
    current: Path | None = None
    for line in proc.stdout.splitlines():
        if line.startswith("worktree "):
            current = Path(line[len("worktree ") :]).resolve()
            found[current] = None
        elif line.startswith("branch ") and current is not None:
            found[current] = line[len("branch ") :].removeprefix("refs/heads/")
    return found


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


def dirty_paths(worktree: Path) -> list[str]:
    """Modified, staged and untracked (not ignored) paths in ``worktree``."""
    proc = git(["status", "--porcelain=v1", "-z", "--untracked-files=all"], worktree)
    entries = iter(proc.stdout.split("\0"))
    paths = []
    for entry in entries:
        if len(entry) > 3:
            paths.append(entry[3:])
            if entry[0] in "RC":
                next(entries, None)
    return paths


def ignored_paths(worktree: Path) -> list[str]:
    """Paths in ``worktree`` that ``.gitignore`` hides (build output, ``.env`` files)."""
    proc = git(["status", "--porcelain=v1", "-z", "--ignored=matching", "--untracked-files=all"], worktree)
    return [entry[3:] for entry in proc.stdout.split("\0") if entry.startswith("!! ")]


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


def keep_commit(repo: Path, ref: str, commit: str) -> None:
    """Point ``ref`` (under ``refs/``) at ``commit`` so git never collects it."""
    git(["update-ref", "--no-deref", ref, commit], repo)


def changed_files(worktree: Path, base_commit: str) -> list[str]:
    """Paths that differ from ``base_commit``: committed, uncommitted and untracked, sorted.

    ``base_commit`` comes from tasks.json, so it must be a full commit id: anything else
    (``--output=FILE`` would make git write a file) raises :class:`GitError`."""
    if not COMMIT_ID.fullmatch(base_commit):
        raise GitError(f"base_commit {base_commit[:80]!r} is not a commit id")
    names = set(git(["diff", "--name-only", "-z", base_commit, "--"], worktree).stdout.split("\0"))
    names.update(git(["ls-files", "--others", "--exclude-standard", "-z"], worktree).stdout.split("\0"))
    names.discard("")
    return sorted(names)
