"""``mosaic macp archive``: finished tasks leave tasks.json for archive/<YYYY-MM>.ndjson, and
status --all, history and sync still know them (issue 11)."""

from __future__ import annotations

import json


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
