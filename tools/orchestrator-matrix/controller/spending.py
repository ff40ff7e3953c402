"""What an attempt used and cost (issue 23), as the controller records it: the run's usage
read from its runtime or its report (:meth:`Spending.attempt_usage`), the run appended to the
task's ``runs`` and counted in the budgets' ledger (:meth:`Spending.record_run`), and how far
a finished task was off its estimate (:meth:`Spending.record_variance`).
"""

from __future__ import annotations

from controller.run_state import RunState, warn
from dispatcher import macp_dispatcher as dispatcher
from macp import clock
from macp.decide import AttemptOutcome
from macp.errors import MacpError
from macp.estimates import LEARNING_LEVELS, learning_entry, variance_text
from macp.layout import confine
from macp.learnings import append_learning
from macp.model import Run, Task, Usage, Variance
from macp.prices import price_for, priced
from macp.usage import sums_of, unavailable


class Spending(RunState):
    """The usage side of an attempt (the base of :class:`controller.attempt.Attempts`)."""

    def attempt_usage(self, task: Task, outcome: AttemptOutcome) -> Usage | None:
        """What this attempt's run used: an agent runtime's own figures (:func:`dispatcher.run_usage`),
        else what the worker's report says (``usage`` or the guide's ``used``; priced like
        the runtime's runs); :func:`macp.usage.unavailable` for an agent run with neither;
        None for an exec or legacy worker that reported nothing (no run is recorded)."""
        runtime, reported = task.get("attempt_runtime"), outcome.report.get("usage")
        own = dispatcher.run_usage(self.config, runtime, outcome.log_path) if runtime and outcome.log_path else None
        if reported is not None and (own is None or own["completeness"] == "unavailable"):
            return priced(reported, price_for(self.config, runtime)) if runtime else reported
        return own if own is not None or not runtime else unavailable()

    def record_run(self, task: Task, runtime: str, outcome: AttemptOutcome, counted: bool) -> Task:
        """Append where this attempt ran (on ``runtime``; ``exec`` for an exec worker that
        reported what it used), how it ended, whether it
        ``counted`` and what it used (``outcome.usage``) to the task's ``runs``, sum the
        task's ``usage`` and ``waste`` again, and count its cost in the budgets' ledger."""
        run: Run = {
            "attempt": task["attempts"],
            "runtime": runtime,
            "exit_code": outcome.exit_code,
            "timed_out": outcome.timed_out,
            "idle_timed_out": outcome.idle_timed_out,
            "at": clock.timestamp(),
            "counted": counted,
            "usage": outcome.usage or unavailable(),
        }
        self.ledger.add(run)
        runs = [*(task.get("runs") or []), run]
        return self.update(task["id"], {"runs": runs, **sums_of(runs)})

    def record_variance(self, task: Task, variance: Variance) -> None:
        """Log how far the ended ``task`` was off its estimate (``task.variance``, with the
        Mosaic Stack guide's level) and, from 50 %, append a learning to the learnings file
        (:mod:`macp.learnings`); a learnings file MACP cannot extend is named, not fatal."""
        text = variance_text(variance)
        with self.guard.critical():
            self.emit("task.variance", task, text, **variance)
        self.say(f"{task['id']}: {text}")
        if variance["level"] in LEARNING_LEVELS:
            try:
                path = confine(self.config["macp"]["learnings_file"], self.layout.repo_root, "macp.learnings_file")
                append_learning(path, learning_entry(task, variance, clock.timestamp()))
            except MacpError as exc:
                warn(str(exc))
