"""``mosaic macp init``: create the state folder from the templates.
"""

from __future__ import annotations

import shutil

from macp.cliutil import out, repo_layout
from macp.config import TEMPLATE_STATE_DIR
from macp.errors import EXIT_OK
from macp.layout import Layout

TEMPLATE_FILES = ("config.json", "tasks.json", ".gitignore")


def initialise(layout: Layout) -> list[str]:
    """Copy the templates into ``.mosaic/orchestrator/`` (never overwriting); return what was created."""
    created = []
    layout.orch_dir.mkdir(parents=True, exist_ok=True)
    for name in TEMPLATE_FILES:
        target = layout.orch_dir / name
        if not target.exists():
            shutil.copyfile(TEMPLATE_STATE_DIR / name, target)
            created.append(str(target.relative_to(layout.repo_root)))
    return created


def cmd_init(args) -> int:
    layout = repo_layout(args.repo)
    created = initialise(layout)
    if created:
        out(f"initialised {layout.orch_dir}: " + ", ".join(created))
    else:
        out(f"{layout.orch_dir} is already initialised")
    return EXIT_OK
