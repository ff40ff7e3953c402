"""Status transitions through real runs: retries, gate failures, escalation, worktrees."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def exec_task(task_id: str, command: str, **extra) -> dict:
    return {"id": task_id, "title": f"task {task_id}", "dispatch": "exec", "command": command, **extra}


def test_worker_failure_with_attempts_left_is_retried_then_fails(sandbox):
    sandbox.write_tasks({"tasks": [exec_task("T1", "echo broken-output; exit 3", max_attempts=2)]})
    first = sandbox.controller("--once")
    assert first.returncode == 0, "a scheduled retry is not a failure yet"
    task = sandbox.task("T1")
    assert task["status"] == "pending" and task["attempts"] == 1
    assert task["last_failure"]["kind"] == "worker" and task["last_failure"]["exit_code"] == 3
    second = sandbox.controller("--once")
    assert second.returncode == 1, "a task ending failed makes the run exit 1"
    task = sandbox.task("T1")
    assert task["status"] == "failed" and task["attempts"] == 2
    assert sandbox.event_types("T1") == [
        "task.started",
        "worktree.created",
        "task.retry.scheduled",
        "task.started",
        "worktree.reused",
        "task.failed",
        "worktree.removed",
    ]
    result = sandbox.result("T1")
    assert result["status"] == "failed" and result["exit_code"] == 3 and result["attempt"] == 2
    assert "broken-output" in result["output_tail"]
    assert result["failed_at"] == result["completed_at"]


def drain_with_gate(sandbox, gate_command: str, task: dict) -> subprocess.CompletedProcess:
    """Drain ``task`` with one quality gate ``tests`` running ``gate_command``; the run must
    exit 1 (the gate ends the task). Returns the run."""
    sandbox.write_config({"quality_gates": [{"name": "tests", "command": gate_command}]})
    sandbox.write_tasks({"tasks": [task]})
    proc = sandbox.controller("--until-drained")
    assert proc.returncode == 1
    return proc


def test_gate_failure_retries_with_guidance_and_ends_escalated(sandbox):
    proc = drain_with_gate(sandbox, "echo 'FAILED test_parse - AssertionError: 2 != 3'; exit 1",
                           exec_task("T1", 'cp "$MACP_BRIEF" ../brief-$MACP_ATTEMPT.md', max_attempts=2))
    task = sandbox.task("T1")
    assert task["status"] == "escalated"
    assert task["escalation_reason"] == "quality gate `tests` (test) exited 1 after 2 attempt(s)"
    first_brief = (sandbox.worktree_base / "brief-1.md").read_text()
    second_brief = (sandbox.worktree_base / "brief-2.md").read_text()
    assert "Previous attempt" not in first_brief
    assert "## Previous attempt" in second_brief
    assert "Attempt 1 failed: quality gate `tests` (test) exited 1." in second_brief
    assert "AssertionError: 2 != 3" in second_brief
    types = sandbox.event_types("T1")
    assert types.count("gate.failed") == 2 and types[-2:] == ["task.escalated", "worktree.removed"]
    assert "task.retry.scheduled" in types
    retry = next(e for e in sandbox.events("T1") if e["event_type"] == "task.retry.scheduled")
    assert retry["metadata"]["failure"]["classification"] == "test"
    result = sandbox.result("T1")
    assert result["status"] == "escalated"
    assert result["gate_results"][0]["name"] == "tests"
    assert result["gate_results"][0]["classification"] == "test"
    assert result["gate_results"][0]["passed"] is False
    assert "queue: 1 escalated" in proc.stdout


def test_retry_reuses_the_worktree_and_its_partial_work(sandbox):
    sandbox.write_config({"quality_gates": ["test -f second"]})
    command = "if [ -f first ]; then touch second; else touch first; fi; git add -A; git commit -qm step"
    sandbox.write_tasks({"tasks": [exec_task("T1", command, max_attempts=2)]})
    sandbox.controller("--until-drained", check=True)
    assert sandbox.task("T1")["status"] == "completed"
    assert sandbox.task("T1")["attempts"] == 2
    created = [e for e in sandbox.events("T1") if e["event_type"].startswith("worktree.")]
    assert [e["event_type"] for e in created] == ["worktree.created", "worktree.reused", "worktree.removed"]
    assert sandbox.git("ls-tree", "--name-only", "feat/T1-task-t1").split() == ["README.md", "first", "second"]


def test_dirty_worktree_is_kept_on_cleanup_and_the_result_says_so(sandbox):
    sandbox.write_config({"macp": {"commit_leftovers": False}})
    sandbox.write_tasks({"tasks": [exec_task("T1", "echo unsaved > notes.txt")]})
    sandbox.controller("--once", check=True)
    worktree = sandbox.worktree("T1")
    assert (worktree / "notes.txt").read_text() == "unsaved\n", "uncommitted work must never be deleted"
    result = sandbox.result("T1")
    assert result["status"] == "completed"
    assert result["worktree_kept"] == "1 uncommitted path: notes.txt"
    assert result["metadata"]["uncommitted_work"] == "1 uncommitted path: notes.txt"
    assert "worktree.kept" in sandbox.event_types("T1")
    assert str(worktree) in sandbox.git("worktree", "list")
    status = sandbox.macp("status", check=True).stdout
    assert "not committed (macp.commit_leftovers is off): 1 uncommitted path: notes.txt" in status


def test_work_a_worker_left_uncommitted_is_committed_before_the_gates(sandbox):
    sandbox.git("commit", "-q", "--allow-empty", "-m", "base")
    (sandbox.repo / ".gitignore").write_text("*.log\n")
    sandbox.git("add", ".gitignore")
    sandbox.git("commit", "-q", "-m", "ignore logs")
    gate = 'git diff --quiet HEAD && test -z "$(git status --porcelain)" && git log -1 --format=%s | grep -qx "C1: Add the feature"'
    sandbox.write_config({"quality_gates": [{"name": "committed", "command": gate}]})
    sandbox.write_tasks({"tasks": [exec_task("C1", "echo feature > feature.txt; echo noise > build.log", title="Add the feature")]})
    sandbox.controller("--once", check=True)
    result = sandbox.result("C1")
    assert result["status"] == "completed", "the gate saw the work committed on the branch"
    [committed] = [e for e in sandbox.events("C1") if e["event_type"] == "worktree.committed"]
    files = sandbox.git("show", "--name-only", "--format=", committed["metadata"]["commit"]).split()
    assert files == ["feature.txt"], "ignored files stay out of the commit"
    assert sandbox.git("log", "-1", "--format=%s", "feat/C1-add-the-feature").strip() == "C1: Add the feature"
    assert result["worktree_kept"] is None and result["build_output"] == {"paths": ["build.log"], "count": 1, "bytes": 6}, "build output goes"


def test_cleanup_can_be_turned_off(sandbox):
    sandbox.write_config({"macp": {"cleanup_worktrees": False}})
    sandbox.write_tasks({"tasks": [exec_task("T1", "true")]})
    sandbox.controller("--once", check=True)
    assert (sandbox.worktree("T1")).is_dir()
    assert sandbox.result("T1")["worktree_kept"] is None


def test_worktree_creation_failure_fails_the_task_at_once_with_the_git_error(sandbox):
    occupied = sandbox.worktree("T1")
    occupied.mkdir(parents=True)
    (occupied / "precious.txt").write_text("not ours")
    sandbox.write_tasks({"tasks": [exec_task("T1", "true", max_attempts=3)]})
    proc = sandbox.controller("--once")
    assert proc.returncode == 1
    task = sandbox.task("T1")
    assert task["status"] == "failed" and task["attempts"] == 1
    assert "worktree creation failed" in task["error"] and "not a worktree" in task["error"]
    assert (occupied / "precious.txt").read_text() == "not ours"
    assert sandbox.result("T1")["error"] == task["error"]


def test_invalid_branch_name_fails_the_task_without_running_anything(sandbox):
    sandbox.write_tasks({"tasks": [exec_task("T1", "touch ran", branch="bad..name")]})
    sandbox.controller("--once")
    assert sandbox.task("T1")["status"] == "failed"
    assert "not a valid git branch name" in sandbox.task("T1")["error"]
    assert not list(sandbox.home.rglob("ran"))


def test_worker_may_request_escalation_through_its_report(sandbox):
    report = {"summary": "needs a product decision", "escalate": True, "escalation_reason": "two specs disagree"}
    sandbox.write_tasks({"tasks": [exec_task("T1", f"echo '{json.dumps(report)}' > \"$MACP_REPORT\"")]})
    sandbox.controller("--once")
    task = sandbox.task("T1")
    assert task["status"] == "escalated" and task["escalation_reason"] == "two specs disagree"
    assert sandbox.result("T1")["summary"] == "needs a product decision"


def test_dependencies_run_in_order_and_priority_breaks_ties(sandbox):
    sandbox.write_tasks(
        {
            "tasks": [
                exec_task("low", "true"),
                exec_task("needs-high", "true", depends_on=["high"], priority=9),
                exec_task("high", "true", priority=5),
            ]
        }
    )
    proc = sandbox.controller("--until-drained", check=True)
    started = [line.split(":")[0] for line in proc.stdout.splitlines() if "started attempt" in line]
    assert started == ["high", "needs-high", "low"]


def test_timeout_stops_the_worker_and_is_recorded(sandbox):
    sandbox.write_config({"macp": {"kill_grace_seconds": 1}})
    sandbox.write_tasks({"tasks": [exec_task("T1", "echo started; sleep 30", timeout_seconds=1)]})
    proc = sandbox.controller("--once", timeout=20)
    assert proc.returncode == 1
    result = sandbox.result("T1")
    assert result["timed_out"] is True and result["exit_code"] == 143
    assert "started" in result["output_tail"]
    assert "timed out" in proc.stdout
    assert sandbox.task("T1")["last_failure"]["kind"] == "timeout"


def test_result_dir_from_config_is_used_and_recorded(sandbox):
    sandbox.write_config({"macp": {"result_dir": "reports/macp"}})
    sandbox.write_tasks({"tasks": [exec_task("T1", "true")]})
    sandbox.controller("--once", check=True)
    assert sandbox.task("T1")["result_path"] == "../../reports/macp/T1.json"
    assert json.loads((sandbox.repo / "reports" / "macp" / "T1.json").read_text())["status"] == "completed"


def test_result_dir_outside_the_repository_is_refused(sandbox):
    sandbox.write_config({"macp": {"result_dir": "../elsewhere"}})
    sandbox.write_tasks({"tasks": [exec_task("T1", "true")]})
    proc = sandbox.controller("--once")
    assert proc.returncode == 2 and "macp.result_dir" in proc.stderr and "outside" in proc.stderr
    assert sandbox.task("T1").get("status") is None, "nothing was claimed"


def test_a_deleted_worktree_folder_does_not_block_re_creation(sandbox):
    import shutil

    sandbox.write_tasks({"tasks": [exec_task("T1", "test -f ../second-time || { touch ../second-time; exit 1; }", max_attempts=2)]})
    sandbox.controller("--once")
    assert sandbox.task("T1")["status"] == "pending"
    shutil.rmtree(sandbox.worktree("T1"))
    assert "t1" in sandbox.git("worktree", "list"), "git still records the folder that is gone"
    sandbox.controller("--once", check=True)
    assert sandbox.task("T1")["status"] == "completed"
    assert [e for e in sandbox.event_types("T1") if e.startswith("worktree.")][:2] == ["worktree.created", "worktree.created"]


def test_a_commit_made_on_a_detached_head_is_kept_under_a_ref(sandbox):
    command = "git checkout -q --detach && echo lost > lost.txt && git add lost.txt && git commit -qm 'detached work'"
    sandbox.write_tasks({"tasks": [exec_task("D1", command)]})
    sandbox.controller("--once", check=True)
    result = sandbox.result("D1")
    assert result["status"] == "completed" and result["worktree_kept"] is None
    [kept] = result["kept_commits"]
    assert kept["ref"] == "refs/macp/d1--33a123e5/1"
    assert sandbox.git("rev-parse", kept["ref"]).strip() == kept["commit"]
    assert sandbox.git("show", "-s", "--format=%s", kept["commit"]).strip() == "detached work"
    assert not (sandbox.worktree("D1")).exists()


def test_ignored_files_keep_the_worktree_unless_config_lets_them_go(sandbox):
    command = "printf '.env\\n' > .gitignore && git add .gitignore && git commit -qm ignore && echo SECRET=1 > .env"
    sandbox.write_tasks({"tasks": [exec_task("I1", command), exec_task("I2", command)]})
    sandbox.controller("--once", check=True)
    assert sandbox.result("I1")["worktree_kept"] == "1 ignored path: .env (macp.keep_ignored: secrets or data)"
    assert (sandbox.worktree("I1") / ".env").exists()
    assert "worktree.kept" in sandbox.event_types("I1")
    sandbox.write_config({"macp": {"remove_ignored_files": True}})
    sandbox.controller("--once", check=True)
    assert sandbox.result("I2")["worktree_kept"] is None and not (sandbox.worktree("I2")).exists()


def test_ids_differing_only_in_case_or_punctuation_get_distinct_worktrees(sandbox):
    ids = ["t-1", "T-1", "T.1", "t_1"]
    sandbox.write_config({"macp": {"cleanup_worktrees": False}})
    sandbox.write_tasks({"tasks": [exec_task(task_id, 'echo "$MACP_TASK_ID" > who.txt') for task_id in ids]})
    sandbox.controller("--until-drained", check=True)
    worktrees = {task_id: Path(sandbox.task(task_id)["worktree"]) for task_id in ids}
    assert len({path.name.lower() for path in worktrees.values()}) == len(ids), worktrees
    assert worktrees["t-1"].name == "t-1", "an id that is its own slug keeps its plain name"
    for task_id, path in worktrees.items():
        assert sandbox.result(task_id)["status"] == "completed"
        assert (path / "who.txt").read_text().strip() == task_id, "each task ran in its own worktree"


def test_a_gate_whose_command_is_not_found_is_config_and_not_retried(sandbox):
    drain_with_gate(sandbox, "no-such-test-runner --all", exec_task("N1", "true", max_attempts=3))
    task = sandbox.task("N1")
    assert task["status"] == "escalated" and task["attempts"] == 1, "no retry: a change to the work cannot fix it"
    assert task["last_failure"]["classification"] == "config"
    assert "fix it in config" in task["escalation_reason"]
    assert sandbox.result("N1")["gate_results"][0]["classification"] == "config"


def test_two_repositories_with_the_same_folder_name_get_distinct_worktrees(sandbox, tmp_path):
    other = tmp_path / "elsewhere" / "project"
    other.mkdir(parents=True)
    sandbox.git("clone", "-q", str(sandbox.repo), str(other))
    for repo in (sandbox.repo, other):
        sandbox.macp("submit", "--repo", str(repo), "--task-id", "T1", "--command", "pwd > where.txt", check=True)
        sandbox.macp("drain", "--repo", str(repo), check=True)
    first = Path(sandbox.task("T1")["worktree"])
    second = Path(json.loads((other / ".mosaic" / "orchestrator" / "tasks.json").read_text())["tasks"][0]["worktree"])
    assert first != second and first.parent != second.parent, "each repository has its own worktree base"
    assert first.parent == sandbox.worktree_base
    assert sandbox.result("T1")["status"] == "completed"
    assert json.loads((other / ".mosaic" / "orchestrator" / "results" / "T1.json").read_text())["status"] == "completed"
