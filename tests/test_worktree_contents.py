"""Issue 22 items 1-2: build output and gate output are not work.

Real projects' gates write build output (``__pycache__/`` with PYTHONDONTWRITEBYTECODE
unset, ``node_modules/``, ``target/``): it must not keep worktrees, and what a gate leaves
must never be committed as if the worker wrote it. Secrets and data (the keep-list) still
keep the worktree.
"""

from __future__ import annotations

import json

from macp.worktree_contents import DELETED, WorktreeContents, gate_output_after, keeps, why_kept

PYTHON_PROJECT_IGNORES = "__pycache__/\n.pytest_cache/\nnode_modules/\ntarget/\n.env\ndata/\n"
UNITTEST_GATE = "python3 -m unittest discover -s tests -t . -q"


def python_project(sandbox, gitignore: str | None = PYTHON_PROJECT_IGNORES) -> None:
    """A small Python package with a unittest suite, committed; gates write bytecode."""
    sandbox.env.pop("PYTHONDONTWRITEBYTECODE", None)
    (sandbox.repo / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (sandbox.repo / "tests").mkdir()
    (sandbox.repo / "tests" / "__init__.py").write_text("")
    (sandbox.repo / "tests" / "test_calc.py").write_text(
        "import unittest\n\nimport calc\n\n\nclass Add(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(calc.add(2, 3), 5)\n"
    )
    if gitignore is not None:
        (sandbox.repo / ".gitignore").write_text(gitignore)
    sandbox.git("add", ".")
    sandbox.git("commit", "-q", "-m", "calc with tests")


def exec_task(task_id: str, command: str, **extra) -> dict:
    return {"id": task_id, "title": f"task {task_id}", "dispatch": "exec", "command": command, **extra}


def branch_files(sandbox, task_id: str) -> list[str]:
    return sandbox.git("ls-tree", "-r", "--name-only", sandbox.task(task_id)["branch"]).split()


# -- the rules (pure) ---------------------------------------------------------------------


def test_a_path_the_gates_made_dirty_is_gate_output_and_one_the_worker_changed_first_is_work():
    before = {"work.py": "sha256:w"}
    after = {"work.py": "sha256:w2", "report.xml": "sha256:r", "README.md": "sha256:m"}
    assert gate_output_after({}, before, after) == {"report.xml": "sha256:r", "README.md": "sha256:m"}


def test_gate_output_stays_gate_output_until_someone_touches_it():
    previous = {"report.xml": "sha256:r1", "old.log": "sha256:o"}
    before = {"report.xml": "sha256:r1", "old.log": "sha256:edited-by-the-worker"}
    after = {"report.xml": "sha256:r1", "old.log": "sha256:edited-by-the-worker", "gone.txt": DELETED}
    assert gate_output_after(previous, before, after) == {"report.xml": "sha256:r1", "gone.txt": DELETED}


def test_only_uncommitted_work_and_keep_list_matches_keep_a_worktree():
    build = WorktreeContents(build_output=["__pycache__/", "node_modules/"], gate_output=["report.xml"], build_output_bytes=10)
    assert why_kept(build, remove_ignored=False) is None
    secret = WorktreeContents(kept_ignored=[".env"], build_output=[".env"])
    assert why_kept(secret, remove_ignored=False) == "1 ignored path: .env (macp.keep_ignored: secrets or data)"
    assert why_kept(secret, remove_ignored=True) is None
    work = WorktreeContents(uncommitted=["a.py", "b.py"], kept_ignored=[".env"])
    assert why_kept(work, remove_ignored=True) == "2 uncommitted paths: a.py, b.py"
    assert build.build_output_record() == {"paths": ["__pycache__/", "node_modules/", "report.xml"], "count": 3, "bytes": 10}


def test_the_keep_list_matches_names_of_secrets_and_data():
    from macp.config import default_config

    patterns = default_config()["macp"]["keep_ignored"]
    for name in (".env", ".env.local", "prod.env", "server.pem", "tls.key", "id_ed25519", "app.sqlite", "state.db", "terraform.tfstate"):
        assert keeps(name, patterns), name
    for name in ("stats.cpython-311.pyc", "index.js", "app", "keys.py", "environment.yml", "build.log"):
        assert not keeps(name, patterns), name


# -- real projects ------------------------------------------------------------------------


def test_build_output_of_a_python_projects_gates_goes_with_the_worktree_and_is_listed(sandbox):
    python_project(sandbox)
    gates = [
        UNITTEST_GATE,
        "mkdir -p node_modules/tls/test target/debug && echo cert > node_modules/tls/test/server.pem && echo bin > target/debug/app",
    ]
    sandbox.write_config({"quality_gates": gates})
    sandbox.write_tasks({"tasks": [exec_task("PY", "printf 'def sub(a, b):\\n    return a - b\\n' >> calc.py")]})
    sandbox.controller("--once", check=True)
    result = sandbox.result("PY")
    assert result["status"] == "completed" and result["worktree_kept"] is None
    assert not sandbox.worktree("PY").exists(), "build output does not keep the worktree"
    output = result["build_output"]
    assert {"__pycache__/", "tests/__pycache__/", "node_modules/", "target/"} <= set(output["paths"]), output
    assert output["count"] == len(output["paths"]) and output["bytes"] > 0
    assert result["files_changed"] == ["calc.py"]
    assert not [name for name in branch_files(sandbox, "PY") if "pycache" in name or name.endswith(".pyc")]
    assert sandbox.macp("prune", check=True).stdout.strip().splitlines() == [f"kept branch {sandbox.task('PY')['branch']} (PY): not in HEAD yet"]


def test_ignored_secrets_and_data_keep_the_worktree_even_inside_an_ignored_folder(sandbox):
    python_project(sandbox)
    sandbox.write_config({"quality_gates": [UNITTEST_GATE]})
    sandbox.write_tasks({"tasks": [exec_task("DATA", "mkdir -p data && echo rows > data/app.sqlite && echo 'def f():\n    pass' >> calc.py")]})
    sandbox.controller("--once", check=True)
    result = sandbox.result("DATA")
    assert result["worktree_kept"] == "1 ignored path: data/app.sqlite (macp.keep_ignored: secrets or data)"
    assert (sandbox.worktree("DATA") / "data" / "app.sqlite").read_text() == "rows\n"
    assert "worktree.kept" in sandbox.event_types("DATA")


def test_prune_removes_a_finished_worktree_that_holds_only_build_output(sandbox):
    python_project(sandbox)
    sandbox.write_config({"quality_gates": [UNITTEST_GATE], "macp": {"cleanup_worktrees": False}})
    sandbox.write_tasks({"tasks": [exec_task("KEEP", "echo '# more' >> calc.py")]})
    sandbox.controller("--once", check=True)
    assert (sandbox.worktree("KEEP") / "__pycache__").is_dir()
    dry = sandbox.macp("prune", "--dry-run", check=True).stdout
    assert f"would remove worktree {sandbox.worktree('KEEP')} (KEEP)" in dry
    out = sandbox.macp("prune", check=True).stdout
    assert f"removed worktree {sandbox.worktree('KEEP')} (KEEP)" in out and not sandbox.worktree("KEEP").exists()


def test_what_a_failed_attempts_gate_wrote_is_not_committed_by_the_next_attempt(sandbox):
    # No .gitignore: the gate's bytecode and report are untracked files, as in many projects.
    python_project(sandbox, gitignore=None)
    gate = f"{UNITTEST_GATE} && echo '<testsuite/>' > report.xml && test -f fixed.txt"
    sandbox.write_config({"quality_gates": [{"name": "tests", "command": gate}]})
    worker = 'echo "attempt $MACP_ATTEMPT" >> progress.txt; if [ "$MACP_ATTEMPT" = 2 ]; then touch fixed.txt; fi'
    sandbox.write_tasks({"tasks": [exec_task("G", worker, max_attempts=2)]})
    sandbox.controller("--until-drained", check=True)
    result = sandbox.result("G")
    assert result["status"] == "completed" and result["attempt"] == 2
    files = branch_files(sandbox, "G")
    assert "progress.txt" in files and "fixed.txt" in files, "the worker's work is committed"
    assert "report.xml" not in files and not [name for name in files if name.endswith(".pyc")], files
    assert sorted(result["files_changed"]) == ["fixed.txt", "progress.txt"]
    assert "report.xml" in result["build_output"]["paths"] and result["worktree_kept"] is None
    assert not sandbox.worktree("G").exists()


def test_a_tracked_file_a_gate_rewrote_is_put_back_not_committed(sandbox):
    gate = "echo 'formatted by the gate' >> README.md"
    sandbox.write_config({"quality_gates": [gate]})
    sandbox.write_tasks({"tasks": [exec_task("FMT", "echo feature > feature.txt")]})
    sandbox.controller("--once", check=True)
    result = sandbox.result("FMT")
    assert result["status"] == "completed" and result["worktree_kept"] is None
    assert "README.md" in result["build_output"]["paths"]
    assert sandbox.git("show", f"{sandbox.task('FMT')['branch']}:README.md") == "# project\n"


def test_a_file_the_worker_left_uncommitted_stays_work_whatever_a_gate_does_to_it(sandbox):
    sandbox.write_config({"macp": {"commit_leftovers": False}, "quality_gates": ["echo 'gate line' >> notes.txt"]})
    sandbox.write_tasks({"tasks": [exec_task("NOTES", "echo 'worker line' > notes.txt")]})
    sandbox.controller("--once", check=True)
    result = sandbox.result("NOTES")
    assert result["worktree_kept"] == "1 uncommitted path: notes.txt"
    assert (sandbox.worktree("NOTES") / "notes.txt").read_text() == "worker line\ngate line\n"


def test_the_gate_output_record_lives_in_the_tasks_log_folder(sandbox):
    sandbox.write_config({"quality_gates": ["echo out > gate.txt; exit 1"]})
    sandbox.write_tasks({"tasks": [exec_task("REC", "true", max_attempts=2)]})
    sandbox.controller("--once")
    record = json.loads((sandbox.orch / "logs" / "REC" / "gate-output.json").read_text())
    assert list(record) == ["gate.txt"] and record["gate.txt"].startswith("sha256:")
