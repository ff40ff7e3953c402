"""Requests to cancel a task while a controller runs it (``mosaic macp cancel``; issue 24).

A running task belongs to the controller that claimed it, so ``cancel`` does not change it
behind that controller's back: it leaves a request, ``cancel/<task folder name>.json``
(``task_id``, ``reason``, the ``claim_token`` and ``attempt`` it was made for, ``at``),
written atomically. The controller looks for requests about once a second while tasks run,
stops the task's processes (SIGTERM, then SIGKILL after ``macp.kill_grace_seconds``) and
ends it ``cancelled``, then removes the request. A request made for an attempt that is no
longer running is dropped -- unless its controller died and the task was recovered to
``pending``: then the person's wish still holds and the task is cancelled before it runs
again.
"""

from __future__ import annotations

import os

from macp import clock
from macp.fsio import write_atomic
from macp.jsontext import dump_json, loads
from macp.layout import Layout
from macp.model import Task
from macp.naming import task_folder_name


def write_request(layout: Layout, task: Task, reason: str) -> None:
    """Ask the controller running ``task`` to cancel it, because of ``reason``."""
    claim = task.get("claim")
    request = {"task_id": task["id"], "reason": reason, "claim_token": claim.get("token") if claim else None, "attempt": task.get("attempts", 0),
               "at": clock.timestamp()}
    write_atomic(layout.cancel_dir / f"{task_folder_name(task['id'])}.json", dump_json(request))


def read_requests(layout: Layout) -> list[dict]:
    """Every readable request, oldest name first; one that is not a JSON object with a
    string ``task_id`` is removed (it can name no task). Cheap when there are none: one
    ``scandir`` of a folder that usually does not exist."""
    try:
        entries = sorted(entry.name for entry in os.scandir(layout.cancel_dir) if entry.name.endswith(".json"))
    except FileNotFoundError:
        return []
    requests = []
    for name in entries:
        path = layout.cancel_dir / name
        try:
            request = loads(path.read_bytes())
        except (OSError, ValueError):
            request = None
        if isinstance(request, dict) and isinstance(request.get("task_id"), str):
            requests.append(request)
        else:
            path.unlink(missing_ok=True)
    return requests


def drop_request(layout: Layout, task_id: str) -> None:
    """Remove the request about ``task_id`` (done with it, or it came too late)."""
    (layout.cancel_dir / f"{task_folder_name(task_id)}.json").unlink(missing_ok=True)
