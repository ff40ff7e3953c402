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
Fallbacks from the brief: a task without ``dispatch`` runs as a legacy shell command (exec
path, repository root); a task without ``runtime`` uses ``worker.runtime`` from config, then
``macp.default_runtime``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple, cast

from macp import clock, gitops
from macp.budget import cap_text, remaining_cost
from macp.config import PROJECT_ROOT, load_config
from macp.errors import MacpError
from macp.fsio import read_regular, write_atomic
from macp.guidance import compose_brief
from macp.jsontext import dump_json, loads
from macp.layout import Layout, confine, confine_output, resolved_root
from macp.model import Config, FinalStatus, GateResult, KeptCommit, Result, ResultDetails, Task, Usage
from macp.naming import branch_name, dispatch_kind, resolve_runtime, task_folder_name
from macp.pool import run_command
from macp.prices import price_for, priced
from macp.procs import Command, read_log_tail
from macp.redact import redact, redact_value
from macp.settings import first_output_timeout, idle_timeout, matrix_token_env, timeout_seconds, worktree_base
from macp.textview import one_line
from macp.usage import read_usage, reported_usage, unavailable
from macp.verdicts import SUMMARY_MAX_CHARS, bounded, judge_agent_run
from macp.worktree_contents import WorktreeContents, discard_gate_output, read_contents, read_gate_record, why_kept
from protocol.schemas import schema_errors

MOSAIC_BIN = PROJECT_ROOT / "bin" / "mosaic"
USER_BIN = Path("~/.config/mosaic/bin")


class WorktreeError(MacpError):
    """The task's worktree could not be created; the task fails at once (brief, Task 4)."""


class NoCommitYet(MacpError):
    """The repository has no commit yet, so no worktree can start anywhere: the user's to
    fix, not the task's failure (issue 22) -- the attempt is not counted."""


class StackConflict(MacpError):
    """Merging the task's dependencies into its new branch conflicted (``paths``); the
    fresh worktree and branch were removed again. A counted failure of the attempt."""

    def __init__(self, message: str, paths: list[str]) -> None:
        super().__init__(message)
        self.paths = paths


def branch_problem(task: Task, repo_root: Path) -> str | None:
    """Why git would refuse the task's branch (its ``branch``, else the default
    :func:`branch_name`), or None. The one check of every way a task comes in: ``submit``,
    ``submit --from`` and TASKS.md ``sync`` alike (git's own rules, ``git check-ref-format
    --branch``, and no leading ``-``). The default branch of an id without ``.`` is always
    valid -- ids are ``[A-Za-z0-9_-]`` then, slugs ``[a-z0-9-]``; git's ref rules only bite
    on ``..``, ``.lock`` or a trailing ``.`` -- so that case costs no git process (a batch
    submit has thousands)."""
    if not task.get("branch") and "." not in task["id"]:
        return None
    branch = branch_name(task)
    if gitops.is_valid_branch_name(repo_root, branch):
        return None
    what = "its branch" if task.get("branch") else "its default branch"
    return f"task {task['id']}: {what} {branch!r} is not a valid git branch name" + ("" if task.get("branch") else "; give one with --branch")


def worktree_path(task: Task, repo_root: Path, config: Config) -> Path:
    """``<worktree_base>/<task folder name>`` (:func:`task_folder_name`), or the task's
    ``worktree`` if it lies inside the base."""
    base = worktree_base(config, repo_root)
    if worktree := task.get("worktree"):
        return confine(os.path.expanduser(worktree), base, f"task {task['id']}: worktree")
    return resolved_root(base) / task_folder_name(task["id"])


def base_ref(repo_root: Path, config: Config) -> str:
    """``macp.base_ref`` (default ``origin/main``) when it names a commit, else ``HEAD``."""
    configured = config["macp"].get("base_ref")
    if configured and gitops.resolve_commit(repo_root, configured):
        return configured
    return "HEAD"


class PreparedWorktree(NamedTuple):
    """The task's worktree, whether it was just ``created``, the ``base_commit`` the task
    started from, and what was ``repaired`` on the way (left by a crash; for the event)."""

    path: Path
    created: bool
    base_commit: str | None
    repaired: list[str]


def stacked_branches(task: Task, by_id: Mapping[str, Task], repo_root: Path, config: Config) -> list[str]:
    """The branches a new task branch starts from (``macp.stack_dependencies``, DESIGN.md
    "Worktrees"): those of its dependencies, in ``depends_on`` order, that completed with
    commits on their branch since the commit they started from (``by_id`` finds them: the
    queue's tasks, and archived ones through :class:`macp.dependencies.KnownTasks`). []
    when stacking is off."""
    if not config["macp"]["stack_dependencies"]:
        return []
    branches = []
    for dependency in task.get("depends_on") or []:
        other = by_id.get(dependency)
        branch, base = (other.get("branch"), other.get("base_commit")) if other else (None, None)
        if other is None or other.get("status") != "completed" or not branch or not base or not gitops.branch_exists(repo_root, branch):
            continue
        tip = gitops.resolve_commit(repo_root, f"refs/heads/{branch}")
        if tip and tip != base and branch not in branches:
            branches.append(branch)
    return branches


def prepare_worktree(
    task: Task, repo_root: Path, config: Config, stack: list[str] | None = None, base: str | None = None
) -> PreparedWorktree:
    """Create or reuse the task's worktree.

    A new branch starts from ``stack`` when given (:func:`stacked_branches`): the first
    branch's tip, with the others merged in (a conflict raises :class:`StackConflict`
    after removing the fresh worktree and branch); else from ``base`` (default
    :func:`base_ref`; the controller resolves it once per run). The base commit returned is
    the commit the task's own work starts from (after those merges).

    A retry finds the worktree registered on the task's branch and reuses it, so the worker
    continues from its partial work; a stale ``index.lock`` a crash left in it is removed
    first. A worktree whose creation was cut short (still locked ``initializing``) holds no
    work: it is removed and created again. An existing branch without a worktree is checked
    out again (branches are never deleted). A first attempt whose folder does not exist
    skips listing the worktrees: git is asked to add it at once, and only when it refuses
    are stale registrations pruned and the add tried again. Raises :class:`NoCommitYet`
    when git refuses because the repository has no commit yet, :class:`WorktreeError`
    when the branch name breaks git's rules, the path is occupied by something else, or git
    refuses.
    """
    branch = branch_name(task)
    if not gitops.is_valid_branch_name(repo_root, branch):
        raise WorktreeError(f"task {task['id']}: {branch!r} is not a valid git branch name")
    path = worktree_path(task, repo_root, config)
    repaired: list[str] = []
    try:
        if path.exists() or task.get("worktree"):
            reused = _reuse(repo_root, path, branch, task, repaired)
            if reused is not None:
                return reused
        if path.exists():
            raise WorktreeError(f"{path} exists and is not a worktree of this repository; move it away")
        path.parent.mkdir(parents=True, exist_ok=True)
        if gitops.branch_exists(repo_root, branch):
            _add(repo_root, path, branch, None)
            return PreparedWorktree(path, True, task.get("base_commit") or gitops.resolve_commit(repo_root, branch), repaired)
        stack = stack or []
        start = f"refs/heads/{stack[0]}" if stack else base or base_ref(repo_root, config)
        _add(repo_root, path, branch, start)
        for other in stack[1:]:
            _merge_or_undo(repo_root, path, branch, other)
        return PreparedWorktree(path, True, gitops.resolve_commit(path, "HEAD"), repaired)
    except gitops.GitError as exc:
        drop_empty_folders(path)
        if gitops.resolve_commit(repo_root, "HEAD") is None:
            raise NoCommitYet(f"{repo_root} has no commit yet; commit first (git commit --allow-empty -m 'initial commit'), then drain again") from None
        raise WorktreeError(str(exc)) from None


def _reuse(repo_root: Path, path: Path, branch: str, task: Task, repaired: list[str]) -> PreparedWorktree | None:
    """The task's registered worktree made ready for reuse, or None when there is none to
    reuse (a worktree whose creation was cut short is discarded; ``repaired`` says so)."""
    gitops.prune_worktrees(repo_root)
    registered = gitops.registered_worktrees(repo_root)
    if path in registered and registered[path].locked == gitops.CREATION_CUT_SHORT:
        gitops.discard_worktree(repo_root, path)
        repaired.append(f"removed {path}: its creation was cut short (locked: {gitops.CREATION_CUT_SHORT})")
        return None
    if path not in registered:
        return None
    if registered[path].branch != branch:
        raise WorktreeError(f"{path} is a worktree of branch {registered[path].branch!r}, not {branch!r}")
    if gitops.clear_stale_index_lock(path):
        repaired.append(f"removed a stale index.lock of {path} left by a git that was stopped halfway")
    return PreparedWorktree(path, False, task.get("base_commit"), repaired)


def _add(repo_root: Path, path: Path, branch: str, start: str | None) -> None:
    """``git worktree add``; when git refuses because of a stale registration (a worktree
    folder deleted by hand), prune and try once more."""
    try:
        gitops.add_worktree(repo_root, path, branch, start)
    except gitops.GitError:
        gitops.prune_worktrees(repo_root)
        gitops.add_worktree(repo_root, path, branch, start)


def _merge_or_undo(repo_root: Path, path: Path, branch: str, other: str) -> None:
    """Merge ``other`` into the fresh worktree of ``branch``; on a conflict remove the
    worktree and the branch again (they hold only MACP's merges) and raise StackConflict."""
    try:
        gitops.merge_branch(path, other)
    except gitops.MergeConflict as exc:
        gitops.discard_worktree(repo_root, path)
        with contextlib.suppress(gitops.GitError):  # it holds only MACP's merges; a branch left is reused
            gitops.delete_branch(repo_root, branch)
        raise StackConflict(f"{exc}: the dependencies' work does not merge; resolve it on their branches", exc.paths) from None


def start_over(task: Task, repo_root: Path, config: Config) -> list[str]:
    """Make room for a fresh start of ``task`` (``retry --fresh``): keep its branch tip under
    ``refs/macp/<task folder>/before-fresh-<attempts>``, remove its worktree and delete the
    branch, so the next attempt starts from the base in a new worktree. Nothing is lost:
    a worktree with uncommitted work refuses (:class:`MacpError`), and every commit stays
    reachable from a ref. Returns what was done, one line each."""
    done: list[str] = []
    branch = task.get("branch") or branch_name(task)
    worktree = Path(named) if (named := task.get("worktree")) else None
    if worktree is not None and worktree.exists():
        kept = cleanup_worktree(task, repo_root, config)
        if kept:
            raise MacpError(f"task {task['id']}: its worktree holds {kept}; commit or remove them before --fresh")
        done.append(f"removed worktree {worktree}")
    tip = gitops.resolve_commit(repo_root, f"refs/heads/{branch}") if gitops.branch_exists(repo_root, branch) else None
    if tip:
        ref = gitops.keep_commit(repo_root, f"refs/macp/{task_folder_name(task['id'])}/before-fresh-{task.get('attempts', 0)}", tip)
        gitops.delete_branch(repo_root, branch)
        done.append(f"branch {branch} reset; its old tip {tip[:12]} is kept as {ref}")
    return done


def setup_worktree(task: Task, repo_root: Path, config: Config | None = None) -> Path:
    """Create (or reuse) the git worktree for ``task``; return its path.

    ``config`` defaults to the repository's effective config. Raises :class:`WorktreeError`.
    """
    config = config if config is not None else load_config(Layout(repo_root).config_file)
    return prepare_worktree(task, repo_root, config).path


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


MAX_REPORT_BYTES = 65536


def read_worker_report(report_file: Path, task_id: str | None = None) -> dict:
    """The worker's optional JSON report (docs/workers.md), keeping only well-typed fields:
    ``summary`` (str, cut at 2,000 characters), ``files_changed`` (list of str), ``escalate``
    (bool), ``escalation_reason`` (str), ``pr`` (str), ``usage`` (what it used, a
    :class:`~macp.model.Usage`: :func:`macp.usage.reported_usage`); secrets in the strings
    are redacted here, before any view sees them. The Mosaic Stack guide's worker result
    (seed 004: ``task_id``, ``status`` success|failed, ``used`` like ``"5.2K"``,
    ``commit_sha``, ``notes``) is read too: ``notes`` as the summary when there is none,
    ``status: "failed"`` as ``failed`` True (a failed attempt whatever the exit code), the
    commit as ``commit_sha``; a report naming another task than ``task_id`` is ignored:
    ``{"note": why}``. Missing or malformed reports give ``{}``. A report that is not a
    regular file (a link, a FIFO) or is larger than :data:`MAX_REPORT_BYTES` is ignored:
    ``{"note": why}``; it is never followed or read whole, so a worker cannot make the
    controller block or read another file."""
    try:
        raw = read_regular(report_file, MAX_REPORT_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:  # a link, a FIFO, a folder (NotARegularFile), or unreadable
        return {"note": f"report.json ignored: {exc.strerror}"}
    if len(raw) > MAX_REPORT_BYTES:
        return {"note": f"report.json ignored: larger than {MAX_REPORT_BYTES} bytes"}
    try:
        report = loads(raw.decode("utf-8"))
    except ValueError:  # not UTF-8, not JSON, or nested too deeply to read
        return {}
    if not isinstance(report, dict):
        return {}
    if task_id is not None and isinstance(report.get("task_id"), str) and report["task_id"] != task_id:
        return {"note": f"report.json ignored: it is the report of task {redact(one_line(report['task_id']))[:128]}, not {task_id}"}
    types: dict[str, type] = {"summary": str, "escalate": bool, "escalation_reason": str, "pr": str, "commit_sha": str}
    kept: dict[str, Any] = {key: redact_value(value) for key, value in report.items() if key in types and isinstance(value, types[key])}
    if isinstance(report.get("notes"), str) and "summary" not in kept:
        kept["summary"] = redact(report["notes"])
    if report.get("status") == "failed":
        kept["failed"] = True
    if (usage := reported_usage(report)) is not None:
        kept["usage"] = usage
    if "summary" in kept:
        kept["summary"] = bounded(kept["summary"], SUMMARY_MAX_CHARS)
    files = report.get("files_changed")
    if isinstance(files, list) and all(isinstance(name, str) for name in files):
        kept["files_changed"] = [redact(name) for name in files]
    return kept


def run_usage(config: Config, runtime: str, log_path: Path) -> Usage:
    """What the agent run logged at ``log_path`` on ``runtime`` used: read from the
    runtime's structured output (:func:`macp.usage.read_usage`; the whole log, up to
    ``macp.max_log_bytes``) and priced from the price table when the runtime reported no
    cost (:mod:`macp.prices`). A run cut short reads as what it reported so far."""
    spec = config["runtimes"].get(runtime)
    output = read_log_tail(log_path, config["macp"]["max_log_bytes"])
    return priced(read_usage(output, spec.get("output", "text") if spec else "text"), price_for(config, runtime))


def default_result_path(task: Task, repo_root: Path, config: Config) -> str:
    """``<macp.result_dir>/<task-id>.json`` as a ``result_path`` (relative to the state folder)."""
    target = confine_output(Path(config["macp"]["result_dir"]) / f"{task['id']}.json", Layout(repo_root), "macp.result_dir")
    return os.path.relpath(target, Layout(repo_root.resolve()).orch_dir)


def result_file(task: Task, orch_dir: Path) -> Path:
    """Where the task's result goes: ``result_path`` (relative to the state folder) or
    ``results/<task-id>.json``, confined to an output folder (:func:`macp.layout.confine_output`:
    never under ``.git``, never on a state file)."""
    relative = task.get("result_path") or f"results/{task['id']}.json"
    return confine_output(orch_dir / relative, Layout(orch_dir.parents[1]), f"task {task['id']}: result_path")


def collect_result(
    task: Task, exit_code: int | None, gate_results: list[GateResult], orch_dir: Path, status: FinalStatus | None = None, details: ResultDetails | None = None
) -> Result:
    """Build the task's result (result.schema.json), validate it, and write it atomically
    (the brief's ``collect_result(task, exit_code, gate_results, orch_dir)``).

    ``status`` defaults to completed when the worker exited 0 and every gate passed (a gate
    result without ``passed``: exit code 0), else failed. ``details`` set the other fields
    (``summary``, ``files_changed``, ``error``, ``worktree_kept``, ``worker``: the final
    worker run, ...); a None detail keeps the default. Nothing is written unless the result
    validates (ValueError otherwise). Returns the result.
    """
    now = clock.timestamp()
    passed = exit_code == 0 and all(gate.get("passed", gate.get("exit_code") == 0) for gate in gate_results)
    status = status or ("completed" if passed else "failed")
    result: Result = {
        "task_id": task["id"],
        "status": status,
        "completed_at": now,
        "failed_at": None if status == "completed" else now,
        "exit_code": exit_code,
        "attempt": task.get("attempts", 0),
        "max_attempts": task.get("max_attempts", 1),
        "runtime": task.get("attempt_runtime") or task.get("runtime") or "",
        "runs": task.get("runs") or [],
        "dispatch": dispatch_kind(task),
        "worktree": task.get("worktree"),
        "branch": task.get("branch"),
        "pr": task.get("pr"),
        "base_commit": task.get("base_commit"),
        "stacked_on": task.get("stacked_on") or [],
        "commits": [],
        "worker": None,
        "summary": "",
        "files_changed": [],
        "gate_results": gate_results,
        "error": None,
        "escalation_reason": None,
        "timed_out": False,
        "worktree_kept": None,
        "kept_commits": [],
        "output_tail": "",
        "metadata": {},
    }
    if usage := task.get("usage"):  # an agent task: what its runs used, counted and not (issue 23)
        result["usage"], result["waste"] = usage, task.get("waste") or unavailable()
    result.update(cast(ResultDetails, {key: value for key, value in (details or {}).items() if value is not None}))
    result = cast(Result, redact_value(result))
    errors = schema_errors("result", result)
    if errors:
        raise ValueError(f"refusing to write an invalid result for {task['id']}: {errors[0]}")
    write_atomic(result_file(task, orch_dir), dump_json(result))
    return result


def inspect_worktree(task: Task, worktree: Path, repo_root: Path, config: Config) -> WorktreeContents:
    """What the task's ``worktree`` holds besides its commits, by kind
    (:func:`macp.worktree_contents.read_contents`, with the task's gate-output record).
    Raises :class:`~macp.gitops.GitError`."""
    return read_contents(worktree, config["macp"], read_gate_record(Layout(repo_root).task_log_dir(task["id"])))


def preserve_commits(task: Task, worktree: Path) -> list[KeptCommit]:
    """Keep every commit the worktree's HEAD reached that no ref reaches any more (a worker
    that committed on a detached HEAD) under ``refs/macp/<task>/<attempt>`` (then ``-2``,
    ``-3``, ...: :func:`macp.gitops.keep_commit` never overwrites a ref); returns
    ``[{"ref", "commit"}]`` for the result. Idempotent: a kept commit is reachable."""
    ref = f"refs/macp/{task_folder_name(task['id'])}/{task.get('attempts', 0)}"
    return [{"ref": gitops.keep_commit(worktree, ref, commit), "commit": commit} for commit in gitops.unreachable_commits(worktree)]


def cleanup_worktree(task: Task, repo_root: Path | None = None, config: Config | None = None, contents: WorktreeContents | None = None) -> str | None:
    """Remove the task's worktree unless that would lose work; the branch always stays.

    Uncommitted work keeps it, and so do ignored files that look like secrets or data
    (``macp.keep_ignored``) unless ``macp.remove_ignored_files``
    (:func:`macp.worktree_contents.why_kept`). Build output goes with it, and what the
    gates left is undone first, so that git's own refusal to remove a dirty worktree still
    guards the worker's work. Commits no ref reaches are kept under refs first
    (:func:`preserve_commits`). Returns None when the worktree was removed (or was already
    gone), else why it was kept, e.g. ``"2 uncommitted paths: a.py, b.py"``. ``repo_root``
    defaults to the repository the worktree belongs to, ``config`` to its config.
    ``contents``: the caller has just inspected the worktree (:func:`inspect_worktree`)
    and kept its commits, so only the removal is left.
    """
    worktree = task.get("worktree")
    if not worktree:
        return None
    path = Path(worktree)
    if not path.exists():
        return None
    if repo_root is None:
        common = gitops.git(["rev-parse", "--path-format=absolute", "--git-common-dir"], path).stdout.strip()
        repo_root = Path(common).parent
    config = config if config is not None else load_config(Layout(repo_root).config_file)
    inspected_here = contents is None
    contents = contents or inspect_worktree(task, path, repo_root, config)
    kept = why_kept(contents, config["macp"]["remove_ignored_files"])
    if kept:
        return kept
    if inspected_here:
        preserve_commits(task, path)
    try:
        discard_gate_output(path, contents)
        gitops.remove_worktree(repo_root, path)
    except (gitops.GitError, OSError) as exc:
        return f"git refused to remove it: {exc}"
    drop_empty_folders(path)
    return None


def drop_empty_folders(worktree: Path) -> None:
    """Remove ``worktree``'s folder and then the worktree base above it, each only when it is
    empty: no empty folders pile up under ``macp.worktree_base`` after a removal or a
    creation git refused (the base is made again when a worktree needs it)."""
    for folder in (worktree, worktree.parent):
        with contextlib.suppress(OSError):
            folder.rmdir()


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
