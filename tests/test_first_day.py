"""A user's first day (issue 10): follow a task, see its work, stack it, land it, clean up --
each through the real CLI on a real repository."""

from __future__ import annotations

import json
import re
import select
import shlex
import signal
import subprocess
import time

from test_durability import held_command, start_controller, wait_for

from conftest import BIN, ROOT


def read_until(stream, needle: bytes, timeout: float = 60.0) -> bytes:
    """Read ``stream`` (a pipe) until ``needle`` appears; bounded by ``timeout``."""
    seen = b""
    end = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < end:
        ready, _, _ = select.select([stream], [], [], 0.2)
        if ready:
            chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(1)
            if not chunk:
                break
            seen += chunk
    assert needle in seen, seen
    return seen


def test_a_running_tasks_log_is_on_disk_and_log_follow_streams_it_to_the_end(sandbox, tmp_path):
    release = tmp_path / "release"
    command = f"echo first; {held_command(release)}; echo second"
    sandbox.write_tasks({"tasks": [{"id": "F", "command": command}]})
    controller = start_controller(sandbox, "--once")
    log = sandbox.orch / "logs" / "F" / "attempt-1" / "worker.log"
    wait_for(lambda: log.exists() and b"first" in log.read_bytes(), timeout=60, what="the line to reach the log while the task runs")
    follower = subprocess.Popen([str(BIN / "mosaic"), "macp", "log", "F", "--follow", "--repo", str(sandbox.repo)],
                                env=sandbox.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        read_until(follower.stdout, b"first\n")
        release.touch()
        rest, err = follower.communicate(timeout=60)
        assert follower.returncode == 0, err
        assert rest.endswith(b"second\n"), "follow printed the rest and ended with the task"
    finally:
        release.touch()
        controller.communicate(timeout=60)
    proc = sandbox.macp("log", "F", check=True)
    assert proc.stdout == "first\nsecond\n"


def test_log_shows_a_gate_by_name_and_says_when_there_is_none(sandbox):
    sandbox.write_config({"quality_gates": [{"name": "unit", "command": "echo gate-ran"}]})
    sandbox.write_tasks({"tasks": [{"id": "G", "dispatch": "exec", "command": "echo worker-ran"}, {"id": "P", "command": "true", "depends_on": ["G"]}]})
    sandbox.controller("--once", check=True)
    assert sandbox.macp("log", "G", "--gate", "unit", check=True).stdout == "gate-ran\n"
    assert sandbox.macp("log", "G", "--gate", "1", check=True).stdout == "gate-ran\n"
    proc = sandbox.macp("log", "G", "--gate", "lint")
    assert proc.returncode == 2 and "no gate log 'lint' (gates: unit)" in proc.stderr
    proc = sandbox.macp("log", "P")
    assert proc.returncode == 2 and proc.stderr.startswith("mosaic macp log: task P has not run yet (pending)")


def test_diff_shows_the_tasks_work_and_the_result_records_base_commits_and_times(sandbox):
    sandbox.write_config({"quality_gates": ["true"]})
    sandbox.write_tasks({"tasks": [{"id": "D", "title": "Add notes", "dispatch": "exec",
                                    "command": "echo one > notes.txt && git add notes.txt && git commit -qm one && echo two >> notes.txt"}]})
    base = sandbox.git("rev-parse", "HEAD").strip()
    sandbox.controller("--once", check=True)
    result = sandbox.result("D")
    assert result["base_commit"] == base
    assert len(result["commits"]) == 2, "the worker's commit and the commit of what it left uncommitted"
    assert result["commits"][-1] == sandbox.git("rev-parse", "feat/D-add-notes").strip()
    assert result["worker"]["duration_seconds"] >= 0 and result["worker"]["started_at"].endswith("Z")
    assert result["gate_results"][0]["started_at"] >= result["worker"]["started_at"]
    diff = sandbox.macp("diff", "D", check=True).stdout
    assert "+++ b/notes.txt" in diff and "+one" in diff and "+two" in diff
    stat = sandbox.macp("diff", "D", "--stat", check=True).stdout
    assert "notes.txt" in stat and "1 file changed" in stat
    sandbox.write_tasks({"tasks": [*sandbox.tasks(), {"id": "L", "command": "true"}]})
    proc = sandbox.macp("diff", "L")
    assert proc.returncode == 2 and "has no branch of its own yet" in proc.stderr


def test_a_drain_ends_with_a_table_of_every_task_it_touched_and_json_for_ci(sandbox):
    sandbox.write_tasks({"tasks": [{"id": "OK", "dispatch": "exec", "command": "echo work > w.txt"},
                                   {"id": "BAD", "command": "echo nope; exit 3"}]})
    proc = sandbox.macp("drain")
    assert proc.returncode == 1
    table = proc.stdout.split("this run:\n", 1)[1].splitlines()
    assert table[0].split() == ["TASK", "STATUS", "ATTEMPTS", "TIME", "BRANCH", "COMMITS", "SPENT", "REASON"]
    assert table[1].split()[:2] == ["OK", "completed"] and table[1].split()[5] == "1"
    assert table[2].split()[:2] == ["BAD", "failed"] and "exited with code 3" in table[2], "failed tasks are listed too"
    sandbox.write_tasks({"tasks": [*sandbox.tasks(), {"id": "NEXT", "command": "true"}]})
    proc = subprocess.run([str(BIN / "mosaic-orchestrator-run"), "--repo", str(sandbox.repo), "--until-drained", "--json"],
                          env=sandbox.env, capture_output=True, text=True, check=False)
    document = json.loads(proc.stdout)
    assert proc.returncode == 0 and document["exit_code"] == 0
    assert [(row["id"], row["status"], row["attempts"]) for row in document["tasks"]] == [("NEXT", "completed", 1)]
    assert document["queue"]["completed"] == 2 and document["queue"]["failed"] == 1
    assert "NEXT: completed" in proc.stderr, "progress goes to stderr"


def test_show_is_readable_text_unless_json(sandbox):
    sandbox.write_tasks({"tasks": [{"id": "S", "command": "echo 'line one'; echo 'line \"two\"'; exit 1"}]})
    sandbox.controller("--once")
    text = sandbox.macp("show", "S", check=True).stdout
    assert not [line for line in text.splitlines() if line.endswith((": None", ": null", ": []", ": {}"))], text
    assert "\\n" not in text and '\\"' not in text, "no JSON-escaped text"
    assert "  output_tail: |\n      line one\n      line \"two\"" in text
    assert json.loads(sandbox.macp("show", "S", "--json", check=True).stdout)["result"]["status"] == "failed"


def test_cells_are_cut_at_a_word_boundary():
    from macp.textview import fit

    assert fit("Fix the parser bug in the tokenizer", 20) == "Fix the parser bug…"
    assert fit("short", 20) == "short"
    assert fit("supercalifragilistic", 10) == "supercali…"
    assert fit("line\none\x1b[31m", 40) == "line one [31m"


def stacked_tasks(*tasks: dict) -> dict:
    return {"tasks": [{"dispatch": "exec", **task} for task in tasks]}


def test_a_task_starts_from_its_dependencys_work_or_merges_several(sandbox):
    sandbox.write_tasks(stacked_tasks(
        {"id": "A", "command": "echo a > a.txt"},
        {"id": "B", "command": "echo b > b.txt"},
        {"id": "ONE", "command": "test -f a.txt && test ! -f b.txt", "depends_on": ["A"]},
        {"id": "TWO", "command": "test -f a.txt && test -f b.txt", "depends_on": ["A", "B"]},
    ))
    proc = sandbox.macp("drain", "--dry-run", check=True)
    assert "   base: the branches of A, B once they hold commits, else HEAD" in proc.stdout
    sandbox.macp("drain", check=True)
    one, two = sandbox.result("ONE"), sandbox.result("TWO")
    assert one["status"] == two["status"] == "completed", "each saw its dependencies' files"
    assert one["stacked_on"] == ["feat/A"] and two["stacked_on"] == ["feat/A", "feat/B"]
    assert one["base_commit"] == sandbox.git("rev-parse", "feat/A").strip()
    assert len(sandbox.git("show", "-s", "--format=%P", two["base_commit"]).split()) == 2, "TWO's base merges A and B"
    assert "+a" not in sandbox.macp("diff", "TWO", check=True).stdout, "diff shows the task's own work only"


def test_dependencies_that_do_not_merge_fail_the_attempt_with_the_conflict_named(sandbox):
    sandbox.write_tasks(stacked_tasks(
        {"id": "A", "command": "echo from-a > same.txt"},
        {"id": "B", "command": "echo from-b > same.txt"},
        {"id": "C", "command": "touch ran", "depends_on": ["A", "B"], "max_attempts": 1},
    ))
    sandbox.macp("drain")
    task = sandbox.task("C")
    assert task["status"] == "failed" and task["attempts"] == 1, "a counted failure, no provider involved"
    assert task["last_failure"]["kind"] == "merge" and task["last_failure"]["conflicts"] == ["same.txt"]
    assert "conflicts in same.txt" in sandbox.result("C")["error"]
    assert not sandbox.worktree("C").exists() and "feat/C" not in sandbox.git("branch", "--list", "feat/C")


def test_stacking_can_be_turned_off(sandbox):
    sandbox.write_config({"macp": {"stack_dependencies": False}})
    sandbox.write_tasks(stacked_tasks({"id": "A", "command": "echo a > a.txt"}, {"id": "N", "command": "test ! -f a.txt", "depends_on": ["A"]}))
    sandbox.macp("drain", check=True)
    assert sandbox.result("N")["status"] == "completed" and sandbox.result("N")["stacked_on"] == []


def test_prune_removes_what_finished_tasks_no_longer_need_and_says_why_the_rest_stays(sandbox):
    sandbox.write_config({"macp": {"cleanup_worktrees": False}})
    sandbox.write_tasks(stacked_tasks(
        {"id": "MERGED", "command": "echo m > m.txt"},
        {"id": "SQUASHED", "command": "echo s1 > s.txt && git add s.txt && git commit -qm s1 && echo s2 >> s.txt"},
        {"id": "OPEN", "command": "echo o > o.txt"},
        {"id": "DIRTY", "command": "echo d > d.txt && git add d.txt && git commit -qm d && echo scratch > scratch.txt; exit 1"},
    ))
    sandbox.macp("drain")
    sandbox.git("merge", "-q", "--no-edit", "feat/MERGED")
    sandbox.git("merge", "-q", "--squash", "feat/SQUASHED")
    sandbox.git("commit", "-q", "-m", "squash SQUASHED")
    before = sandbox.git("branch", "--list")
    before_tips = {branch: sandbox.git("rev-parse", branch).strip() for branch in ("feat/MERGED", "feat/SQUASHED")}
    dry = sandbox.macp("prune", "--dry-run", check=True).stdout
    assert "would delete branch feat/MERGED (MERGED): merged into HEAD" in dry
    assert sandbox.git("branch", "--list") == before and sandbox.worktree("OPEN").exists(), "a dry run changes nothing"
    out = sandbox.macp("prune", check=True).stdout.splitlines()
    assert f"removed worktree {sandbox.worktree('MERGED')} (MERGED)" in out
    merged_tip = before_tips["feat/MERGED"]
    assert f"deleted branch feat/MERGED (MERGED): merged into HEAD; its tip {merged_tip[:12]} is kept as refs/macp/{sandbox.worktree('MERGED').name}/pruned" in out
    assert [line for line in out if line.startswith("deleted branch feat/SQUASHED (SQUASHED): its changes are in HEAD exactly")]
    assert "kept branch feat/OPEN (OPEN): not in HEAD yet" in out
    assert f"kept worktree {sandbox.worktree('DIRTY')} (DIRTY): 1 uncommitted path: scratch.txt" in out
    assert not sandbox.worktree("OPEN").exists() and "feat/OPEN" in sandbox.git("branch", "--list", "feat/OPEN")
    assert "feat/MERGED" not in sandbox.git("branch", "--list") and sandbox.worktree("DIRTY").exists()
    assert "branch.pruned" in sandbox.event_types("MERGED")
    for task_id, branch in (("MERGED", "feat/MERGED"), ("SQUASHED", "feat/SQUASHED")):
        assert sandbox.git("rev-parse", f"refs/macp/{sandbox.worktree(task_id).name}/pruned").strip() == before_tips[branch], "a copy of the tip is kept"


def test_retry_fresh_starts_over_from_the_base_and_keeps_the_old_tip(sandbox):
    sandbox.write_tasks(stacked_tasks({"id": "R", "command": "test -f done.txt || { echo try > try.txt; git add try.txt; git commit -qm try; exit 1; }"}))
    sandbox.macp("drain")
    old_tip = sandbox.git("rev-parse", "feat/R").strip()
    sandbox.macp("retry", "R", "--fresh", check=True)
    task = sandbox.task("R")
    assert task["status"] == "pending" and task["worktree"] is None and task["base_commit"] is None
    assert sandbox.git("rev-parse", f"refs/macp/{sandbox.worktree('R').name}/before-fresh-1").strip() == old_tip
    assert not sandbox.worktree("R").exists() and sandbox.git("branch", "--list", "feat/R").strip() == ""
    sandbox.write_tasks({"tasks": [{**sandbox.task("R"), "command": "test ! -f try.txt"}]})
    sandbox.macp("drain", check=True)
    assert sandbox.result("R")["status"] == "completed", "the new attempt did not see the old work"


def test_retry_fresh_refuses_to_drop_uncommitted_work(sandbox):
    sandbox.write_config({"macp": {"commit_leftovers": False}})
    sandbox.write_tasks(stacked_tasks({"id": "U", "command": "echo wip > wip.txt; exit 1"}))
    sandbox.macp("drain")
    before = sandbox.task("U")
    proc = sandbox.macp("retry", "U", "--fresh")
    assert proc.returncode == 2 and "holds 1 uncommitted path: wip.txt" in proc.stderr
    assert sandbox.task("U") == before and (sandbox.worktree("U") / "wip.txt").exists()


def test_retry_requeues_the_tasks_its_failure_took_down(sandbox):
    sandbox.write_tasks(stacked_tasks(
        {"id": "UP", "command": "test -f ../fixed"},
        {"id": "MID", "command": "true", "depends_on": ["UP"]},
        {"id": "LOW", "command": "true", "depends_on": ["MID"]},
        {"id": "GHOST", "command": "true", "depends_on": ["nobody"]},
    ))
    sandbox.macp("drain")
    assert [sandbox.task(i)["status"] for i in ("UP", "MID", "LOW", "GHOST")] == ["failed", "escalated", "escalated", "escalated"]
    sandbox.worktree_base.mkdir(parents=True, exist_ok=True)  # emptied, it went with the last worktree
    (sandbox.worktree_base / "fixed").touch()
    out = sandbox.macp("retry", "UP", check=True).stdout
    assert "MID: pending again (it was escalated only because UP failed)" in out
    assert sandbox.task("LOW")["status"] == "pending" and sandbox.task("GHOST")["status"] == "escalated"
    sandbox.macp("drain", check=True)
    assert [sandbox.task(i)["status"] for i in ("UP", "MID", "LOW")] == ["completed"] * 3


def test_edit_changes_a_pending_task_and_records_the_change(sandbox):
    sandbox.macp("submit", "--task-id", "E", "--command", "false", check=True)
    sandbox.macp("edit", "E", "--command", "true", "--priority", "5", "--gate", "test -n ok", "--timeout", "30", check=True)
    task = sandbox.task("E")
    assert (task["command"], task["priority"], task["quality_gates"], task["timeout_seconds"]) == ("true", 5, ["test -n ok"], 30)
    [event] = [e for e in sandbox.events("E") if e["event_type"] == "task.updated"]
    assert event["metadata"]["changes"]["command"] == {"from": "false", "to": "true"}
    proc = sandbox.macp("edit", "E", "--runtime", "hal9000")
    assert proc.returncode == 2 and "unknown runtime 'hal9000'" in proc.stderr
    sandbox.macp("drain", check=True)
    proc = sandbox.macp("edit", "E", "--priority", "1")
    assert proc.returncode == 2 and "only pending or escalated tasks can be edited" in proc.stderr


def test_a_legacy_queue_behaves_as_before_macp(sandbox):
    sandbox.write_config({"quality_gates": [{"name": "check", "command": "test -f ok-to-pass"}]})
    sandbox.write_tasks([
        {"id": "pass", "command": "touch ok-to-pass"},
        {"id": "gatefail", "command": "rm -f ok-to-pass"},
        {"id": "old", "status": "done", "command": "touch old-ran"},
        {"id": "has space", "command": "touch space-ran"},
    ])
    proc = sandbox.controller("--until-drained")
    assert proc.returncode == 2, "the skipped tasks are reported"
    assert "task old not run" in proc.stderr and "task has space not run" in proc.stderr and "Traceback" not in proc.stderr
    tasks = {task["id"]: task for task in json.loads((sandbox.orch / "tasks.json").read_text())}
    assert tasks["pass"]["status"] == "completed" and tasks["gatefail"]["status"] == "failed", "a failing gate ends a legacy task failed"
    assert tasks["old"]["status"] == "done" and "status" not in tasks["has space"], "skipped tasks are left as they were"
    assert not (sandbox.repo / "old-ran").exists() and not (sandbox.repo / "space-ran").exists()
    statuses = [e["status"] for e in sandbox.events() if e.get("task_id") in ("pass", "gatefail")]
    assert "gated" not in statuses, "a legacy task never passes through gated"


def test_the_readmes_daily_loop_works_as_written(sandbox):
    block = (ROOT / "README.md").read_text().split("The daily loop, inside any git repository:\n\n```sh\n", 1)[1].split("```", 1)[0]
    lines = [re.split(r"\s+#\s", line, maxsplit=1)[0].strip() for line in block.splitlines()]
    assert len(lines) <= 10
    (sandbox.repo / "Makefile").write_text("fix-parser:\n\techo fixed > parser.txt\ntest:\n\ttest -f parser.txt\n")
    (sandbox.repo / "docs" / "tasks").mkdir(parents=True)
    (sandbox.repo / "docs" / "tasks" / "FEAT-2.md").write_text("Add retries.\n")
    sandbox.git("add", "-A")
    sandbox.git("commit", "-q", "-m", "project")
    # The agent: a fake codex on PATH that edits a file, as a real one would.
    sandbox.fake_cli("codex", "#!/bin/sh\ncat > /dev/null\necho retries > retries.txt\necho '{\"type\":\"turn.completed\"}'\n")
    for line in lines:
        argv = line.split()
        if line.endswith("--follow"):
            argv = argv[:-1]  # the drain is over here: print the log instead of following it
        if argv[0] == "mosaic":
            proc = sandbox.run(*shlex.split(" ".join(argv)))
        else:
            proc = subprocess.run(argv, cwd=sandbox.repo, env=sandbox.env, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, (line, proc.stdout, proc.stderr)
    assert sandbox.task("FEAT-2")["status"] == "completed" and sandbox.result("FEAT-2")["stacked_on"] == ["feat/FIX-1-fix-the-parser"]
    assert (sandbox.repo / "retries.txt").read_text() == "retries\n", "merged"
    assert "feat/FEAT-2-add-retries" not in sandbox.git("branch", "--list"), "pruned once merged"


def test_a_drain_spends_few_git_processes_per_worktree_task(sandbox, tmp_path):
    import shutil

    calls = tmp_path / "git-calls"
    sandbox.fake_cli("git", f'#!/bin/sh\necho "$*" >> "{calls}"\nexec "{shutil.which("git")}" "$@"\n')
    sandbox.write_tasks(stacked_tasks({"id": "A", "command": "echo a > a.txt"}, {"id": "B", "command": "echo b > b.txt"}))
    sandbox.macp("drain", check=True)
    log = calls.read_text().splitlines()
    assert not [line for line in log if line.startswith(("worktree prune", "worktree list"))], "a first attempt lists no worktrees"
    assert len([line for line in log if "origin/main" in line]) == 1, "the base is resolved once per run"
    assert len([line for line in log if line.startswith("status ")]) == 2, "one git status per task"


def test_log_follow_moves_on_to_the_next_attempt(sandbox, tmp_path):
    release = tmp_path / "release"
    command = f'if [ "$MACP_ATTEMPT" = 1 ]; then echo one; {held_command(release)}; exit 1; fi; echo two'
    sandbox.write_tasks({"tasks": [{"id": "R", "command": command, "max_attempts": 2}]})
    follower = subprocess.Popen([str(BIN / "mosaic"), "macp", "log", "R", "--follow", "--repo", str(sandbox.repo)],
                                env=sandbox.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    controller = start_controller(sandbox, "--until-drained")
    try:
        read_until(follower.stdout, b"one\n")
        release.touch()
        rest, err = follower.communicate(timeout=60)
        assert follower.returncode == 0, err
        assert rest == b"--- R: attempt 2 ---\ntwo\n"
    finally:
        release.touch()
        controller.communicate(timeout=60)
    assert sandbox.task("R")["status"] == "completed"


def test_prune_never_takes_a_change_of_indentation_only_for_landed(sandbox):
    (sandbox.repo / "job.py").write_text("def run():\n    return 1\n")
    sandbox.git("add", "job.py")
    sandbox.git("commit", "-q", "-m", "job")
    sandbox.write_tasks(stacked_tasks({"id": "TABS", "command": "printf 'def run():\\n\\treturn 1\\n' > job.py"}))
    sandbox.macp("drain", check=True)
    (sandbox.repo / "job.py").write_text("def run():\n  return 1\n")  # the base re-indents differently
    sandbox.git("commit", "-q", "-am", "two spaces")
    branch = sandbox.task("TABS")["branch"]
    assert sandbox.git("cherry", "HEAD", branch).startswith("-"), "git cherry's patch ids call it landed"
    expected = f"kept branch {branch} (TABS): not in HEAD yet"
    assert sandbox.macp("prune", "--dry-run", check=True).stdout.splitlines() == [expected]
    assert sandbox.macp("prune", check=True).stdout.splitlines() == [expected]
    assert sandbox.git("show", f"{branch}:job.py") == "def run():\n\treturn 1\n"


def test_prune_keeps_a_branch_git_will_not_delete_and_its_dry_run_says_the_same(sandbox, tmp_path):
    sandbox.write_tasks(stacked_tasks({"id": "OUT", "command": "echo o > o.txt"}))
    sandbox.macp("drain", check=True)
    branch = sandbox.task("OUT")["branch"]
    sandbox.git("merge", "-q", "--no-edit", branch)
    elsewhere = tmp_path / "checkout"
    sandbox.git("worktree", "add", "-q", str(elsewhere), branch)
    expected = [f"kept branch {branch} (OUT): it is checked out in {elsewhere.resolve()}"]
    assert sandbox.macp("prune", "--dry-run", check=True).stdout.splitlines() == expected
    assert sandbox.macp("prune", check=True).stdout.splitlines() == expected
    assert "branch.pruned" not in sandbox.event_types("OUT") and sandbox.git("branch", "--list", branch).strip()


def test_retry_fresh_twice_at_the_same_attempt_keeps_both_old_tips(sandbox):
    sandbox.write_tasks(stacked_tasks({"id": "TWICE", "command": 'echo "$(date +%s%N)" > try.txt && git add try.txt && git commit -qm try; exit 1'}))
    sandbox.macp("drain")
    first = sandbox.git("rev-parse", sandbox.task("TWICE")["branch"]).strip()
    sandbox.macp("retry", "TWICE", "--fresh", check=True)
    sandbox.macp("drain")
    # the second attempt failed too: put it back to attempt 1 as a hand edit would, and start over again
    sandbox.write_tasks({"tasks": [{**sandbox.task("TWICE"), "attempts": 1}]})
    second = sandbox.git("rev-parse", sandbox.task("TWICE")["branch"]).strip()
    assert first != second
    sandbox.macp("retry", "TWICE", "--fresh", check=True)
    folder = sandbox.worktree("TWICE").name
    assert sandbox.git("rev-parse", f"refs/macp/{folder}/before-fresh-1").strip() == first, "never overwritten"
    assert sandbox.git("rev-parse", f"refs/macp/{folder}/before-fresh-1-2").strip() == second


def test_keep_commit_never_moves_a_ref_it_finds(sandbox):
    from macp import gitops

    first = sandbox.git("rev-parse", "HEAD").strip()
    sandbox.git("commit", "-q", "--allow-empty", "-m", "second")
    second = sandbox.git("rev-parse", "HEAD").strip()
    assert gitops.keep_commit(sandbox.repo, "refs/macp/t/1", first) == "refs/macp/t/1"
    assert gitops.keep_commit(sandbox.repo, "refs/macp/t/1", second) == "refs/macp/t/1-2"
    assert gitops.keep_commit(sandbox.repo, "refs/macp/t/1", first) == "refs/macp/t/1", "the same commit reuses its ref"
    assert sandbox.git("rev-parse", "refs/macp/t/1").strip() == first


def test_a_repository_with_no_commit_yet_says_commit_first_and_counts_nothing(tmp_path):
    from conftest import Sandbox

    sandbox = Sandbox(tmp_path)
    sandbox.git("update-ref", "-d", "HEAD")  # as just after `git init`: no commit at all
    sandbox.macp("submit", "--task-id", "FIRST", "--command", "echo hi > hi.txt", check=True)
    proc = sandbox.macp("drain")
    assert proc.returncode == 2 and "has no commit yet; commit first (git commit --allow-empty -m 'initial commit')" in proc.stderr
    task = sandbox.task("FIRST")
    assert task["status"] == "pending" and task["attempts"] == 0, "nothing is counted"
    sandbox.git("commit", "-q", "--allow-empty", "-m", "initial commit")
    sandbox.macp("drain", check=True)
    assert sandbox.task("FIRST")["status"] == "completed" and sandbox.task("FIRST")["attempts"] == 1


def test_a_git_error_shows_gits_reason_not_its_progress_line(sandbox, tmp_path):
    occupied = sandbox.worktree("BUSY")
    occupied.parent.mkdir(parents=True)
    sandbox.git("worktree", "add", "-q", str(tmp_path / "elsewhere"), "-b", "feat/BUSY")  # the branch is checked out elsewhere
    sandbox.write_tasks(stacked_tasks({"id": "BUSY", "command": "true", "branch": "feat/BUSY"}))
    sandbox.macp("drain")
    error = sandbox.result("BUSY")["error"]
    assert "Preparing worktree" not in error and "fatal:" in error, error


def test_log_follow_shows_the_run_again_of_an_interrupted_attempt_from_its_start(sandbox, tmp_path):
    release, marker = tmp_path / "release", tmp_path / "ran-once"
    # the first run prints and is stopped by a signal (uncounted); the run again prints more
    command = f'if [ ! -e "{marker}" ]; then touch "{marker}"; echo "first run"; {held_command(release)}; fi; echo "the run again, from its start"'
    sandbox.write_tasks({"tasks": [{"id": "R", "dispatch": "exec", "command": command}]})
    follower = subprocess.Popen([str(BIN / "mosaic"), "macp", "log", "R", "--follow", "--repo", str(sandbox.repo)],
                                env=sandbox.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = start_controller(sandbox, "--until-drained")
        read_until(follower.stdout, b"first run\n")
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
        assert sandbox.task("R")["status"] == "pending", "the case is forced: the attempt was cut short"
        sandbox.controller("--until-drained", check=True)
        rest, err = follower.communicate(timeout=60)
    finally:
        release.touch()
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0, err
    assert rest == b"--- R: attempt 1 ---\nthe run again, from its start\n", rest


def test_log_of_a_task_with_only_provider_failures_shows_its_last_run(sandbox):
    sandbox.fake_cli("codex", "cat > /dev/null\necho 'Error: 429 Too Many Requests: rate limit reached'\nexit 1\n")
    sandbox.write_config({"runtimes": {"opencode": None, "gemini": None, "goose": None, "claude": None}, "macp": {"max_provider_failures": 2}})
    sandbox.write_tasks({"tasks": [{"id": "P", "dispatch": "yolo", "runtime": "codex", "title": "provider trouble"}]})
    sandbox.macp("drain")
    failures = [e for e in sandbox.events("P") if e["event_type"] == "task.provider.failed"]
    assert sandbox.task("P")["attempts"] == 0 and failures, "the case is forced: it ran, and nothing counted"
    proc = sandbox.macp("log", "P", check=True)
    assert "rate limit reached" in proc.stdout and "has not run yet" not in proc.stderr


def test_log_takes_the_gate_name_show_prints_and_says_when_a_log_is_empty(sandbox):
    sandbox.write_config({"quality_gates": ["echo 'gate says hi' && true"]})
    sandbox.write_tasks({"tasks": [{"id": "G", "dispatch": "exec", "command": "true"}]})
    sandbox.macp("drain", check=True)
    [gate] = sandbox.result("G")["gate_results"]
    assert gate["name"] == "echo 'gate says hi' && true", "a --gate COMMAND gate is named by its command"
    assert sandbox.macp("log", "G", "--gate", gate["name"], check=True).stdout == "gate says hi\n"
    silent = sandbox.macp("log", "G", check=True)
    assert silent.stdout == "" and "the worker of attempt 1 printed nothing (worker.log is empty)" in silent.stderr


def test_show_marks_a_removed_worktree_and_no_empty_folders_pile_up(sandbox):
    sandbox.write_tasks(stacked_tasks({"id": "DONE", "command": "echo x > x.txt"}))
    sandbox.macp("drain", check=True)
    worktree = sandbox.task("DONE")["worktree"]
    assert f"worktree: {worktree} (removed)" in sandbox.macp("show", "DONE", check=True).stdout
    assert not sandbox.worktree_base.exists(), "the emptied worktree base is gone too"


def test_a_worktree_git_refused_to_create_leaves_no_empty_folder(tmp_path):
    from conftest import Sandbox

    sandbox = Sandbox(tmp_path)
    sandbox.git("update-ref", "-d", "HEAD")  # no commit: git refuses every worktree
    sandbox.macp("submit", "--task-id", "E", "--command", "true", check=True)
    sandbox.macp("drain")
    assert not sandbox.worktree_base.exists()
