"""Where one repository's MACP state lives, and the path-confinement rules.

Everything is under ``<repo>/.mosaic/orchestrator/`` (see docs/file-formats.md). Paths that
come from task files or the command line (brief paths, result folders, worktrees) go
through :func:`confine`, which refuses anything that resolves outside its root, ``..`` and
symlinks included.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from macp.errors import MacpError

STATE_DIR = Path(".mosaic") / "orchestrator"


@dataclass(frozen=True)
class Layout:
    """Paths of the MACP state of the repository at ``repo_root`` (an absolute path)."""

    repo_root: Path

    @property
    def orch_dir(self) -> Path:
        """``<repo>/.mosaic/orchestrator``."""
        return self.repo_root / STATE_DIR

    @property
    def config_file(self) -> Path:
        return self.orch_dir / "config.json"

    @property
    def tasks_file(self) -> Path:
        return self.orch_dir / "tasks.json"

    @property
    def tasks_journal(self) -> Path:
        """The controller's state changes since tasks.json was last written (macp.journal)."""
        return self.orch_dir / "tasks.journal"

    @property
    def tasks_lock(self) -> Path:
        """Lock file guarding every read-modify-write of tasks.json and its journal."""
        return self.orch_dir / ".tasks.lock"

    @property
    def controller_lock(self) -> Path:
        """Lock file held by the one running controller."""
        return self.orch_dir / ".controller.lock"

    @property
    def events_file(self) -> Path:
        return self.orch_dir / "events.ndjson"

    @property
    def events_outbox(self) -> Path:
        """The events of a queue change being written, until they are in the log (macp.outbox)."""
        return self.orch_dir / "events.outbox"

    @property
    def runtimes_file(self) -> Path:
        """When runtimes are back after a provider named a reset time."""
        return self.orch_dir / "runtimes.json"

    @property
    def logs_dir(self) -> Path:
        return self.orch_dir / "logs"

    @property
    def acp_dir(self) -> Path:
        return self.orch_dir / "acp"

    @property
    def cancel_dir(self) -> Path:
        """``cancel/``: requests to cancel a task a running controller runs (``mosaic macp cancel``)."""
        return self.orch_dir / "cancel"

    def task_log_dir(self, task_id: str) -> Path:
        """``logs/<task-id>``: the task's attempt folders and its gate-output record."""
        return self.logs_dir / task_id

    def attempt_dir(self, task_id: str, attempt: int) -> Path:
        """``logs/<task-id>/attempt-<n>``: worker and gate logs, brief and report of one attempt."""
        return self.task_log_dir(task_id) / f"attempt-{attempt}"

    def acp_file(self, task_id: str) -> Path:
        """``acp/<task-id>.json``: the sessions_spawn parameters of an acp task."""
        return self.acp_dir / f"{task_id}.json"


@lru_cache(maxsize=64)
def resolved_root(root: Path) -> Path:
    """``root.resolve()``, remembered for the life of the process: the folders paths are
    confined to (the repository, its state folder, the worktree base) stay where they are
    while one command runs, and a check of 10,000 tasks then costs one resolution of each
    task's own path instead of four (issue 11)."""
    return root.resolve()


def confine(candidate: str | Path, root: Path, what: str) -> Path:
    """Resolve ``candidate`` (relative to ``root`` unless absolute) and require it inside ``root``.

    Symlinks are followed before the check, so a link pointing out of ``root`` is refused.
    Returns the resolved path; raises :class:`MacpError` (exit 2) naming ``what`` otherwise.
    """
    text = str(candidate)
    if not text or "\0" in text:
        raise MacpError(f"{what}: empty or invalid path")
    root_resolved = resolved_root(root)
    inside = _resolve_inside(str(root_resolved), text)
    if inside is not None:
        return Path(inside)
    resolved = (root_resolved / candidate).resolve()
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise MacpError(f"{what}: {text!r} is outside {root_resolved}")
    return resolved


def _resolve_inside(root: str, candidate: str) -> str | None:
    """``root`` (resolved) joined with ``candidate`` and resolved, when that is plainly inside
    ``root``: no ``..`` and no symbolic link among the components below ``root`` that exist
    (one ``lstat`` each, stopping at the first that does not exist, as ``Path.resolve``
    does). None when the full resolution must decide. The same answer as
    ``Path(root, candidate).resolve()`` at a fraction of its cost, which matters when
    10,000 tasks are checked (issue 11)."""
    joined = os.path.join(root, candidate)
    prefix = root.rstrip("/") + "/"
    if not joined.startswith(prefix):
        return None
    parts = [part for part in joined[len(prefix) :].split("/") if part and part != "."]
    if ".." in parts:
        return None
    current = prefix.rstrip("/")
    for part in parts:
        current = f"{current}/{part}"
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            break
        except OSError:
            return None
        if stat.S_ISLNK(mode):
            return None
    return "/".join([prefix.rstrip("/"), *parts]) if parts else root


def confine_output(candidate: str | Path, layout: Layout, what: str) -> Path:
    """Resolve a file MACP will write (a result) and require it in an output folder: inside
    the repository (:func:`confine`, symlinks followed), not under ``.git``, and not in the
    state folder itself, where tasks.json, config.json and events.ndjson live. Returns the
    resolved path; raises :class:`MacpError` (exit 2) naming ``what`` otherwise."""
    resolved = confine(candidate, layout.repo_root, what)
    text, root = str(resolved), str(resolved_root(layout.repo_root))
    if ".git" in text[len(root) :].split("/"):
        raise MacpError(f"{what}: {str(candidate)!r} is inside .git")
    state = str(resolved_root(layout.orch_dir))
    if text == state or os.path.dirname(text) == state:
        raise MacpError(f"{what}: {str(candidate)!r} would land among MACP's state files in {state}; use a folder such as results/")
    return resolved


def check_state_folder(layout: Layout) -> None:
    """Refuse a state folder that would leave the repository: ``.mosaic`` or
    ``.mosaic/orchestrator`` being a symbolic link (to anywhere: state is never written
    through one) or something other than a folder. Raises :class:`MacpError` (exit 2)
    naming it."""
    for folder in (layout.orch_dir.parent, layout.orch_dir):
        if folder.is_symlink():
            raise MacpError(f"{folder} is a symbolic link; MACP keeps its state only in a real folder inside the repository: replace it with a folder")
        if folder.exists() and not folder.is_dir():
            raise MacpError(f"{folder} is not a folder; MACP keeps its state there: move it away")


def check_output_folders(layout: Layout) -> None:
    """Refuse to run when ``logs/``, ``acp/``, ``results/`` or ``archive/`` of the state
    folder is a symbolic link: MACP writes only into real folders, never through a link to
    somewhere else. Raises :class:`MacpError` (exit 2) naming the link."""
    for folder in (layout.logs_dir, layout.acp_dir, layout.orch_dir / "results", layout.orch_dir / "archive"):
        if folder.is_symlink():
            raise MacpError(f"{folder} is a symbolic link; MACP writes only into real folders: replace it with a folder")
