"""`make demo` works offline and ends with every task where the demo says it will."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import TOOLS


def test_demo_runs_offline_and_ends_as_expected(sandbox, tmp_path):
    demo_dir = tmp_path / "demo"
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
    assert '"runtime": "acp"' in proc.stdout
    rerun = subprocess.run([sys.executable, str(TOOLS / "demo" / "run_demo.py")], env={**sandbox.env, "DEMO_DIR": str(demo_dir)},
                           capture_output=True, text=True, check=False)
    assert rerun.returncode != 0 and "already exists" in rerun.stderr
