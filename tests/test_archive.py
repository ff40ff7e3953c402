"""``mosaic macp archive``: finished tasks leave tasks.json for archive/<YYYY-MM>.ndjson, and
status --all, history and sync still know them (issue 11)."""

from __future__ import annotations

import json

from conftest import BIN


def finished(task_id: str, when: str, **extra) -> dict:
    return {"id": task_id, "command": "true", "status": "completed", "attempts": 1, "completed_at": when, **extra}


def test_archive_moves_finished_tasks_by_month_and_keeps_what_is_still_needed(sandbox):
    sandbox.write_tasks({"tasks": [
        finished("OCT", "2026-10-05T10:00:00.000Z"),
        finished("NOV", "2026-11-20T10:00:00.000Z"),
        finished("NEEDED", "2026-10-06T10:00:00.000Z"),
        {"id": "LATER", "command": "true", "depends_on": ["NEEDED"]},
    ]})
    out = sandbox.macp("archive", "--before", "2026-11-01", check=True).stdout
    assert "kept NEEDED: an unfinished task depends on it" in out and "archived 1 finished task(s)" in out
    assert [task["id"] for task in sandbox.tasks()] == ["NOV", "NEEDED", "LATER"]
    october = (sandbox.orch / "archive" / "2026-10.ndjson").read_text().splitlines()
    assert [json.loads(line)["id"] for line in october] == ["OCT"]
    sandbox.macp("archive", check=True)
    assert [task["id"] for task in sandbox.tasks()] == ["NEEDED", "LATER"]
    assert json.loads((sandbox.orch / "archive" / "2026-11.ndjson").read_text())["id"] == "NOV"
    status = json.loads(sandbox.macp("status", "--all", "--json", check=True).stdout)
    assert {row["id"] for row in status["tasks"]} == {"OCT", "NOV", "NEEDED", "LATER"}
    assert {row["id"] for row in json.loads(sandbox.macp("status", "--json", check=True).stdout)["tasks"]} == {"NEEDED", "LATER"}
    assert sandbox.macp("history", "--task-id", "OCT").returncode == 0, "history still knows an archived task"
    assert "queue.archived" in [event["event_type"] for event in sandbox.events()]


def test_a_crash_between_the_two_writes_never_archives_a_task_twice(sandbox):
    task = finished("ONE", "2026-10-05T10:00:00.000Z")
    sandbox.write_tasks({"tasks": [task]})
    (sandbox.orch / "archive").mkdir()
    (sandbox.orch / "archive" / "2026-10.ndjson").write_text(json.dumps(task) + "\n")  # appended, then the crash
    sandbox.macp("archive", check=True)
    assert sandbox.tasks() == []
    assert len((sandbox.orch / "archive" / "2026-10.ndjson").read_text().splitlines()) == 1


def test_sync_leaves_an_archived_row_alone(sandbox):
    sandbox.write_tasks({"tasks": [finished("OLD", "2026-10-05T10:00:00.000Z")]})
    sandbox.macp("archive", check=True)
    (sandbox.repo / "docs").mkdir()
    (sandbox.repo / "docs" / "TASKS.md").write_text("| id | status | command |\n|---|---|---|\n| OLD | done | true |\n| NEW | not-started | true |\n")
    proc = sandbox.macp("sync", check=True)
    assert "OLD: archived, left as it is" in proc.stdout + proc.stderr
    assert [task["id"] for task in sandbox.tasks()] == ["NEW"]


def test_a_bad_before_date_is_one_line(sandbox):
    sandbox.write_tasks({"tasks": []})
    proc = sandbox.macp("archive", "--before", "last week")
    assert proc.returncode == 2 and proc.stderr == "mosaic macp archive: --before: 'last week' is not a date (YYYY-MM-DD) or an RFC 3339 timestamp\n"


# -- issue 22 item 3: archived tasks stay known by id ------------------------------------


def archived_queue(sandbox) -> dict:
    """A real task that ran (branch, result, logs), then archived; returns it as archived."""
    sandbox.write_tasks({"tasks": [{"id": "DONE", "title": "the work", "dispatch": "exec", "command": "echo work > work.txt"}]})
    sandbox.controller("--once", check=True)
    sandbox.macp("archive", check=True)
    assert sandbox.tasks() == []
    [line] = (sandbox.orch / "archive").glob("*.ndjson")
    return json.loads(line.read_text())


def test_an_archived_id_is_never_used_again(sandbox):
    archived = archived_queue(sandbox)
    result_before = sandbox.result("DONE")
    proc = sandbox.macp("submit", "--task-id", "DONE", "--command", "true")
    assert proc.returncode == 2 and proc.stderr == "mosaic macp submit: task DONE already exists (archived); choose another id\n"
    batch = sandbox.orch.parent.parent / "batch.jsonl"
    batch.write_text('{"id": "FRESH", "command": "true"}\n{"id": "DONE", "command": "true"}\n')
    proc = sandbox.macp("submit", "--from", str(batch))
    assert proc.returncode == 2 and f"{batch}:2: task DONE already exists (archived)" in proc.stderr
    assert sandbox.tasks() == [] and sandbox.result("DONE") == result_before
    assert archived["id"] == "DONE"


def test_archived_tasks_are_read_by_id_and_refused_for_changes_by_name(sandbox):
    archived_queue(sandbox)
    show = sandbox.macp("show", "DONE", check=True).stdout
    assert "DONE is archived (read-only)" in show and "work.txt" in show
    assert json.loads(sandbox.macp("show", "DONE", "--json", check=True).stdout)["archived"] is True
    assert sandbox.macp("log", "DONE", check=True).returncode == 0
    assert "work.txt" in sandbox.macp("diff", "DONE", "--stat", check=True).stdout
    assert json.loads(sandbox.macp("status", "--task-id", "DONE", "--json", check=True).stdout)["tasks"][0]["status"] == "completed"
    for command in (["retry", "DONE"], ["cancel", "DONE"], ["edit", "DONE", "--priority", "3"], ["approve", "DONE"]):
        proc = sandbox.macp(*command)
        assert proc.returncode == 2, command
        assert proc.stderr.endswith("task DONE is archived; archived tasks are read-only (mosaic macp show DONE)\n"), proc.stderr
    proc = sandbox.macp("show", "NOBODY")
    assert proc.returncode == 2 and proc.stderr.endswith("unknown task: NOBODY\n")


def test_a_task_may_depend_on_an_archived_task_and_runs_from_its_work(sandbox):
    archived_queue(sandbox)
    sandbox.macp("submit", "--task-id", "NEXT", "--depends-on", "DONE", "--command", "test -f work.txt", check=True)
    assert "ready" in sandbox.macp("status", check=True).stdout
    sandbox.macp("drain", check=True)
    assert sandbox.result("NEXT")["status"] == "completed" and sandbox.result("NEXT")["stacked_on"] == ["feat/DONE-the-work"]


def test_retry_of_a_task_whose_completed_dependency_was_archived_runs(sandbox):
    sandbox.write_tasks({"tasks": [
        finished("UP", "2026-10-05T10:00:00.000Z", dispatch="exec"),
        {"id": "DOWN", "dispatch": "exec", "command": "true", "depends_on": ["UP"], "status": "failed", "attempts": 1, "max_attempts": 1,
         "completed_at": "2026-11-05T10:00:00.000Z"},
    ]})
    out = sandbox.macp("archive", "--before", "2026-11-01", check=True).stdout
    assert "archived 1 finished task(s)" in out and [task["id"] for task in sandbox.tasks()] == ["DOWN"]
    sandbox.macp("retry", "DOWN", check=True)
    sandbox.macp("drain", check=True)
    assert sandbox.task("DOWN")["status"] == "completed", sandbox.task("DOWN").get("escalation_reason")


def test_prune_and_report_see_archived_tasks(sandbox, tmp_path):
    sandbox.write_config({"macp": {"cleanup_worktrees": False}})
    archived_queue(sandbox)
    branch = "feat/DONE-the-work"
    sandbox.git("merge", "-q", "--no-edit", branch)
    out = sandbox.macp("prune", check=True).stdout
    assert f"removed worktree {sandbox.worktree('DONE')} (DONE)" in out and f"deleted branch {branch} (DONE)" in out
    report = tmp_path / "junit.xml"
    sandbox.macp("report", "--junit", str(report), check=True)
    assert 'testsuite name="DONE"' in report.read_text()


# -- issue 22 item 4: the archive is checked where it is written and read ----------------


def test_a_completed_at_that_is_no_timestamp_never_names_the_archive_file(sandbox, tmp_path):
    outside = tmp_path / "xy"
    task = finished("EVIL", str(outside))
    sandbox.write_tasks({"tasks": [task, finished("GOOD", "2026-10-05T10:00:00.000Z")]})
    out = sandbox.macp("archive", check=True).stdout
    assert "kept EVIL: not a valid task ($.completed_at:" in out and "archived 1 finished task(s)" in out
    assert not list(tmp_path.glob("xy*")), "nothing is written outside the archive"
    assert sorted(path.name for path in (sandbox.orch / "archive").iterdir()) == ["2026-10.ndjson"]


def test_a_bad_archive_line_is_skipped_with_a_note_and_validate_names_it(sandbox):
    sandbox.write_tasks({"tasks": [finished("OK", "2026-10-05T10:00:00.000Z")]})
    sandbox.macp("archive", check=True)
    archive = sandbox.orch / "archive" / "2026-10.ndjson"
    with archive.open("a") as handle:
        handle.write('{"id": "BROKEN", "status": 5}\n{not json\n')
    proc = sandbox.macp("status", "--all", "--json")
    assert proc.returncode == 0 and [row["id"] for row in json.loads(proc.stdout)["tasks"]] == ["OK"]
    assert f"{archive}:2: skipped: $.status:" in proc.stderr and f"{archive}:3: skipped: not JSON" in proc.stderr
    validate = sandbox.macp("validate")
    assert validate.returncode == 1
    assert f"{archive}:2: $.status:" in validate.stdout and f"{archive}:3:2: invalid JSON" in validate.stdout


def test_validate_reports_an_id_both_archived_and_queued(sandbox):
    sandbox.write_tasks({"tasks": [finished("TWICE", "2026-10-05T10:00:00.000Z")]})
    sandbox.macp("archive", check=True)
    sandbox.write_tasks({"tasks": [{"id": "TWICE", "command": "true"}]})  # a hand edit
    validate = sandbox.macp("validate")
    assert validate.returncode == 1 and "task TWICE is also archived at" in validate.stdout


def test_an_archive_during_a_drain_keeps_the_drains_tasks_in_its_summary(sandbox, tmp_path):
    archived = tmp_path / "archived"
    sandbox.write_tasks({"tasks": [
        {"id": "FIRST", "dispatch": "exec", "command": "true"},
        # runs after FIRST completed and archives it from inside the drain
        {"id": "SECOND", "dispatch": "exec", "command": f"{BIN / 'mosaic'} macp archive --repo {sandbox.repo} > {archived}", "priority": -1},
    ]})
    proc = sandbox.macp("drain", "--json", check=True)
    assert "archived 1 finished task(s)" in archived.read_text(), proc.stderr
    rows = {row["id"]: row["status"] for row in json.loads(proc.stdout)["tasks"]}
    assert rows == {"FIRST": "completed", "SECOND": "completed"}, "a task archived meanwhile is still the run's"
