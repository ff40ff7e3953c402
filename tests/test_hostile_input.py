"""Hostile input: nothing a task file, brief, table, worker or argument holds is executed,
passed as an option, allowed out of its folder, or leaked (secrets)."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime, timezone

import pytest

from conftest import BIN
from macp.errors import MacpError
from macp.layout import confine

METACHARS = [
    "$(touch {pwn})",
    "`touch {pwn}`",
    "; touch {pwn}; #",
    "' ; touch {pwn} ; '",
    '" ; touch {pwn} ; "',
    "a\nb\r\nc && touch {pwn}",
    "--upload-pack=touch {pwn}",
    "ünïcødé ✓ 数据 \u202e",
]


@pytest.mark.parametrize("bad_id", ["a;b", "$(x)", "../up", "a/b", "-rf", ".hidden", "тест", "a" * 129, "a b", "a\nb", ""])
def test_task_ids_outside_the_pattern_are_refused(sandbox, bad_id):
    proc = sandbox.macp("submit", f"--task-id={bad_id}", "--command", "true")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert not (sandbox.orch / "tasks.json").exists() or sandbox.tasks() == []


@pytest.mark.parametrize("branch", ["--upload-pack=x", "-b", "a..b", "a b", "a~1", "a^", "a:b", "a\\b", "@", "HEAD", "a@{1}", "a.lock", "x/.y"])
def test_branch_names_must_pass_gits_rules(sandbox, branch):
    proc = sandbox.macp("submit", "--task-id", "B", "--command", "true", f"--branch={branch}")
    assert proc.returncode == 2 and "not a valid git branch name" in proc.stderr


def test_metacharacters_in_titles_and_briefs_are_never_executed(sandbox, tmp_path):
    pwn = tmp_path / "PWNED"
    sandbox.fake_cli("codex", 'cat > "$HOME/stdin.txt"; echo ok > work.txt; git add work.txt; git commit -qm work')
    sandbox.write_config({"macp": {"risk": {"enabled": False}}})
    brief_text = "\n".join(value.format(pwn=pwn) for value in METACHARS) + "\n"
    (sandbox.repo / "docs" / "tasks").mkdir(parents=True)
    for number, value in enumerate(METACHARS):
        task_id = f"H{number}"
        (sandbox.repo / "docs" / "tasks" / f"{task_id}.md").write_text(brief_text)
        title = value.format(pwn=pwn) + " " + "x" * 5000
        sandbox.macp("submit", "--task-id", task_id, f"--title={title}", "--dispatch", "yolo", "--runtime", "codex",
                     f"--description={value.format(pwn=pwn)}", check=True)
    sandbox.macp("drain", check=True)
    assert not pwn.exists(), "a metacharacter was executed"
    assert (sandbox.home / "stdin.txt").read_bytes().startswith(brief_text.encode() + b"\n## Report\n"), "the brief reaches the agent byte for byte"
    for number in range(len(METACHARS)):
        task = sandbox.task(f"H{number}")
        assert task["status"] == "completed"
        assert task["branch"].startswith(f"feat/H{number}") and len(task["branch"]) < 60
    acp_like = sandbox.macp("status", check=True).stdout
    assert all(len(line) < 400 and "\r" not in line for line in acp_like.splitlines())


def test_exec_commands_are_the_only_shell_strings(sandbox, tmp_path):
    pwn = tmp_path / "PWNED"
    sandbox.macp("submit", "--task-id", "E", f"--title=$(touch {pwn})", "--command", "echo fine", f"--issue=`touch {pwn}`", check=True)
    sandbox.macp("drain", "--dry-run", check=True)
    sandbox.macp("drain", check=True)
    assert not pwn.exists()
    assert sandbox.task("E")["status"] == "completed"


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("brief_path", "../../../etc/passwd", "brief_path"),
        ("brief_path", "/etc/passwd", "brief_path"),
        ("result_path", "../../../../tmp/macp-escape.json", "result_path"),
        ("result_path", "/tmp/macp-escape.json", "result_path"),
        ("worktree", "/tmp/macp-elsewhere", "worktree"),
        ("worktree", "~/../../etc", "worktree"),
    ],
)
def test_paths_in_tasks_json_that_escape_are_refused_before_anything_runs(sandbox, field, value, message):
    sandbox.write_tasks({"tasks": [{"id": "P", "dispatch": "exec", "command": "touch ran", field: value}]})
    before = (sandbox.orch / "tasks.json").read_text()
    proc = sandbox.controller("--once")
    assert proc.returncode == 2 and f"task P: {message}" in proc.stderr and "is outside" in proc.stderr
    assert (sandbox.orch / "tasks.json").read_text() == before
    assert not list(sandbox.home.rglob("ran"))


def test_symlinked_brief_pointing_out_is_refused_at_run_time_too(sandbox, tmp_path):
    secret = tmp_path / "secret.md"
    secret.write_text("secret")
    (sandbox.repo / "docs").mkdir()
    (sandbox.repo / "docs" / "link.md").symlink_to(secret)
    sandbox.write_tasks({"tasks": [{"id": "S", "dispatch": "exec", "command": "true", "brief_path": "docs/link.md"}]})
    proc = sandbox.controller("--once")
    assert proc.returncode == 2 and "brief_path" in proc.stderr and "is outside" in proc.stderr


@pytest.mark.parametrize("candidate", [
    "a/b/c.json", "./a//b/", "a/b", ".", "a/file.txt", "a/file.txt/x", "a/missing/x/y", "a/../a/b",
    "in/c.json", "out/c.json", "{root}/a/b", "{root}/out/x", "/etc/passwd", "{root}x/y",
])
def test_the_fast_confinement_resolves_as_path_resolve_does(tmp_path, candidate):
    """macp.layout.confine's shortcut (lstat of the components below the root) gives the
    answer Path.resolve gives, or leaves the case to it: symlinks in and out, .., files."""
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "file.txt").write_text("x")
    (root / "in").symlink_to(root / "a")
    (root / "out").symlink_to(tmp_path)
    text = candidate.format(root=root)
    expected = (root / text).resolve()
    inside = expected == root or root in expected.parents
    try:
        assert confine(text, root, "field") == expected and inside
    except MacpError as exc:
        assert not inside and "is outside" in str(exc)


def test_a_result_file_symlinked_out_is_refused_when_the_task_is_claimed_or_held(sandbox, tmp_path):
    """The paths MACP derives from an id (results/<id>.json) are checked where they are used:
    C is refused at its claim; H, held (escalated) once F fails, is refused instead of having
    its result written through the link."""
    outside = tmp_path / "outside"
    outside.mkdir()
    results = sandbox.orch / "results"
    results.mkdir(parents=True, exist_ok=True)
    for task_id in ("C", "H"):
        (results / f"{task_id}.json").symlink_to(outside / f"{task_id}.json")
    untouched = {
        "H": {"id": "H", "dispatch": "exec", "command": "true", "depends_on": ["F"]},
        "C": {"id": "C", "dispatch": "exec", "command": "true"},
    }
    sandbox.write_tasks({"tasks": [{"id": "F", "dispatch": "exec", "command": "false"}, *untouched.values()]})
    proc = sandbox.controller("--until-drained")
    assert proc.returncode == 2, proc.stderr
    for task_id in ("C", "H"):
        assert f"task {task_id} not run: task {task_id}: result_path" in proc.stderr and "is outside" in proc.stderr
        assert sandbox.task(task_id) == untouched[task_id]
    assert sandbox.task("F")["status"] == "failed"
    assert list(outside.iterdir()) == []


def test_a_brief_of_several_megabytes_goes_by_stdin(sandbox):
    sandbox.fake_cli("codex", 'wc -c < /dev/stdin > "$HOME/bytes.txt"; printf "%s" "$#" > "$HOME/argc.txt"')
    sandbox.write_config({"macp": {"risk": {"enabled": False}}})
    (sandbox.repo / "docs" / "tasks").mkdir(parents=True)
    big = ("lorem ipsum " * 100 + "\n") * 5000
    (sandbox.repo / "docs" / "tasks" / "BIG.md").write_text(big)
    sandbox.macp("submit", "--task-id", "BIG", "--dispatch", "yolo", "--runtime", "codex", check=True)
    sandbox.macp("drain", check=True)
    brief = (sandbox.orch / "logs" / "BIG" / "attempt-1" / "brief.md").read_bytes()
    assert brief.startswith(big.encode()) and int((sandbox.home / "bytes.txt").read_text()) == len(brief) > 5_000_000
    assert (sandbox.home / "argc.txt").read_text() == "7", "the brief was not an argument"


SECRETS = [
    "ghp_" + "A1b2C3d4E5f6G7h8I9j0" * 2,
    "sk-proj-" + "Zx9" * 12,
    "sk-ant-api03-" + "Qw8" * 12,
    "AKIAABCDEFGHIJKLMNOP",
    "xoxb-123456789012-abcdefghijkl",
]


def test_secrets_in_output_and_commands_are_redacted_everywhere(sandbox):
    printed = " ".join(SECRETS) + " Authorization: Bearer abc.def.ghi password=hunter2"
    gate = f"echo checking with TOKEN={SECRETS[1]} && exit 1"
    sandbox.write_config({"quality_gates": [{"name": "leaky", "command": gate}]})
    sandbox.write_tasks({"tasks": [{"id": "S", "dispatch": "exec", "command": f"echo '{printed}'"}]})
    sandbox.controller("--once")
    written = [sandbox.orch / "events.ndjson", sandbox.orch / "results" / "S.json", *(sandbox.orch / "logs").rglob("*.log")]
    blob = "\n".join(path.read_text() for path in written)
    for secret in [*SECRETS, "abc.def.ghi", "hunter2"]:
        assert secret not in blob, secret
    assert "[REDACTED]" in (sandbox.orch / "results" / "S.json").read_text()
    assert "password=[REDACTED]" in (sandbox.orch / "logs" / "S" / "attempt-1" / "worker.log").read_text()
    assert sandbox.result("S")["gate_results"][0]["command"] == "echo checking with TOKEN=[REDACTED] && exit 1"


def test_a_secret_pasted_into_a_brief_reaches_neither_the_logs_nor_the_worker(sandbox):
    (sandbox.repo / "docs").mkdir()
    (sandbox.repo / "docs" / "leak.md").write_text(f"Deploy with {SECRETS[0]} and password=hunter2.\n")
    sandbox.write_config({"macp": {"cleanup_worktrees": False}})
    sandbox.macp("submit", "--task-id", "B", "--dispatch", "exec", "--brief", "docs/leak.md", "--command", 'cp "$MACP_BRIEF" seen.md', check=True)
    sandbox.macp("submit", "--task-id", "A", "--dispatch", "acp", "--runtime", "claude", "--brief", "docs/leak.md", check=True)
    sandbox.controller("--until-drained", check=True)
    copies = [sandbox.orch / "logs" / "B" / "attempt-1" / "brief.md", sandbox.worktree("B") / "seen.md",
              sandbox.orch / "logs" / "A" / "attempt-1" / "brief.md", sandbox.orch / "acp" / "A.json"]
    for copy in copies:
        text = copy.read_text()
        assert SECRETS[0] not in text and "hunter2" not in text and "[REDACTED]" in text, copy


@pytest.mark.parametrize(
    "name,content,fragment",
    [
        ("tasks.json", '{"tasks": [{"id": "A"}', "tasks.json:1:"),
        ("tasks.json", "", "file is empty"),
        ("tasks.json", "42", "expected"),
        ("tasks.json", b"\xff\xfe{}", "not UTF-8"),
        ("config.json", '{"macp": ', "config.json:1:10: invalid JSON"),
        ("config.json", "", "file is empty"),
        ("config.json", "[1, 2]", "expected a JSON object"),
    ],
)
def test_truncated_empty_or_non_object_state_files(sandbox, name, content, fragment):
    sandbox.write_tasks({"tasks": []})
    path = sandbox.orch / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = path.read_bytes()
    for proc in (sandbox.controller("--once"), sandbox.macp("submit", "--task-id", "X", "--command", "true")):
        assert proc.returncode == 2 and fragment in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert path.read_bytes() == before


def test_a_corrupt_event_line_in_the_middle_is_named_by_line(sandbox):
    sandbox.macp("submit", "--task-id", "A", "--command", "true", check=True)
    events = sandbox.orch / "events.ndjson"
    events.write_text(events.read_text() + "{not json\n" + events.read_text())
    proc = sandbox.macp("history")
    assert proc.returncode == 2 and "events.ndjson:2: invalid event line" in proc.stderr


def test_a_hand_edited_event_or_archive_line_nested_too_deeply_is_named_never_a_traceback(sandbox):
    sandbox.macp("submit", "--task-id", "A", "--command", "true", check=True)
    sandbox.macp("drain", check=True)
    sandbox.macp("archive", check=True)
    deep = "[" * 100_000 + "]" * 100_000
    with (sandbox.orch / "events.ndjson").open("a") as handle:
        handle.write(deep + "\n" + '{"event_id": "e", "timestamp": NaN}' + "\n")
    archive = next((sandbox.orch / "archive").glob("*.ndjson"))
    with archive.open("a") as handle:
        handle.write(deep + "\n")
    lines = len((sandbox.orch / "events.ndjson").read_text().splitlines())
    validate = sandbox.macp("validate")
    assert validate.returncode == 1 and "Traceback" not in validate.stderr, validate.stderr
    assert f"events.ndjson:{lines - 1}: invalid JSON: nested too deeply" in validate.stdout
    assert f"events.ndjson:{lines}:32: invalid JSON: NaN is not a JSON number" in validate.stdout
    history = sandbox.macp("history")
    assert history.returncode == 2 and "Traceback" not in history.stderr
    assert f"events.ndjson:{lines - 1}: invalid event line: nested too deeply" in history.stderr
    sandbox.macp("submit", "--task-id", "B", "--command", "true", check=True)  # reads every archived id
    assert sandbox.macp("submit", "--task-id", "A", "--command", "true").returncode == 2  # still known
    assert sandbox.macp("drain").returncode == 0 and sandbox.task("B")["status"] == "completed"


def test_validate_reports_every_invalid_line_and_exits_1(sandbox):
    sandbox.macp("submit", "--task-id", "A", "--command", "true", check=True)
    sandbox.macp("drain", check=True)
    assert sandbox.macp("validate", check=True).stdout.endswith("file(s) valid\n")
    with (sandbox.orch / "events.ndjson").open("a") as handle:
        handle.write(json.dumps({"event_id": "e", "event_type": "task.exploded", "timestamp": "yesterday", "source": "cli"}) + "\n")
    (sandbox.orch / "results" / "A.json").write_text('{"task_id": "A", "status": "done"}')
    proc = sandbox.macp("validate")
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    bad_line = len((sandbox.orch / "events.ndjson").read_text().splitlines())
    assert any(f"events.ndjson:{bad_line}: $.event_type: 'task.exploded' is not one of" in line for line in lines)
    assert any(f"events.ndjson:{bad_line}: $.timestamp: 'yesterday' is not an RFC 3339 date-time" in line for line in lines)
    assert any("results/A.json: $.status: 'done' is not one of" in line for line in lines)
    assert any("results/A.json: $.completed_at: is required" in line for line in lines)


def test_validate_with_an_explicit_schema(sandbox, tmp_path):
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"n": {"type": "integer"}}}))
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text('{"n": 1}')
    bad.write_text('{"n": "one"}')
    assert sandbox.macp("validate", "--schema", str(schema), str(good)).returncode == 0
    proc = sandbox.macp("validate", "--schema", str(schema), str(good), str(bad))
    assert proc.returncode == 1 and proc.stdout.strip() == f"{bad}: $.n: expected integer, got string"
    refs = tmp_path / "refs.json"
    refs.write_text(json.dumps({"$ref": "https://mosaicstack.dev/schemas/orchestrator/task.schema.json"}))
    task = tmp_path / "task.json"
    task.write_text('{"id": "bad id"}')
    assert sandbox.macp("validate", "--schema", str(refs), str(task)).returncode == 1
    assert sandbox.macp("validate", str(tmp_path / "random.json")).returncode == 2


def test_macps_own_token_never_reaches_workers_gates_or_runtimes(sandbox):
    sandbox.env["MACP_MATRIX_TOKEN"] = "syt_bWFjcA_" + "Q" * 20 + "_1a2b3c"
    sandbox.env["MY_TOKEN_VAR"] = "mct_" + "Z" * 30
    sandbox.write_config({"matrix": {"token_env": "MY_TOKEN_VAR"}, "quality_gates": ['env > "$HOME/gate-env.txt"']})
    sandbox.fake_cli("codex", 'cat > /dev/null; env > "$HOME/runtime-env.txt"; echo "token $MACP_MATRIX_TOKEN"')
    sandbox.macp("submit", "--task-id", "S", "--dispatch", "yolo", "--runtime", "codex", check=True)
    sandbox.macp("submit", "--task-id", "W", "--command", 'env > "$HOME/worker-env.txt"', check=True)
    sandbox.macp("drain", check=True)
    for name in ("gate-env.txt", "runtime-env.txt", "worker-env.txt"):
        assert "MY_TOKEN_VAR" not in (sandbox.home / name).read_text(), name
    assert "MACP_MATRIX_TOKEN=syt_" in (sandbox.home / "worker-env.txt").read_text(), "only the configured variable is MACP's"
    log = (sandbox.orch / "logs" / "S" / "attempt-1" / "worker.log").read_text()
    assert "token [REDACTED]" in log and "syt_" not in log, "Matrix token shapes are redacted"


@pytest.mark.parametrize(("make_report", "note"), [
    ('head -c 200000 /dev/zero | tr "\\0" " " > "$MACP_REPORT"', "larger than 65536 bytes"),
    ('ln -s /etc/passwd "$MACP_REPORT"', "Too many levels of symbolic links"),
    ('mkfifo "$MACP_REPORT"', "not a regular file"),
    ('mkdir "$MACP_REPORT"', "not a regular file"),
])
def test_a_hostile_report_is_ignored_without_blocking_or_following(sandbox, make_report, note):
    sandbox.macp("submit", "--task-id", "R", "--command", make_report, check=True)
    sandbox.controller("--once", check=True, timeout=60)
    result = sandbox.result("R")
    assert result["status"] == "completed" and result["summary"] == ""
    assert note in result["metadata"]["report_note"]


@pytest.mark.parametrize("task_id", ["a..b", "x.lock"])
def test_an_id_whose_default_branch_git_refuses_is_refused_at_submit(sandbox, task_id):
    sandbox.macp("init", check=True)
    before = (sandbox.orch / "tasks.json").read_text()
    proc = sandbox.macp("submit", "--task-id", task_id, "--dispatch", "exec", "--command", "true")
    assert proc.returncode == 2 and "is not a valid git branch name" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert (sandbox.orch / "tasks.json").read_text() == before
    ok = sandbox.macp("submit", "--task-id", task_id, "--dispatch", "exec", "--command", "true", "--branch", "feat/fine")
    assert ok.returncode == 0, ok.stderr


def test_a_stored_base_commit_never_reaches_git_as_an_option(sandbox, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    command = f'test -f "{tmp_path}/second" || {{ touch "{tmp_path}/second"; exit 1; }}'
    sandbox.write_tasks({"tasks": [{"id": "B1", "dispatch": "exec", "command": command, "max_attempts": 2}]})
    sandbox.controller("--once")
    tasks = json.loads((sandbox.orch / "tasks.json").read_text())
    tasks["tasks"][0]["base_commit"] = f"--output={victim}"
    sandbox.write_tasks(tasks)
    sandbox.controller("--once")
    assert sandbox.task("B1")["status"] == "completed", "the reused worktree keeps the stored base_commit"
    assert victim.read_text() == "precious\n"
    assert "not a commit id" in sandbox.result("B1")["worktree_kept"]


def test_a_task_whose_handling_breaks_ends_failed_and_never_reruns(sandbox, tmp_path):
    runs = tmp_path / "runs"
    sandbox.write_tasks({"tasks": [{"id": "W", "command": f'echo run >> "{runs}"'}, {"id": "OK", "command": "true"}]})
    (sandbox.orch / "results" / "W.json").mkdir(parents=True)  # the result cannot be written: handling raises
    first = sandbox.controller("--until-drained")
    assert first.returncode == 1 and "Traceback" in first.stderr
    task = sandbox.task("W")
    assert task["status"] == "failed" and task["attempts"] == 1 and task["error"].startswith("internal error while handling the task")
    assert sandbox.task("OK")["status"] == "completed", "one broken task does not block the others"
    assert sandbox.events("W")[-1]["event_type"] == "task.failed"
    sandbox.controller("--until-drained")
    assert runs.read_text() == "run\n", "it was not recovered and run again"


def test_a_bad_signature_regex_is_refused_when_the_config_loads(sandbox):
    sandbox.write_config({"macp": {"provider_signatures": {"auth": ["fine", "(unclosed"]}}})
    proc = sandbox.macp("validate")
    assert proc.returncode == 1 and "$.macp.provider_signatures.auth[1]: not a valid regular expression" in proc.stdout
    sandbox.write_tasks({"tasks": [{"id": "T", "command": "true"}]})
    run = sandbox.controller("--once")
    assert run.returncode == 2 and "not a valid regular expression" in run.stderr and len(run.stderr.splitlines()) == 1
    assert sandbox.task("T").get("status") is None, "nothing ran"


def test_absurd_numbers_in_config_are_refused_up_front(sandbox):
    sandbox.write_config({"macp": {"retry_backoff_seconds": 1e12}})
    sandbox.write_tasks({"tasks": [{"id": "T", "command": "exit 1", "max_attempts": 3}]})
    run = sandbox.controller("--once")
    assert run.returncode == 2 and "retry_backoff_seconds" in run.stderr and len(run.stderr.splitlines()) == 1
    assert sandbox.task("T").get("status") is None


def test_a_result_never_replaces_a_state_file_or_git_config(sandbox):
    sandbox.write_config({"macp": {"result_dir": ".mosaic/orchestrator"}})
    sandbox.write_tasks({"tasks": [{"id": "tasks", "command": "true"}]})
    before = (sandbox.orch / "tasks.json").read_text()
    proc = sandbox.controller("--once")
    assert proc.returncode == 2 and "would land among MACP's state files" in proc.stderr
    assert (sandbox.orch / "tasks.json").read_text() == before
    git_config = (sandbox.repo / ".git" / "config").read_text()
    sandbox.write_config({})
    sandbox.write_tasks({"tasks": [{"id": "G", "command": "true", "result_path": "../../.git/config"}]})
    proc = sandbox.controller("--once")
    assert proc.returncode == 2 and "is inside .git" in proc.stderr
    assert (sandbox.repo / ".git" / "config").read_text() == git_config


def test_logs_replaced_by_a_link_to_elsewhere_are_refused_and_nothing_is_written_there(sandbox, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    sandbox.write_tasks({"tasks": [{"id": "T", "command": "echo hi"}]})
    (sandbox.orch / "logs").symlink_to(elsewhere)
    proc = sandbox.controller("--once")
    assert proc.returncode == 2 and "logs is a symbolic link" in proc.stderr
    assert list(elsewhere.iterdir()) == []
    assert sandbox.task("T").get("status") is None


TOKEN = "ghp_" + "Q7w8E9r0T1y2U3i4O5p6" * 2


@pytest.mark.parametrize(("name", "script"), [
    ("label just outside the tail", "print('password=' + 'hunter2hunter2' + 'z' * 241)"),
    ("token cut at the tail's edge", f"print('{TOKEN}' + ' ' * 230)"),
    ("token across a 64 KiB read", f"import sys; sys.stdout.write('a' * 131070 + ' {TOKEN} ' + 'b' * 100)"),
    ("token behind a colour escape", f"print('\\033[31m{TOKEN}\\033[0m')"),
])
def test_secrets_are_redacted_before_any_cut(sandbox, tmp_path, name, script):
    program = tmp_path / "emit.py"
    program.write_text(script)
    sandbox.write_config({"macp": {"output_tail_bytes": 256}})
    sandbox.write_tasks({"tasks": [{"id": "S", "command": f'python3 "{program}"'}]})
    sandbox.controller("--once", check=True)
    tail = sandbox.result("S")["output_tail"]
    log = (sandbox.orch / "logs" / "S" / "attempt-1" / "worker.log").read_text()
    for secret in ("hunter2", TOKEN[:12], TOKEN[-12:], TOKEN[14:30]):
        assert secret not in tail and secret not in log, (name, secret)


def test_terminal_escapes_in_titles_never_reach_the_terminal(sandbox):
    title = "evil \x1b[2J\x1b]0;pwned\x07 title"
    sandbox.macp("submit", "--task-id", "E", f"--title={title}", "--command", "true", check=True)
    for command in (["status"], ["show", "E"], ["history", "--task-id", "E"]):
        proc = sandbox.macp(*command, check=True)
        assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout, command



def test_one_bad_task_never_blocks_unrelated_tasks(sandbox):
    bad_path = {"id": "P", "dispatch": "exec", "command": "touch ran-p", "result_path": "../../../../tmp/macp-escape.json"}
    bad_field = {"id": "Q", "dispatch": "exec", "command": "touch ran-q", "not_before": "soon"}
    dependent = {"id": "S", "dispatch": "exec", "command": "true", "depends_on": ["P"]}
    sandbox.write_tasks({"tasks": [bad_path, bad_field, {"id": "R", "command": "true"}, dependent]})
    proc = sandbox.controller("--until-drained")
    assert proc.returncode == 2, "a refused task is a user error to fix"
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 2 and "task P not run" in lines[0] and "result_path" in lines[0] and "task Q not run" in lines[1] and "not_before" in lines[1]
    assert sandbox.task("R")["status"] == "completed", "the unrelated task ran"
    assert sandbox.task("S") == dependent, "a task behind a refused one waits, untouched"
    assert sandbox.task("P") == bad_path and sandbox.task("Q") == bad_field, "refused tasks are left untouched"
    assert not list(sandbox.home.rglob("ran-*")) and not (sandbox.repo / "ran-p").exists()
    assert "  P: refused: task P: result_path" in proc.stdout


def test_a_brief_dir_outside_the_repository_is_refused_by_submit_and_validate(sandbox, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "B1.md").write_text("read me\n")
    sandbox.write_config({"macp": {"brief_dir": str(outside)}})
    proc = sandbox.macp("submit", "--task-id", "B1", "--command", "true")
    assert proc.returncode == 2 and "macp.brief_dir" in proc.stderr and "is outside" in proc.stderr
    assert not (sandbox.orch / "tasks.json").exists() or sandbox.tasks() == []
    proc = sandbox.macp("validate")
    assert proc.returncode == 1 and "$.macp.brief_dir" not in proc.stdout and "macp.brief_dir" in proc.stdout and "is outside" in proc.stdout
    sandbox.write_config({})
    sandbox.write_tasks({"tasks": [{"id": "B2", "command": "true", "brief_path": "../../etc/passwd"}]})
    proc = sandbox.macp("validate")
    assert proc.returncode == 1 and "$.tasks[0]: task B2: brief_path" in proc.stdout


def test_finding_a_task_by_id_compares_no_tasks():
    from macp.taskdoc import TaskDocument, validate_tasks

    comparisons = 0

    class Counted(dict):
        def __eq__(self, other):
            nonlocal comparisons
            comparisons += 1
            return dict.__eq__(self, other)

        __hash__ = None

    tasks = [Counted(id=f"T{n}", command="true") for n in range(500)]
    document = TaskDocument(tasks, {})
    validate_tasks(document)
    assert document.get("T499")["id"] == "T499" and document.find("nope") is None
    document.replace(Counted(id="T3", command="false"))
    assert comparisons == 0, "lookups go through the id map, never list.index or =="
    document.tasks.append({"id": "NEW"})
    document.tasks[:] = [task for task in document.tasks if task["id"] != "T0"]
    assert document.position("NEW") == 499 and document.find("T0") is None and document.get("T3")["command"] == "false"


def test_fifos_in_place_of_logs_never_hang_the_controller_status_or_log(sandbox, tmp_path):
    # The worker swaps its own log for a FIFO and plants FIFOs where its gate's log and the
    # next attempt's logs go: every open of them would block forever without O_NONBLOCK.
    plant = (
        'dir=$(dirname "$MACP_REPORT"); rm -f "$dir/worker.log"; mkfifo "$dir/worker.log" "$dir/gate-1-tests.log"; '
        'mkdir -p "$dir/../attempt-2"; mkfifo "$dir/../attempt-2/worker.log"; exit 1'
    )
    sandbox.write_config({"quality_gates": [{"name": "tests", "command": "true"}]})
    sandbox.write_tasks({"tasks": [{"id": "F", "dispatch": "exec", "command": plant, "max_attempts": 2}]})
    sandbox.controller("--until-drained", timeout=60)
    task = sandbox.task("F")
    assert task["status"] == "failed" and task["attempts"] == 2, "both attempts ran to their end"
    proc = sandbox.macp("log", "F", "--attempt", "1", timeout=30)
    assert proc.returncode == 2 and proc.stderr.endswith("worker.log is not a regular file; not read\n"), proc.stderr
    assert sandbox.macp("status", timeout=30, check=True).returncode == 0


def test_status_never_reads_a_fifo_among_a_running_tasks_logs(sandbox, tmp_path):
    release, planted = tmp_path / "release", tmp_path / "planted"
    # the FIFO is the newest *.log (its time set ahead), the one status reads the last line of
    trap = '"$(dirname "$MACP_REPORT")/trap.log"'
    command = f'echo working; mkfifo {trap}; touch -m -d 2099-01-01 {trap}; touch "{planted}"; while [ ! -e "{release}" ]; do sleep 0.1; done'
    sandbox.write_tasks({"tasks": [{"id": "RUN", "dispatch": "exec", "command": command}]})
    controller = subprocess.Popen([str(BIN / "mosaic-orchestrator-run"), "--repo", str(sandbox.repo), "--once"], env=sandbox.env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not planted.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert planted.exists(), "the worker planted its FIFO"
        status = sandbox.macp("status", timeout=30, check=True).stdout
        assert "RUN" in status and "running" in status
    finally:
        release.touch()
        controller.wait(timeout=60)


def test_status_skips_a_log_that_goes_between_listing_and_looking(tmp_path):
    from controller.status_cli import attempt_progress

    folder = tmp_path / "attempt-1"
    folder.mkdir()
    (folder / "worker.log").write_text("working\n")

    class ListsAVanishedLog:  # the attempt's folder as listed just before its gate log was moved aside
        def glob(self, pattern):
            return [folder / "gate-1-tests.log", *folder.glob(pattern)]

    class Layout:
        def attempt_dir(self, task_id, attempt):
            return ListsAVanishedLog()

    task = {"id": "T", "attempts": 1, "attempt_started_at": "2026-12-04T10:00:00.000Z"}
    progress = attempt_progress(task, datetime(2026, 12, 4, 10, 1, tzinfo=timezone.utc), Layout())
    assert progress == {"elapsed_seconds": 60.0, "last_output": "working"}


HALF_EMOJI = '"half an emoji \\ud83d"'  # a JSON escape of a lone surrogate: a stream cut mid-character
# JSON nested deeper than Python's parser can follow, yet within the 64 KiB a report may have
DEEP = "python3 -c 'print(\"[\" * 30000 + \"]\" * 30000)'"


def agent_output_and_report(sandbox, agent_prints: str, report_command: str) -> None:
    """Drain an agent task AGENT (codex printing ``agent_prints``, then a completed turn) and an
    exec task REPORT whose report ``report_command`` writes; both must complete, with no
    internal error and no traceback."""
    sandbox.fake_cli("codex", f"cat > /dev/null\n{agent_prints}\necho '{{\"type\":\"turn.completed\"}}'\n")
    sandbox.write_config({"runtimes": {"opencode": None, "gemini": None, "goose": None, "claude": None}})
    sandbox.write_tasks({"tasks": [
        {"id": "AGENT", "dispatch": "yolo", "runtime": "codex", "title": "say something"},
        {"id": "REPORT", "dispatch": "exec", "command": f"{report_command} > \"$MACP_REPORT\""},
    ]})
    proc = sandbox.controller("--until-drained")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "internal error" not in proc.stdout + proc.stderr and "Error" not in proc.stderr, proc.stdout + proc.stderr
    assert sandbox.task("AGENT")["status"] == "completed" and sandbox.task("REPORT")["status"] == "completed"


def test_a_lone_surrogate_in_an_agents_final_message_or_report_never_fails_the_task(sandbox):
    message = '{"type":"item.completed","item":{"type":"agent_message","text":' + HALF_EMOJI + '}}'
    report = '{"escalation_reason": "x", "pr": ' + HALF_EMOJI + ', "summary": ' + HALF_EMOJI + '}'
    agent_output_and_report(sandbox, f"printf '%s\\n' '{message}'", f"printf '%s' '{report}'")
    assert sandbox.result("AGENT")["summary"] == "half an emoji \ufffd"
    assert sandbox.result("REPORT")["summary"] == "half an emoji \ufffd" and sandbox.task("REPORT")["pr"] == "half an emoji \ufffd"
    assert "\ufffd" in sandbox.macp("show", "REPORT", check=True).stdout


def test_json_nested_too_deeply_in_agent_output_or_a_report_is_ignored_not_fatal(sandbox):
    agent_output_and_report(sandbox, DEEP, DEEP)


GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0" * 2
ANTHROPIC_KEY = "sk-ant-" + "x9Y8w7V6u5T4s3R2q1P0" * 2


def test_secrets_in_a_workers_report_are_redacted_before_any_view_sees_them(sandbox, tmp_path):
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"escalate": True, "escalation_reason": f"push failed: token={GITHUB_TOKEN}", "pr": f"https://x/?k={ANTHROPIC_KEY}"}))
    sandbox.write_tasks({"tasks": [{"id": "LEAK", "dispatch": "exec", "command": f"cp {report} \"$MACP_REPORT\""}]})
    drain = sandbox.macp("drain")
    drain_json = sandbox.macp("drain", "--json")
    views = [
        drain.stdout, drain.stderr, drain_json.stdout,
        sandbox.macp("status", check=True).stdout, sandbox.macp("status", "--json", check=True).stdout,
        sandbox.macp("show", "LEAK", check=True).stdout, sandbox.macp("show", "LEAK", "--json", check=True).stdout,
        (sandbox.orch / "tasks.json").read_text(), (sandbox.orch / "events.ndjson").read_text(),
    ]
    assert sandbox.task("LEAK")["status"] == "escalated" and "[REDACTED]" in sandbox.task("LEAK")["escalation_reason"]
    for view in views:
        assert GITHUB_TOKEN not in view and ANTHROPIC_KEY not in view, view


def test_dry_runs_never_print_a_runtimes_secret_environment(sandbox):
    sandbox.write_config({"runtimes": {"claude": {"env": {"ANTHROPIC_API_KEY": ANTHROPIC_KEY, "MY_SERVICE_TOKEN": "plain-looking-1234"}}}})
    sandbox.macp("submit", "--task-id", "D", "--dispatch", "yolo", "--runtime", "claude", check=True)
    dry = sandbox.macp("drain", "--dry-run", check=True).stdout
    yolo = sandbox.run("mosaic", "yolo", "claude", "--dry-run", "hello", check=True).stdout
    for view in (dry, yolo):
        assert "ANTHROPIC_API_KEY=[REDACTED]" in view and "MY_SERVICE_TOKEN=[REDACTED]" in view, view
        assert ANTHROPIC_KEY not in view and "plain-looking-1234" not in view


@pytest.mark.parametrize("branch", ["feat/a..b", "-evil", "x.lock"])
def test_sync_refuses_a_branch_name_git_rejects_as_submit_does(sandbox, branch):
    (sandbox.repo / "docs").mkdir()
    (sandbox.repo / "docs" / "TASKS.md").write_text(f"| id | status | command | branch |\n|---|---|---|---|\n| T1 | not-started | true | {branch} |\n")
    proc = sandbox.macp("sync")
    assert proc.returncode == 2 and f"T1: its branch '{branch}' is not a valid git branch name" in proc.stderr, proc.stderr
    assert sandbox.macp("submit", "--task-id", "T1", "--command", "true", f"--branch={branch}").returncode == 2
    assert sandbox.tasks() == [], "neither path lets it in"


def test_a_state_folder_linked_out_of_the_repository_is_refused_and_nothing_is_written_there(sandbox, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (sandbox.repo / ".mosaic").symlink_to(elsewhere)
    for argv in (["submit", "--task-id", "A", "--command", "true"], ["init"], ["drain"], ["status"]):
        proc = sandbox.macp(*argv)
        assert proc.returncode == 2 and ".mosaic is a symbolic link" in proc.stderr, (argv, proc.stderr)
    assert sandbox.controller("--once").returncode == 2
    assert list(elsewhere.iterdir()) == [], "no state was written through the link"
