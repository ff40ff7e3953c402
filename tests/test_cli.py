"""`mosaic macp` commands: output, exit codes, and bad input (one line, no file changed)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess

import pytest

from conftest import BIN, ROOT


def snapshot(orch) -> dict[str, str]:
    """Digest of every file under the state folder, to prove a failed command changed nothing
    (lock files aside: taking a lock changes no state)."""
    if not orch.exists():
        return {}
    return {str(p.relative_to(orch)): hashlib.sha256(p.read_bytes()).hexdigest() for p in orch.rglob("*") if p.is_file() and p.suffix != ".lock"}


def assert_one_line_error(proc, *fragments: str, code: int = 2) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture
def seeded(sandbox):
    sandbox.macp("submit", "--task-id", "A", "--command", "true", check=True)
    (sandbox.repo / "docs" / "tasks").mkdir(parents=True)
    (sandbox.repo / "docs" / "tasks" / "B.md").write_text("# B\nDo the thing.\n")
    return sandbox


BAD_SUBMITS = [
    (["--task-id", "A", "--command", "true"], "task A already exists"),
    (["--task-id", "bad id", "--command", "true"], "$.id"),
    (["--task-id=-rf", "--command", "true"], "$.id"),
    (["--task-id", "C", "--dispatch", "teleport", "--command", "x"], "invalid choice: 'teleport'"),
    (["--task-id", "C", "--dispatch", "yolo", "--runtime", "hal9000"], "unknown runtime 'hal9000'"),
    (["--task-id", "C", "--command", "x", "--brief", "docs/tasks/missing.md"], "does not exist"),
    (["--task-id", "C", "--command", "x", "--brief", "../outside.md"], "is outside"),
    (["--task-id", "C", "--command", "x", "--brief", "/etc/passwd"], "is outside"),
    (["--task-id", "C", "--command", "x", "--depends-on", "nope"], "unknown task nope"),
    (["--task-id", "C", "--command", "x", "--depends-on", "C"], "unknown task C"),
    (["--task-id", "C", "--command", "x", "--branch", "bad..branch"], "not a valid git branch name"),
    (["--task-id", "C", "--command", "x", "--max-attempts", "0"], "must be at least 1"),
    (["--task-id", "C"], "an exec task needs --command"),
    (["--task-id", "C", "--command", "x", "--type", "party"], "invalid choice: 'party'"),
]


@pytest.mark.parametrize("args,message", BAD_SUBMITS, ids=[m for _, m in BAD_SUBMITS])
def test_bad_submit_is_one_line_exit_2_and_changes_nothing(seeded, args, message):
    before = snapshot(seeded.orch)
    proc = seeded.macp("submit", *args)
    assert_one_line_error(proc, message)
    assert snapshot(seeded.orch) == before


def test_brief_symlink_out_of_the_repository_is_refused(seeded, tmp_path):
    outside = tmp_path / "secret.md"
    outside.write_text("secret")
    (seeded.repo / "docs" / "tasks" / "link.md").symlink_to(outside)
    proc = seeded.macp("submit", "--task-id", "C", "--command", "x", "--brief", "docs/tasks/link.md")
    assert_one_line_error(proc, "is outside")


def test_submit_records_every_field_and_an_event(seeded):
    seeded.macp(
        "submit", "--task-id", "B", "--title", "Do B", "--type", "coding", "--dispatch", "yolo", "--runtime", "claude",
        "--depends-on", "A", "--priority", "3", "--max-attempts", "2", "--timeout", "90",
        "--branch", "feat/b", "--issue", "#42", check=True,
    )
    task = seeded.task("B")
    assert task["brief_path"] == "docs/tasks/B.md", "the default brief is <brief_dir>/<id>.md"
    expected = {"title": "Do B", "type": "coding", "dispatch": "yolo", "runtime": "claude", "depends_on": ["A"], "priority": 3,
                "max_attempts": 2, "timeout_seconds": 90, "branch": "feat/b", "issue": "#42", "status": "pending", "attempts": 0}
    assert {k: task[k] for k in expected} == expected
    assert seeded.events("B")[0]["event_type"] == "task.submitted"
    assert seeded.events("B")[0]["source"] == "cli"


def test_the_briefs_own_submit_example_makes_an_agent_task(seeded):
    (seeded.repo / "docs" / "tasks" / "TASK-001.md").write_text("# TASK-001\nAdd login.\n")
    seeded.macp("submit", "--task-id", "TASK-001", "--title", "Add login", "--type", "coding", "--runtime", "codex",
                "--brief", "docs/tasks/TASK-001.md", check=True)
    assert seeded.task("TASK-001")["dispatch"] == "yolo", "--runtime/--brief without --command imply yolo"
    seeded.macp("submit", "--task-id", "T2", "--brief", "docs/tasks/B.md", check=True)
    assert seeded.task("T2")["dispatch"] == "yolo"
    seeded.macp("submit", "--task-id", "T3", "--runtime", "codex", "--command", "make", check=True)
    assert seeded.task("T3")["dispatch"] == "exec", "a --command keeps the configured default"


def test_unknown_task_id_errors(seeded):
    for args in (["status", "--task-id", "nope"], ["history", "--task-id", "nope"], ["show", "nope"], ["retry", "nope"], ["cancel", "nope"]):
        assert_one_line_error(seeded.macp(*args), "unknown task: nope")


def test_non_git_repo_is_refused_everywhere(sandbox, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    for args in (["status"], ["submit", "--task-id", "X", "--command", "true"], ["drain"], ["history"]):
        proc = sandbox.macp(*args, "--repo", str(plain))
        assert_one_line_error(proc, "not a git repository")
    assert list(plain.iterdir()) == []
    assert_one_line_error(sandbox.run("mosaic-orchestrator-run", "--repo", str(plain), "--once"), "not a git repository")


@pytest.mark.parametrize(
    "content,fragment",
    [
        ('{"tasks": [ {"id": "A",, } ]}', "tasks.json:1:"),
        ("", "file is empty"),
        ('{"tasks": [', "tasks.json:1:12: invalid JSON"),
        ("[1, 2]", "$[0]: a task must be a JSON object"),
        ('"tasks"', "expected"),
        ('{"tasks": [{"id": "A", "status": "sleeping"}]}', "$.tasks[0].status: 'sleeping' is not one of"),
        ('{"tasks": [{"id": "A"}, {"id": "A"}]}', "duplicate task id 'A'"),
        ('{"tasks": [{"id": "A", "max_attempts": 0}]}', "$.tasks[0].max_attempts"),
    ],
)
def test_malformed_tasks_json_is_reported_with_location_and_left_alone(sandbox, content, fragment):
    sandbox.orch.mkdir(parents=True)
    (sandbox.orch / "tasks.json").write_text(content)
    before = snapshot(sandbox.orch)
    proc = sandbox.controller("--once")
    assert_one_line_error(proc, fragment)
    assert snapshot(sandbox.orch) == before


def test_malformed_config_json_says_file_line_and_column(sandbox):
    sandbox.orch.mkdir(parents=True)
    (sandbox.orch / "config.json").write_text('{\n  "macp": {\n    "cleanup_worktrees": yes\n  }\n}\n')
    sandbox.write_tasks({"tasks": []})
    assert_one_line_error(sandbox.controller("--once"), "config.json:3:26: invalid JSON")
    (sandbox.orch / "config.json").write_text('{"worker": {"timeout_seconds": "soon"}}')
    assert_one_line_error(sandbox.macp("submit", "--task-id", "X", "--command", "y"), "$.worker.timeout_seconds: expected integer")


def test_history_shows_a_tasks_events_in_order(sandbox):
    sandbox.macp("submit", "--task-id", "A", "--command", "true", check=True)
    sandbox.macp("drain", check=True)
    lines = sandbox.macp("history", "--task-id", "A", check=True).stdout.splitlines()
    assert [line.split()[2] for line in lines] == [
        "task.submitted", "task.started", "worktree.created", "task.gated", "task.completed", "worktree.removed"]
    output = sandbox.macp("history", "--json", check=True).stdout
    events = [json.loads(line) for line in output.splitlines()]  # JSON lines, as --help says
    assert len(events) == output.count("\n") and all(line.startswith("{") for line in output.splitlines())
    assert [e["event_type"] for e in events][-3:] == ["task.completed", "worktree.removed", "controller.stopped"]
    assert events[-1]["task_id"] is None and events[-1]["message"].startswith("1 task(s) in ")
    assert events[-1]["metadata"]["counts"] == {"completed": 1} and events[-1]["metadata"]["exit_code"] == 0


def test_retry_grants_a_fresh_attempt_and_cancel_refuses_finished_tasks(sandbox):
    sandbox.macp("submit", "--task-id", "A", "--command", "test -f ok", check=True)
    sandbox.macp("drain")
    assert sandbox.task("A")["status"] == "failed"
    assert_one_line_error(sandbox.macp("retry", "A", "--attempts", "0"), "must be at least 1")
    assert sandbox.macp("retry", "A", check=True).stdout == "A: pending again (1 more attempt(s))\n"
    task = sandbox.task("A")
    assert task["status"] == "pending" and task["max_attempts"] == 2 and task["error"] is None
    assert sandbox.events("A")[-1]["metadata"] == {"previous_status": "failed", "max_attempts": 2, "fresh": False}
    assert_one_line_error(sandbox.macp("retry", "A"), "only failed, escalated or cancelled")
    sandbox.macp("cancel", "A", "--reason", "not needed", check=True)
    assert sandbox.task("A")["status"] == "cancelled"
    assert_one_line_error(sandbox.macp("cancel", "A"), "already cancelled")


def test_init_copies_templates_once(sandbox):
    first = sandbox.macp("init", check=True)
    assert "config.json" in first.stdout and "tasks.json" in first.stdout
    (sandbox.orch / "tasks.json").write_text('{"tasks": [{"id": "keep"}]}')
    second = sandbox.macp("init", check=True)
    assert "already initialised" in second.stdout
    assert json.loads((sandbox.orch / "tasks.json").read_text())["tasks"][0]["id"] == "keep"


def test_repo_defaults_to_the_git_top_level_and_works_through_a_symlink(sandbox):
    link = sandbox.fake_bin / "mosaic"
    link.symlink_to(BIN / "mosaic")
    sub = sandbox.repo / "deep" / "folder"
    sub.mkdir(parents=True)
    proc = subprocess.run(["mosaic", "macp", "submit", "--task-id", "S", "--command", "true"], cwd=sub, env=sandbox.env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert sandbox.task("S")["status"] == "pending"


def test_commands_inside_a_tasks_worktree_use_the_main_repositorys_queue(sandbox):
    sandbox.write_config({"macp": {"cleanup_worktrees": False}})
    # The worker itself asks for the queue and adds a follow-up task from inside its worktree.
    command = "mosaic macp status --json > seen.json && mosaic macp submit --task-id FOLLOW --command true"
    sandbox.write_tasks({"tasks": [{"id": "W", "dispatch": "exec", "command": command}]})
    (sandbox.fake_bin / "mosaic").symlink_to(BIN / "mosaic")
    sandbox.controller("--once", check=True)
    worktree = sandbox.worktree("W")
    assert [task["id"] for task in json.loads((worktree / "seen.json").read_text())["tasks"]] == ["W"]
    assert sandbox.task("FOLLOW")["status"] == "pending", "the follow-up landed in the main queue"
    assert not (worktree / ".mosaic").exists(), "nothing was created inside the worktree"
    proc = subprocess.run(["mosaic", "macp", "show", "W"], cwd=worktree, env=sandbox.env, capture_output=True, text=True, check=True)
    assert "completed" in proc.stdout


def test_a_bad_submit_into_a_fresh_repository_creates_nothing(sandbox):
    for args in (["--task-id", "X", "--command", "true", "--depends-on", "nope"], ["--task-id", "bad id", "--command", "x"], ["--task-id", "X"]):
        assert sandbox.macp("submit", *args).returncode == 2
    assert not (sandbox.repo / ".mosaic").exists()


def test_relative_brief_with_repo_from_another_folder(sandbox, tmp_path):
    (sandbox.repo / "docs" / "tasks").mkdir(parents=True)
    (sandbox.repo / "docs" / "tasks" / "T.md").write_text("# T\n")
    sub = sandbox.repo / "docs"
    sandbox.macp("submit", "--repo", str(sandbox.repo), "--task-id", "T", "--command", "true", "--brief", "docs/tasks/T.md", cwd=tmp_path, check=True)
    sandbox.macp("submit", "--task-id", "U", "--command", "true", "--brief", "tasks/T.md", cwd=sub, check=True)
    assert sandbox.task("T")["brief_path"] == sandbox.task("U")["brief_path"] == "docs/tasks/T.md"


def test_cancel_works_when_the_claiming_controller_is_dead_and_a_drain_skips_it(sandbox, tmp_path):
    ran = tmp_path / "ran"
    dead = {"pid": 999999, "host": "elsewhere", "started_at": "2026-01-01T00:00:00.000Z", "token": "dead-token"}
    sandbox.write_tasks({"tasks": [{"id": "T1", "status": "running", "command": f'touch "{ran}"', "attempts": 1, "claim": dead}]})
    (sandbox.orch / ".controller.lock").write_text(json.dumps(dead))
    proc = sandbox.macp("cancel", "T1")
    assert proc.returncode == 0, proc.stderr
    assert sandbox.task("T1")["status"] == "cancelled" and sandbox.task("T1")["claim"] is None
    sandbox.controller("--until-drained", check=True)
    assert sandbox.task("T1")["status"] == "cancelled" and not ran.exists()


def test_retry_resets_the_provider_budget_and_a_previous_acp_report(sandbox):
    acp = {"spawn_file": "x", "requested_at": "2026-01-01T00:00:00Z", "reported_exit_code": 0, "reported_summary": "old", "reported_at": "2026-01-01T00:01:00Z"}
    sandbox.write_tasks({"tasks": [{"id": "A1", "status": "escalated", "dispatch": "acp", "runtime": "claude", "attempts": 1,
                                    "provider_failures": 6, "failed_runtimes": ["claude", "codex"], "acp": acp}]})
    sandbox.macp("retry", "A1", check=True)
    task = sandbox.task("A1")
    assert task["status"] == "pending" and task["provider_failures"] == 0 and task["failed_runtimes"] == [] and task["acp"] is None
    sandbox.macp("drain", check=True)
    assert sandbox.task("A1")["status"] == "running" and sandbox.task("A1")["acp"]["reported_at"] is None, "it waits for a new report"


@pytest.mark.parametrize(("tasks", "config", "problem"), [
    ([{"id": "A", "command": "true", "not_before": "soon"}], {}, "not_before"),
    ([{"id": "A", "command": "true", "title": 5}], {}, "title"),
    ([{"id": "A", "command": "true", "result_path": 5}], {}, "result_path"),
    ([{"id": "A", "command": "true", "attempts": -1}], {}, "attempts"),
    ([{"id": "A", "command": "true"}], {"runtimes": None}, "$.runtimes"),
])
def test_bad_state_is_a_user_error_for_every_command(sandbox, tasks, config, problem):
    sandbox.write_tasks({"tasks": tasks})
    sandbox.write_config(config)
    before = (sandbox.orch / "tasks.json").read_text()
    for run in (lambda: sandbox.macp("status"), lambda: sandbox.macp("show", "A"), lambda: sandbox.controller("--once")):
        proc = run()
        if proc.returncode == 0:
            continue  # a read that does not need the broken part
        assert proc.returncode == 2 and problem in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert sandbox.controller("--once").returncode == 2
    assert (sandbox.orch / "tasks.json").read_text() == before


def test_a_full_disk_is_one_line_exit_74_and_changes_nothing(sandbox):
    import resource
    import signal

    sandbox.macp("submit", "--task-id", "A", "--command", "true", check=True)
    before = (sandbox.orch / "tasks.json").read_bytes()

    room = len(before) + 16  # enough for git's small outputs, not for the rewritten queue

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (room, room))

    proc = sandbox.run("mosaic", "macp", "submit", "--task-id", "B", "--command", "true", preexec_fn=small_disk)
    assert proc.returncode == 74 and "cannot write" in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert (sandbox.orch / "tasks.json").read_bytes() == before
    assert not [p for p in sandbox.orch.iterdir() if p.name.endswith(".tmp")]


def _parsers():
    from controller import macp_cli, mosaic_cli, mosaic_orchestrator

    top = macp_cli.build_parser()
    sub = next(action for action in top._actions if action.dest == "subcommand")
    return [top, *sub.choices.values(), mosaic_orchestrator.build_parser(), mosaic_cli.build_yolo_parser()]


def test_every_option_has_help_with_its_default():
    for parser in _parsers():
        for action in parser._actions:
            if action.dest in ("help", "version", "subcommand"):
                continue
            assert action.help, f"{parser.prog} {action.option_strings or action.dest}: no help"
            takes_value = action.option_strings and action.nargs != 0 and not action.required
            if takes_value:
                assert "default" in action.help, f"{parser.prog} {action.option_strings}: help does not say the default"


def test_help_ends_with_exit_codes_and_docs_and_version_works(sandbox):
    for argv in (["mosaic", "macp", "--help"], ["mosaic", "macp", "drain", "--help"], ["mosaic-orchestrator-run", "--help"],
                 ["mosaic", "yolo", "--help"], ["mosaic", "--help"]):
        proc = sandbox.run(*argv, check=True)
        lines = proc.stdout.rstrip().splitlines()
        assert lines[-1] == f"docs: {ROOT / 'docs'}" and any(line.startswith("exit codes: 0 ok") for line in lines[-5:]), argv
    for argv in (["mosaic", "--version"], ["mosaic", "macp", "--version"], ["mosaic-orchestrator-run", "--version"]):
        proc = sandbox.run(*argv, check=True)
        assert proc.stdout.strip().endswith(" 0.9.0"), proc.stdout


def test_errors_carry_the_command_they_came_from(seeded):
    proc = seeded.macp("show", "nope")
    assert proc.stderr == "mosaic macp show: unknown task: nope\n"
    proc = seeded.macp("submit", "--task-id", "A", "--command", "true")
    assert proc.stderr.startswith("mosaic macp submit: task A already exists")


def test_history_of_one_task_filters_exactly_though_it_skips_decoding_other_lines(sandbox):
    sandbox.macp("submit", "--task-id", "T7", "--command", "true", check=True)
    sandbox.macp("submit", "--task-id", "T8", "--title", 'mentions "T7" in its title', "--command", "true", check=True)
    proc = sandbox.macp("history", "--task-id", "T7", "--json", check=True)
    assert [json.loads(line)["task_id"] for line in proc.stdout.splitlines()] == ["T7"]


def test_tasks_json_is_one_task_per_line_and_keeps_other_keys_in_place(sandbox):
    sandbox.orch.mkdir(parents=True)
    (sandbox.orch / "tasks.json").write_text('{"version": 2, "tasks": [], "owner": "me"}')
    sandbox.macp("submit", "--task-id", "A", "--command", "true", check=True)
    lines = (sandbox.orch / "tasks.json").read_text().splitlines()
    assert lines[0] == "{" and lines[1] == '  "version": 2,' and lines[2] == '  "tasks": [' and lines[-2] == '  "owner": "me"'
    assert json.loads(lines[3].strip().rstrip(","))["id"] == "A", "each task is one line of JSON"


def test_a_read_command_with_repo_starts_no_git(sandbox, tmp_path):
    sandbox.macp("submit", "--task-id", "A", "--command", "true", check=True)
    marker = tmp_path / "git-ran"
    sandbox.fake_cli("git", f"#!/bin/sh\ntouch '{marker}'\nexit 99\n")
    proc = sandbox.macp("status", "--repo", str(sandbox.repo))
    assert proc.returncode == 0 and "A" in proc.stdout
    assert not marker.exists(), "--repo naming a repository is taken as it is"


def test_submit_from_a_file_adds_every_task_in_one_update_or_none(sandbox, tmp_path):
    batch = tmp_path / "tasks.jsonl"
    batch.write_text('{"id": "B1", "command": "true"}\n\n{"id": "B2", "command": "true", "depends_on": ["B1"], "priority": 2}\n')
    proc = sandbox.macp("submit", "--from", str(batch), check=True)
    assert proc.stdout.strip() == f"submitted 2 task(s) from {batch}"
    assert [(t["id"], t.get("depends_on"), t.get("priority")) for t in sandbox.tasks()] == [("B1", [], None), ("B2", ["B1"], 2)]
    assert [e["task_id"] for e in sandbox.events() if e["event_type"] == "task.submitted"] == ["B1", "B2"]
    before = (sandbox.orch / "tasks.json").read_text()
    proc = sandbox.run("mosaic", "macp", "submit", "--from", "-", input='{"id": "C1", "command": "true"}\n{"id": "C2", "colour": "red"}\n')
    assert proc.returncode == 2 and proc.stderr.startswith("mosaic macp submit: stdin:2: unknown field(s): colour")
    proc = sandbox.run("mosaic", "macp", "submit", "--from", "-", input='{"id": "C1", "command": "true"}\n{"id": "B1", "command": "true"}\n')
    assert proc.returncode == 2 and "stdin:2: task B1 already exists" in proc.stderr
    assert (sandbox.orch / "tasks.json").read_text() == before, "all or nothing"
    proc = sandbox.macp("submit", "--from", str(batch), "--task-id", "X")
    assert proc.returncode == 2 and "cannot be used together" in proc.stderr


def test_a_task_without_an_attempt_budget_shows_and_records_the_configs(sandbox):
    """A hand-written task without ``max_attempts`` gets ``worker.max_attempts``: ``status``
    shows that budget before the task runs, and a result written without a claim (a hold
    escalating it) records it -- not a budget of 1 made up where the value is shown."""
    sandbox.write_config({"worker": {"max_attempts": 3}})
    sandbox.write_tasks({"tasks": [
        {"id": "A", "dispatch": "exec", "command": "true", "depends_on": ["B"]},
        {"id": "B", "dispatch": "exec", "command": "true", "depends_on": ["A"]},
        {"id": "C", "dispatch": "exec", "command": "true", "max_attempts": 2},
    ]})
    rows = {row["id"]: row for row in json.loads(sandbox.macp("status", "--json", check=True).stdout)["tasks"]}
    assert (rows["A"]["max_attempts"], rows["C"]["max_attempts"]) == (3, 2)
    sandbox.controller("--until-drained")
    assert sandbox.task("A")["status"] == "escalated"
    assert sandbox.result("A")["max_attempts"] == 3


@pytest.mark.parametrize(("line", "message"), [
    ('{"id": "A", "depends_on": [5], "command": "true"}', "stdin:1: invalid task: $.depends_on[0]: expected string, got integer"),
    ('{"id": "B", "brief": 5}', "stdin:1: invalid task: $.brief: expected string or null, got integer"),
    ('{"id": "C", "max_attempts": 1e400, "command": "true"}', "stdin:1: invalid JSON: 1e400 is not a JSON number MACP can use (column 29)"),
    ('{"id": "D", "max_attempts": 0, "command": "true"}', "stdin:1: invalid task: $.max_attempts: 0 is less than the minimum 1"),
    ('{"id": "E", "command": "true",}', "stdin:1: invalid JSON: Expecting property name enclosed in double quotes (column 31)"),
    ('{"id": "F", "max_attempts": NaN, "command": "true"}', "stdin:1: invalid JSON: NaN is not a JSON number MACP can use (column 29)"),
])
def test_submit_from_lines_of_the_wrong_type_are_one_line_and_exit_2(sandbox, line, message):
    proc = sandbox.macp("submit", "--from", "-", input=line + "\n")
    assert (proc.returncode, proc.stderr) == (2, f"mosaic macp submit: {message}\n")
    assert not (sandbox.orch / "tasks.json").exists(), "nothing was written"


def test_submit_from_a_closed_stdin_is_one_line(sandbox):
    command = f'exec "{BIN / "mosaic"}" macp submit --from - <&-'  # stdin closed, as cron or nohup may leave it
    proc = subprocess.run(["/bin/sh", "-c", command], cwd=sandbox.repo, env=sandbox.env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and proc.stderr == "mosaic macp submit: --from -: stdin is closed; give the tasks on stdin or name a file\n"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_config_numbers_json_does_not_have_are_one_line_with_line_and_column(sandbox, literal):
    sandbox.orch.mkdir(parents=True)
    (sandbox.orch / "config.json").write_text('{\n  "macp": {"kill_grace_seconds": ' + literal + "}\n}\n")
    sandbox.write_tasks({"tasks": []})
    for command in (["drain"], ["validate"]):
        proc = sandbox.macp(*command)
        assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr and "internal error" not in proc.stderr + proc.stdout
        assert f"config.json:2:34: invalid JSON: {literal} is not a JSON number MACP can use" in proc.stderr + proc.stdout


def test_a_path_argument_no_file_system_takes_is_one_line_and_exit_2(sandbox, tmp_path):
    long_path = str(tmp_path / ("x" * 5000))
    for argv in (["mosaic", "macp", "status", "--repo", long_path], ["mosaic-orchestrator-run", "--repo", long_path, "--once"],
                 ["mosaic", "macp", "report", "--junit", long_path]):
        proc = sandbox.run(*argv)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-300:]
        assert proc.stderr.count("\n") == 1 and "File name too long" in proc.stderr and len(proc.stderr) < 300


def test_an_argument_that_is_not_utf8_is_stored_with_a_replacement_character(sandbox):
    proc = sandbox.macp("submit", "--task-id", "X", "--title", "bad \udcff byte", "--command", "true")  # argv byte 0xff
    assert proc.returncode == 0, proc.stderr
    assert sandbox.task("X")["title"] == "bad \ufffd byte"
    assert sandbox.macp("drain").returncode == 0 and sandbox.task("X")["status"] == "completed"


def test_the_readme_lists_every_command():
    from controller.macp_cli import build_parser

    readme = (ROOT / "README.md").read_text()
    block = readme.split("Every command:", 1)[1].split("```", 2)[1]  # the code block that lists them
    subcommands = next(action for action in build_parser()._actions if action.dest == "subcommand").choices
    missing = [name for name in subcommands if not re.search(rf"(mosaic macp |\| ){name}\b", block)]
    assert not missing, f"README's command list lacks {missing}"
