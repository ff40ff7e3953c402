"""MACP dispatcher: turn a task into a worktree, a command, a run, a result and a cleanup.

A library imported by the controller (MACP Phase 1 brief, Task 4), not a script. The brief's
five functions are here:

- :func:`setup_worktree` -- ``git worktree add`` for the task (or reuse it on a retry);
- :func:`build_dispatch_command` -- the command for ``exec`` / ``yolo``, or the
  ``sessions_spawn`` JSON for ``acp``;
- :func:`collect_result` -- build, validate and atomically write ``results/<task-id>.json``;
- :func:`cleanup_worktree` -- remove a clean worktree, keep a dirty one (never lose work);
- :func:`dispatch_task` -- setup, execute, collect and clean up one attempt in one call.

The controller uses the same pieces with its state transitions and quality gates in between.
They live in :mod:`dispatcher.worktrees` (the worktree, from creation to removal),
:mod:`dispatcher.commands` (the brief, the command, the environment) and
:mod:`dispatcher.results` (the worker's report, what it used, the result file); this module
is their one door (``__all__``).
Fallbacks from the brief: a task without ``dispatch`` runs as a legacy shell command (exec
path, repository root); a task without ``runtime`` uses ``worker.runtime`` from config, then
``macp.default_runtime``.
"""

from __future__ import annotations

from pathlib import Path

from dispatcher.commands import (
    MOSAIC_BIN,
    USER_BIN,
    acp_spawn_params,
    brief_for_review,
    build_dispatch_argv,
    build_dispatch_command,
    check_task_paths,
    own_secret_names,
    read_brief,
    worker_command,
    worker_env,
    write_attempt_brief,
)
from dispatcher.results import MAX_REPORT_BYTES, collect_result, default_result_path, read_worker_report, result_file, run_usage
from dispatcher.worktrees import (
    NoCommitYet,
    PreparedWorktree,
    StackConflict,
    WorktreeError,
    base_ref,
    branch_problem,
    cleanup_worktree,
    drop_empty_folders,
    inspect_worktree,
    prepare_worktree,
    preserve_commits,
    stacked_branches,
    start_over,
    worktree_path,
)
from macp import clock, gitops
from macp.capture import read_log_tail
from macp.config import load_config
from macp.layout import Layout
from macp.model import Config, ResultDetails, Task
from macp.naming import branch_name, dispatch_kind, resolve_runtime
from macp.pool import run_command
from macp.verdicts import judge_agent_run

# The dispatcher's public API: the brief's five functions and the pieces the controller
# runs an attempt with (one code path), from the modules that hold them.
__all__ = [
    "MAX_REPORT_BYTES",
    "MOSAIC_BIN",
    "USER_BIN",
    "NoCommitYet",
    "PreparedWorktree",
    "StackConflict",
    "WorktreeError",
    "acp_spawn_params",
    "base_ref",
    "branch_problem",
    "brief_for_review",
    "build_dispatch_argv",
    "build_dispatch_command",
    "check_task_paths",
    "cleanup_worktree",
    "collect_result",
    "default_result_path",
    "dispatch_task",
    "drop_empty_folders",
    "inspect_worktree",
    "own_secret_names",
    "prepare_worktree",
    "preserve_commits",
    "read_brief",
    "read_worker_report",
    "result_file",
    "run_usage",
    "setup_worktree",
    "stacked_branches",
    "start_over",
    "worker_command",
    "worker_env",
    "worktree_path",
    "write_attempt_brief",
]


def setup_worktree(task: Task, repo_root: Path, config: Config | None = None) -> Path:
    """Create (or reuse) the git worktree for ``task``; return its path.

    ``config`` defaults to the repository's effective config. Raises :class:`WorktreeError`.
    """
    config = config if config is not None else load_config(Layout(repo_root).config_file)
    return prepare_worktree(task, repo_root, config).path


def dispatch_task(task: Task, repo_root: Path, orch_dir: Path, config: Config) -> tuple[int, str]:
    """One attempt without the controller: setup, execute, collect, clean up.

    Runs the worker of an exec/yolo/legacy task (no quality gates, no retry, no failover),
    writes its result (for an agent without a report, its final message is the summary) and
    removes its clean worktree when ``macp.cleanup_worktrees`` is set. Returns
    ``(exit_code, output tail)``; exit code 127 means the worker could not be started.
    """
    layout = Layout(repo_root)
    task = {**task, "attempts": task.get("attempts", 0) + 1}
    attempt_dir = layout.attempt_dir(task["id"], task["attempts"])
    cwd = repo_root
    if dispatch_kind(task) != "legacy":
        cwd, _created, base_commit, _repaired = prepare_worktree(task, repo_root, config)
        task.update({"worktree": str(cwd), "branch": branch_name(task), "base_commit": base_commit})
        task["runtime"] = resolve_runtime(task, config)
    brief_file, _prompt = write_attempt_brief(task, repo_root, attempt_dir)
    argv = build_dispatch_argv(task, config, brief_file)
    env = worker_env(
        task,
        attempt=task["attempts"],
        cwd=cwd,
        brief_file=brief_file,
        report_file=attempt_dir / "report.json",
        config_file=layout.config_file,
        hidden=own_secret_names(config),
    )
    yolo = dispatch_kind(task) == "yolo"
    log_path = attempt_dir / "worker.log"
    proc = run_command(worker_command(argv, task=task, cwd=cwd, env=env, log_path=log_path, config=config))
    exit_code = 127 if proc.exit_code is None else proc.exit_code
    report = read_worker_report(attempt_dir / "report.json", task["id"])
    if yolo and not report.get("summary"):
        verdict = judge_agent_run(config, resolve_runtime(task, config), exit_code=proc.exit_code,
                                  idle_timed_out=proc.idle_timed_out, output=read_log_tail(log_path), now=clock.now())
        report["summary"] = verdict.summary
    files = gitops.changed_files(cwd, base_commit) if (base_commit := task.get("base_commit")) else report.get("files_changed")
    kept_commits = preserve_commits(task, cwd) if task.get("worktree") else []
    kept = cleanup_worktree(task, repo_root, config) if config["macp"]["cleanup_worktrees"] else None
    details: ResultDetails = {
        "summary": report.get("summary") or "",
        "files_changed": files or [],
        "timed_out": proc.timed_out,
        "worktree_kept": kept,
        "kept_commits": kept_commits,
        "output_tail": proc.output_tail,
        "error": proc.spawn_error,
    }
    collect_result(task, exit_code, [], orch_dir, details=details)
    return exit_code, proc.output_tail
