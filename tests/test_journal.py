"""The task journal (issue 11): a controller's state change is one appended line, tasks.json
is the checkpoint folded at the end of a run, and a kill -9, a command or a hand edit in the
middle of a run loses nothing (docs/durability.md "The journal")."""

from __future__ import annotations

import json
import os
import signal

from test_durability import held_command, start_controller, wait_for

from conftest import TOOLS  # noqa: F401 -- puts the program on sys.path
from macp import journal
from macp.layout import Layout
from macp.taskstore import QueueSession, load_tasks


def journal_file(sandbox):
    return sandbox.orch / "tasks.journal"


def test_a_run_journals_its_changes_and_a_kill_9_loses_none_of_them(sandbox, tmp_path):
    release, started = tmp_path / "release", tmp_path / "started"
    sandbox.write_tasks({"tasks": [{"id": "T1", "dispatch": "exec", "command": held_command(release, started), "max_attempts": 1},
                                   {"id": "T2", "dispatch": "exec", "command": "true"}]})
    checkpoint = (sandbox.orch / "tasks.json").read_bytes()
    controller = start_controller(sandbox, "--until-drained")
    wait_for(started.exists, what="T1's worker to start")
    assert (sandbox.orch / "tasks.json").read_bytes() == checkpoint, "claiming T1 did not rewrite the queue"
    lines = [json.loads(line) for line in journal_file(sandbox).read_text().splitlines()]
    assert lines[0]["checkpoint_sha256"] == journal.digest(checkpoint)
    assert lines[-1]["task"]["id"] == "T1" and lines[-1]["task"]["status"] == "running"
    os.kill(controller.pid, signal.SIGKILL)
    controller.communicate(timeout=30)
    status = json.loads(sandbox.macp("status", "--json", check=True).stdout)
    assert {task["id"]: task["status"] for task in status["tasks"]} == {"T1": "running", "T2": "pending"}, "readers replay the journal"
    release.touch()
    sandbox.controller("--until-drained", check=True)
    assert journal_file(sandbox).read_bytes() == b"", "the run folded its journal"
    at_rest = json.loads((sandbox.orch / "tasks.json").read_text())["tasks"]
    assert [(task["id"], task["status"], task["attempts"]) for task in at_rest] == [("T1", "completed", 1), ("T2", "completed", 1)]
    assert sandbox.event_types("T1").count("task.recovered") == 1


def test_a_command_in_the_middle_of_a_run_folds_the_journal_and_the_run_carries_on(sandbox, tmp_path):
    release, started = tmp_path / "release", tmp_path / "started"
    sandbox.write_tasks({"tasks": [{"id": "T1", "dispatch": "exec", "command": held_command(release, started)}]})
    controller = start_controller(sandbox, "--until-drained")
    wait_for(started.exists, what="T1's worker to start")
    sandbox.macp("submit", "--task-id", "T2", "--command", "true", check=True)
    assert journal_file(sandbox).read_bytes() == b""
    on_disk = {task["id"]: task["status"] for task in json.loads((sandbox.orch / "tasks.json").read_text())["tasks"]}
    assert on_disk == {"T1": "running", "T2": "pending"}, "submit wrote the whole queue, the run's changes included"
    release.touch()
    _out, err = controller.communicate(timeout=60)
    assert controller.returncode == 0, err
    assert "changed outside MACP" not in err
    assert {(task["id"], task["status"], task["attempts"]) for task in sandbox.tasks()} == {("T1", "completed", 1), ("T2", "completed", 1)}
    assert sandbox.event_types("T1").count("task.completed") == 1


def test_a_hand_edit_during_a_run_is_kept_and_reported(sandbox, tmp_path):
    release, started = tmp_path / "release", tmp_path / "started"
    sandbox.write_tasks({"tasks": [{"id": "T1", "dispatch": "exec", "command": held_command(release, started)},
                                   {"id": "T2", "dispatch": "exec", "command": "true", "title": "as submitted"}]})
    controller = start_controller(sandbox, "--until-drained")
    wait_for(started.exists, what="T1's worker to start")
    edited = json.loads((sandbox.orch / "tasks.json").read_text())
    edited["tasks"][1]["title"] = "edited by hand"
    (sandbox.orch / "tasks.json").write_text(json.dumps(edited, indent=2))  # an editor: no lock, no journal
    release.touch()
    _out, err = controller.communicate(timeout=60)
    assert controller.returncode == 0, err
    assert "was changed outside MACP during a run; the run's changes to T1 were applied on top of it" in err
    tasks = {task["id"]: task for task in json.loads((sandbox.orch / "tasks.json").read_text())["tasks"]}
    assert tasks["T2"]["title"] == "edited by hand" and tasks["T2"]["status"] == "completed"
    assert tasks["T1"]["status"] == "completed" and tasks["T1"]["attempts"] == 1, "the run's claim was not lost under the edit"


def write_queue(layout: Layout, tasks: list[dict]) -> bytes:
    layout.orch_dir.mkdir(parents=True, exist_ok=True)
    layout.tasks_file.write_text(json.dumps({"tasks": tasks}))
    return layout.tasks_file.read_bytes()


def test_a_crash_inside_a_fold_is_not_taken_for_a_hand_edit(tmp_path, capsys):
    layout = Layout(tmp_path)
    old = write_queue(layout, [{"id": "A", "status": "pending"}])
    session = QueueSession(layout)
    with session.edit() as document:
        document.replace({**document.get("A"), "status": "running"})
    # A fold that died after writing the new checkpoint, before it emptied the journal:
    new = write_queue(layout, [{"id": "A", "status": "running"}])
    journal.mark_fold(layout.tasks_journal, journal.digest(new))
    assert journal.digest(old) != journal.digest(new)
    with QueueSession(layout).edit() as document:
        document.replace({**document.get("A"), "status": "completed"})
    assert "changed outside MACP" not in capsys.readouterr().err
    assert [task["status"] for task in load_tasks(layout).tasks] == ["completed"]


def test_a_torn_last_journal_line_is_ignored_and_set_aside(tmp_path):
    layout = Layout(tmp_path)
    write_queue(layout, [{"id": "A", "status": "pending"}])
    session = QueueSession(layout)
    with session.edit() as document:
        document.replace({**document.get("A"), "status": "running"})
    with layout.tasks_journal.open("a") as handle:
        handle.write('{"task": {"id": "A", "status": "compl')  # what a kill -9 mid-append leaves
    assert load_tasks(layout).get("A")["status"] == "running", "the change cut short never happened"
    with QueueSession(layout).edit() as document:
        document.replace({**document.get("A"), "status": "failed"})
    assert load_tasks(layout).get("A")["status"] == "failed"
    assert layout.tasks_journal.with_name("tasks.journal.torn").read_text().startswith('{"task": {"id": "A"')


def test_a_session_folds_once_the_journal_outgrows_the_checkpoint(tmp_path, monkeypatch):
    import macp.taskstore as taskstore

    monkeypatch.setattr(taskstore, "FOLD_MIN_BYTES", 0)
    layout = Layout(tmp_path)
    write_queue(layout, [{"id": f"T{n}", "status": "pending", "title": "x" * 50} for n in range(20)])
    session = QueueSession(layout)
    sizes = []
    for n in range(40):
        with session.edit() as document:
            document.replace({**document.get(f"T{n % 20}"), "attempts": n})
        sizes.append(layout.tasks_journal.stat().st_size)
    assert 0 in sizes, "the journal was folded into tasks.json when it grew past it"
    assert max(sizes) <= 2 * layout.tasks_file.stat().st_size
    assert [task["attempts"] for task in load_tasks(layout).tasks] == list(range(20, 40))


def test_validate_checks_the_journal_of_a_run_that_was_killed(sandbox, tmp_path):
    release, started = tmp_path / "release", tmp_path / "started"
    sandbox.write_tasks({"tasks": [{"id": "T1", "dispatch": "exec", "command": held_command(release, started)}]})
    controller = start_controller(sandbox, "--once")
    wait_for(started.exists, what="T1's worker to start")
    os.kill(controller.pid, signal.SIGKILL)
    controller.communicate(timeout=30)
    release.touch()
    assert sandbox.macp("validate").returncode == 0
    with journal_file(sandbox).open("a") as handle:
        handle.write(json.dumps({"task": {"id": "T1", "status": "half-done"}}) + "\n")
    proc = sandbox.macp("validate")
    assert proc.returncode == 1 and "tasks.journal:" in proc.stdout and "$.task.status" in proc.stdout, proc.stdout


def test_a_signal_during_a_recorded_change_waits_until_the_change_and_its_event_are_written(tmp_path):
    """macp.recording.recorded: SIGTERM arriving inside the block (forced: sent by the block
    itself) is raised only after the queue and the event are both on disk, and the
    handlers the caller had are back afterwards."""
    import pytest

    from macp.errors import Interrupted
    from macp.events import make_event, read_events
    from macp.recording import recorded
    from macp.taskstore import edit_tasks

    layout = Layout(tmp_path)
    write_queue(layout, [{"id": "A", "status": "pending"}])
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as raised, recorded(edit_tasks(layout), layout.events_file) as (document, events):
        document.replace({**document.get("A"), "status": "cancelled"})
        os.kill(os.getpid(), signal.SIGTERM)
        events.append(make_event("task.cancelled", source="cli", task_id="A", status="cancelled", message="by hand"))
    assert raised.value.signum == signal.SIGTERM
    assert [task["status"] for task in load_tasks(layout).tasks] == ["cancelled"]
    assert [event["event_type"] for event in read_events(layout.events_file)] == ["task.cancelled"]
    assert signal.getsignal(signal.SIGTERM) == before
