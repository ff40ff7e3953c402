"""The learnings file: what tasks far off their estimate teach later estimates (issue 23).

The Mosaic Stack guide (seed 004, "Learning & Retrospective") captures a learning in
``docs/orchestrator-learnings.json`` for every task whose variance is 50 % or more. MACP
appends one entry (:func:`macp.estimates.learning_entry`) to the file named by
``macp.learnings_file`` (relative to the repository root; default
``.mosaic/orchestrator/learnings.json``): a JSON object whose ``learnings`` array grows, other
keys kept as they are, so the guide's own file can be pointed at. Only the controller
writes it, under the controller lock; each write is atomic.
"""

from __future__ import annotations

from pathlib import Path

from macp.errors import MacpError
from macp.fsio import read_json, write_atomic
from macp.jsontext import dump_json


def append_learning(path: Path, entry: dict[str, object]) -> None:
    """Append ``entry`` to ``path``'s ``learnings`` array (the file is created as
    ``{"learnings": [entry]}``). Raises :class:`MacpError` when the file is not a JSON
    object or its ``learnings`` is not an array -- it is then left as it is."""
    document = read_json(path) if path.exists() else {"learnings": []}
    if not isinstance(document, dict) or not isinstance(document.setdefault("learnings", []), list):
        raise MacpError(f"{path}: not a learnings file (a JSON object with a 'learnings' array); learning not recorded")
    document["learnings"].append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, dump_json(document))
