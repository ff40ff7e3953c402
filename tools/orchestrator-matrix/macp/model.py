"""Typed shapes of MACP's records where they are built in code (issue 12).

The JSON documents users read and edit (tasks, results, config) stay plain dicts checked
against ``protocol/*.schema.json`` at the edges; the records the controller builds and
passes between its pure core and its edges are typed here, so mypy checks every key.
"""

from __future__ import annotations

from typing import Literal, TypedDict

GateType = Literal["mechanical", "ai-review", "ci-pipeline"]


class GateSpec(TypedDict):
    """One quality gate to run (:func:`macp.gates.gate_specs`); ``timeout_seconds`` None:
    the task's timeout."""

    name: str
    command: str
    type: GateType
    timeout_seconds: int | None


class GateResult(TypedDict):
    """One entry of a result's ``gate_results`` (result.schema.json): how a gate ended.
    Times in seconds; ``exit_code`` None when the gate could not be started."""

    name: str
    command: str
    type: GateType
    exit_code: int | None
    passed: bool
    timed_out: bool
    started_at: str
    duration_seconds: float
    classification: str | None
    output_tail: str
    log: str
