"""Turn a runtime's config template into a concrete invocation (pure).

A runtime entry in config (``runtimes.<name>``) is ``{"command": [argv template],
"prompt": "stdin"|"arg"|"file", "env": {...}, "env_as_root": {...}, "output": format}``.
Placeholders ``{worktree}``, ``{prompt_file}`` and ``{prompt}`` are substituted inside argv
elements; nothing is ever passed through a shell. The brief goes by stdin (default) or file;
``arg`` is refused for prompts over Linux's 128 KiB single-argument limit (MAX_ARG_STRLEN).
``caps`` pass a task's remaining budget to a CLI that takes one (claude
``--max-budget-usd``, docs/usage.md).
``env_as_root`` is added only when MACP runs as root: Claude Code refuses
``--dangerously-skip-permissions`` as root unless ``IS_SANDBOX=1``
(``../shared/reference/agent-runtimes.md`` §2).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from macp.errors import MacpError
from macp.model import Config, RuntimeSpec
from macp.redact import REDACTED, redact, redact_assignment

MAX_ARG_BYTES = 131072 - 1
_PLACEHOLDER = re.compile(r"\{(?:worktree|prompt_file|prompt)\}")


@dataclass(frozen=True)
class Invocation:
    """argv to exec, the file to use as stdin (or None for /dev/null), extra environment."""

    argv: list[str]
    stdin_path: Path | None
    env: dict[str, str] = field(default_factory=dict)


def runtime_names(config: Config) -> list[str]:
    """Configured runtimes in config order."""
    return list(config.get("runtimes", {}))


def runtime_spec(config: Config, name: str) -> RuntimeSpec:
    """The config entry of runtime ``name``; MacpError naming the known ones otherwise."""
    runtimes = config.get("runtimes", {})
    if name not in runtimes:
        known = ", ".join(runtime_names(config)) or "none"
        raise MacpError(f"unknown runtime {name!r} (configured: {known})")
    return runtimes[name]


def build_invocation(
    spec: RuntimeSpec, *, worktree: str, prompt_file: Path, prompt_text: str, as_root: bool = False, caps: Mapping[str, str] | None = None
) -> Invocation:
    """Fill ``spec``'s template for one run; ``as_root`` adds ``env_as_root``; ``caps``
    (``{"max_cost_usd": "0.5"}``) add the runtime's ``caps`` arguments with ``{value}``
    filled, after the template (a cap the runtime takes no argument for is not passed).

    ``prompt_file`` holds ``prompt_text``. Raises :class:`MacpError` when the prompt must go
    as an argument but is too long for one.
    """
    mode = spec.get("prompt", "stdin")
    if mode == "arg" and len(prompt_text.encode("utf-8")) > MAX_ARG_BYTES:
        raise MacpError("prompt is longer than one command-line argument may be (128 KiB); use prompt 'stdin' or 'file'")
    values = {"{worktree}": worktree, "{prompt_file}": str(prompt_file), "{prompt}": prompt_text}
    argv = [_fill(part, values) for part in spec["command"]]
    for name, value in (caps or {}).items():
        argv += [part.replace("{value}", value) for part in (spec.get("caps") or {}).get(name, [])]
    if mode == "arg" and not any("{prompt}" in part for part in spec["command"]):
        argv.append(prompt_text)
    if mode == "file" and not any("{prompt_file}" in part for part in spec["command"]):
        argv.append(str(prompt_file))
    stdin_path = prompt_file if mode == "stdin" else None
    env = {**spec.get("env", {}), **(spec.get("env_as_root", {}) if as_root else {})}
    return Invocation(argv, stdin_path, env)


def running_as_root() -> bool:
    """True when this process runs as root (uid 0), when ``env_as_root`` applies."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def describe_invocation(invocation: Invocation) -> str:
    """The invocation as one shell-quoted line: ``VAR=value argv... < stdin``, secrets
    redacted (:func:`macp.redact.redact_assignment`; the argv through :func:`macp.redact.redact`)."""
    shown = {name: redact_assignment(name, value) for name, value in invocation.env.items()}
    env = " ".join(f"{name}={value if value == REDACTED else shlex.quote(value)}" for name, value in sorted(shown.items()))
    stdin = shlex.quote(str(invocation.stdin_path)) if invocation.stdin_path else "/dev/null"
    return " ".join(part for part in (env, redact(shlex.join(invocation.argv))) if part) + f" < {stdin}"


def _fill(part: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda match: values[match.group(0)], part)
