"""Quality gates: normalise their definitions and run them after a successful worker.

A gate is a shell command string, or ``{"name", "command", "type", "timeout_seconds"}``
(DESIGN.md "Quality gates"). A task's own ``quality_gates`` replace the config's. Every gate
runs (like pre-commit runs every hook) in the worktree, or the repository root for legacy
tasks; each is recorded like a pre-commit hook result.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

from macp.classify import classify_gate_failure
from macp.model import Config, GateObject, GateResult, GateSpec, Task
from macp.procs import Command, ProcessResult


@dataclass(frozen=True)
class GateLimits:
    """Per-run limits shared by every gate: default timeout (seconds), output tail and log
    sizes (bytes), and the SIGTERM-to-SIGKILL grace (seconds)."""

    timeout_seconds: int
    tail_bytes: int
    max_log_bytes: int
    grace_seconds: float


def gate_specs(task: Task, config: Config) -> list[GateSpec]:
    """The gates for ``task``: its own ``quality_gates`` if present, else the config's.

    Each is returned as ``{"name", "command", "type", "timeout_seconds"}`` (timeout None when
    unset); an unnamed gate is named after its command.
    """
    raw = task.get("quality_gates")
    if raw is None:
        raw = config.get("quality_gates", [])
    specs: list[GateSpec] = []
    for entry in raw:
        gate: GateObject = {"command": entry} if isinstance(entry, str) else entry
        specs.append(
            {
                "name": gate.get("name") or gate["command"][:60],
                "command": gate["command"],
                "type": gate.get("type", "mechanical"),
                "timeout_seconds": gate.get("timeout_seconds"),
            }
        )
    return specs


def gate_log_name(number: int, name: str) -> str:
    """The file name of gate ``number``'s log, ``gate-<n>-<name, sanitised>.log``."""
    return f"gate-{number}-{re.sub(r'[^A-Za-z0-9._-]+', '-', name)[:40]}.log"


def gate_steps(
    specs: list[GateSpec], *, cwd: Path, env: dict[str, str], log_dir: Path, limits: GateLimits
) -> Generator[Command, ProcessResult, list[GateResult]]:
    """Run every gate in ``specs``, one after another, as steps (:mod:`macp.pool`): yields
    each gate's :class:`~macp.procs.Command`, receives its result, and returns one
    ``gate_results`` entry per gate (result schema).

    A gate passes when it exits 0 within its timeout. Failed gates carry a
    ``classification`` (lint / typecheck / test / build / security / config / unknown).
    """
    results: list[GateResult] = []
    for number, spec in enumerate(specs, start=1):
        proc = yield Command(
            ["/bin/sh", "-c", spec["command"]],
            cwd,
            env,
            log_dir / gate_log_name(number, spec["name"]),
            spec["timeout_seconds"] or limits.timeout_seconds,
            tail_bytes=limits.tail_bytes,
            max_log_bytes=limits.max_log_bytes,
            grace_seconds=limits.grace_seconds,
        )
        passed = proc.exit_code == 0 and not proc.timed_out
        results.append(
            {
                "name": spec["name"],
                "command": spec["command"],
                "type": spec["type"],
                "exit_code": proc.exit_code,
                "passed": passed,
                "timed_out": proc.timed_out,
                "started_at": proc.started_at,
                "duration_seconds": proc.duration_seconds,
                "classification": None
                if passed
                else classify_gate_failure(spec["name"], spec["command"], proc.output_tail, proc.exit_code),
                "output_tail": proc.output_tail,
                "log": str(proc.log_path),
            }
        )
    return results
