"""``mosaic macp deliver``, the delivery round after every command that records events, and
the transport's part of ``status`` (issue 13, docs/transport.md).

Rounds themselves are :class:`transport.matrix_transport.MatrixTransport`'s; this module
decides when a command runs one and how its outcome reaches people and exit codes.
"""

from __future__ import annotations

import json
from pathlib import Path

from macp.cliutil import out, print_json, repo_layout
from macp.config import load_config
from macp.errors import EXIT_OK, EXIT_REFUSED, EXIT_UNAVAILABLE, BusyError, MacpError
from macp.layout import Layout

# Commands that append events: each ends with a delivery round when the transport is on.
RECORDING_COMMANDS = frozenset({"submit", "retry", "edit", "cancel", "approve", "complete", "sync", "archive", "land"})


def transport_enabled(config_file: Path) -> bool:
    """Whether the repository's own config turns the Matrix transport on (``enabled`` true,
    ``transport`` ``matrix`` or unset), read without loading the whole config: commands
    pay nothing for a transport that is off (the default)."""
    try:
        user = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(user, dict) and user.get("enabled") is True and user.get("transport", "matrix") == "matrix"


def deliver_after_command(repo: str | None) -> None:
    """One automatic delivery round after a command recorded events (nothing when the
    transport is off). Never raises for delivery trouble: it is noted on stderr."""
    layout = repo_layout(repo)
    if not transport_enabled(layout.config_file):
        return
    from transport.matrix_transport import MatrixTransport

    MatrixTransport(layout, load_config(layout.config_file)).deliver()


def cmd_deliver(args) -> int:
    """Flush the backlog now: rounds until it is empty or a round stops on an error, even
    during a backoff or after a refused token. Exit 0 when nothing waits, 69 when the
    homeserver could not be reached (or rate-limited) in time, 77 when it refused the token
    or the room, 75 when another process kept delivering, 2 when the transport is off or
    not configured."""
    from transport.matrix_errors import Refused
    from transport.matrix_transport import MatrixTransport

    layout = repo_layout(args.repo)
    transport = MatrixTransport(layout, load_config(layout.config_file))
    if not transport.active:
        raise MacpError('the Matrix transport is off: set "enabled": true and "transport": "matrix" in config.json')
    totals = {"delivered": 0, "recognised": 0, "skipped": 0, "dead_lettered": 0, "rate_limited": 0}
    while True:
        report = transport.deliver(forced=True)
        if report.outcome == "unconfigured":
            raise MacpError(f"the Matrix transport needs matrix.homeserver, matrix.room_id and ${transport.token_env}")
        if report.outcome == "busy":
            raise BusyError("another process kept delivering this repository's events until the round's deadline; try again")
        for key in totals:
            totals[key] += getattr(report, key)
        progressed = report.delivered + report.recognised + report.skipped + report.dead_lettered
        if report.error is not None or not report.backlog or not progressed:
            break
    error = report.error
    if args.json:
        print_json({**totals, "backlog": report.backlog, "error": None if error is None else {"errcode": error.errcode, "error": error.error, "status": error.status}})
    else:
        out(f"delivered {totals['delivered']} event(s); {report.backlog} waiting" + (f"; {totals['dead_lettered']} set aside" if totals["dead_lettered"] else ""))
    if error is not None:
        return EXIT_REFUSED if isinstance(error, Refused) else EXIT_UNAVAILABLE
    return EXIT_OK if not report.backlog else EXIT_UNAVAILABLE


def delivery_status(layout: Layout) -> dict | None:
    """The transport's part of ``status``: ``{"backlog", "last_error", "dead_letters",
    "last_delivery_at", "next_try_at"}``, or ``None`` when the transport is off."""
    if not transport_enabled(layout.config_file):
        return None
    import time
    from datetime import datetime, timezone

    from macp.clock import format_timestamp
    from transport.matrix_state import backlog, load_state

    state = load_state(layout.orch_dir)
    retry = format_timestamp(datetime.fromtimestamp(state.retry_at, timezone.utc)) if state.retry_at > time.time() else None
    return {
        "backlog": backlog(layout.events_file, state.cursor),
        "last_error": state.last_error,
        "stopped": bool(state.blocked),
        "dead_letters": state.dead_letters,
        "last_delivery_at": state.last_delivery_at,
        "next_try_at": retry,
    }


def delivery_lines(view: dict) -> list[str]:
    """``status``'s human lines for :func:`delivery_status`'s view."""
    line = f"matrix: {view['backlog']} event(s) not yet delivered"
    if view["dead_letters"]:
        line += f"; {view['dead_letters']} set aside in transport-dead-letter.ndjson"
    lines = [line]
    error = view["last_error"]
    if error:
        state = "delivery stopped until the token or room is fixed ('mosaic macp deliver' to retry)" if view["stopped"] else "last error"
        code = " ".join(str(part) for part in (f"HTTP {error['status']}" if error.get("status") else "", error.get("errcode")) if part)
        lines.append(f"matrix: {state}: {code + ': ' if code else ''}{error.get('error')} (at {error.get('at')})")
    return lines
