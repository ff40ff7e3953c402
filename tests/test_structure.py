"""The run-time code's shape (issue 12): its modules import one another without a cycle.

Every import counts -- at the top, inside a function, or under ``TYPE_CHECKING`` -- because a
cycle hidden by a late import is still two modules that cannot be understood (or tested)
one without the other. A module that needs a collaborator it must not import declares
the part it uses as a ``typing.Protocol`` (``controller.recovery.Controller``).
"""

from __future__ import annotations

import ast

from conftest import TOOLS

PACKAGES = ("macp", "controller", "dispatcher", "protocol", "transport")


def module_imports() -> dict[str, set[str]]:
    """Run-time module -> the run-time modules it imports (packages themselves left out)."""
    modules = {f"{path.parent.name}.{path.stem}": path for package in PACKAGES for path in (TOOLS / package).glob("*.py") if path.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
        graph[name] = (imported & set(modules)) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        while stack:
            following = next(stack[-1], None)
            if following is None:
                done.add(path.pop())
                stack.pop()
            elif following in path:
                return [*path[path.index(following):], following]
            elif following not in done:
                path.append(following)
                stack.append(iter(sorted(graph[following])))
    return None


def test_the_run_time_modules_import_one_another_without_a_cycle():
    graph = module_imports()
    assert {"controller.mosaic_orchestrator", "controller.recovery", "protocol.validator", "protocol.fastcheck"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle_through_a_late_import():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
