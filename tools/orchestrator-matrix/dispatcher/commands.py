"""What a task's worker is told and run as: its brief, the command for its dispatch kind
(``exec`` shell command, ``yolo`` agent through ``mosaic yolo``, ``acp`` sessions_spawn
parameters), its environment (secrets of MACP's own held back) and the process that runs it.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from dispatcher.results import result_file
from dispatcher.worktrees import worktree_path
from macp.budget import cap_text, remaining_cost
from macp.config import PROJECT_ROOT, load_config
from macp.errors import MacpError
from macp.fsio import read_regular, write_atomic
from macp.guidance import compose_brief
from macp.layout import Layout, confine
from macp.model import Config, Task
from macp.naming import dispatch_kind, resolve_runtime
from macp.procs import Command
from macp.redact import redact
from macp.settings import first_output_timeout, idle_timeout, matrix_token_env, timeout_seconds

MOSAIC_BIN = PROJECT_ROOT / "bin" / "mosaic"


USER_BIN = Path("~/.config/mosaic/bin")


def read_brief(task: Task, repo_root: Path) -> str | None:
    """The text of the task's ``brief_path`` (confined to the repository), or None without one."""
    brief_path = task.get("brief_path")
    if not brief_path:
        return None
    path = confine(brief_path, repo_root, f"task {task['id']}: brief_path")
    try:
        return read_regular(path).decode("utf-8", errors="replace")
    except OSError as exc:  # a FIFO or a device in its place is refused, never read
        raise MacpError(f"task {task['id']}: cannot read brief {brief_path}: {exc.strerror}") from None


def check_task_paths(task: Task, repo_root: Path, config: Config, derived: bool = True) -> None:
    """Refuse a task whose paths leave where they must stay: ``brief_path`` and
    ``result_path`` inside the repository, ``worktree`` inside ``macp.worktree_base``
    (symlinks resolved). With ``derived`` False only the paths the task names are checked,
    not the defaults MACP derives from its id (those can leave only through a symbolic link
    in MACP's own folders, and are checked where they are used). Raises :class:`MacpError`
    naming the task and the field."""
    if brief_path := task.get("brief_path"):
        confine(brief_path, repo_root, f"task {task['id']}: brief_path")
    if derived or task.get("result_path"):
        result_file(task, Layout(repo_root).orch_dir)
    if derived or task.get("worktree"):
        worktree_path(task, repo_root, config)


def brief_for_review(task: Task, repo_root: Path) -> str:
    """The task's brief for the risk check: "" when it has none or it cannot be read (the
    attempt itself then fails with the reason)."""
    try:
        return read_brief(task, repo_root) or ""
    except MacpError:
        return ""


def build_dispatch_argv(task: Task, config: Config, brief_file: Path) -> list[str]:
    """argv that runs ``task``'s worker: ``/bin/sh -c <command>`` for legacy and exec tasks,
    ``mosaic yolo <runtime> --prompt-file <brief_file>`` for yolo tasks (with
    ``--max-cost-usd`` what is left of the task's ``max_cost_usd``, :mod:`macp.budget`).

    Raises :class:`MacpError` for a task without a command, an acp task (it has no command),
    or an unknown runtime.
    """
    kind = dispatch_kind(task)
    if kind in ("legacy", "exec"):
        if not task.get("command"):
            raise MacpError(f"task {task['id']}: an {kind} task needs a command")
        return ["/bin/sh", "-c", task["command"]]
    if kind == "yolo":
        runtime = resolve_runtime(task, config)
        if runtime not in config.get("runtimes", {}):
            raise MacpError(f"task {task['id']}: unknown runtime {runtime!r}")
        argv = [str(MOSAIC_BIN), "yolo", runtime, "--prompt-file", str(brief_file)]
        if (left := remaining_cost(task, config)) is not None:  # the runtime stops itself there, if it can (docs/usage.md)
            argv += ["--max-cost-usd", cap_text(left)]
        return argv
    raise MacpError(f"task {task['id']}: {kind} tasks are not run as a command")


def acp_spawn_params(task: Task, config: Config, worktree: Path, prompt: str) -> dict:
    """OpenClaw ``sessions_spawn`` parameters for an acp task (no timeout keys: OpenClaw
    rejects them for acp; MACP enforces timeouts itself)."""
    return {
        "task": prompt,
        "runtime": "acp",
        "agentId": resolve_runtime(task, config),
        "mode": "run",
        "thread": False,
        "cwd": str(worktree),
        "label": (task.get("title") or task["id"])[:80],
    }


def build_dispatch_command(task: Task, repo_root: Path, config: Config | None = None, brief_file: Path | None = None) -> str:
    """The dispatch command as one string (brief, Task 4).

    exec/legacy: the task's shell command. yolo: the quoted ``mosaic yolo`` argv. acp: the
    ``sessions_spawn`` JSON for the caller. ``brief_file`` defaults to the task's brief path.
    """
    config = config if config is not None else load_config(Layout(repo_root).config_file)
    if dispatch_kind(task) == "acp":
        worktree = worktree_path(task, repo_root, config)
        prompt = redact(read_brief(task, repo_root) or task.get("title") or task["id"])
        return json.dumps(acp_spawn_params(task, config, worktree, prompt), ensure_ascii=False)
    if brief_file is None:
        brief_file = repo_root / (task.get("brief_path") or f"{task['id']}.md")
    argv = build_dispatch_argv(task, config, brief_file)
    return argv[2] if argv[:2] == ["/bin/sh", "-c"] else shlex.join(argv)


def own_secret_names(config: Config) -> list[str]:
    """Environment variables that hold MACP's own secrets (the Matrix transport's
    ``matrix.token_env``): workers, gates and runtimes never see them (docs/security.md)."""
    return [matrix_token_env(config)]


def worker_env(
    task: Task, *, attempt: int, cwd: Path, brief_file: Path, report_file: Path, config_file: Path, hidden: list[str] | None = None
) -> dict[str, str]:
    """The worker's environment: ours without the ``hidden`` variables (MACP's own secrets,
    :func:`own_secret_names`), ``~/.config/mosaic/bin`` first on PATH, and the
    ``MACP_TASK_ID``, ``MACP_ATTEMPT``, ``MACP_WORKTREE``, ``MACP_BRANCH``, ``MACP_BRIEF``,
    ``MACP_REPORT`` and ``MACP_CONFIG`` variables (docs/workers.md)."""
    env = {name: value for name, value in os.environ.items() if name not in (hidden or [])}
    env["PATH"] = os.pathsep.join([str(USER_BIN.expanduser()), env.get("PATH", os.defpath)])
    env.update(
        {
            "MACP_TASK_ID": task["id"],
            "MACP_ATTEMPT": str(attempt),
            "MACP_WORKTREE": str(cwd) if task.get("worktree") else "",
            "MACP_BRANCH": task.get("branch") or "",
            "MACP_BRIEF": str(brief_file),
            "MACP_REPORT": str(report_file),
            "MACP_CONFIG": str(config_file),
        }
    )
    return env


def worker_command(argv: list[str], *, task: Task, cwd: Path, env: dict[str, str], log_path: Path, config: Config) -> Command:
    """The :class:`~macp.procs.Command` of ``task``'s worker: its timeout, the config's output
    limits and grace, and for an agent runtime (yolo) the runtime's silence limits
    (:func:`macp.settings.idle_timeout`, :func:`macp.settings.first_output_timeout`): a runtime
    cut short for silence is a provider ``hang``, not a failed attempt."""
    macp = config["macp"]
    agent = dispatch_kind(task) == "yolo"
    runtime = resolve_runtime(task, config)
    return Command(
        argv,
        cwd,
        env,
        log_path,
        timeout_seconds(task, config),
        idle_timeout_seconds=idle_timeout(config, runtime) if agent else None,
        first_output_timeout_seconds=first_output_timeout(config, runtime) if agent else None,
        tail_bytes=macp["output_tail_bytes"],
        max_log_bytes=macp["max_log_bytes"],
        grace_seconds=macp["kill_grace_seconds"],
    )


def write_attempt_brief(task: Task, repo_root: Path, attempt_dir: Path) -> tuple[Path, str]:
    """Compose the attempt's brief (:func:`macp.guidance.compose_brief`: the task, its brief
    file, the guidance of earlier attempts, and for yolo where to leave a report), redact it
    (:mod:`macp.redact`) and write it to ``<attempt_dir>/brief.md``. Returns ``(brief.md
    path, the text)``. The worker reads this same redacted copy: a secret pasted into a
    brief reaches neither the logs nor the agent -- secrets belong in the environment.
    Raises :class:`MacpError` when the brief cannot be read."""
    report_file = str(attempt_dir / "report.json") if dispatch_kind(task) == "yolo" else None
    prompt = redact(compose_brief(task, read_brief(task, repo_root), report_file))
    brief_file = attempt_dir / "brief.md"
    write_atomic(brief_file, prompt)
    return brief_file, prompt
