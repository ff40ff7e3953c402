"""The MACP Phase 1 brief's Verification section, literally (items 1-5)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from referencing import Registry, Resource

from conftest import ROOT, TOOLS


def oracle_validator(name: str) -> jsonschema.Draft202012Validator:
    """The independent oracle: the `jsonschema` package, with MACP's schemas registered."""
    schemas = {n: json.loads((TOOLS / "protocol" / f"{n}.schema.json").read_text()) for n in ("task", "event", "result", "config")}
    registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas.values())
    return jsonschema.Draft202012Validator(
        schemas[name], registry=registry, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def assert_state_files_valid(orch) -> int:
    """Validate every JSON file a run produced with the oracle; return how many were checked."""
    checked = 0
    tasks = json.loads((orch / "tasks.json").read_text())
    for task in tasks["tasks"] if isinstance(tasks, dict) else tasks:
        oracle_validator("task").validate(task)
        checked += 1
    for line in (orch / "events.ndjson").read_text().splitlines():
        oracle_validator("event").validate(json.loads(line))
        checked += 1
    for result in (orch / "results").glob("*.json"):
        oracle_validator("result").validate(json.loads(result.read_text()))
        checked += 1
    if (orch / "config.json").exists():
        oracle_validator("config").validate(json.loads((orch / "config.json").read_text()))
    return checked


def test_legacy_tasks_json_with_once_runs_the_command_in_the_repo_root(sandbox):
    sandbox.write_tasks({"tasks": [{"id": "legacy-1", "title": "old style", "command": "pwd > where.txt"}]})
    script = TOOLS / "controller" / "mosaic_orchestrator.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--repo", str(sandbox.repo), "--once"],
        env=sandbox.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (sandbox.repo / "where.txt").read_text().strip() == str(sandbox.repo)
    assert sandbox.task("legacy-1")["status"] == "completed"
    assert "worktree" not in sandbox.task("legacy-1")
    assert sandbox.event_types("legacy-1") == ["task.started", "task.completed"], "the pre-MACP lifecycle: no gated step"


def test_legacy_bare_list_is_accepted_and_written_back_as_a_list(sandbox):
    sandbox.write_tasks([{"id": "a", "command": "true"}])
    sandbox.controller("--once", check=True)
    data = json.loads((sandbox.orch / "tasks.json").read_text())
    assert isinstance(data, list) and data[0]["status"] == "completed"


def test_macp_exec_task_creates_worktree_runs_writes_valid_result_and_cleans_up(sandbox):
    sandbox.write_tasks(
        {
            "tasks": [
                {
                    "id": "TASK-042",
                    "title": "Add greeting",
                    "dispatch": "exec",
                    "command": 'echo "$MACP_TASK_ID $MACP_ATTEMPT" > greeting.txt && pwd > ../where.txt && git add greeting.txt && git commit -qm greeting',
                }
            ]
        }
    )
    proc = sandbox.controller("--once", check=True)
    worktree = sandbox.worktree("TASK-042")
    assert (sandbox.worktree_base / "where.txt").read_text().strip() == str(worktree)
    assert not worktree.exists(), "a clean worktree is removed after the task completes"
    assert "feat/TASK-042-add-greeting" in sandbox.git("branch", "--list", "feat/*")
    assert sandbox.git("show", "feat/TASK-042-add-greeting:greeting.txt").strip() == "TASK-042 1"
    result = sandbox.result("TASK-042")
    assert result["status"] == "completed" and result["exit_code"] == 0
    assert result["files_changed"] == ["greeting.txt"]
    assert result["branch"] == "feat/TASK-042-add-greeting"
    assert sandbox.event_types("TASK-042") == [
        "task.started",
        "worktree.created",
        "task.gated",
        "task.completed",
        "worktree.removed",
    ]
    assert "TASK-042: completed" in proc.stdout
    assert assert_state_files_valid(sandbox.orch) >= 7


def test_cli_submit_and_status_print_correct_output(sandbox):
    submit = sandbox.macp("submit", "--task-id", "TASK-001", "--title", "Fix the parser", "--type", "coding", "--command", "true", check=True)
    assert submit.stdout == "submitted TASK-001 (exec, pending)\n"
    assert "created" in submit.stderr and ".mosaic/orchestrator" in submit.stderr
    status = sandbox.macp("status", check=True)
    lines = status.stdout.splitlines()
    assert lines[0] == "1 task(s): 1 pending"
    assert lines[2].split() == ["ID", "STATUS", "ATTEMPTS", "DISPATCH", "RUNTIME", "SPENT", "TITLE", "NOTE"]
    assert lines[3].split() == ["TASK-001", "ready", "0/1", "exec", "-", "-", "Fix", "the", "parser"]
    data = json.loads(sandbox.macp("status", "--json", check=True).stdout)
    assert data["counts"]["pending"] == 1
    assert data["tasks"][0]["view"] == "ready"


def test_every_python_module_imports():
    demo_project = TOOLS / "demo" / "project"  # the demo's sample project: data, not MACP code
    modules = sorted(
        ".".join(path.relative_to(TOOLS).with_suffix("").parts)
        for path in TOOLS.rglob("*.py")
        if path.name != "__init__.py" and demo_project not in path.parents
    )
    assert "dispatcher.macp_dispatcher" in modules and "controller.mosaic_orchestrator" in modules
    for name in modules:
        importlib.import_module(name)
    for script in ("mosaic", "mosaic-macp", "mosaic-orchestrator-run"):
        proc = subprocess.run([str(ROOT / "bin" / script), "--help"], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, (script, proc.stderr)


def find_python310() -> str | None:
    """A working Python 3.10 interpreter, if this machine has one."""
    import glob
    import shutil

    candidates = [shutil.which("python3.10"), *sorted(glob.glob(str(Path.home() / ".pyenv" / "versions" / "3.10*" / "bin" / "python3.10")))]
    for candidate in filter(None, candidates):
        proc = subprocess.run([candidate, "--version"], capture_output=True, text=True, check=False)
        if proc.returncode == 0 and proc.stdout.startswith("Python 3.10"):
            return candidate
    return None


PYTHON310 = find_python310()


@pytest.mark.skipif(PYTHON310 is None, reason="no Python 3.10 interpreter on this machine")
def test_cli_and_controller_run_on_python_3_10(sandbox):
    def run(script: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([PYTHON310, str(ROOT / "bin" / script), *args], cwd=sandbox.repo, env=sandbox.env,
                              capture_output=True, text=True, check=False)

    assert run("mosaic-macp", "submit", "--task-id", "P1", "--command", "git commit -q --allow-empty -m p1").returncode == 0
    sandbox.write_config({"quality_gates": ["true"]})
    proc = run("mosaic-orchestrator-run", "--until-drained")
    assert proc.returncode == 0, proc.stderr
    assert sandbox.task("P1")["status"] == "completed"
    assert len(run("mosaic-macp", "history", "--task-id", "P1").stdout.splitlines()) == 7
    assert run("mosaic-macp", "status", "--json").returncode == 0
