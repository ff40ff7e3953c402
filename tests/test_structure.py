"""The run-time code's shape: its modules import one another without a cycle (issue 12), and
only downwards through its layers (issue 24).

Every import counts -- at the top, inside a function, or under ``TYPE_CHECKING`` -- because a
cycle hidden by a late import is still two modules that cannot be understood (or tested)
one without the other. A module that needs a collaborator it must not import declares
the part it uses as a ``typing.Protocol`` (``controller.recovery.Controller``).

The layers, lowest first: ``protocol`` (the schemas); the pure core (:data:`CORE`: it decides
-- what runs next, what an ending means, what a run used -- and owns the task's vocabulary;
it starts no process and touches no file, lock or socket); the edges (the rest of
``macp``: files, git, processes, locks, the clock's users); ``dispatcher`` and
``transport``; ``controller``. A module imports its own layer and those below, never one
above: so the core can be read, and tested, without anything that has side effects.
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


CORE = frozenset({
    "macp.admission", "macp.admission_index", "macp.budget", "macp.classify", "macp.clock", "macp.decide", "macp.dependencies",
    "macp.config_model", "macp.errors", "macp.estimates", "macp.landing", "macp.gfm_table", "macp.guidance", "macp.jsontext", "macp.lifecycle", "macp.model",
    "macp.naming", "macp.prices", "macp.providers", "macp.redact", "macp.risk", "macp.runtime_output", "macp.scheduler",
    "macp.selection", "macp.settings", "macp.taskdoc", "macp.textview", "macp.usage", "macp.usage_report", "macp.verdicts",
})
EDGES = frozenset({
    "macp.archive", "macp.cancellation", "macp.capture", "macp.cliutil", "macp.config", "macp.events", "macp.fsio", "macp.gates", "macp.gitops", "macp.journal",
    "macp.executor", "macp.launch", "macp.layout", "macp.learnings", "macp.locks", "macp.outbox", "macp.pool", "macp.procs", "macp.proctree",
    "macp.recording", "macp.runtime_state", "macp.runtimes", "macp.signals", "macp.slurm", "macp.slurm_handle", "macp.slurm_wrapper", "macp.statecheck", "macp.taskstore",
    "macp.worktree_contents",
})
# Standard-library modules that do I/O the core must not do itself (the clock is read in one
# place, macp.clock, which the core may use).
SIDE_EFFECTS = frozenset({"subprocess", "fcntl", "socket", "shutil", "tempfile", "signal", "select", "urllib", "http", "selectors", "threading"})


def layer(module: str) -> int:
    """The layer of a run-time module: 0 protocol, 1 the pure core, 2 the edges, 3 the
    dispatcher and the transport, 4 the controller."""
    package = module.split(".")[0]
    if package == "macp":
        return 1 if module in CORE else 2
    return {"protocol": 0, "dispatcher": 3, "transport": 3, "controller": 4}[package]


def test_every_macp_module_is_placed_in_the_core_or_at_the_edges():
    placed = {name for name in module_imports() if name.startswith("macp.")}
    assert placed == CORE | EDGES, f"place {sorted(placed - CORE - EDGES)} (and drop {sorted((CORE | EDGES) - placed)})"


def test_every_import_goes_down_the_layers_or_stays_in_its_own():
    upward = sorted(f"{module} ({layer(module)}) imports {imported} ({layer(imported)})"
                    for module, imports in module_imports().items() for imported in imports if layer(imported) > layer(module))
    assert not upward, "\n".join(upward)


def test_the_pure_core_does_no_io_of_its_own():
    found = []
    for module in sorted(CORE):
        tree = ast.parse((TOOLS / "macp" / f"{module.split('.')[1]}.py").read_text())
        for node in ast.walk(tree):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{module} imports {name}" for name in names if name.split(".")[0] in SIDE_EFFECTS]
    assert not found, found


def test_the_layer_check_finds_an_upward_import():
    assert layer("macp.decide") < layer("dispatcher.macp_dispatcher") < layer("controller.mosaic_orchestrator")
    assert layer("macp.gitops") > layer("macp.decide")


def test_the_cycle_finder_finds_a_cycle_through_a_late_import():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


MAX_MODULE_LINES = 430  # "no module over ~400 lines" (issue 24): one job per module


def test_no_run_time_module_grows_past_about_400_lines():
    sizes = {f"{path.parent.name}.{path.stem}": len(path.read_text().splitlines()) for package in PACKAGES for path in (TOOLS / package).glob("*.py")}
    over = {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert not over, f"split these by job: {over}"
