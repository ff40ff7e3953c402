"""Start an entry point so that Ctrl-C is one line and exit 130 from the first moment.

``run_main`` (:mod:`macp.cliutil`) maps a SIGINT to exit 130 once a command runs; this covers
the start-up before it, while the program itself is still being imported.
"""

from __future__ import annotations

import importlib
import sys

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it (docs/exit-codes.md)


def launch(module: str, prog: str) -> int:
    """Import ``module`` and return what its ``main()`` returns; a ``KeyboardInterrupt``
    during the import prints ``<prog>: interrupted`` on stderr and returns 130."""
    try:
        main = importlib.import_module(module).main
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return EXIT_INTERRUPTED
    return main()
