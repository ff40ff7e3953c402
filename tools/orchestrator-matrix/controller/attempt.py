"""One attempt of one claimed task, top to bottom (issue 24): prepare (the worktree, the
brief, the command, the environment), run the worker, read what it used, decide what its
end means (pure: :func:`macp.decide.decide`), run the gates and decide again, and apply the
decision -- a retry, a failover, or the task's end: its result, its status and event, its
worktree kept or removed.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import replace
from pathlib import Path
from typing import Any

from controller.run_state import one_line_title
from controller.spending import Spending
from dispatcher import macp_dispatcher as dispatcher
from macp import clock, gitops
from macp.capture import read_log_tail
from macp.decide import AttemptOutcome, Decision, Ending, attempt_failed, decide
from macp.decide import finish as finish_decision
from macp.dependencies import KnownTasks
from macp.errors import MacpError
from macp.estimates import variance_of
from macp.fsio import read_json, write_atomic
from macp.gates import GateLimits, gate_specs, gate_steps
from macp.jsontext import dump_json
from macp.model import (
    AcpState,
    Failure,
    GateResult,
    GateSpec,
    KeptCommit,
    Result,
    ResultDetails,
    Task,
    TaskChanges,
    WorkerRun,
)
from macp.naming import branch_name, dispatch_kind
from macp.pool import Steps
from macp.procs import Command, ProcessResult
from macp.runtime_state import load_runtime_state, record_cooldown
from macp.settings import timeout_seconds
from macp.worktree_contents import (
    WorktreeContents,
    dirty_fingerprints,
    gate_output_after,
    gate_output_now,
    path_list,
    read_gate_record,
    why_kept,
    write_gate_record,
)


class Attempts(Spending):
    """The steps of a claimed task's attempt (:meth:`run_attempt`, :meth:`after_worker`) and
    its end (:meth:`finish`)."""

    def workdir(self, task: Task) -> Path:
        """Where the task's worker and gates run: its worktree, else the repository root."""
        worktree = task.get("worktree")
        return Path(worktree) if worktree else self.layout.repo_root

    def environment(self, task: Task) -> dict[str, str]:
        """The environment of the task's worker and gates for its current attempt."""
        attempt_dir = self.layout.attempt_dir(task["id"], task["attempts"])
        return dispatcher.worker_env(
            task,
            attempt=task["attempts"],
            cwd=self.workdir(task),
            brief_file=attempt_dir / "brief.md",
            report_file=attempt_dir / "report.json",
            config_file=self.layout.config_file,
            hidden=dispatcher.own_secret_names(self.config),
        )

    # -- one attempt ---------------------------------------------------------------------

    def run_attempt(self, task: Task) -> Steps:
        """A claimed task's attempt, as steps: the worker, then :meth:`after_worker`.
        Returns the task's status after it."""
        kind = dispatch_kind(task)
        if kind != "legacy":
            try:
                task = self.enter_worktree(task)
            except dispatcher.NoCommitYet as exc:
                self.refuse(task["id"], str(exc))  # the repository's to fix: not run again this run
                return self.hand_back(task["id"], "the repository has no commit yet")
            except dispatcher.StackConflict as exc:
                failure: Failure = {"kind": "merge", "attempt": task["attempts"], "exit_code": None, "conflicts": exc.paths, "output_tail": str(exc)}
                return self.apply(task, attempt_failed(task, failure, "failed", [], {"exit_code": None, "error": str(exc)}, self.config, clock.now()))
            except MacpError as exc:
                return self.apply(task, finish_decision(Ending("failed", exit_code=None, error=f"worktree creation failed: {exc}")))
        attempt_dir = self.fresh_attempt_dir(task)
        try:
            brief_file, prompt = dispatcher.write_attempt_brief(task, self.layout.repo_root, attempt_dir)
            if kind == "acp":
                return self.request_acp(task, prompt)
            argv = dispatcher.build_dispatch_argv(task, self.config, brief_file)
        except MacpError as exc:
            return self.apply(task, finish_decision(Ending("failed", exit_code=None, error=str(exc))))
        command = dispatcher.worker_command(argv, task=task, cwd=self.workdir(task), env=self.environment(task), log_path=attempt_dir / "worker.log",
                                            config=self.config)
        gates_seconds = sum(spec["timeout_seconds"] or timeout_seconds(task, self.config) for spec in gate_specs(task, self.config))
        return (yield from self.worker_steps(task, replace(command, later_seconds=gates_seconds)))

    def follow_attempt(self, task: Task) -> Steps:
        """The attempt of a task whose worker job a stopped controller left running (task
        ``job``, :func:`macp.lifecycle.follows_job`): that job followed to its end
        (``Command.attach``) with what is left of the task's timeout, then the attempt goes
        on as if this controller had started it -- never a second run of the worker."""
        job = task.get("job")
        assert job is not None  # follows_job(task)
        self.say(f"{task['id']}: following Slurm job {job['id']}, left running by a controller that stopped")
        attempt_dir = self.layout.attempt_dir(task["id"], task["attempts"])
        command = dispatcher.worker_command([], task=task, cwd=self.workdir(task), env=self.environment(task), log_path=attempt_dir / "worker.log",
                                            config=self.config)
        timeout = command.timeout_seconds
        if timeout is not None and (began := task.get("attempt_started_at")):
            timeout = max(0.0, timeout - (clock.now() - clock.parse_timestamp(began)).total_seconds())
        return (yield from self.worker_steps(task, replace(command, attach=job["id"], timeout_seconds=timeout)))

    def worker_steps(self, task: Task, command: Command) -> Steps:
        """Run the worker ``command`` of ``task``'s attempt (as steps), read its report, and go
        on with :meth:`after_worker`. Returns the task's status."""
        attempt_dir = command.log_path.parent
        log_path = command.log_path
        proc = yield command
        if proc.timed_out:
            self.say(f"{task['id']}: worker timed out after {command.timeout_seconds}s; its process group was stopped")
        if proc.idle_timed_out:
            limits = f"nothing for {command.idle_timeout_seconds}s, or nothing at all in its first {command.first_output_timeout_seconds}s"
            self.say(f"{task['id']}: worker went silent ({limits}); its process group was stopped")
        report = dispatcher.read_worker_report(attempt_dir / "report.json", task["id"])
        run: WorkerRun = {"started_at": proc.started_at, "duration_seconds": proc.duration_seconds}
        outcome = AttemptOutcome(
            proc.exit_code, proc.timed_out, proc.output_tail, report, proc.spawn_error, proc.idle_timed_out, log_path, run, silent=proc.log_bytes == 0
        )
        return (yield from self.after_worker(task, outcome))

    def fresh_attempt_dir(self, task: Task) -> Path:
        """The log folder of this attempt; logs of an earlier run of the same attempt number
        that did not count (recovery, provider failure) are moved aside, not overwritten."""
        path = self.layout.attempt_dir(task["id"], task["attempts"])
        if path.exists():
            number = 1
            while path.with_name(f"{path.name}.uncounted-{number}").exists():
                number += 1
            path.rename(path.with_name(f"{path.name}.uncounted-{number}"))
        return path

    def enter_worktree(self, task: Task) -> Task:
        """Create or reuse the task's worktree and record it on the task; a new branch starts
        from its completed dependencies' work (``stacked_on``, :func:`dispatcher.stacked_branches`)."""
        stack = dispatcher.stacked_branches(task, KnownTasks(self.queue.snapshot().tasks, self.archive), self.layout.repo_root, self.config)
        if self.base is None:
            self.base = dispatcher.base_ref(self.layout.repo_root, self.config)  # once per run (issue 11)
        path, created, base_commit, repaired = dispatcher.prepare_worktree(task, self.layout.repo_root, self.config, stack, self.base)
        branch = branch_name(task)
        changes: TaskChanges = {"worktree": str(path), "branch": branch, "base_commit": base_commit}
        if created:
            changes["stacked_on"] = stack
        event = "worktree.created" if created else "worktree.reused"
        metadata: dict[str, Any] = {"worktree": str(path), "branch": branch, **({"repaired": repaired} if repaired else {})}
        if created and stack:
            metadata["stacked_on"] = stack
        task = self.change(task["id"], None, event, f"{path} on branch {branch}", changes, metadata, source="dispatcher")
        for line in repaired:
            self.say(f"{task['id']}: {line}")
        return task

    def request_acp(self, task: Task, prompt: str) -> str:
        """Write the acp task's ``sessions_spawn`` file and leave it waiting in ``running``."""
        params = dispatcher.acp_spawn_params(task, self.config, self.workdir(task), prompt)
        spawn_file = self.layout.acp_file(task["id"])
        write_atomic(spawn_file, dump_json(params))
        acp: AcpState = {"spawn_file": str(spawn_file), "requested_at": clock.timestamp(), "reported_exit_code": None, "reported_summary": None, "reported_at": None}
        task = self.change(
            task["id"], None, "task.acp.requested", f"sessions_spawn parameters in {spawn_file}", {"acp": acp, "claim": None}, {"spawn_file": str(spawn_file)}, "dispatcher"
        )
        self.say(f"{task['id']}: waiting for an external acp completion report (spawn file {spawn_file})")
        return "running"

    def after_worker(self, task: Task, outcome: AttemptOutcome) -> Steps:
        """Apply what the worker's exit means (:func:`macp.decide.decide`): a provider
        failure, escalation, a failed attempt, or the gates (as steps) and then their
        verdict. Returns the task's status."""
        if outcome.log_path:
            outcome = replace(outcome, output=read_log_tail(outcome.log_path))
        outcome = replace(outcome, usage=self.attempt_usage(task, outcome))
        decision = self.decide(task, outcome, None)
        if outcome.usage is not None:
            task = self.record_run(task, task.get("attempt_runtime") or dispatch_kind(task), outcome, decision.counts_attempt)
        if decision.action == "gates":
            specs = gate_specs(task, self.config)
            if decision.status == "gated":
                task = self.commit_leftovers(task)
                task = self.change(task["id"], "gated", "task.gated", f"worker exited 0; running {len(specs)} quality gate(s)")
                self.say(f"{task['id']}: gated, running {len(specs)} quality gate(s)")
            decision = self.decide(task, outcome, (yield from self.run_quality_gates(task, specs)))
        return self.apply(task, decision)

    def decide(self, task: Task, outcome: AttemptOutcome, gate_results: list[GateResult] | None) -> Decision:
        """:func:`macp.decide.decide` with this run's config, the clock, and -- for a provider
        failure, which picks the next runtime -- the queue and runtimes.json."""
        provider_inputs: dict[str, Any] = {}
        if dispatch_kind(task) == "yolo":
            provider_inputs = {"tasks": self.queue.snapshot().tasks, "runtime_state": load_runtime_state(self.layout)}
        return decide(task, outcome, gate_results, self.config, clock.now(), **provider_inputs)

    def apply(self, task: Task, decision: Decision) -> str:
        """Carry out ``decision`` for ``task`` (the controller follows it; the policy is in
        :mod:`macp.decide`); returns the task's status afterwards."""
        if decision.cooldown is not None:
            cooldown = decision.cooldown
            record_cooldown(self.layout, cooldown.runtime, cooldown.until, cooldown.kind, cooldown.evidence, task["id"])
        if decision.action == "finish" and decision.ending is not None:
            if decision.changes:  # a provider escalation: the uncounted attempt and its own event first
                task = self.change(task["id"], None, decision.event_type, decision.message, decision.changes, decision.metadata)
            if decision.say:
                self.say(decision.say)
            return self.finish(task, decision.ending)
        assert decision.status is not None
        self.change(task["id"], decision.status, decision.event_type, decision.message, decision.changes, decision.metadata)
        if decision.say:
            self.say(decision.say)
        return decision.status

    def commit_leftovers(self, task: Task) -> Task:
        """Commit what a worker that exited 0 left uncommitted on the task branch, so the
        gates test what the branch holds (``macp.commit_leftovers``, DESIGN.md "Worktrees";
        message ``<id>: <title>``). Only the worker's changes: ignored files and what
        earlier gates left untouched (:mod:`macp.worktree_contents`) stay out. With it off,
        the uncommitted work is noted on the task (``uncommitted_work``) for ``status``,
        ``show`` and the result. A commit git refuses is logged and the gates run on the
        worktree as it is."""
        worktree = self.workdir(task) if task.get("worktree") else None
        if worktree is None or not worktree.exists():
            return task
        message = f"{task['id']}: {one_line_title(task)}"
        left_by_gates = gate_output_now(worktree, read_gate_record(self.layout.task_log_dir(task["id"])))
        try:
            if not self.config["macp"]["commit_leftovers"]:
                changes = [path for path in gitops.worktree_status(worktree).dirty if path not in left_by_gates]
                return self.update(task["id"], {"uncommitted_work": path_list("uncommitted", changes) if changes else None})
            commit = gitops.commit_all(worktree, message, leave_out=left_by_gates)
        except gitops.GitError as exc:
            with self.guard.critical():
                self.emit("worktree.commit_failed", task, f"the worker's uncommitted changes were not committed: {exc}", source="dispatcher")
            return task
        if commit:
            with self.guard.critical():
                self.emit("worktree.committed", task, f"{commit[:12]} {message}", source="dispatcher", commit=commit)
            self.say(f"{task['id']}: committed the worker's uncommitted changes ({commit[:12]})")
        return task

    def run_quality_gates(self, task: Task, specs: list[GateSpec]) -> Generator[Command, ProcessResult, list[GateResult]]:
        """Run ``specs`` in the task's working folder (as steps) and record one event per gate."""
        macp = self.config["macp"]
        limits = GateLimits(
            timeout_seconds=timeout_seconds(task, self.config),
            tail_bytes=macp["output_tail_bytes"],
            max_log_bytes=macp["max_log_bytes"],
            grace_seconds=macp["kill_grace_seconds"],
        )
        log_dir = self.layout.attempt_dir(task["id"], task["attempts"])
        worktree = self.workdir(task) if task.get("worktree") and specs else None
        before = dirty_fingerprints(worktree) if worktree else {}
        results = yield from gate_steps(specs, cwd=self.workdir(task), env=self.environment(task), log_dir=log_dir, limits=limits)
        if worktree:  # what the gates left is not the worker's work (macp.worktree_contents)
            task_logs = self.layout.task_log_dir(task["id"])
            write_gate_record(task_logs, gate_output_after(read_gate_record(task_logs), before, dirty_fingerprints(worktree)))
        with self.guard.critical():
            for gate in results:
                verdict = "passed" if gate["passed"] else "failed"
                self.emit(
                    f"gate.{verdict}",
                    task,
                    f"{gate['name']}: exit {gate['exit_code']}" + (" (timed out)" if gate["timed_out"] else ""),
                    source="quality-gate",
                    gate=gate["name"],
                    exit_code=gate["exit_code"],
                    classification=gate["classification"],
                )
        return results

    def finish(self, task: Task, ending: Ending) -> str:
        """End the task as ``ending`` says: write its result, record the status (with
        :attr:`Ending.message`), then remove its worktree. In that order, so a crash can
        leak a worktree but never lose an outcome."""
        status, report, error, escalation_reason = ending.status, ending.report, ending.error, ending.escalation_reason
        files = report.get("files_changed")
        kept: str | None = None
        kept_commits: list[KeptCommit] = []
        commits: list[str] = []
        contents: WorktreeContents | None = None
        worktree = self.workdir(task) if task.get("worktree") else None
        base_commit = task.get("base_commit")
        if worktree and worktree.exists():
            try:
                contents = dispatcher.inspect_worktree(task, worktree, self.layout.repo_root, self.config)
                if base_commit:
                    files = [path for path in gitops.changed_files(worktree, base_commit, contents.untracked) if path not in contents.gate_output]
                kept = ending.keep_worktree or why_kept(contents, self.config["macp"]["remove_ignored_files"])
                kept_commits = dispatcher.preserve_commits(task, worktree)
                commits = gitops.commits_since(worktree, base_commit) if base_commit else []
            except gitops.GitError as exc:
                kept, contents = f"could not inspect it: {exc}", None
        details: ResultDetails = {
            "summary": report.get("summary") or "",
            "files_changed": files or [],
            "error": error,
            "escalation_reason": escalation_reason,
            "timed_out": ending.timed_out,
            "worktree_kept": kept,
            "kept_commits": kept_commits,
            "build_output": contents.build_output_record() if contents else None,
            "output_tail": ending.output_tail,
            "base_commit": base_commit,
            "commits": commits,
            "worker": ending.worker_run,
            "estimate_tokens": task.get("estimate_tokens"),
            "variance": (variance := variance_of(task)),
            "metadata": {
                "log_dir": str(self.layout.attempt_dir(task["id"], task.get("attempts", 0))),
                **({"uncommitted_work": uncommitted} if (uncommitted := task.get("uncommitted_work")) else {}),
                **({"report_note": report["note"]} if report.get("note") else {}),
                **({"reported_commit": report["commit_sha"]} if report.get("commit_sha") else {}),
            },
        }
        result = dispatcher.collect_result(task, ending.exit_code, ending.gate_results, self.layout.orch_dir, status, details)
        changes: TaskChanges = {
            "claim": None,
            "completed_at": result["completed_at"],
            "error": error,
            "escalation_reason": escalation_reason,
            "pr": report.get("pr") or task.get("pr"),
        }
        if ending.last_failure:
            changes["last_failure"] = ending.last_failure
        if variance:
            changes["variance"] = variance
        result_path = str(dispatcher.result_file(task, self.layout.orch_dir))
        task = self.change(task["id"], status, f"task.{status}", ending.message, changes, {"result": result_path})
        self.say(f"{task['id']}: {status}" + (f" ({ending.message})" if status != "completed" else ""))
        if variance:
            self.record_variance(task, variance)
        if worktree and worktree.exists() and kept is None and self.config["macp"]["cleanup_worktrees"]:
            self.remove_worktree(task, contents)  # inspected and its commits kept just above
        elif kept is not None:
            with self.guard.critical():
                self.emit("worktree.kept", task, f"{task['worktree']} kept: {kept}", source="dispatcher", reason=kept)
            self.say(f"{task['id']}: worktree kept ({kept})")
        return status

    def remove_worktree(self, task: Task, contents: WorktreeContents | None = None) -> None:
        """Remove a finished task's worktree unless it holds work; log either way
        (``contents``: see :func:`dispatcher.cleanup_worktree`).

        When it is kept for a reason the result does not know yet, the result is updated.
        """
        try:
            kept = dispatcher.cleanup_worktree(task, self.layout.repo_root, self.config, contents)
        except gitops.GitError as exc:
            kept = f"could not inspect it: {exc}"
        with self.guard.critical():
            if kept is None:
                self.emit("worktree.removed", task, f"{task['worktree']} removed; branch {task.get('branch')} kept", source="dispatcher")
                return
            self.emit("worktree.kept", task, f"{task['worktree']} kept: {kept}", source="dispatcher", reason=kept)
            result = self.read_result(task)
            if result is not None and result.get("worktree_kept") != kept:
                write_atomic(dispatcher.result_file(task, self.layout.orch_dir), dump_json({**result, "worktree_kept": kept}))
        self.say(f"{task['id']}: worktree kept ({kept})")

    def read_result(self, task: Task) -> Result | None:
        """The task's result file, or None when it has none (yet) or it cannot be read."""
        try:
            return read_json(dispatcher.result_file(task, self.layout.orch_dir))
        except (MacpError, OSError):
            return None
