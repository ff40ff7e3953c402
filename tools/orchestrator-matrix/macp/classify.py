"""Classify a failed quality gate (pure).

Categories and output patterns follow the Mosaic Stack guide's CI auto-diagnosis (seed 004):
lint, typecheck, test, build, security, unknown -- plus ``config``: the gate's command could
not be run at all (the shell's exit 127 "command not found" or 126 "not executable"), which
no change to the task's work can fix. Then the gate's name and command are looked at (a gate
called ``lint`` running ``ruff`` is lint whatever it prints), then its output.
"""

from __future__ import annotations

import re
from typing import get_args

from macp.model import GateClass

CATEGORIES: tuple[GateClass, ...] = get_args(GateClass)
# POSIX shells: 127 the command was not found, 126 it was found but could not be executed.
_CANNOT_RUN = frozenset({126, 127})

_BY_NAME: tuple[tuple[GateClass, re.Pattern[str]], ...] = (
    ("security", re.compile(r"(?i)secur|secret|bandit|audit|vuln|gitleaks|trivy|semgrep")),
    ("typecheck", re.compile(r"(?i)type.?check|\bmypy\b|\btsc\b|pyright|\btypes?\b")),
    ("lint", re.compile(r"(?i)lint|ruff|flake8|pylint|eslint|shellcheck|\bfmt\b|format|prettier|black")),
    ("test", re.compile(r"(?i)test|pytest|vitest|jest|unittest|\bspec\b|\bcheck\b")),
    ("build", re.compile(r"(?i)build|compile|\bmake\b|cargo|\bgcc\b|\bbundle\b|package")),
)
_BY_OUTPUT: tuple[tuple[GateClass, re.Pattern[str]], ...] = (
    ("lint", re.compile(r"(?i)eslint|lint.*error|ruff|flake8|\b[EFW]\d{3}\b")),
    ("typecheck", re.compile(r"(?i)type.*error|tsc.*error|mypy|incompatible type")),
    ("test", re.compile(r"(?i)test.*fail|fail.*test|vitest.*fail|assertionerror|\d+ failed")),
    ("build", re.compile(r"(?i)build.*fail|compilation.*fail|syntaxerror|cannot find module|undefined reference")),
    ("security", re.compile(r"(?i)\bsecret|security|vulnerab")),
)


def classify_gate_failure(name: str, command: str, output: str, exit_code: int | None = None) -> GateClass:
    """The category of a failed gate: one of :data:`CATEGORIES`."""
    if exit_code in _CANNOT_RUN:
        return "config"
    label = f"{name} {command}"
    for category, pattern in _BY_NAME:
        if pattern.search(label):
            return category
    for category, pattern in _BY_OUTPUT:
        if pattern.search(output):
            return category
    return "unknown"
