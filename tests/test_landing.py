"""``mosaic macp land`` (issue 25, first part): completed tasks land onto the target branch
through a landing worktree, tested on the combination, the target moved only by
fast-forward; conflicts and failing gates go back to their tasks. Real git, real drains."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from test_durability import wait_for

from conftest import BIN, Sandbox


def completed(sandbox: Sandbox, tasks: list[dict], config: dict | None = None) -> None:
    """Drain ``tasks`` (exec tasks) until each is completed."""
    sandbox.write_config(config or {})
    sandbox.write_tasks({"tasks": [{"dispatch": "exec", **task} for task in tasks]})
    proc = sandbox.macp("drain", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all(task["status"] == "completed" for task in sandbox.tasks())


def subjects(sandbox: Sandbox, ref: str = "main") -> list[str]:
    return sandbox.git("log", "--first-parent", "--format=%s", ref).splitlines()


def test_completed_tasks_land_in_dependency_then_queue_order_one_merge_each(sandbox):
    completed(sandbox, [
        {"id": "A", "title": "add a", "command": "echo a > a.txt"},
        {"id": "B", "title": "add b", "command": "echo b > b.txt", "priority": 5},
        {"id": "C", "title": "add c", "command": "echo c > c.txt", "priority": 9, "depends_on": ["A"]},
    ])
    proc = sandbox.macp("land", "--all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert subjects(sandbox) == ["C: add c", "A: add a", "B: add b", "initial commit"], "B first (queue), C after A (dependency)"
    assert all((sandbox.repo / name).read_text() == f"{name[0]}\n" for name in ("a.txt", "b.txt", "c.txt")), "the checkout of main followed"
    assert sandbox.git("status", "--porcelain", "--untracked-files=no") == ""
    merges = dict(zip(["C", "A", "B"], sandbox.git("log", "--first-parent", "--format=%H", "main").split()[:3], strict=True))
    for task_id, commit in merges.items():
        task = sandbox.task(task_id)
        assert task["landed_commit"] == commit and task["landed_at"] and sandbox.result(task_id)["landed_commit"] == commit
        assert [e for e in sandbox.events(task_id) if e["event_type"] == "task.landed"]
    assert sandbox.macp("land", "--all").stdout.strip() == "nothing to land"
    status = sandbox.macp("status", "--json")
    assert {row["id"]: row["landed_commit"] for row in json.loads(status.stdout)["tasks"]} == merges
    assert f"landed as {merges['A'][:12]}" in sandbox.macp("status").stdout
    assert sandbox.macp("prune").returncode == 0
    assert sandbox.git("for-each-ref", "--format=%(refname)", "refs/heads/") == "refs/heads/main\n", "prune takes landed branches as merged"


def test_a_conflicting_task_goes_back_with_the_conflict_named_and_lands_after_its_retry(sandbox):
    command = 'printf "from %s\\n" "$MACP_TASK_ID" > shared.txt'
    completed(sandbox, [{"id": "A", "command": command}, {"id": "B", "command": command, "max_attempts": 2}])
    old_tip = sandbox.git("rev-parse", "refs/heads/" + sandbox.task("B")["branch"]).strip()
    assert sandbox.macp("land", "A").returncode == 0
    proc = sandbox.macp("land", "--all")  # B meets A's landing from an earlier run: named all the same
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (sandbox.repo / "shared.txt").read_text() == "from A\n"
    task = sandbox.task("B")
    assert task["status"] == "pending" and task.get("landed_commit") is None
    assert (task["last_failure"]["kind"], task["last_failure"]["conflicts"], task["last_failure"]["conflicts_with"]) == ("land", ["shared.txt"], "A")
    main = sandbox.git("rev-parse", "main").strip()
    assert sandbox.git("rev-parse", "refs/heads/" + task["branch"]).strip() == main, "the retry starts from what landed"
    kept = sandbox.git("for-each-ref", "--format=%(objectname)", "refs/macp/").split()
    assert old_tip in kept, "the branch's old tip is kept"
    [failed] = [e for e in sandbox.events("B") if e["event_type"] == "task.land.failed"]
    assert "conflicts in shared.txt with A" in failed["message"]
    proc = sandbox.macp("drain", timeout=300)
    assert proc.returncode == 0 and sandbox.task("B")["status"] == "completed" and sandbox.task("B")["attempts"] == 2
    brief = (sandbox.orch / "logs" / "B" / "attempt-2" / "brief.md").read_text()
    assert "conflicts in shared.txt with A" in brief, "the next brief names the conflict"
    assert sandbox.macp("land", "B").returncode == 0
    assert (sandbox.repo / "shared.txt").read_text() == "from B\n"


def test_a_gate_failing_on_the_combination_sends_that_task_back_and_the_rest_land(sandbox):
    # Each task passes alone; A and B together break the landing gate.
    config = {"land": {"gates": ["test ! -f a.txt || test ! -f b.txt"]}}
    completed(sandbox, [{"id": "A", "command": "echo a > a.txt"}, {"id": "B", "command": "echo b > b.txt"},
                        {"id": "C", "command": "echo c > c.txt"}], config)
    proc = sandbox.macp("land", "--all", "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    document = json.loads(proc.stdout)
    assert [entry["id"] for entry in document["landed"]] == ["A", "C"]
    assert [(entry["id"], entry["status"]) for entry in document["sent_back"]] == [("B", "escalated")], "out of attempts: to a person"
    assert (sandbox.repo / "a.txt").exists() and (sandbox.repo / "c.txt").exists() and not (sandbox.repo / "b.txt").exists()
    failure = sandbox.task("B")["last_failure"]
    assert (failure["kind"], failure["gate"]) == ("land", "test ! -f a.txt || test ! -f b.txt")
    assert sandbox.git("rev-parse", "main").strip() == document["after"]


def test_a_dirty_checkout_of_the_target_is_refused_and_nothing_changes(sandbox):
    completed(sandbox, [{"id": "A", "command": "echo a > a.txt"}])
    (sandbox.repo / "README.md").write_text("# edited, not committed\n")
    main = sandbox.git("rev-parse", "main").strip()
    proc = sandbox.macp("land", "--all")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "uncommitted changes on main" in proc.stderr
    assert sandbox.git("rev-parse", "main").strip() == main and sandbox.task("A").get("landed_commit") is None


def test_dry_run_predicts_what_land_does_and_changes_nothing(sandbox):
    command = 'printf "from %s\\n" "$MACP_TASK_ID" > shared.txt'
    completed(sandbox, [{"id": "A", "command": command}, {"id": "B", "command": command}, {"id": "C", "command": "echo c > c.txt"}])
    main, tasks = sandbox.git("rev-parse", "main").strip(), sandbox.tasks()
    dry = sandbox.macp("land", "--all", "--dry-run", "--json")
    assert dry.returncode == 1 and sandbox.git("rev-parse", "main").strip() == main and sandbox.tasks() == tasks
    real = sandbox.macp("land", "--all", "--json")
    predicted, done = json.loads(dry.stdout), json.loads(real.stdout)
    assert [(e["id"], e["files"]) for e in predicted["landed"]] == [(e["id"], e["files"]) for e in done["landed"]] == [
        ("A", ["shared.txt"]), ("C", ["c.txt"])]
    assert predicted["sent_back"] == done["sent_back"] and [e["id"] for e in done["sent_back"]] == ["B"]


def test_land_names_a_task_that_cannot_land_in_one_line(sandbox):
    sandbox.write_tasks({"tasks": [{"id": "P", "dispatch": "exec", "command": "true"}]})
    proc = sandbox.macp("land", "P")
    assert proc.returncode == 2 and proc.stderr.strip().endswith("task P cannot land: it is pending; only completed tasks that have not landed can")
    assert sandbox.macp("land").returncode == 2


def test_independent_tasks_land_in_batches_with_one_gate_run_per_batch(sandbox):
    completed(sandbox, [{"id": f"T{n}", "command": f"echo {n} > t{n}.txt"} for n in range(1, 6)], {"land": {"gates": ["test -f README.md"]}})
    proc = sandbox.macp("land", "--all", "--batch", "3", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    document = json.loads(proc.stdout)
    assert document["gate_runs"] == 2 and [entry["id"] for entry in document["landed"]] == ["T1", "T2", "T3", "T4", "T5"]
    assert subjects(sandbox)[:5] == ["T5: T5", "T4: T4", "T3: T3", "T2: T2", "T1: T1"]
    assert sandbox.task("T2")["landed_commit"] == document["landed"][1]["commit"], "each task's own merge commit"


def test_a_batch_whose_combination_breaks_a_test_is_bisected_and_the_rest_land(sandbox):
    # A and B each pass alone and break the gate together; C and D are independent.
    config = {"land": {"gates": ["test ! -f a.txt || test ! -f b.txt"], "batch": 4}}
    completed(sandbox, [{"id": name, "command": f"echo {name} > {name.lower()}.txt", "max_attempts": 2} for name in "ABCD"], config)
    proc = sandbox.macp("land", "--all", "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    document = json.loads(proc.stdout)
    assert [entry["id"] for entry in document["landed"]] == ["A", "C", "D"]
    assert [(entry["id"], entry["status"]) for entry in document["sent_back"]] == [("B", "pending")]
    assert document["gate_runs"] == 5, "ABCD, AB, A, B, CD"
    assert not (sandbox.repo / "b.txt").exists() and sandbox.task("B")["last_failure"]["gate"] == "test ! -f a.txt || test ! -f b.txt"


def test_a_task_conflicting_inside_a_batch_is_tried_alone_after_the_rest_landed(sandbox):
    command = 'printf "from %s\\n" "$MACP_TASK_ID" > shared.txt'
    completed(sandbox, [{"id": "A", "command": command}, {"id": "B", "command": command}, {"id": "C", "command": "echo c > c.txt"}])
    proc = sandbox.macp("land", "--all", "--batch", "3", "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    document = json.loads(proc.stdout)
    assert [entry["id"] for entry in document["landed"]] == ["A", "C"] and [entry["id"] for entry in document["sent_back"]] == ["B"]
    assert sandbox.task("B")["last_failure"]["conflicts_with"] == "A"


def test_drain_land_lands_each_task_as_it_completes_with_one_worker(sandbox):
    sandbox.write_tasks({"tasks": [{"id": "A", "dispatch": "exec", "command": "echo a > a.txt"},
                                   {"id": "B", "dispatch": "exec", "command": "echo b > b.txt"}]})
    proc = sandbox.macp("drain", "--land", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("completed, landed") == 2, "the drain's summary says they landed"
    order = [(e["task_id"], e["event_type"]) for e in sandbox.events() if e["event_type"] in ("task.landed", "task.started")]
    assert order == [("A", "task.started"), ("A", "task.landed"), ("B", "task.started"), ("B", "task.landed")]
    assert subjects(sandbox)[:2] == ["B: B", "A: A"]


def test_drain_land_runs_a_task_sent_back_again_from_what_landed(sandbox):
    # Two workers: both branches start from the same commit, so the second to land conflicts.
    command = 'printf "from %s\n" "$MACP_TASK_ID" > shared.txt'
    sandbox.write_tasks({"tasks": [{"id": "A", "dispatch": "exec", "command": command},
                                   {"id": "B", "dispatch": "exec", "command": command, "max_attempts": 2}]})
    proc = sandbox.macp("drain", "--land", "--workers", "2", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "B: pending (landing it conflicts in shared.txt with A, landed before it" in proc.stdout, "B went back once"
    for task_id in ("A", "B"):
        task = sandbox.task(task_id)
        assert task["status"] == "completed" and task["landed_commit"], task_id
    assert sandbox.task("B")["attempts"] == 2 and (sandbox.repo / "shared.txt").read_text() == "from B\n"
    assert subjects(sandbox)[:2] == ["B: B", "A: A"]


@pytest.mark.parametrize("step", ["worktree", "merge", "diff", "gate", "update-ref"])
def test_a_land_killed_at_any_step_leaves_the_target_at_its_old_tip_or_a_tested_commit(sandbox, tmp_path, step):
    # git (a wrapper put first on PATH) or the gate stops at `step` once; the test kills land
    # there with SIGKILL, then lets the stopped git go on, as a git process outliving its
    # caller does. A second land must then land everything, each task once.
    mark, release, done, tested = (tmp_path / name for name in ("mark", "release", "done", "tested"))
    hold = (f'if [ "$LAND_BLOCK_AT" = "{{at}}" ] && [ ! -e "{mark}" ]; then touch "{mark}"; i=0; '
            f'while [ ! -e "{release}" ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; held=1; fi')
    sandbox.fake_cli("git", f'{hold.format(at="$1")}\n{shutil.which("git")} "$@"; rc=$?\n[ -n "$held" ] && touch "{done}"\nexit $rc\n')
    gate = f'git rev-parse HEAD >> "{tested}"; {hold.format(at="gate")}; [ -z "$held" ] || touch "{done}"'
    completed(sandbox, [{"id": "A", "command": "echo a > a.txt"}, {"id": "B", "command": "echo b > b.txt"}], {"land": {"gates": [gate]}})
    sandbox.git("branch", "release", "main")
    old = sandbox.git("rev-parse", "release").strip()
    land = subprocess.Popen([str(BIN / "mosaic"), "macp", "land", "--all", "--onto", "release"], cwd=sandbox.repo,
                            env={**sandbox.env, "LAND_BLOCK_AT": step}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(mark.exists, timeout=120, what=f"land to reach {step}")
        land.kill()
        land.communicate(timeout=30)
    finally:
        release.touch()
    wait_for(done.exists, timeout=120, what=f"the {step} that outlived land to end")
    tip = sandbox.git("rev-parse", "release").strip()
    assert tip == old or tip in tested.read_text().split(), f"after a kill at {step}, release is at its old tip or a tested commit"
    again = sandbox.macp("land", "--all", "--onto", "release")
    assert again.returncode == 0, again.stdout + again.stderr
    assert sorted(subjects(sandbox, "release")[:2]) == ["A: A", "B: B"], "each task landed once"
    assert all(sandbox.task(task_id)["landed_commit"] for task_id in "AB")


def test_push_lands_on_a_remote_that_someone_pushed_to_meanwhile_without_forcing(sandbox, tmp_path):
    remote, other = tmp_path / "remote.git", tmp_path / "other"
    sandbox.git("init", "-q", "--bare", "-b", "main", str(remote), cwd=tmp_path)
    sandbox.git("remote", "add", "origin", str(remote))
    sandbox.git("push", "-q", "origin", "main")
    sandbox.git("clone", "-q", str(remote), str(other), cwd=tmp_path)
    # The gate, on its first run, plays someone else: a commit pushed to origin/main while
    # land tests, so land's own push is refused and it must land again on that tip.
    pushed, runs = tmp_path / "pushed", tmp_path / "runs"
    gate = (f'echo run >> "{runs}"; if [ ! -e "{pushed}" ]; then touch "{pushed}"; cd "{other}" && echo other > other.txt && '
            'git add other.txt && git commit -qm "someone else" && git push -q origin HEAD:main; fi')
    completed(sandbox, [{"id": "A", "command": "echo a > a.txt"}], {"land": {"gates": [gate]}})
    proc = sandbox.macp("land", "--all", "--push", "origin", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "origin refused the push of main: someone pushed meanwhile" in proc.stderr
    theirs = sandbox.git("rev-parse", "--verify", "HEAD", cwd=other).strip()
    published = sandbox.git("ls-remote", str(remote), "refs/heads/main").split()[0]
    assert sandbox.git("merge-base", "--is-ancestor", theirs, published) == "", "their commit is kept: no force push"
    assert sandbox.git("rev-parse", "main").strip() == published == sandbox.task("A")["landed_commit"]
    assert (sandbox.repo / "other.txt").exists() and (sandbox.repo / "a.txt").exists(), "the checkout followed"
    assert runs.read_text().count("run") == 2, "the combination was tested again on their tip"


def test_the_rebase_strategy_replays_the_tasks_commits_on_the_target_and_never_rewrites_its_branch(sandbox):
    two_commits = 'echo 1 > r.txt && git add r.txt && git commit -qm one && echo 2 >> r.txt && git add r.txt && git commit -qm two'
    completed(sandbox, [{"id": "R", "command": two_commits}], {"land": {"strategy": "rebase"}})
    (sandbox.repo / "m.txt").write_text("m\n")
    sandbox.git("add", "m.txt")
    sandbox.git("commit", "-qm", "main moved")
    branch_tip = sandbox.git("rev-parse", "refs/heads/" + sandbox.task("R")["branch"]).strip()
    proc = sandbox.macp("land", "R")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert subjects(sandbox)[:3] == ["two", "one", "main moved"] and sandbox.git("log", "--merges", "--format=%H", "main") == ""
    assert sandbox.git("rev-parse", "refs/heads/" + sandbox.task("R")["branch"]).strip() == branch_tip, "the task's branch is untouched"
    assert sandbox.task("R")["landed_commit"] == sandbox.git("rev-parse", "main").strip()
    assert (sandbox.repo / "r.txt").read_text() == "1\n2\n"


def test_sync_write_back_fills_a_landed_column_of_tasks_md(sandbox):
    (sandbox.repo / "docs").mkdir()
    table = sandbox.repo / "docs" / "TASKS.md"
    table.write_text("| id | status | description | command | landed |\n|---|---|---|---|---|\n| L-1 | not-started | add l | echo l > l.txt | |\n")
    sandbox.git("add", "docs/TASKS.md")
    sandbox.git("commit", "-qm", "tasks")
    assert sandbox.macp("sync").returncode == 0
    assert sandbox.macp("drain", timeout=300).returncode == 0
    assert sandbox.macp("land", "--all").returncode == 0
    sandbox.macp("sync", "--write-back", check=True)
    row = table.read_text().splitlines()[2]
    assert [cell.strip() for cell in row.strip("|").split("|")][::4] == ["L-1", sandbox.task("L-1")["landed_commit"][:12]]
    assert "| done |" in row


def test_land_defaults_to_the_base_branch_not_the_one_checked_out(sandbox, tmp_path):
    remote = tmp_path / "remote.git"
    sandbox.git("init", "-q", "--bare", "-b", "main", str(remote), cwd=tmp_path)
    sandbox.git("remote", "add", "origin", str(remote))
    sandbox.git("push", "-q", "origin", "main")
    completed(sandbox, [{"id": "A", "command": "echo a > a.txt"}])
    sandbox.git("checkout", "-q", "-b", "dev")
    dev = sandbox.git("rev-parse", "dev").strip()
    proc = sandbox.macp("land", "--all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert subjects(sandbox, "main")[0] == "A: A", "macp.base_ref origin/main: the target is main"
    assert sandbox.git("rev-parse", "dev").strip() == dev, "the branch checked out is not the target"


def test_a_task_whose_kept_worktree_holds_uncommitted_work_is_escalated_not_reset(sandbox):
    command = 'printf "from %s\\n" "$MACP_TASK_ID" > shared.txt'
    completed(sandbox, [{"id": "A", "command": command}, {"id": "B", "command": command, "max_attempts": 3}],
              {"macp": {"cleanup_worktrees": False}})
    worktree = Path(sandbox.task("B")["worktree"])
    (worktree / "shared.txt").write_text("half-done edit, not committed\n")
    proc = sandbox.macp("land", "--all")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    task = sandbox.task("B")
    assert task["status"] == "escalated" and "could not follow the target's tip" in task["escalation_reason"]
    assert (worktree / "shared.txt").read_text() == "half-done edit, not committed\n", "the uncommitted work is untouched"


def test_a_task_whose_branch_is_gone_is_skipped_with_a_line_and_the_rest_land(sandbox):
    completed(sandbox, [{"id": "A", "command": "echo a > a.txt"}, {"id": "B", "command": "echo b > b.txt"}])
    sandbox.git("branch", "-D", sandbox.task("A")["branch"])
    proc = sandbox.macp("land", "--all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"A: not landed: its branch {sandbox.task('A')['branch']} no longer exists" in proc.stdout
    assert sandbox.task("B")["landed_commit"] and not sandbox.task("A").get("landed_commit")
