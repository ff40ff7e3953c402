"""``mosaic macp land``: land completed tasks onto the target branch, testing what it lands
(issue 25, docs/landing.md).

Each task, in dependency then queue order (:func:`macp.landing.landing_order`), is combined
with the target in a landing worktree of MACP's own (``<worktree base>/.land``; never the
user's checkout): a ``--no-ff`` merge with ``<id>: <title>`` as its message (``land.strategy``
``merge``), one squashed commit (``squash``), or the task's commits replayed on a detached
copy (``rebase``: the task's branch is never rewritten). The gates (``land.gates``, else the config's
``quality_gates``) run on the combination; only when they pass does the target branch move,
by fast-forward, to that tested commit -- with ``git update-ref`` given the old tip, so a
target someone else moved meanwhile is never overwritten, or, when the target is checked out
in a clean worktree, by ``git merge --ff-only`` there, so its files follow. A conflict or a
failing gate sends the task back (:func:`macp.landing.sent_back`) with its branch moved to
the target's tip (its old tip kept under ``refs/macp/<task>/land-<attempt>``) so its retry
resolves the conflict against what landed.

A crash or signal mid-land leaves the target where it was or at a tested commit: it moves
only by that last fast-forward. The landing worktree is made again on the next run.
``--dry-run`` does everything but move the target and change the tasks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from controller.run_state import warn_plain
from controller.steer_cli import cli_event
from dispatcher.macp_dispatcher import result_file
from macp import clock, gitops
from macp.cliutil import out, print_json, repo_layout
from macp.config import load_config
from macp.errors import EXIT_OK, EXIT_TASKS_FAILED, MacpError
from macp.fsio import read_json, write_atomic
from macp.gates import GateLimits, gate_specs, gate_steps
from macp.jsontext import dump_json
from macp.landing import land_message, landing_failure_text, landing_order, sent_back
from macp.layout import Layout
from macp.lifecycle import transition
from macp.locks import ControllerLock
from macp.model import Config, Failure, GateResult, Task
from macp.naming import task_folder_name
from macp.pool import run_steps
from macp.recording import recorded
from macp.settings import max_attempts, worktree_base
from macp.taskstore import edit_tasks, load_tasks

MAX_PUSH_RETRIES = 3  # rounds of landing again after a push refused because others pushed


@dataclass
class Landed:
    """What one run of ``land`` did: the target, its tip before and after, each task landed
    (id, commit, files) and each sent back (id, status, why); ``say`` tells the person
    watching (stdout, or stderr when stdout carries ``--json``)."""

    onto: str
    before: str
    after: str
    dry_run: bool
    say: Callable[[str], object] = out
    push: str | None = None  # the remote the target is pushed to after each landing
    gate_runs: int = 0
    push_retries: int = 0
    landed: list[dict] = field(default_factory=list)
    sent_back: list[dict] = field(default_factory=list)
    landed_by: dict[str, str] = field(default_factory=dict)  # landing commit -> task id, of tasks landed before this run


def cmd_land(args) -> int:
    """``mosaic macp land [ID...|--all] [--onto BRANCH] [--batch N] [--push REMOTE] [--dry-run] [--json] [--wait]``:
    exit 0 when every task landed, 1 when one was sent back or escalated, 2 for a usage
    error (nothing to name, a dirty checkout of the target), 75 when a controller runs."""
    if not args.task_ids and not args.all:
        raise MacpError("land: name the tasks to land, or --all")
    layout = repo_layout(args.repo)
    config = load_config(layout.config_file)
    lock = ControllerLock(layout.controller_lock)
    lock.acquire(wait=args.wait)
    try:
        landed = land(layout, config, None if args.all else args.task_ids, args.onto, args.dry_run, warn_plain if args.json else out, args.batch,
                      args.push)
    finally:
        lock.release(clean=lock.previous is None)
    if args.json:
        print_json({"onto": landed.onto, "before": landed.before, "after": landed.after, "dry_run": landed.dry_run, "gate_runs": landed.gate_runs,
                    "landed": landed.landed, "sent_back": landed.sent_back})
    return EXIT_TASKS_FAILED if landed.sent_back else EXIT_OK


def land(layout: Layout, config: Config, ids: list[str] | None, onto: str | None, dry_run: bool, say: Callable[[str], object] = out,
         batch: int | None = None, push: str | None = None) -> Landed:
    """Land the tasks ``ids`` names (None: every one that can) onto ``onto`` (None: config
    ``land.onto``, else the base branch, :func:`base_branch`); see the module's
    docstring. Raises :class:`MacpError` before changing anything when the target does not
    exist, its checkout has uncommitted changes, or (with ``push``) it has commits the
    remote does not."""
    repo = layout.repo_root
    tasks = load_tasks(layout).tasks
    order = landing_order(tasks, ids)
    onto = onto or config["land"]["onto"] or base_branch(repo, config["macp"]["base_ref"])
    before = gitops.resolve_commit(repo, f"refs/heads/{onto}")
    if before is None:
        raise MacpError(f"land: there is no branch {onto!r} to land onto")
    checkout = next((path for path, tree in gitops.registered_worktrees(repo).items() if tree.branch == onto), None)
    if checkout is not None and gitops.git(["status", "--porcelain", "--untracked-files=no"], checkout).stdout.strip():
        raise MacpError(f"land: {checkout} has uncommitted changes on {onto}; commit or stash them first (nothing landed)")
    landed = Landed(onto, before, before, dry_run, say, push)
    landed.landed_by = {str(task["landed_commit"]): task["id"] for task in tasks if task.get("landed_commit")}
    for task in [task for task in order if gitops.resolve_commit(repo, f"refs/heads/{task.get('branch')}") is None]:
        say(f"{task['id']}: not landed: its branch {task.get('branch')} no longer exists (pruned, or deleted by hand)")
        order.remove(task)
    if push:
        catch_up(repo, landed, checkout)
    if not order:
        say("nothing to land")
        return landed
    place = worktree_base(config, repo) / ".land"
    if place.exists() or place.resolve() in gitops.registered_worktrees(repo):
        gitops.discard_worktree(repo, place)  # left by a run that stopped: it never holds work
    place.parent.mkdir(parents=True, exist_ok=True)
    gitops.git(["worktree", "add", "--detach", "--end-of-options", str(place), before], repo)
    try:
        size = batch or config["land"]["batch"]
        for start in range(0, len(order), size):
            land_batch(layout, config, order[start : start + size], place, landed, checkout)
    finally:
        gitops.discard_worktree(repo, place)
    return landed


def land_batch(layout: Layout, config: Config, tasks: list[Task], place: Path, landed: Landed, checkout: Path | None) -> None:
    """Land ``tasks`` together like a merge train: combine them all on the target's tip,
    run the gates once, and move the target when they pass. When they fail, bisect: each
    half is landed the same way, so a culprit is found alone and the rest land. A task that
    conflicts with the batch is set aside and tried alone on the target as landed after it;
    a task alone that conflicts or fails the gates is sent back."""
    tip = landed.after
    gitops.git(["reset", "--hard", "--quiet", tip], place)
    merged: list[dict] = []
    set_aside: list[tuple[Task, Failure]] = []
    for task in tasks:
        before = gitops.git(["rev-parse", "HEAD"], place).stdout.strip()
        failure = combine(config, task, place, landed, merged)
        if failure is not None:
            set_aside.append((task, failure))
            continue
        commit = gitops.git(["rev-parse", "HEAD"], place).stdout.strip()
        merged.append({"id": task["id"], "commit": commit, "files": changed_between(place, before, commit), "task": task})
    if merged:
        failure = run_gates(layout, config, merged[-1]["task"], place)
        landed.gate_runs += 1
        if failure is None and landed.push and not landed.dry_run and not pushed(layout.repo_root, landed, merged[-1]["commit"]):
            catch_up(layout.repo_root, landed, checkout)  # someone pushed meanwhile: the same batch again on their tip
            land_batch(layout, config, tasks, place, landed, checkout)
            return
        if failure is None:
            publish(layout, config, merged, landed, checkout)
        elif len(merged) == 1:
            send_back(layout, config, merged[0]["task"], failure, tip, landed)
        else:
            half = len(merged) // 2
            landed.say(f"the gates failed on {len(merged)} tasks together; trying {half} and {len(merged) - half} apart")
            land_batch(layout, config, [entry["task"] for entry in merged[:half]], place, landed, checkout)
            land_batch(layout, config, [entry["task"] for entry in merged[half:]], place, landed, checkout)
    for task, failure in set_aside:
        if len(tasks) == 1:
            send_back(layout, config, task, failure, tip, landed)
        else:
            land_batch(layout, config, [task], place, landed, checkout)


def pushed(repo: Path, landed: Landed, commit: str) -> bool:
    """Push the tested ``commit`` to ``landed.push`` as its target branch, never forcing:
    True when the remote took it, False when it refused a non-fast-forward (someone pushed
    meanwhile). Raises :class:`MacpError` when the push fails otherwise."""
    proc = gitops.git(["push", "--quiet", "--", str(landed.push), f"{commit}:refs/heads/{landed.onto}"], repo, check=False)
    if proc.returncode == 0:
        return True
    if any(word in proc.stderr for word in ("rejected", "non-fast-forward", "fetch first")):
        landed.say(f"{landed.push} refused the push of {landed.onto}: someone pushed meanwhile; landing again on their tip")
        return False
    raise MacpError(f"land: git push to {landed.push}: {gitops.git_reason(proc)}")


def catch_up(repo: Path, landed: Landed, checkout: Path | None) -> None:
    """Fetch the target from ``landed.push`` and fast-forward the local target to it. Raises
    :class:`MacpError` when the local target has commits the remote does not (push or
    reconcile them first), or after :data:`MAX_PUSH_RETRIES` rounds of others pushing."""
    landed.push_retries += 1
    if landed.push_retries > MAX_PUSH_RETRIES + 1:
        raise MacpError(f"land: {landed.push}/{landed.onto} moved {MAX_PUSH_RETRIES} times while landing; run land again")
    gitops.git(["fetch", "--quiet", "--", str(landed.push), f"refs/heads/{landed.onto}"], repo)
    remote = gitops.git(["rev-parse", "FETCH_HEAD^{commit}"], repo).stdout.strip()
    if remote == landed.after:
        return
    if gitops.git(["merge-base", "--is-ancestor", landed.after, remote], repo, check=False).returncode != 0:
        raise MacpError(f"land: {landed.onto} has commits {landed.push} does not; push or reconcile them first (nothing landed)")
    if not landed.dry_run:
        move_target(repo, landed.onto, remote, landed.after, checkout)
    landed.after = remote
    if not landed.landed and not landed.sent_back:
        landed.before = remote


def publish(layout: Layout, config: Config, merged: list[dict], landed: Landed, checkout: Path | None) -> None:
    """Move the target to the tested tip of ``merged`` and record each of its tasks landed
    (a dry run only says so)."""
    commit = merged[-1]["commit"]
    if not landed.dry_run:
        move_target(layout.repo_root, landed.onto, commit, landed.after, checkout)
    landed.after = commit
    verb = "would land" if landed.dry_run else "landed"
    for entry in merged:
        if not landed.dry_run:
            record_landed(layout, config, entry["task"], entry["commit"], landed.onto)
        landed.landed.append({key: entry[key] for key in ("id", "commit", "files")})
        landed.say(f"{entry['id']}: {verb} onto {landed.onto} as {entry['commit'][:12]} ({config['land']['strategy']})")


def combine(config: Config, task: Task, place: Path, landed: Landed, merged: list[dict]) -> Failure | None:
    """Merge, squash or rebase (a copy of) ``task``'s branch onto the landing worktree; the
    failure (kind ``land``, the conflicting files, and the task that touched them last --
    one combined ahead of it in this batch, one landed in this run, or one landed before:
    :func:`conflicting_task`) when it conflicts."""
    branch, message = str(task.get("branch")), land_message(task)  # landing_order took only tasks with a branch
    try:
        strategy = config["land"]["strategy"]
        if strategy == "squash":
            gitops.squash_branch(place, branch, message)
        elif strategy == "rebase":
            gitops.rebase_copy(place, branch)
        else:
            gitops.merge_branch(place, branch, message)
    except gitops.MergeConflict as conflict:
        failure: Failure = {"kind": "land", "attempt": max(1, task.get("attempts", 1)), "exit_code": None, "conflicts": conflict.paths,
                            "output_tail": str(conflict)}
        other = conflicting_task(place, branch, conflict.paths, landed, merged)
        if other:
            failure["conflicts_with"] = other
        return failure
    return None


def conflicting_task(place: Path, branch: str, paths: list[str], landed: Landed, merged: list[dict]) -> str | None:
    """The task whose landing last touched ``paths`` on the landing worktree's HEAD since
    ``branch`` forked from it: one of this run (``landed.landed``, ``merged``), else the one
    whose recorded landing commit is the newest on the target's first-parent line that
    changed them (``git log --first-parent``); None when no task's landing did."""
    touched = [entry["id"] for entry in landed.landed + merged if set(entry["files"]) & set(paths)]
    if touched:
        return touched[-1]
    fork = gitops.git(["merge-base", "HEAD", f"refs/heads/{branch}"], place).stdout.strip()
    history = gitops.git(["log", "--first-parent", "--format=%H", "HEAD", f"^{fork}", "--", *paths], place).stdout.split()
    return next((landed.landed_by[commit] for commit in history if commit in landed.landed_by), None)


def run_gates(layout: Layout, config: Config, task: Task, place: Path) -> Failure | None:
    """Run the landing gates in the landing worktree; the failure of the first that fails."""
    gates = config["land"]["gates"]
    gated: Task = {"id": task["id"]}
    if gates is not None:
        gated["quality_gates"] = gates
    specs = gate_specs(gated, config)
    if not specs:
        return None
    macp = config["macp"]
    limits = GateLimits(config["worker"]["timeout_seconds"], macp["output_tail_bytes"], macp["max_log_bytes"], macp["kill_grace_seconds"])
    log_dir = layout.task_log_dir(task["id"]) / f"land-{clock.timestamp().replace(':', '')}"
    results: list[GateResult] = run_steps(gate_steps(specs, cwd=place, env=dict(os.environ), log_dir=log_dir, limits=limits))
    failing: GateResult | None = next((gate for gate in results if not gate["passed"]), None)
    if failing is None:
        return None
    return {"kind": "land", "attempt": max(1, task.get("attempts", 1)), "exit_code": failing["exit_code"], "gate": failing["name"],
            "classification": failing["classification"] or "unknown", "output_tail": failing["output_tail"]}


def move_target(repo: Path, onto: str, commit: str, old: str, checkout: Path | None) -> None:
    """Fast-forward ``onto`` from ``old`` to the tested ``commit``: in its clean checkout by
    ``merge --ff-only`` (its files follow), else by ``update-ref`` given the old tip. Raises
    :class:`MacpError` when the target moved meanwhile (nothing is overwritten)."""
    if checkout is not None:
        if gitops.git(["rev-parse", "HEAD"], checkout).stdout.strip() == old:
            proc = gitops.git(["merge", "--ff-only", "--quiet", commit], checkout, check=False)
            if proc.returncode == 0:
                return
    elif gitops.git(["update-ref", f"refs/heads/{onto}", commit, old], repo, check=False).returncode == 0:
        return
    raise MacpError(f"land: {onto} moved while landing (it is no longer {old[:12]}); nothing more landed: run land again")


def record_landed(layout: Layout, config: Config, task: Task, commit: str, onto: str) -> None:
    """``landed_commit`` and ``landed_at`` on the task (with its ``task.landed`` event) and
    in its result."""
    at = clock.timestamp()
    with recorded(edit_tasks(layout), layout.events_file) as (document, events):
        stored: Task = {**document.get(task["id"]), "landed_commit": commit, "landed_at": at, "updated_at": at}
        document.replace(stored)
        events.append(cli_event("task.landed", stored, f"landed onto {onto} as {commit[:12]}", onto=onto, commit=commit,
                                strategy=config["land"]["strategy"]))
    path = result_file(stored, layout.orch_dir)
    try:
        result = read_json(path)
    except (MacpError, OSError):
        return
    write_atomic(path, dump_json({**result, "landed_commit": commit, "landed_at": at}))


def send_back(layout: Layout, config: Config, task: Task, failure: Failure, tip: str, landed: Landed) -> None:
    """Send ``task`` back after its landing failed: its branch's tip kept under
    ``refs/macp/<task>/land-<attempt>`` and the branch moved to ``tip`` (the target as
    landed so far), then ``pending`` or ``escalated`` with the failure
    (``task.land.failed``). A dry run only says so."""
    why = landing_failure_text(failure)
    status, changes, message = sent_back(task, failure, max_attempts(task, config), tip)
    if landed.dry_run:
        landed.sent_back.append({"id": task["id"], "status": status, "reason": why})
        landed.say(f"{task['id']}: would be sent back ({why})")
        return
    repo, branch = layout.repo_root, str(task.get("branch"))
    old = gitops.resolve_commit(repo, f"refs/heads/{branch}")
    if status == "pending" and old is not None:
        kept = gitops.keep_commit(repo, f"refs/macp/{task_folder_name(task['id'])}/land-{task.get('attempts', 0)}", old)
        worktree = Path(path) if (path := task.get("worktree")) else None
        try:
            if worktree is not None and worktree.exists():  # a kept worktree follows, keeping what is uncommitted there
                gitops.git(["reset", "--keep", "--quiet", tip], worktree)
            else:
                gitops.git(["update-ref", f"refs/heads/{branch}", tip, old], repo)
            message += f"; its branch's tip is kept as {kept}"
        except gitops.GitError as exc:  # uncommitted work the target's tip would overwrite: never lost, a person decides
            status, changes, _ = sent_back(task, failure, 0, tip)
            message = f"{why}; its worktree {worktree} could not follow the target's tip ({exc}), so it is left as it is for a person"
            changes["escalation_reason"] = message
    landed.sent_back.append({"id": task["id"], "status": status, "reason": why})
    with recorded(edit_tasks(layout), layout.events_file) as (document, events):
        stored = transition(document.get(task["id"]), status, clock.timestamp(), changes)
        document.replace(stored)
        events.append(cli_event("task.land.failed", stored, message, failure=failure, onto=landed.onto))
    landed.say(f"{task['id']}: {status} ({message})")


def changed_between(place: Path, old: str, new: str) -> list[str]:
    """The files ``new`` changed since ``old`` (what a landed task brought)."""
    return [path for path in gitops.git(["diff", "--name-only", "-z", old, new], place).stdout.split("\0") if path]


def base_branch(repo: Path, base_ref: str | None) -> str:
    """The branch tasks start from, as a local branch name: ``macp.base_ref`` without its
    remote (``origin/main`` -> ``main``) when that local branch exists, else the branch
    checked out in the repository (:func:`current_branch`)."""
    remotes = gitops.git(["remote"], repo).stdout.split()
    name = (base_ref or "HEAD").removeprefix("refs/heads/").removeprefix("refs/remotes/")
    remote, _, rest = name.partition("/")
    if remote in remotes and rest:
        name = rest
    if name != "HEAD" and gitops.resolve_commit(repo, f"refs/heads/{name}") is not None:
        return name
    return current_branch(repo)


def current_branch(repo: Path) -> str:
    """The branch checked out in the repository's main worktree. Raises :class:`MacpError`
    on a detached HEAD (name the target with ``--onto``)."""
    proc = gitops.git(["symbolic-ref", "--quiet", "--short", "HEAD"], repo, check=False)
    if proc.returncode != 0:
        raise MacpError("land: the repository's HEAD is detached; name the branch to land onto with --onto")
    return proc.stdout.strip()
