"""What a task's worktree holds besides its commits, and which of it is work (issue 22).

A worktree MACP created holds only what the task's processes made. Its files fall in four
kinds (DESIGN.md "Worktrees"):

- **uncommitted work**: modified, staged or untracked paths the worker left -- work; it keeps
  the worktree;
- **gate output**: untracked or modified paths a quality gate left and nobody touched since
  (a test writing a report, ``__pycache__`` in a project that does not ignore it) -- not the
  worker's work: never committed as leftovers, removed with the worktree;
- **kept ignored files**: ignored paths matching ``macp.keep_ignored`` (``.env*``, keys,
  databases) -- they look like secrets or data, so they keep the worktree unless
  ``macp.remove_ignored_files``;
- **build output**: every other ignored path (``__pycache__/``, ``node_modules/``,
  ``target/``) -- listed in the result with its size and removed with the worktree.

Which untracked or modified paths are gate output is known from a record of the paths the
gates changed, written after each gate run (:func:`gate_output_after`) in the task's log
folder: a path counts as gate output while its content is the one the gates left. The rules
are pure functions; :func:`read_contents` is the thin layer that asks git and the file
system (one ``git status``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from macp import gitops
from macp.fsio import NotARegularFile, open_regular, write_atomic
from macp.jsontext import dump_json
from macp.model import BuildOutput, MacpConfig

# A path's content, as far as "did anyone change it since" needs: "sha256:<hex>" for a file,
# "link:<target>" for a symbolic link, "deleted" for a tracked path that is gone.
Fingerprint = str
DELETED: Fingerprint = "deleted"

# At most this many build-output paths are named in a result; ``count`` and ``bytes`` cover all.
LISTED_PATHS = 100


@dataclass
class WorktreeContents:
    """What a worktree holds besides its commits, by kind (module docstring). Paths are
    relative to the worktree, as git prints them (an ignored folder ends in ``/``)."""

    uncommitted: list[str] = field(default_factory=list)
    gate_output: list[str] = field(default_factory=list)
    kept_ignored: list[str] = field(default_factory=list)
    build_output: list[str] = field(default_factory=list)
    build_output_bytes: int = 0
    tracked_gate_output: list[str] = field(default_factory=list)  # the gate output git tracks (restored, not deleted)
    untracked: list[str] = field(default_factory=list)  # every untracked path that is not ignored, gate output included

    def build_output_record(self) -> BuildOutput:
        """The result's ``build_output``: the paths (the first :data:`LISTED_PATHS`), how many
        there are, and their total size in bytes (gate output included)."""
        paths = self.build_output + self.gate_output
        return {"paths": paths[:LISTED_PATHS], "count": len(paths), "bytes": self.build_output_bytes}


def path_list(label: str, paths: list[str]) -> str:
    """``"2 uncommitted paths: a.py, b.py"`` (at most five named)."""
    shown = ", ".join(paths[:5]) + (", ..." if len(paths) > 5 else "")
    return f"{len(paths)} {label} path{'s' if len(paths) != 1 else ''}: {shown}"


def why_kept(contents: WorktreeContents, remove_ignored: bool) -> str | None:
    """Why removing the worktree would lose work (``"2 uncommitted paths: a.py, b.py"``,
    ``"1 ignored path kept by macp.keep_ignored: .env"``), or None when it may go: only
    uncommitted work, and keep-list matches unless ``remove_ignored``, keep it (pure)."""
    if contents.uncommitted:
        return path_list("uncommitted", contents.uncommitted)
    if contents.kept_ignored and not remove_ignored:
        return path_list("ignored", contents.kept_ignored) + " (macp.keep_ignored: secrets or data)"
    return None


def keeps(name: str, patterns: list[str]) -> bool:
    """True when the file or folder ``name`` (a base name) matches a keep-list glob
    (``fnmatch``, case-sensitive as git is)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def gate_output_after(previous: dict[str, Fingerprint], before: dict[str, Fingerprint], after: dict[str, Fingerprint]) -> dict[str, Fingerprint]:
    """The gate-output record after a gate run (pure). ``before``/``after``: the fingerprints
    of the worktree's untracked and modified paths just before and just after the gates;
    ``previous``: the record of earlier gate runs. A path is gate output when the gates made
    it dirty (clean before them), or when it was gate output already and nobody touched it
    before this run. A path the worker had changed before the gates is work, whatever the
    gates did to it afterwards."""
    record = {}
    for path, fingerprint in after.items():
        untouched_before = path not in before or previous.get(path) == before[path]
        if untouched_before and (path not in before or before[path] != fingerprint or path in previous):
            record[path] = fingerprint
    return record


def unchanged_gate_output(record: dict[str, Fingerprint], current: dict[str, Fingerprint]) -> list[str]:
    """The paths of ``record`` whose content is still what the gates left (pure), sorted."""
    return sorted(path for path, fingerprint in record.items() if current.get(path) == fingerprint)


# -- the thin layer: git, the file system -----------------------------------------------------


def fingerprint(worktree: Path, path: str) -> Fingerprint:
    """The fingerprint of ``path`` (relative to ``worktree``) as it is now."""
    full = worktree / path
    try:
        info = os.lstat(full)
    except FileNotFoundError:
        return DELETED
    if stat.S_ISLNK(info.st_mode):
        return f"link:{os.readlink(full)}"
    if not stat.S_ISREG(info.st_mode):
        return f"mode:{stat.S_IFMT(info.st_mode)}"
    digest = hashlib.sha256()
    try:
        handle = os.fdopen(open_regular(full), "rb")
    except NotARegularFile:  # replaced by a FIFO or a link since the lstat: never read
        return f"mode:{stat.S_IFMT(os.lstat(full).st_mode)}"
    with handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def gate_output_now(worktree: Path, record: dict[str, Fingerprint]) -> list[str]:
    """The paths of the gate-output ``record`` whose content is still what the gates left
    (no git call: only the recorded paths are looked at)."""
    return unchanged_gate_output(record, {path: fingerprint(worktree, path) for path in record})


def dirty_fingerprints(worktree: Path) -> dict[str, Fingerprint]:
    """``{path: fingerprint}`` of the worktree's untracked and modified paths (one ``git status``)."""
    return {path: fingerprint(worktree, path) for path in gitops.worktree_status(worktree).dirty}


def folder_scan(worktree: Path, folder: str, keep_patterns: list[str], opaque: list[str]) -> tuple[int, list[str]]:
    """``(bytes, keep-list matches)`` of the ignored ``folder`` of ``worktree``: the size of
    every file under it (links not followed) and the paths inside it whose name matches
    ``keep_patterns``, relative to the worktree (folders end in ``/``). Folders named in
    ``opaque`` (``macp.build_output_folders``: ``node_modules`` holds downloads, never the
    user's secrets) are measured but not searched."""
    total, matches = 0, []
    for top, folders, files in os.walk(worktree / folder):
        relative = Path(top).relative_to(worktree)
        searched = not set(opaque).intersection(relative.parts)
        for name in files:
            total += _size(Path(top, name))
            if searched and keeps(name, keep_patterns):
                matches.append(f"{relative}/{name}")
        if searched:
            matches += [f"{relative}/{name}/" for name in folders if keeps(name, keep_patterns)]
    return total, matches


def read_contents(worktree: Path, macp: MacpConfig, gate_record: dict[str, Fingerprint]) -> WorktreeContents:
    """What ``worktree`` holds now, by kind (one ``git status``, a walk of ignored folders,
    and a fingerprint of each dirty path the gate record names). Raises
    :class:`~macp.gitops.GitError` when git cannot read the worktree."""
    status = gitops.worktree_status(worktree, with_ignored=True)
    current = {path: fingerprint(worktree, path) for path in status.dirty if path in gate_record}
    left_by_gates = set(unchanged_gate_output(gate_record, current))
    contents = WorktreeContents(
        uncommitted=[path for path in status.dirty if path not in left_by_gates],
        gate_output=[path for path in status.dirty if path in left_by_gates],
        tracked_gate_output=[path for path in status.changed if path in left_by_gates],
        untracked=status.untracked,
    )
    patterns, opaque = macp["keep_ignored"], macp["build_output_folders"]
    for path in status.ignored:
        full = worktree / path
        if path.endswith("/") and not full.is_symlink():
            size, matches = folder_scan(worktree, path, patterns, opaque)
            contents.kept_ignored += matches
        else:
            size = _size(full)
        if keeps(Path(path).name, patterns):
            contents.kept_ignored.append(path)
        contents.build_output.append(path)
        contents.build_output_bytes += size
    contents.build_output_bytes += sum(_size(worktree / path) for path in contents.gate_output)
    return contents


def _size(path: Path) -> int:
    """Size of ``path`` in bytes (a link's own size; 0 when it is gone)."""
    try:
        return path.lstat().st_size
    except OSError:
        return 0


def discard_gate_output(worktree: Path, contents: WorktreeContents) -> None:
    """Undo what the gates left, so git's own check before removing the worktree sees only
    the worker's work: untracked gate output is deleted, tracked files the gates changed
    are checked out from HEAD again. Raises :class:`~macp.gitops.GitError`."""
    tracked = set(contents.tracked_gate_output)
    for path in contents.gate_output:
        if path not in tracked:
            (worktree / path).unlink(missing_ok=True)
    if tracked:
        gitops.restore_from_head(worktree, sorted(tracked))


# -- the gate-output record (the task's log folder) ---------------------------------------------


def gate_record_file(task_log_dir: Path) -> Path:
    """``logs/<task-id>/gate-output.json``: the paths the task's gates left, with their fingerprints."""
    return task_log_dir / "gate-output.json"


def read_gate_record(task_log_dir: Path) -> dict[str, Fingerprint]:
    """The task's gate-output record; ``{}`` when there is none or it cannot be read (then
    every dirty path counts as work: nothing is ever thrown away on a guess)."""
    try:
        record = json.loads(gate_record_file(task_log_dir).read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict):
        return {}
    return {path: value for path, value in record.items() if isinstance(path, str) and isinstance(value, str)}


def write_gate_record(task_log_dir: Path, record: dict[str, Fingerprint]) -> None:
    """Replace the task's gate-output record (atomically)."""
    write_atomic(gate_record_file(task_log_dir), dump_json(record))
