"""The dispatcher as a library (brief, Task 4): its five functions called directly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dispatcher import macp_dispatcher as dispatcher
from macp.config import load_config
from macp.errors import MacpError


@pytest.fixture
def config(sandbox, monkeypatch):
    """The effective config, with this process's environment switched to the sandbox's."""
    for key, value in sandbox.env.items():
        monkeypatch.setenv(key, value)
    return load_config(sandbox.orch / "config.json")


def test_setup_worktree_follows_the_convention_and_is_idempotent(sandbox, config):
    task = {"id": "TASK-042-Auth", "title": "Auth: add login!"}
    path = dispatcher.setup_worktree(task, sandbox.repo, config)
    assert path == sandbox.worktree_base / "task-042-auth--85ac3495", "slug plus a hash of the id: the id is not its own slug"
    assert "feat/TASK-042-Auth-auth-add-login" in sandbox.git("worktree", "list")
    assert dispatcher.setup_worktree(task, sandbox.repo, config) == path, "a retry reuses it"


def test_base_is_origin_main_when_it_exists(sandbox, config, tmp_path):
    remote = tmp_path / "remote.git"
    sandbox.git("init", "-q", "--bare", str(remote))
    sandbox.git("remote", "add", "origin", str(remote))
    sandbox.git("push", "-q", "origin", "main")
    sandbox.git("commit", "-q", "--allow-empty", "-m", "local only")
    path, created, base, _repaired = dispatcher.prepare_worktree({"id": "R1"}, sandbox.repo, config)
    assert created and base == sandbox.git("rev-parse", "origin/main").strip()
    assert sandbox.git("rev-parse", "HEAD", cwd=path).strip() == base


def test_build_dispatch_command_for_each_dispatch(sandbox, config):
    assert dispatcher.build_dispatch_command({"id": "E", "dispatch": "exec", "command": "make fix"}, sandbox.repo, config) == "make fix"
    assert dispatcher.build_dispatch_command({"id": "L", "command": "echo legacy"}, sandbox.repo, config) == "echo legacy"
    yolo = dispatcher.build_dispatch_command({"id": "Y", "dispatch": "yolo"}, sandbox.repo, config, Path("/tmp/brief.md"))
    assert yolo.endswith("bin/mosaic yolo codex --prompt-file /tmp/brief.md"), "no runtime -> worker.runtime"
    acp = json.loads(dispatcher.build_dispatch_command({"id": "A", "dispatch": "acp", "runtime": "claude", "title": "T"}, sandbox.repo, config))
    assert acp["runtime"] == "acp" and acp["agentId"] == "claude" and acp["mode"] == "run"
    assert "timeoutSeconds" not in acp and "runTimeoutSeconds" not in acp
    with pytest.raises(MacpError, match="needs a command"):
        dispatcher.build_dispatch_command({"id": "E", "dispatch": "exec"}, sandbox.repo, config)


def test_collect_result_validates_before_writing(sandbox, config):
    task = {"id": "C1", "attempts": 1, "max_attempts": 1}
    result = dispatcher.collect_result(task, 0, [{"command": "true", "exit_code": 0, "type": "mechanical"}], sandbox.orch)
    assert result["status"] == "completed"
    assert json.loads((sandbox.orch / "results" / "C1.json").read_text()) == result
    with pytest.raises(ValueError, match="invalid result"):
        dispatcher.collect_result({"id": "C2"}, 0, [{"type": "manual"}], sandbox.orch)
    assert not (sandbox.orch / "results" / "C2.json").exists()


def test_cleanup_worktree_keeps_uncommitted_work(sandbox, config):
    task = {"id": "W1"}
    path = dispatcher.setup_worktree(task, sandbox.repo, config)
    task["worktree"] = str(path)
    (path / "draft.txt").write_text("work in progress")
    assert dispatcher.cleanup_worktree(task) == "1 uncommitted path: draft.txt"
    assert (path / "draft.txt").exists()
    (path / "draft.txt").unlink()
    assert dispatcher.cleanup_worktree(task) is None
    assert not path.exists()
    assert "feat/W1" in sandbox.git("branch", "--list", "feat/W1"), "branches are never deleted"


def test_dispatch_task_runs_one_whole_attempt(sandbox, config):
    task = {"id": "D1", "dispatch": "exec", "command": "echo out; git commit -q --allow-empty -m d1"}
    exit_code, output = dispatcher.dispatch_task(task, sandbox.repo, sandbox.orch, config)
    assert (exit_code, output) == (0, "out\n")
    assert sandbox.result("D1")["status"] == "completed"
    assert not (sandbox.worktree("D1")).exists()
    failing = {"id": "D2", "command": "echo nope; exit 4"}
    assert dispatcher.dispatch_task(failing, sandbox.repo, sandbox.orch, config) == (4, "nope\n")
    assert sandbox.result("D2")["status"] == "failed" and sandbox.result("D2")["dispatch"] == "legacy"


def test_dispatch_task_takes_an_agents_summary_from_its_structured_output(sandbox, config):
    line = json.dumps({"type": "item.completed", "item": {"type": "agent_message", "text": "Renamed the helper."}})
    sandbox.fake_cli("codex", f"cat > /dev/null; echo '{line}'; echo '{{\"type\": \"turn.completed\"}}'")
    task = {"id": "Y1", "dispatch": "yolo", "runtime": "codex"}
    assert dispatcher.dispatch_task(task, sandbox.repo, sandbox.orch, config)[0] == 0
    assert sandbox.result("Y1")["summary"] == "Renamed the helper."
