"""`make demo` works offline and ends with every task where the demo says it will."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import TOOLS


def test_demo_runs_offline_and_ends_as_expected(sandbox, tmp_path):
    demo_dir = tmp_path / "demo"
    sandbox.env.pop("PYTHONDONTWRITEBYTECODE", None)  # its gates write __pycache__, as real projects' do
    proc = subprocess.run(
        [sys.executable, str(TOOLS / "demo" / "run_demo.py")],
        env={**sandbox.env, "DEMO_DIR": str(demo_dir)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    tasks = json.loads((demo_dir / "project" / ".mosaic" / "orchestrator" / "tasks.json").read_text())["tasks"]
    assert {t["id"]: t["status"] for t in tasks} == {
        "LEGACY-1": "completed", "DEMO-1": "completed", "DEMO-2": "completed", "DEMO-3": "escalated", "DEMO-4": "completed"}
    assert "## Previous attempt" in proc.stdout
    landed = {t["id"] for t in tasks if t.get("landed_commit")}
    assert landed == {"DEMO-1", "DEMO-2", "DEMO-4"}, "the completed tasks with branches landed on main, tested together"
    assert '"runtime": "acp"' in proc.stdout
    worktrees = demo_dir / "worktrees"
    assert not worktrees.exists() or not list(worktrees.iterdir()), "the demo leaves no worktree behind"
    repo = demo_dir / "project"
    committed = subprocess.run(["git", "log", "--all", "--name-only", "--format="], cwd=repo, capture_output=True, text=True, check=True).stdout
    assert ".pyc" not in committed and "__pycache__" not in committed, "no build output is committed"
    rerun = subprocess.run([sys.executable, str(TOOLS / "demo" / "run_demo.py")], env={**sandbox.env, "DEMO_DIR": str(demo_dir)},
                           capture_output=True, text=True, check=False)
    assert rerun.returncode != 0 and "already exists" in rerun.stderr


def test_demo_without_demo_dir_removes_its_temp_folder(sandbox, tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {key: value for key, value in sandbox.env.items() if key != "DEMO_DIR"}
    proc = subprocess.run([sys.executable, str(TOOLS / "demo" / "run_demo.py")], env={**env, "TMPDIR": str(temp)},
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert list(temp.iterdir()) == [] and "set DEMO_DIR" in proc.stdout
