"""Redact known secret shapes from text before it reaches logs, events or results.

Shapes (documented in docs/security.md): GitHub tokens (``ghp_``/``gho_``/``ghu_``/``ghs_``/
``ghr_``, ``github_pat_``), OpenAI and Anthropic keys (``sk-``, ``sk-proj-``, ``sk-ant-``),
AWS access key ids (``AKIA``/``ASIA``) and ``aws_secret_access_key`` values, Slack tokens
(``xox?-``) and webhook URLs, Google API keys (``AIza``), Matrix access tokens (Synapse
``syt_``, MAS ``mct_``), PEM private-key blocks,
``Authorization:`` header values, and ``password=``/``secret:``/``token=``/``api_key=``
style assignments. The secret is replaced by ``[REDACTED]``; the label before it is kept so
the output still reads. Redacted text is also well-formed: a lone surrogate (half an emoji
from a cut stream) becomes U+FFFD.
"""

from __future__ import annotations

import re

from macp.jsontext import well_formed_text

REDACTED = "[REDACTED]"

_WHOLE_MATCH = [
    re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.DOTALL),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"),
    re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}"),
    re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+"),
    re.compile(r"\bAIza[0-9A-Za-z_-]{35}"),
    re.compile(r"\b(?:syt|mct)_[A-Za-z0-9_-]{10,}"),
]
_LABELLED = [
    re.compile(r"(?i)(\bauthorization\s*:\s*(?:bearer|basic|token)?\s*)[^\s\"',;]+"),
    re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)(\baws_secret_access_key\s*[=:]\s*)[^\s\"',;]+"),
    re.compile(
        r"(?i)(\b(?:password|passwd|pwd|secret|client_secret|token|access_token|api[_-]?key)"
        r"\s*[=:]\s*[\"']?)[^\s\"',;&]+"
    ),
]


# Names of environment variables whose values are secrets whatever they look like.
_SECRET_NAME = re.compile(r"(?i)(key|token|secret|passw(or)?d|credential|auth|cookie|session)")


def redact_assignment(name: str, value: str) -> str:
    """``value`` of the environment variable ``name`` as MACP may show it (a dry run's
    command line): ``[REDACTED]`` when the name says it holds a secret
    (``ANTHROPIC_API_KEY``, ``GH_TOKEN``, ``DB_PASSWORD``), else :func:`redact`."""
    return REDACTED if _SECRET_NAME.search(name) else redact(value)


def redact_value(value: object) -> object:
    """``value`` with :func:`redact` applied to every string inside it (dicts and lists too)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_value(item) for item in value]
    return value


def redact(text: str) -> str:
    """``text`` with every known secret shape replaced by ``[REDACTED]``, and well-formed
    (:func:`macp.jsontext.well_formed_text`: no lone surrogate, so it can be stored and printed)."""
    text = well_formed_text(text)
    for pattern in _WHOLE_MATCH:
        text = pattern.sub(REDACTED, text)
    for pattern in _LABELLED:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text
