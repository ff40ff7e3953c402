"""Shared fixtures: real git repositories in temp folders, the real bin/ scripts run as child
processes, and fake agent CLIs put on PATH.

Every test gets its own HOME (so ``~/src/<repo>-<hash>-worktrees`` and ``~/.config/mosaic/bin`` are
private) and a deterministic git identity.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "bin"
TOOLS = ROOT / "tools" / "orchestrator-matrix"
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(TOOLS))

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "MACP Tests",
    "GIT_AUTHOR_EMAIL": "tests@macp.invalid",
    "GIT_COMMITTER_NAME": "MACP Tests",
    "GIT_COMMITTER_EMAIL": "tests@macp.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


class Sandbox:
    """A test's world: a HOME, a git repository with one commit, a folder of fake CLIs."""

    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.fake_bin = tmp_path / "fakebin"
        self.fake_bin.mkdir()
        self.repo = tmp_path / "project"
        self.repo.mkdir()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MACP_", "GIT_")) and not k.lower().endswith("_proxy")},
            **GIT_IDENTITY,
            "HOME": str(self.home),
            "PATH": f"{self.fake_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "MACP_DEBUG": "1",
        }
        self.git("init", "-q", "-b", "main")
        (self.repo / "README.md").write_text("# project\n")
        self.git("add", "README.md")
        self.git("commit", "-q", "-m", "initial commit")

    @property
    def orch(self) -> Path:
        return self.repo / ".mosaic" / "orchestrator"

    @property
    def worktree_base(self) -> Path:
        """The default ``~/src/{repo}-{repo_hash}-worktrees`` of this repository."""
        from macp.settings import repo_hash

        return self.home / "src" / f"project-{repo_hash(self.repo)}-worktrees"

    def worktree(self, task_id: str) -> Path:
        """Where the controller puts ``task_id``'s worktree (the dispatcher's own rule)."""
        from macp.naming import task_folder_name

        return self.worktree_base / task_folder_name(task_id)

    def git(self, *args: str, cwd: Path | None = None) -> str:
        proc = subprocess.run(
            ["git", *args], cwd=cwd or self.repo, env=self.env, capture_output=True, text=True, check=True
        )
        return proc.stdout

    def run(self, *argv: str, cwd: Path | None = None, check: bool | None = None, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
        """Run a bin/ script (``"mosaic"``, ``"mosaic-macp"``, ``"mosaic-orchestrator-run"``)."""
        command = [str(BIN / argv[0]), *argv[1:]]
        proc = subprocess.run(command, cwd=cwd or self.repo, env=self.env, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
        if check and proc.returncode != 0:
            raise AssertionError(f"{argv} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    def macp(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run("mosaic", "macp", *args, **kwargs)

    def controller(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run("mosaic-orchestrator-run", "--repo", str(self.repo), *args, **kwargs)

    def write_config(self, config: dict) -> None:
        self.orch.mkdir(parents=True, exist_ok=True)
        (self.orch / "config.json").write_text(json.dumps(config, indent=2))

    def write_tasks(self, tasks: object) -> None:
        self.orch.mkdir(parents=True, exist_ok=True)
        (self.orch / "tasks.json").write_text(json.dumps(tasks, indent=2))

    def tasks(self) -> list[dict]:
        """The queue as MACP reads it: tasks.json with the journal of a run in progress (or
        of one killed) replayed on top."""
        from macp.layout import Layout
        from macp.taskstore import load_tasks

        return load_tasks(Layout(self.repo)).tasks

    def task(self, task_id: str) -> dict:
        return next(task for task in self.tasks() if task["id"] == task_id)

    def events(self, task_id: str | None = None) -> list[dict]:
        path = self.orch / "events.ndjson"
        if not path.exists():
            return []
        events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [e for e in events if task_id is None or e.get("task_id") == task_id]

    def event_types(self, task_id: str) -> list[str]:
        return [e["event_type"] for e in self.events(task_id)]

    def result(self, task_id: str) -> dict:
        return json.loads((self.orch / "results" / f"{task_id}.json").read_text())

    def fake_cli(self, name: str, script: str) -> Path:
        """Put an executable ``name`` (a shell script) on the sandbox PATH."""
        path = self.fake_bin / name
        path.write_text("#!/bin/sh\n" + textwrap.dedent(script))
        path.chmod(0o755)
        return path


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)
