"""What one run of an agent runtime means for its task (pure): a provider failure, an error
the runtime reported, and the agent's own summary (DESIGN.md "The task lifecycle"; issue 8).

The controller gives it the run's exit code, whether it was cut short for silence, and the
end of its output; the rules live in :func:`macp.providers.classify_run` and the reading of
each CLI's structured output in :mod:`macp.runtime_output`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from macp.model import Config, Signatures
from macp.providers import ProviderFailure, classify_run
from macp.runtime_output import read_run

SUMMARY_MAX_CHARS = 2000


@dataclass(frozen=True)
class AgentVerdict:
    """``provider_failure``: the run failed for a provider reason (the attempt does not count),
    or None. ``reported_error``: an error the runtime reported in its structured output that
    is no provider failure (the attempt failed even if it exited 0), or None. ``summary``:
    the agent's final message, bounded, or None."""

    provider_failure: ProviderFailure | None
    reported_error: str | None
    summary: str | None


def signatures(config: Config, runtime: str) -> Signatures:
    """Provider-failure signatures of ``runtime``: the shared ones plus its own."""
    shared = config["macp"].get("provider_signatures") or {}
    spec = config["runtimes"].get(runtime)
    own = (spec.get("failures") if spec else None) or {}
    return {kind: [*shared.get(kind, []), *own.get(kind, [])] for kind in {*shared, *own}}


def judge_agent_run(
    config: Config, runtime: str, *, exit_code: int | None, idle_timed_out: bool, output: str, now: datetime, local_zone: tzinfo | None = None
) -> AgentVerdict:
    """Judge one run of ``runtime`` from its ``output`` (the end of its log); ``now`` and
    ``local_zone`` (default: the machine's) anchor the reset times it names."""
    spec = config["runtimes"].get(runtime)
    report = read_run(output, spec.get("output", "text") if spec else "text")
    failure = classify_run(signatures(config, runtime), exit_code=exit_code, idle_timed_out=idle_timed_out, report=report, now=now, local_zone=local_zone)
    reported = report.error if failure is None and report.error is not None else None
    summary = bounded(report.final_message.strip(), SUMMARY_MAX_CHARS) if report.final_message and report.final_message.strip() else None
    return AgentVerdict(failure, reported, summary if reported is None and failure is None else None)


def bounded(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip() + "\u2026"
