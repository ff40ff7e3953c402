"""yolo tasks through `mosaic yolo` and fake agent CLIs; acp tasks and their completion report."""

from __future__ import annotations

import json


def test_yolo_task_runs_the_real_headless_invocation_in_its_worktree(sandbox):
    sandbox.fake_cli(
        "codex",
        """
        printf '%s\\n' "$@" > "$HOME/codex-args.txt"
        cat > "$HOME/codex-stdin.txt"
        pwd > "$HOME/codex-cwd.txt"
        echo "written by codex" > agent.txt && git add agent.txt && git commit -qm agent
        """,
    )
    (sandbox.repo / "docs" / "tasks").mkdir(parents=True)
    (sandbox.repo / "docs" / "tasks" / "Y1.md").write_text("# Y1\nWrite agent.txt.\n")
    sandbox.git("add", "docs")
    sandbox.git("commit", "-qm", "brief")
    sandbox.macp("submit", "--task-id", "Y1", "--title", "agent task", "--dispatch", "yolo", "--runtime", "codex", check=True)
    sandbox.macp("drain", check=True)
    worktree = sandbox.worktree("Y1")
    args = (sandbox.home / "codex-args.txt").read_text().split("\n")
    assert args[:7] == ["exec", "--json", "--dangerously-bypass-approvals-and-sandbox", "--skip-git-repo-check", "-C", str(worktree), "-"]
    brief = (sandbox.home / "codex-stdin.txt").read_text()
    assert brief.startswith("# Y1\nWrite agent.txt.\n\n## Report\n"), "the brief arrives on stdin, then how to report"
    report = sandbox.orch / "logs" / "Y1" / "attempt-1" / "report.json"
    assert f"write a JSON report to the file named by `$MACP_REPORT` ({report})" in brief
    assert (sandbox.home / "codex-cwd.txt").read_text().strip() == str(worktree)
    task = sandbox.task("Y1")
    assert task["status"] == "completed" and task["runtime"] == "codex" and task["attempt_runtime"] == "codex"
    assert sandbox.result("Y1")["files_changed"] == ["agent.txt"]
    assert sandbox.events("Y1")[1]["metadata"]["runtime"] == "codex"


def test_yolo_runtime_defaults_to_worker_runtime(sandbox):
    sandbox.write_config({"worker": {"runtime": "claude"}})
    sandbox.fake_cli("claude", 'printf "%s " "$@" > "$HOME/claude-args.txt"; cat >/dev/null')
    sandbox.macp("submit", "--task-id", "Y2", "--dispatch", "yolo", check=True)
    sandbox.macp("drain", check=True)
    task = sandbox.task("Y2")
    assert task["attempt_runtime"] == "claude" and "runtime" not in task, "the default is used, not written as a choice"
    assert sandbox.result("Y2")["runtime"] == "claude"
    assert (sandbox.home / "claude-args.txt").read_text().startswith("-p --dangerously-skip-permissions")


def test_missing_runtime_binary_is_a_provider_failure_and_fails_over(sandbox):
    sandbox.fake_cli("goose", 'cat > /dev/null; echo "goose did it" > g.txt; git add g.txt; git commit -qm goose')
    sandbox.macp("submit", "--task-id", "Y3", "--dispatch", "yolo", "--runtime", "opencode", check=True)
    proc = sandbox.macp("drain", check=True)
    task = sandbox.task("Y3")
    assert task["status"] == "completed" and task["runtime"] == "opencode", "the user's choice is kept"
    assert task["attempt_runtime"] == "goose"
    assert task["attempts"] == 1 and task["provider_failures"] == 4
    runs = sandbox.result("Y3")["runs"]
    assert [(run["runtime"], run["exit_code"]) for run in runs] == [
        ("opencode", 127), ("codex", 127), ("claude", 127), ("gemini", 127), ("goose", 0)]
    assert sandbox.result("Y3")["runtime"] == "goose"
    failures = [e for e in sandbox.events("Y3") if e["event_type"] == "task.provider.failed"]
    assert [(e["metadata"]["runtime"], e["metadata"]["class"]) for e in failures] == [
        ("opencode", "missing"), ("codex", "missing"), ("claude", "missing"), ("gemini", "missing")]
    assert "opencode: missing" in proc.stdout
    assert (sandbox.orch / "logs" / "Y3" / "attempt-1.uncounted-1" / "worker.log").exists(), "uncounted runs keep their logs"


def test_mosaic_yolo_passes_long_prompts_through_stdin_not_argv(sandbox, tmp_path):
    sandbox.fake_cli("codex", 'wc -c > "$HOME/stdin-bytes.txt"; printf "%s" "$#" > "$HOME/argc.txt"')
    prompt = tmp_path / "big.md"
    prompt.write_text("x" * (3 * 1024 * 1024))
    proc = sandbox.run("mosaic", "yolo", "codex", "--prompt-file", str(prompt))
    assert proc.returncode == 0, proc.stderr
    assert int((sandbox.home / "stdin-bytes.txt").read_text()) == 3 * 1024 * 1024
    assert (sandbox.home / "argc.txt").read_text() == "7"


def test_acp_task_writes_sessions_spawn_file_and_waits_for_complete(sandbox):
    sandbox.write_config({"quality_gates": [{"name": "report", "command": "test -f done.txt"}]})
    sandbox.macp("submit", "--task-id", "A1", "--title", "Review the API", "--dispatch", "acp", "--runtime", "claude", check=True)
    drain = sandbox.macp("drain", check=True)
    assert "A1: waiting for its acp completion report" in drain.stdout
    spawn = json.loads((sandbox.orch / "acp" / "A1.json").read_text())
    worktree = sandbox.worktree("A1")
    assert spawn == {
        "task": "# A1: Review the API\n",
        "runtime": "acp",
        "agentId": "claude",
        "mode": "run",
        "thread": False,
        "cwd": str(worktree),
        "label": "Review the API",
    }
    assert sandbox.task("A1")["status"] == "running"
    status = json.loads(sandbox.macp("status", "--json", check=True).stdout)
    assert status["tasks"][0]["view"] == "awaiting-report"
    # a second drain does not re-dispatch it
    sandbox.macp("drain", check=True)
    assert sandbox.event_types("A1").count("task.acp.requested") == 1
    # the external agent does its work, then reports
    (worktree / "done.txt").write_text("reviewed\n")
    sandbox.git("add", "done.txt", cwd=worktree)
    sandbox.git("commit", "-qm", "review", cwd=worktree)
    done = sandbox.macp("complete", "A1", "--exit-code", "0", "--summary", "reviewed", check=True)
    assert "completion recorded" in done.stdout
    reported = json.loads(sandbox.macp("status", "--json", check=True).stdout)["tasks"][0]
    assert reported["view"] == "running" and reported["note"] == "acp: report in; the next drain runs its quality gates"
    assert sandbox.macp("complete", "A1", "--exit-code", "0").returncode == 2
    sandbox.macp("drain", check=True)
    assert sandbox.task("A1")["status"] == "completed"
    result = sandbox.result("A1")
    assert result["summary"] == "reviewed" and result["gate_results"][0]["passed"]
    assert sandbox.event_types("A1")[-4:] == ["task.gated", "gate.passed", "task.completed", "worktree.removed"]


def test_complete_is_refused_for_tasks_that_are_not_waiting_acp(sandbox):
    sandbox.macp("submit", "--task-id", "E1", "--command", "true", check=True)
    proc = sandbox.macp("complete", "E1", "--exit-code", "0")
    assert proc.returncode == 2 and "not an acp task waiting" in proc.stderr


def test_dry_run_prints_order_and_exact_commands_without_running(sandbox):
    sandbox.write_config({"quality_gates": ["make test"]})
    sandbox.macp("submit", "--task-id", "B", "--command", "touch b", check=True)
    sandbox.macp("submit", "--task-id", "A", "--command", "touch a", "--priority", "2", check=True)
    sandbox.macp("submit", "--task-id", "C", "--dispatch", "yolo", "--runtime", "codex", "--depends-on", "B", check=True)
    proc = sandbox.macp("drain", "--dry-run", check=True)
    lines = proc.stdout.splitlines()
    assert lines[0] == "dry run: 3 task(s) would run, in this order (nothing was run)"
    assert lines[1] == f"1. A [exec] in {sandbox.worktree('A')} (branch feat/A): touch a"
    assert lines[2] == "   gate: make test"
    assert lines[3].startswith("2. B [exec]")
    brief = sandbox.orch / "logs" / "C" / "attempt-1" / "brief.md"
    worktree = sandbox.worktree("C")
    assert lines[5] == (
        f"3. C [yolo] in {worktree} (branch feat/C): codex exec --json --dangerously-bypass-approvals-and-sandbox"
        f" --skip-git-repo-check -C {worktree} - < {brief}"
    ), "the agent CLI's real command line, not the mosaic yolo wrapper"
    assert not sandbox.worktree_base.exists()
    assert all(task["status"] == "pending" for task in sandbox.tasks())


def test_dry_run_decides_like_the_controller(sandbox):
    sandbox.write_tasks({"tasks": [
        {"id": "old", "type": "coding", "dispatch": "yolo", "runtime": "claude", "status": "completed"},
        {"id": "risky", "title": "Deploy to production", "dispatch": "yolo", "runtime": "codex"},
        {"id": "loop-a", "command": "true", "depends_on": ["loop-b"]},
        {"id": "loop-b", "command": "true", "depends_on": ["loop-a"]},
        {"id": "pick", "type": "coding", "dispatch": "yolo"},
    ]})
    before = (sandbox.orch / "tasks.json").read_text()
    lines = sandbox.macp("drain", "--dry-run", check=True).stdout.splitlines()
    assert lines[0] == "dry run: 1 task(s) would run, in this order (nothing was run)"
    assert "held: loop-a: dependency cycle: loop-a -> loop-b -> loop-a" in lines
    assert any(line.startswith("held: risky: risk hold: the task mentions 'production'") for line in lines)
    assert any(line.startswith("1. pick [yolo]") and "claude -p --dangerously-skip-permissions" in line for line in lines), "runtime by history"
    assert (sandbox.orch / "tasks.json").read_text() == before
    sandbox.fake_cli("claude", "cat > /dev/null")
    sandbox.macp("drain")
    started = [e for e in sandbox.events() if e["event_type"] == "task.started"]
    assert [(e["task_id"], e["metadata"]["runtime"]) for e in started] == [("pick", "claude")]


def test_mosaic_yolo_works_outside_git_and_leaves_no_temp_files(sandbox, tmp_path):
    outside, tmp = tmp_path / "plain-folder", tmp_path / "tmp"
    outside.mkdir()
    tmp.mkdir()
    sandbox.env["TMPDIR"] = str(tmp)
    sandbox.fake_cli("codex", 'cat > "$HOME/stdin.txt"; pwd > "$HOME/cwd.txt"')
    proc = sandbox.run("mosaic", "yolo", "codex", "fix", "the", "bug", cwd=outside)
    assert proc.returncode == 0, proc.stderr
    assert (sandbox.home / "stdin.txt").read_text() == "fix the bug"
    assert (sandbox.home / "cwd.txt").read_text().strip() == str(outside)
    config = outside / "config.json"
    config.write_text(json.dumps({"runtimes": {"reader": {"command": ["sh", "-c", 'cat "$0" > "$HOME/file.txt"', "{prompt_file}"], "prompt": "file"}}}))
    sandbox.env["MACP_CONFIG"] = str(config)
    assert sandbox.run("mosaic", "yolo", "reader", "from", "a", "file", cwd=outside).returncode == 0
    assert (sandbox.home / "file.txt").read_text() == "from a file"
    assert list(tmp.iterdir()) == [], "the prompt's temporary file is gone"
    sandbox.env.pop("MACP_CONFIG")
    assert sandbox.run("mosaic", "yolo", "codex", "caf\udce9", cwd=outside).returncode == 0  # argv byte 0xe9, not UTF-8
    assert (sandbox.home / "stdin.txt").read_bytes() == b"caf\xe9", "the prompt goes on as the bytes it was"
