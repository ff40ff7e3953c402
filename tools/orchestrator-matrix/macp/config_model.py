"""Typed shapes of config.json (config.schema.json) and of the quality gates a task or the
config names: the half of :mod:`macp.model` that describes configuration, re-exported there.
``tests/test_model.py`` proves each agrees with its schema.
"""

from __future__ import annotations

from typing import Literal, TypedDict

Dispatch = Literal["yolo", "acp", "exec"]
GateType = Literal["mechanical", "ai-review", "ci-pipeline"]


class _GateObjectRequired(TypedDict):
    command: str


class GateObject(_GateObjectRequired, total=False):
    """A quality gate written as an object (task.schema.json ``$defs/gate``): only
    ``command`` is required; ``timeout_seconds`` defaults to the task's timeout."""

    name: str
    type: GateType
    timeout_seconds: int


# Provider-failure classes -> case-insensitive regular expressions (config.schema.json $defs/signatures).
Signatures = dict[str, list[str]]


class _RuntimeSpecRequired(TypedDict):
    command: list[str]


class RuntimeSpec(_RuntimeSpecRequired, total=False):
    """One agent runtime of the registry (config.schema.json ``$defs/runtime``): its argv
    template and how the brief reaches it, its environment, its failure signatures and the
    structured output MACP reads (docs/runtimes.md)."""

    prompt: Literal["stdin", "arg", "file"]
    env: dict[str, str]
    failures: Signatures
    output: Literal["codex-json", "claude-stream-json", "gemini-stream-json", "opencode-json", "text"]
    env_as_root: dict[str, str]
    idle_timeout_seconds: int
    first_output_timeout_seconds: int
    max_parallel: int
    model: str
    caps: dict[str, list[str]]


class MatrixConfig(TypedDict):
    """config ``matrix``: where events are delivered (docs/transport.md). Times in seconds."""

    homeserver: str
    room_id: str
    token_env: str
    round_deadline_seconds: float
    final_round_deadline_seconds: float
    mention_user_ids: list[str]
    allow_plaintext_in_encrypted_room: bool
    late_after_seconds: float


class RiskConfig(TypedDict, total=False):
    """config ``macp.risk``: the risk hold (docs/security.md)."""

    enabled: bool
    dispatch: list[Dispatch]
    lexicon: list[str]


class MacpConfig(TypedDict):
    """config ``macp``: worktrees, results, retries and provider failures. Times in seconds,
    sizes in bytes."""

    worktree_base: str
    default_dispatch: Dispatch
    default_runtime: str
    cleanup_worktrees: bool
    brief_dir: str
    result_dir: str
    base_ref: str | None
    output_tail_bytes: int
    max_log_bytes: int
    kill_grace_seconds: float
    retry_backoff_seconds: float
    retry_backoff_max_seconds: float
    provider_cooldown_seconds: float
    max_provider_failures: int
    provider_signatures: Signatures
    risk: RiskConfig
    remove_ignored_files: bool
    keep_ignored: list[str]
    build_output_folders: list[str]
    stack_dependencies: bool
    commit_leftovers: bool
    auto_land: bool
    learnings_file: str


class WorkerConfig(TypedDict):
    """config ``worker``: the defaults of every task (times in seconds)."""

    runtime: str
    timeout_seconds: int
    max_attempts: int
    idle_timeout_seconds: int
    first_output_timeout_seconds: int
    max_parallel: int
    selection: Literal["success", "cost"]


class BudgetConfig(TypedDict):
    """config ``budget``: what may be spent, checked before a task is claimed (docs/usage.md).
    US dollars and used tokens (:func:`macp.usage.used_tokens`); None: no limit."""

    daily_usd: float | None
    per_run_usd: float | None
    task_max_cost_usd: float | None
    task_max_tokens: int | None


ExecutorKind = Literal["local", "slurm"]


class ExecutorConfig(TypedDict):
    """config ``executor``: where attempts run (:mod:`macp.executor`, docs/scale-out.md):
    ``kind`` ``local`` or ``slurm``; for Slurm the ``partition`` (None: the cluster's default),
    extra ``sbatch_args``, ``poll_seconds`` between ``squeue`` rounds and
    ``heartbeat_seconds`` between a job's heartbeats."""

    kind: ExecutorKind
    partition: str | None
    sbatch_args: list[str]
    poll_seconds: float
    heartbeat_seconds: float


class LandConfig(TypedDict):
    """config ``land``: the merge queue (``mosaic macp land``, docs/landing.md): the target
    branch (None: the one checked out), ``merge`` or ``squash``, the gates run on the
    combination (None: ``quality_gates``) and how many tasks are tested together."""

    onto: str | None
    strategy: Literal["merge", "squash", "rebase"]
    gates: list[str | GateObject] | None
    batch: int


class Price(TypedDict, total=False):
    """USD per million tokens of one runtime or model (config ``prices``, :mod:`macp.prices`)."""

    input: float
    cached_input: float
    output: float
    models: dict[str, Price]


class PricesConfig(TypedDict, total=False):
    """config ``prices``: the price table for runtimes that report no cost; ``example``
    marks the shipped figures, ``as_of`` their date."""

    as_of: str | None
    example: bool
    runtimes: dict[str, Price]


class Config(TypedDict):
    """The effective config (config.schema.json): the template's defaults with the user's
    config.json merged over them (:func:`macp.config.load_config`), so every key is present;
    the template is the one place defaults live. A runtime set to ``null`` by the user is
    gone from ``runtimes``."""

    enabled: bool
    transport: Literal["matrix", "none"] | None
    matrix: MatrixConfig
    macp: MacpConfig
    worker: WorkerConfig
    quality_gates: list[str | GateObject]
    runtimes: dict[str, RuntimeSpec]
    budget: BudgetConfig
    prices: PricesConfig
    executor: ExecutorConfig
    land: LandConfig

