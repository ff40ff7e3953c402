"""Typed shapes of MACP's records: tasks, results, config, gates (issue 12).

The documents users read and edit (tasks.json, results/<id>.json, config.json) are plain
JSON objects at run time, checked against ``protocol/*.schema.json`` where they are read and
written. Here each is a :class:`typing.TypedDict` with exactly the schema's properties, so
mypy checks every key the code reads or writes; ``tests/test_model.py`` proves the two agree
(property names, required names, JSON types, enums). A key a schema leaves optional is
``total=False`` here: read it with ``.get``.

The config's types are in :mod:`macp.config_model` (re-exported here).

The records the controller builds in code and never writes as they are (the decision after
an attempt, a worker's outcome) are dataclasses in :mod:`macp.decide`.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from macp.config_model import (  # re-exported: every record type is importable from here
    BudgetConfig as BudgetConfig,
)
from macp.config_model import (
    Config as Config,
)
from macp.config_model import (
    Dispatch as Dispatch,
)
from macp.config_model import (
    ExecutorConfig as ExecutorConfig,
)
from macp.config_model import (
    ExecutorKind as ExecutorKind,
)
from macp.config_model import (
    GateObject as GateObject,
)
from macp.config_model import (
    GateType as GateType,
)
from macp.config_model import (
    LandConfig as LandConfig,
)
from macp.config_model import (
    MacpConfig as MacpConfig,
)
from macp.config_model import (
    MatrixConfig as MatrixConfig,
)
from macp.config_model import (
    Price as Price,
)
from macp.config_model import (
    PricesConfig as PricesConfig,
)
from macp.config_model import (
    RiskConfig as RiskConfig,
)
from macp.config_model import (
    RuntimeSpec as RuntimeSpec,
)
from macp.config_model import (
    Signatures as Signatures,
)
from macp.config_model import (
    WorkerConfig as WorkerConfig,
)

TaskStatus = Literal["pending", "running", "gated", "completed", "failed", "escalated", "cancelled"]
FinalStatus = Literal["completed", "failed", "escalated"]
TaskType = Literal["coding", "deploy", "research", "review", "documentation", "infrastructure"]
FailureKind = Literal["worker", "gate", "timeout", "merge", "land"]
GateClass = Literal["lint", "typecheck", "test", "build", "security", "config", "unknown"]
FailureClass = GateClass | Literal["budget"]  # budget: the task's own cap was spent (docs/usage.md)
ProviderClass = Literal["misconfigured", "auth", "quota", "rate_limit", "overloaded", "network"]


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
    classification: GateClass | None
    output_tail: str
    log: str | None


class _FailureRequired(TypedDict):
    kind: FailureKind
    attempt: int


class Failure(_FailureRequired, total=False):
    """What went wrong in a counted attempt (task.schema.json ``$defs/failure``): the task's
    ``last_failure``, which the next attempt's guidance is written from."""

    exit_code: int | None
    gate: str | None
    classification: FailureClass
    output_tail: str
    reported_error: str
    conflicts: list[str]
    conflicts_with: str


class _ClaimRequired(TypedDict):
    pid: int
    host: str
    started_at: str


class Claim(_ClaimRequired, total=False):
    """The owner of a running task: the controller process that claimed it. ``token`` is
    unique per controller run; its children carry it as ``MACP_OWNER_TOKEN``."""

    token: str


class AcpState(TypedDict, total=False):
    """An acp task waiting for the completion report of the session it asked for."""

    spawn_file: str
    requested_at: str
    reported_exit_code: int | None
    reported_summary: str | None
    reported_at: str | None


Completeness = Literal["complete", "partial", "unavailable"]
CostSource = Literal["reported", "price_table"]


class Usage(TypedDict):
    """Tokens and cost of agent runs (task.schema.json ``$defs/usage``; :mod:`macp.usage`).
    Cached reads and cache writes are subsets of ``input_tokens``, reasoning a subset of
    ``output_tokens``; ``total_tokens`` is input plus output; ``cost_usd`` in US dollars."""

    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    total_tokens: int
    cost_usd: float | None
    cost_source: CostSource | None
    completeness: Completeness


EstimateSource = Literal["given", "calibrated"]
VarianceLevel = Literal["log", "flag", "learning", "critical"]


class Variance(TypedDict):
    """How a task's ``used_tokens`` (:func:`macp.usage.used_tokens`) compare with its
    ``estimate_tokens`` (:mod:`macp.estimates`): ``percent`` is (used - estimate) /
    estimate x 100, ``level`` the Mosaic Stack guide's threshold it falls in."""

    estimate_tokens: int
    used_tokens: int
    percent: float
    level: VarianceLevel


class Job(TypedDict):
    """The scheduler job a command of a task's attempt runs as (task ``job``,
    :mod:`macp.slurm`): ``executor``, job ``id``, ``name``, ``step`` (``worker`` or a gate's
    log name)."""

    executor: Literal["slurm"]
    id: str
    name: str
    step: str


class _RunRequired(TypedDict):
    attempt: int
    runtime: str


class Run(_RunRequired, total=False):
    """One run of a task's agent runtime: where it ran and how it ended (``at``: when it
    started, a timestamp), whether it ``counted`` as an attempt (not after a provider
    failure) and what it used."""

    exit_code: int | None
    timed_out: bool
    idle_timed_out: bool
    at: str
    counted: bool
    usage: Usage


class TaskChanges(TypedDict, total=False):
    """Every field of a task but its ``id``, each optional: what one change to a task sets
    (``Controller.update(task_id, changes)``, a :class:`macp.decide.Decision`'s changes)."""

    title: str
    description: str
    status: TaskStatus
    command: str
    type: TaskType
    dispatch: Dispatch
    runtime: str
    pin_runtime: bool
    worktree: str | None
    branch: str | None
    base_commit: str | None
    brief_path: str | None
    result_path: str | None
    issue: str | None
    pr: str | None
    landed_commit: str | None
    landed_at: str | None
    depends_on: list[str]
    priority: int
    exclusive_group: str | None
    max_attempts: int
    attempts: int
    timeout_seconds: int
    quality_gates: list[str | GateObject]
    not_before: str | None
    created_at: str | None
    updated_at: str | None
    started_at: str | None
    attempt_started_at: str | None
    completed_at: str | None
    claim: Claim | None
    last_failure: Failure | None
    acp: AcpState | None
    job: Job | None
    approved: bool
    risk_hold: str | None
    attempt_runtime: str | None
    runs: list[Run]
    usage: Usage
    waste: Usage
    estimate_tokens: int
    estimate_source: EstimateSource
    variance: Variance | None
    max_tokens: int
    max_cost_usd: float
    failed_runtimes: list[str]
    provider_failures: int
    error: str | None
    escalation_reason: str | None
    upstream_failed: bool
    stacked_on: list[str]
    uncommitted_work: str | None
    metadata: dict[str, Any]


class Task(TaskChanges):
    """One entry of tasks.json (task.schema.json). Only ``id`` is required: a task without
    ``status`` is pending (:func:`macp.lifecycle.status_of`), and the claim fills
    ``attempts`` and ``max_attempts``. Timestamps are RFC 3339 strings."""

    id: str


class WorkerRun(TypedDict, total=False):
    """When the final attempt's worker started (a timestamp) and how long it ran (seconds)."""

    started_at: str
    duration_seconds: float


class KeptCommit(TypedDict):
    """A commit no ref reached when its task ended, kept under ``ref``."""

    ref: str
    commit: str


class BuildOutput(TypedDict):
    """What a task's worktree held that was not work (:mod:`macp.worktree_contents`): ignored
    build output and files the gates left. ``paths`` names the first 100, ``count`` all of
    them, ``bytes`` their total size."""

    paths: list[str]
    count: int
    bytes: int


class ResultDetails(TypedDict, total=False):
    """Every field of a result but the three every result has (``task_id``, ``status``,
    ``completed_at``), each optional: what the code ending a task says about it
    (:func:`dispatcher.macp_dispatcher.collect_result`)."""

    failed_at: str | None
    exit_code: int | None
    attempt: int
    max_attempts: int
    runtime: str
    runs: list[Run]
    usage: Usage
    waste: Usage
    estimate_tokens: int | None
    variance: Variance | None
    dispatch: str
    worktree: str | None
    branch: str | None
    pr: str | None
    landed_commit: str | None
    landed_at: str | None
    base_commit: str | None
    commits: list[str]
    stacked_on: list[str]
    worker: WorkerRun | None
    summary: str
    files_changed: list[str]
    gate_results: list[GateResult]
    error: str | None
    escalation_reason: str | None
    timed_out: bool
    worktree_kept: str | None
    kept_commits: list[KeptCommit]
    build_output: BuildOutput | None
    output_tail: str
    metadata: dict[str, Any]


class Result(ResultDetails):
    """A task's result file, results/<id>.json (result.schema.json): written once when the
    task ends. ``completed_at`` is when it ended, whatever the status."""

    task_id: str
    status: FinalStatus
    completed_at: str
