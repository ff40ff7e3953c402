"""What a drain would do (``--dry-run``) and what it left behind.

:func:`plan_lines` simulates a drain in which every task succeeds, deciding with the
controller's own :func:`macp.admission.admit`: the same order, the same holds (dependency
cycles, upstream failures, risk holds, runtimes cooling down, budgets as they stand), the same runtime, and each
task's exact command, working folder and gates -- for a yolo task the agent CLI's real
command line after template expansion, not the ``mosaic yolo`` wrapper. It reads briefs (for the risk check) and
nothing else.
:func:`remaining_lines` reports, after a drain, the tasks that are still not done and why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from dispatcher import macp_dispatcher as dispatcher
from macp import clock
from macp.admission import admit
from macp.archive import ArchiveLookup, archived_tasks
from macp.budget import Ledger, budget_lines, cap_text, remaining_cost
from macp.dependencies import KnownTasks, Outside
from macp.gates import gate_specs
from macp.layout import Layout
from macp.lifecycle import STATUSES, status_of
from macp.model import Claim, Config, Task
from macp.naming import branch_name, dispatch_kind, resolve_runtime
from macp.runtimes import build_invocation, describe_invocation, running_as_root, runtime_spec
from macp.scheduler import hold_reason


def plan_lines(
    tasks: list[Task],
    repo_root: Path,
    config: Config,
    runtime_state: dict,
    now: datetime,
    refused: dict[str, str] | None = None,
    workers: int = 1,
) -> list[str]:
    """The dry-run plan: the tasks the controller refuses (``refused``: id -> why), one
    numbered entry per task that would run, the holds the controller would apply on the
    way, then what cannot run. With ``workers`` above 1 the entries come in waves: the
    tasks claimed together while up to ``workers`` run at once (exclusive groups and
    runtime caps applied), each wave taken to finish before the next is claimed."""
    refused = refused or {}
    simulated = [task.copy() for task in tasks]
    # A stand-in claim: a simulated running task holds its runtime's slot as a real one does.
    claim: Claim = {"pid": 1, "host": "(dry run)", "started_at": clock.format_timestamp(now)}
    by_id = {task["id"]: task for task in simulated}
    archive = ArchiveLookup(Layout(repo_root).orch_dir)
    ledger = ledger_now(Layout(repo_root), tasks, now, config)
    lines = [f"refused: {task_id}: {problem}" for task_id, problem in refused.items()]
    planned = waves = 0
    while True:
        wave: list[Task] = []
        while len(wave) < workers:
            admission = admit(simulated, config, runtime_state, now, lambda task: dispatcher.brief_for_review(task, repo_root), refused, archive, ledger)
            for hold in admission.holds:
                hold.apply(by_id[hold.task_id])
                lines.append(f"held: {hold.task_id}: {hold.message}")
            if admission.task is None:
                break
            task = by_id[admission.task["id"]]
            task.update({"status": "running", "claim": claim})
            if admission.runtime:
                task["attempt_runtime"] = admission.runtime
            wave.append(task)
        if not wave:
            break
        waves += 1
        if workers > 1:
            lines.append(f"wave {waves}: {', '.join(task['id'] for task in wave)}")
        for task in wave:
            planned += 1
            lines.extend(_describe(planned, task, repo_root, config))
            lines.extend(_base_line(task, KnownTasks(tasks, archive), repo_root, config))
            task.update({"status": "completed", "claim": None})
    order = f"in {waves} wave(s) of up to {workers} at once" if workers > 1 else "in this order"
    header = [f"dry run: {planned} task(s) would run, {order} (nothing was run)", *budget_lines(config, ledger, now)]
    held = [
        f"not runnable: {task['id']} ({hold_reason(task, KnownTasks(simulated, archive), now)})"
        for task in simulated
        if status_of(task) == "pending" and task["id"] not in refused
    ]
    return header + lines + held


def ledger_now(layout: Layout, tasks: list[Task], now: datetime, config: Config) -> Ledger:
    """What runs cost so far, for the budgets (:class:`macp.budget.Ledger`): every run of
    ``tasks`` (the queue) and, with a daily budget, of ``now``'s month's archive (a task
    archived with a run recorded today finished today; without one the archive is not read)."""
    if config["budget"]["daily_usd"] is None:
        return Ledger.of(tasks)
    month = now.astimezone(timezone.utc).strftime("%Y-%m")
    return Ledger.of([*tasks, *archived_tasks(layout.orch_dir, months={month})])


def _base_line(task: Task, by_id: Mapping[str, Task], repo_root: Path, config: Config) -> list[str]:
    """Where a new branch of ``task`` would start when it depends on others: the branches
    of dependencies that already completed with commits, else theirs once they do."""
    if dispatch_kind(task) == "legacy" or not task.get("depends_on") or task.get("base_commit"):
        return []
    stack = dispatcher.stacked_branches(task, by_id, repo_root, config)
    if stack:
        return [f"   base: {' + '.join(stack)} (its completed dependencies' work)"]
    if config["macp"]["stack_dependencies"]:
        return [f"   base: the branches of {', '.join(task['depends_on'])} once they hold commits, else {dispatcher.base_ref(repo_root, config)}"]
    return []


def _describe(number: int, task: Task, repo_root: Path, config: Config) -> list[str]:
    kind = dispatch_kind(task)
    attempt = task.get("attempts", 0) + 1
    brief_file = Layout(repo_root).attempt_dir(task["id"], attempt) / "brief.md"
    worktree = dispatcher.worktree_path(task, repo_root, config)
    where = f"in {repo_root}" if kind == "legacy" else f"in {worktree} (branch {branch_name(task)})"
    if kind == "acp":
        command = f"write {Layout(repo_root).acp_file(task['id'])} for sessions_spawn"
    elif kind == "yolo":
        spec = runtime_spec(config, resolve_runtime(task, config))
        caps = {"max_cost_usd": cap_text(left)} if (left := remaining_cost(task, config)) is not None else {}
        invocation = build_invocation(spec, worktree=str(worktree), prompt_file=brief_file, prompt_text="<the brief>", as_root=running_as_root(), caps=caps)
        command = describe_invocation(invocation)
    else:
        command = dispatcher.build_dispatch_command(task, repo_root, config, brief_file)
    lines = [f"{number}. {task['id']} [{kind}] {where}: {command}"]
    for gate in gate_specs(task, config):
        label = "gate" if gate["name"] == gate["command"] else f"gate {gate['name']}"
        lines.append(f"   {label}: {gate['command']}")
    return lines


def remaining_lines(tasks: list[Task], now: datetime, refused: dict[str, str] | None = None, outside: Outside | None = None) -> list[str]:
    """After a drain: status counts, then each unfinished task with the reason it waits
    (``refused``: the tasks the controller set aside, id -> why; ``outside`` finds archived
    dependencies)."""
    refused = refused or {}
    counts = Counter(status_of(task) for task in tasks)
    summary = ", ".join(f"{counts[status]} {status}" for status in STATUSES if counts[status])
    lines = [f"queue: {summary or 'empty'}"]
    by_id = KnownTasks(tasks, outside)
    for task in tasks:
        status = status_of(task)
        if task["id"] in refused:
            lines.append(f"  {task['id']}: refused: {refused[task['id']]}")
        elif status == "pending":
            lines.append(f"  {task['id']}: {hold_reason(task, by_id, now) or 'ready'}")
        elif status == "running" and not task.get("claim") and not (task.get("acp") or {}).get("reported_at"):
            lines.append(f"  {task['id']}: waiting for its acp completion report (mosaic macp complete)")
        elif status == "escalated":
            lines.append(f"  {task['id']}: escalated: {task.get('escalation_reason') or 'needs a person'}")
    return lines
