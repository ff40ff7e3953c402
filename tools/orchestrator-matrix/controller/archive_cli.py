"""``mosaic macp archive [--before DATE] [--dry-run]``: move finished tasks out of tasks.json.

Keeps the queue small at any age (issue 11): final tasks go to ``archive/<YYYY-MM>.ndjson``
(:mod:`macp.archive`); their results and events stay. ``status --all`` and ``history`` still
see them. A task an unfinished task depends on is kept, and the output says so.
"""

from __future__ import annotations

from datetime import datetime

from macp import clock
from macp.archive import append_to_archive, archivable, archived_ids
from macp.cliutil import out, repo_layout
from macp.errors import EXIT_OK, MacpError
from macp.events import make_event
from macp.layout import check_output_folders
from macp.recording import recorded
from macp.taskstore import edit_tasks


def parse_date_option(text: str | None, option: str = "--before") -> datetime | None:
    """A date option (``--before``, ``usage --since``): a date (``2026-11-01``, midnight
    UTC) or an RFC 3339 timestamp; None when not given. Raises :class:`MacpError` naming
    ``option``."""
    if text is None:
        return None
    stamp = text if "T" in text else f"{text}T00:00:00Z"
    try:
        return clock.parse_timestamp(stamp)
    except ValueError:
        raise MacpError(f"{option}: {text!r} is not a date (YYYY-MM-DD) or an RFC 3339 timestamp") from None


def cmd_archive(args) -> int:
    """Archive finished tasks; returns the exit code."""
    layout = repo_layout(args.repo)
    before = parse_date_option(args.before)
    with recorded(edit_tasks(layout), layout.events_file) as (document, events):
        chosen, kept = archivable(document.tasks, before)
        if chosen and not args.dry_run:
            check_output_folders(layout)
            append_to_archive(layout.orch_dir, chosen, archived_ids(layout.orch_dir))
            gone = {task["id"] for task in chosen}
            document.tasks[:] = [task for task in document.tasks if task["id"] not in gone]
            message = f"archived {len(chosen)} finished task(s) to {layout.orch_dir / 'archive'}"
            events.append(make_event("queue.archived", source="cli", message=message, metadata={"tasks": [t["id"] for t in chosen]}))
    for line in kept:
        out(line)
    verb = "would archive" if args.dry_run else "archived"
    out(f"{verb} {len(chosen)} finished task(s){f' (finished before {args.before})' if args.before else ''}")
    return EXIT_OK
