"""``mosaic macp``: submit, inspect and steer the MACP queue of a repository.

Subcommands (MACP Phase 1 brief, Task 7, plus what DESIGN.md adds): ``init``, ``submit``,
``status``, ``show``, ``usage``, ``log``, ``diff``, ``prune``, ``archive``, ``report``, ``drain``, ``history``, ``retry``, ``edit``, ``cancel``, ``approve``, ``complete``,
``sync``, ``validate``. Every one takes
``--repo DIR`` (default: the main worktree of the current folder's repository); read commands take
``--json``. Human output goes to stdout, diagnostics to stderr; exit codes are in
docs/exit-codes.md. None of them waits for a running task: they hold the tasks.json lock for
milliseconds only.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import get_args

from controller.deliver_cli import RECORDING_COMMANDS, cmd_deliver, deliver_after_command
from macp import __version__
from macp.cliutil import (
    OneLineParser,
    add_executor_option,
    add_land_option,
    add_workers_option,
    out,
    positive_dollars,
    positive_int,
    run_main,
    token_figure,
)
from macp.model import Dispatch, TaskType
from macp.usage_report import GROUPINGS

PROG = "mosaic macp"
TASK_TYPES: tuple[TaskType, ...] = get_args(TaskType)
DISPATCHES: tuple[Dispatch, ...] = get_args(Dispatch)


# -- commands in their own modules --------------------------------------------------------


def delegated(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """A handler that imports ``controller.<module>`` only when its command runs (start-up
    stays small: docs/performance.md) and calls its ``name``."""

    def handler(args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(f"controller.{module}"), name)(args)

    return handler


# -- drain ------------------------------------------------------------------------------


def cmd_drain(args) -> int:
    from controller.mosaic_orchestrator import run_controller

    return run_controller(
        args.repo, until_drained=True, wait=args.wait, dry_run=args.dry_run, json_output=args.json, workers=args.workers, executor=args.executor, land=args.land, say=out
    )


def cmd_validate(args) -> int:
    from dispatcher.macp_dispatcher import check_task_paths
    from macp.statecheck import run_validate

    return run_validate(args, check_task_paths)


# -- parser -----------------------------------------------------------------------------


def add_budget_options(parser: argparse.ArgumentParser, estimate_default: str, cap_default: str) -> None:
    """``--estimate``, ``--max-tokens`` and ``--max-cost-usd`` (docs/usage.md)."""
    parser.add_argument("--estimate", type=token_figure, metavar="TOKENS", help=f"tokens the task is expected to use, as 5K or 4.2K: input not read from a cache, plus output ({estimate_default})")
    parser.add_argument("--max-tokens", type=token_figure, metavar="TOKENS", help=f"the most the task may use over all its runs; a task whose estimate would pass it is escalated before it starts ({cap_default})")
    parser.add_argument("--max-cost-usd", type=positive_dollars, metavar="USD", help=f"the most the task may cost over all its runs; passed to runtimes that take a cap ({cap_default})")


def build_parser() -> OneLineParser:
    """The ``mosaic macp`` argument parser."""
    parser = OneLineParser(prog="mosaic macp", description="Submit, inspect and run MACP tasks.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="subcommand", required=True, parser_class=OneLineParser, metavar="COMMAND")

    def command(name: str, handler, help_text: str) -> OneLineParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--repo", help="repository root (default: the main worktree of the current folder's repository, also from a task's worktree)")
        p.set_defaults(handler=handler)
        return p

    command("init", delegated("init_cli", "cmd_init"), "create .mosaic/orchestrator/ from the templates")

    p = command("submit", delegated("submit_cli", "cmd_submit"), "add a task to the queue")
    p.add_argument("--task-id", help="task id: letters, digits, '.', '_', '-' (max 128); no default: required unless --from")
    p.add_argument("--from", dest="from_file", metavar="FILE", help="submit many tasks in one locked update: one JSON object per line with tasks.json's field names, - for stdin (default: one task from the options)")
    p.add_argument("--title", help="one line for humans (default: the task id)")
    p.add_argument("--description", help="longer text; becomes the agent's prompt when there is no brief (default: none)")
    p.add_argument("--type", choices=TASK_TYPES, help="kind of work; picks the runtime with the best success rate (default: none)")
    p.add_argument("--dispatch", choices=DISPATCHES, help="how the task runs (default: yolo when --runtime or --brief is given without --command, else config macp.default_dispatch)")
    p.add_argument("--runtime", help="agent runtime for yolo/acp; on a provider failure (rate limit, quota, auth, network, missing binary) the task fails over to the other configured runtimes, the attempt not counted, unless --pin-runtime (default: best success rate for the type, else worker.runtime)")
    p.add_argument("--pin-runtime", action="store_true", default=None, help="run only on --runtime: a provider failure waits for that runtime's reset time (or escalates at macp.max_provider_failures) instead of failing over (default: fail over)")
    p.add_argument("--brief", help="markdown brief inside the repository, relative to the current folder when inside it, else to the repository root (default: <macp.brief_dir>/<id>.md when it exists)")
    p.add_argument("--command", help="shell command of an exec task, run by /bin/sh in the worktree (default: none)")
    p.add_argument("--depends-on", action="append", metavar="IDS", help="ids that must complete first (comma list; repeatable; default: none)")
    p.add_argument("--priority", type=int, help="higher runs first (default: 0)")
    p.add_argument("--exclusive-group", metavar="NAME", help="never run at the same time as another task of this group, whatever --workers allows (default: none)")
    p.add_argument("--max-attempts", type=positive_int, help="attempts before the task ends failed/escalated (default: config worker.max_attempts)")
    p.add_argument("--timeout", type=positive_int, metavar="SECONDS", help="limit of each worker run (default: config worker.timeout_seconds)")
    p.add_argument("--branch", help="git branch of the task (default: feat/<id>-<slug of title>)")
    p.add_argument("--issue", help="issue reference kept with the task, e.g. #42 (default: none)")
    p.add_argument("--gate", action="append", metavar="COMMAND", help="quality gate for this task, replacing config's (repeatable; default: config quality_gates)")
    add_budget_options(p, "default: the median used of completed tasks of its type, else none", "default: config budget")

    p = command("status", delegated("status_cli", "cmd_status"), "show the queue")
    p.add_argument("--task-id", help="show only this task (default: every task)")
    p.add_argument("--all", action="store_true", help="include archived tasks (default: only tasks.json)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = command("show", delegated("status_cli", "cmd_show"), "show one task and its result")
    p.add_argument("task_id", help="the task to show")
    p.add_argument("--json", action="store_true", help="print the task and its result as JSON")

    p = command("drain", cmd_drain, "run the controller until nothing is runnable")
    p.add_argument("--dry-run", action="store_true", help="print the order and commands, run nothing")
    p.add_argument("--wait", action="store_true", help="wait for a running controller instead of exiting 75")
    p.add_argument("--json", action="store_true", help="print the run's summary as one JSON document on stdout (progress goes to stderr)")
    add_workers_option(p)
    add_executor_option(p)
    add_land_option(p)

    p = command("log", delegated("inspect_cli", "cmd_log"), "print a task's worker or gate log; --follow streams it while the task runs")
    p.add_argument("task_id", help="the task whose log to print")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the task is no longer pending, running or gated")
    p.add_argument("--attempt", type=positive_int, help="which attempt (default: the latest; with --follow, each new one)")
    p.add_argument("--gate", metavar="NAME", help="a quality gate's log, by name or number (default: the worker's log)")

    p = command("diff", delegated("inspect_cli", "cmd_diff"), "show what a task's branch changed since the commit it started from (git diff BASE...BRANCH)")
    p.add_argument("task_id", help="the task whose work to show")
    p.add_argument("--stat", action="store_true", help="only the summary of changed files")

    p = command("prune", delegated("prune", "cmd_prune"), "remove finished tasks' worktrees that hold no work and their branches already in the base")
    p.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")
    p.add_argument("--wait", action="store_true", help="wait for a running controller instead of exiting 75")

    p = command("usage", delegated("usage_cli", "cmd_usage"), "what the work cost: tokens, used tokens, cost, waste and estimate variance per task, runtime, type or day (archived tasks included)")
    p.add_argument("--by", choices=GROUPINGS, default="task", help="how to group the runs (default: task)")
    p.add_argument("--since", metavar="DATE", help="only runs recorded from this date (YYYY-MM-DD, UTC) or timestamp on (default: every run)")
    p.add_argument("--json", action="store_true", help="print the groups and their total as one JSON document")
    p = command("archive", delegated("archive_cli", "cmd_archive"), "move finished tasks out of tasks.json into archive/<YYYY-MM>.ndjson (status --all and history still see them)")
    p.add_argument("--before", metavar="DATE", help="only tasks finished before this date or timestamp (default: every finished task)")
    p.add_argument("--dry-run", action="store_true", help="say how many would go, move nothing")

    p = command("report", delegated("report_cli", "cmd_report"), "write the quality-gate results of every finished task as JUnit XML, for CI")
    p.add_argument("--junit", required=True, metavar="FILE", help="where to write the JUnit XML (outside .mosaic/orchestrator)")

    p = command("deliver", cmd_deliver, "send the events not yet delivered to the Matrix room now (docs/transport.md)")
    p.add_argument("--json", action="store_true", help="print what was delivered and what waits as JSON")

    p = command("history", delegated("inspect_cli", "cmd_history"), "show the event log")
    p.add_argument("--task-id", help="only this task's events (default: every event)")
    p.add_argument("--json", action="store_true", help="print the events as JSON lines: one compact JSON object per line, as they are logged (no events: no lines)")

    p = command("retry", delegated("steer_cli", "cmd_retry"), "put a failed, escalated or cancelled task back to pending")
    p.add_argument("task_id", help="the task to retry")
    p.add_argument("--attempts", type=positive_int, default=1, help="attempts to grant (default: 1)")
    p.add_argument("--fresh", action="store_true", help="start over from the base in a new worktree; the old branch tip is kept under refs/macp/ (default: continue in the task's worktree)")

    p = command("edit", delegated("steer_cli", "cmd_edit"), "change a pending or escalated task (the event records the change)")
    p.add_argument("task_id", help="the task to change")
    p.add_argument("--timeout", type=positive_int, metavar="SECONDS", help="new limit of each worker run (default: unchanged)")
    p.add_argument("--command", help="new shell command of an exec/legacy task (default: unchanged)")
    p.add_argument("--max-attempts", type=positive_int, help="new attempt budget (default: unchanged)")
    p.add_argument("--runtime", help="new agent runtime (default: unchanged)")
    p.add_argument("--priority", type=int, help="new priority, higher runs first (default: unchanged)")
    p.add_argument("--gate", action="append", metavar="COMMAND", help="the task's quality gates, replacing its list (repeatable; default: unchanged)")
    add_budget_options(p, "default: unchanged", "default: unchanged")

    p = command("cancel", delegated("steer_cli", "cmd_cancel"), "cancel a task; one a running controller runs is stopped by it and ends cancelled")
    p.add_argument("task_id", help="the task to cancel")
    p.add_argument("--reason", help="why, kept in the task and its event (default: none)")

    p = command("approve", delegated("steer_cli", "cmd_approve"), "let a task held by the risk policy run")
    p.add_argument("task_id", help="the held task")

    p = command("land", delegated("land_cli", "cmd_land"), "land completed tasks onto the target branch: combined in a landing worktree, tested, the target fast-forwarded (docs/landing.md)")
    p.add_argument("task_ids", nargs="*", metavar="ID", help="the tasks to land (default: none; see --all)")
    p.add_argument("--all", action="store_true", help="every completed task that has not landed, in dependency then queue order")
    p.add_argument("--onto", metavar="BRANCH", help="the branch to land onto (default: config land.onto, else the local branch of macp.base_ref, e.g. main, else the branch checked out)")
    p.add_argument("--batch", type=positive_int, metavar="N", help="combine and test up to N tasks at once, bisecting a batch whose gates fail (default: config land.batch, 1)")
    p.add_argument("--push", metavar="REMOTE", help="push the target to REMOTE after each landing, never forcing; when someone pushed meanwhile, land again on their tip (default: no push)")
    p.add_argument("--dry-run", action="store_true", help="combine and test as land would, but move no branch and change no task")
    p.add_argument("--json", action="store_true", help="print what landed and what went back as one JSON document")
    p.add_argument("--wait", action="store_true", help="wait for a running controller instead of exiting 75")

    p = command("validate", cmd_validate, "check state files against their schemas (exit 1 when invalid)")
    p.add_argument("--schema", help="a JSON Schema file to check FILES against (default: the schema each file's name implies)")
    p.add_argument("files", nargs="*", metavar="FILE", help="default: every state file of the repository")

    p = command("sync", delegated("tasks_md_sync", "run_sync"), "sync the docs/TASKS.md table into tasks.json")
    p.add_argument("--file", help="the markdown file (default: docs/TASKS.md)")
    p.add_argument("--write-back", action="store_true", help="write statuses, agents, timestamps and used tokens back into the table (default: read only)")
    p.add_argument("--dry-run", action="store_true", help="show the changes, write nothing")

    p = command("complete", delegated("steer_cli", "cmd_complete"), "report the end of an acp task's external run")
    p.add_argument("task_id", help="the acp task waiting for its report")
    p.add_argument("--exit-code", type=int, required=True, help="the external run's exit code (0: success)")
    p.add_argument("--summary", help="what the run did, kept in the result (default: none)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mosaic-macp`` / ``mosaic macp``; returns the exit code."""
    args = build_parser().parse_args(argv)

    def body() -> int:
        code = args.handler(args)
        if args.subcommand in RECORDING_COMMANDS:
            deliver_after_command(args.repo)
        return code

    return run_main(f"{PROG} {args.subcommand}", body)
