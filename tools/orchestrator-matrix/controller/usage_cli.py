"""``mosaic macp usage [--by task|runtime|type|day] [--since DATE] [--json]``: what the work cost.

Like ``ccusage`` and ``gt costs``, per group: runs, tokens, used tokens, cost, waste and the
estimates' variance, over every task of the queue and the archive
(:mod:`macp.usage_report`); the total row is the sum of the groups. Costs from the example
price table, and runs no price covers, are named under the table.
"""

from __future__ import annotations

from controller.archive_cli import parse_date_option
from macp import clock
from macp.archive import archived_tasks
from macp.budget import dollars
from macp.cliutil import note, out, print_json, repo_layout
from macp.config import load_config
from macp.errors import EXIT_OK
from macp.prices import price_note
from macp.taskstore import load_tasks
from macp.textview import render_table
from macp.usage import format_tokens
from macp.usage_report import Tally, usage_groups


def cmd_usage(args) -> int:
    """Print the usage table (or ``--json``); returns the exit code."""
    layout = repo_layout(args.repo)
    config = load_config(layout.config_file)
    since_time = parse_date_option(args.since, "--since")
    since = clock.format_timestamp(since_time) if since_time else None
    tasks = [*load_tasks(layout, validate=True).tasks, *archived_tasks(layout.orch_dir, note)]
    groups, total = usage_groups(tasks, args.by, since)
    notes = usage_notes(total, price_note(config))
    if args.json:
        print_json({"by": args.by, "since": since, "groups": [{"key": key, **tally.as_json()} for key, tally in groups.items()],
                    "total": total.as_json(), "notes": notes})
        return EXIT_OK
    if not groups:
        out("no runs recorded" + (f" since {args.since}" if args.since else ""))
        return EXIT_OK
    rows = [{"key": key, "tally": tally} for key, tally in groups.items()] + [{"key": "TOTAL", "tally": total}]
    columns = [
        (args.by.upper(), lambda r: r["key"]),
        ("RUNS", lambda r: str(r["tally"].runs)),
        ("INPUT", lambda r: format_tokens(r["tally"].tokens["input_tokens"])),
        ("CACHED", lambda r: format_tokens(r["tally"].tokens["cached_input_tokens"])),
        ("OUTPUT", lambda r: format_tokens(r["tally"].tokens["output_tokens"])),
        ("USED", lambda r: format_tokens(r["tally"].used_tokens)),
        ("COST", lambda r: cost_text(r["tally"])),
        ("WASTE", lambda r: waste_text(r["tally"])),
        ("ESTIMATE", lambda r: estimate_text(r["tally"])),
    ]
    for line in render_table(rows, columns):
        out(line)
    for line in notes:
        out(line)
    return EXIT_OK


def cost_text(tally: Tally) -> str:
    """``$0.0042``, with ``+?`` when some runs have no cost."""
    return dollars(tally.cost_usd) + ("+?" if tally.unpriced_runs else "")


def waste_text(tally: Tally) -> str:
    """``-`` or ``2 runs, 1.3K, $0.0020``."""
    if not tally.waste_runs:
        return "-"
    return f"{tally.waste_runs} run(s), {format_tokens(tally.waste_used_tokens)}, {dollars(tally.waste_cost_usd)}"


def estimate_text(tally: Tally) -> str:
    """``-`` or ``5K (+7.0 %)``: the estimated tasks' estimates and their variance."""
    if tally.variance_percent is None:
        return "-"
    return f"{format_tokens(tally.estimate_tokens)} ({tally.variance_percent:+.1f} %)"


def usage_notes(total: Tally, example_note: str) -> list[str]:
    """What a reader of the costs must know: runs without a cost (``+?``), runs without
    figures, and the example price table."""
    notes = []
    if total.unpriced_runs:
        notes.append(f"note: {total.unpriced_runs} run(s) have tokens but no cost (no price for their runtime): '+?' in COST")
    if total.runs_without_figures:
        notes.append(f"note: {total.runs_without_figures} run(s) reported no figures (a text runtime, or a run that never reached the model)")
    if example_note and total.table_priced_runs:
        notes.append(f"note: {example_note}")
    return notes
