"""The real agent CLIs (installed by ``make agent-clis`` into ``.cache/agent-clis``) pointed at
the fake model API on 127.0.0.1 (test tool, not run-time code).

Each CLI is pointed at the fake API by its documented settings, and its own retries are
turned off so a failure case ends in seconds, not minutes:

- codex: a custom model provider in ``$CODEX_HOME/config.toml`` (``base_url``, ``env_key``,
  ``request_max_retries = 0``, ``stream_max_retries = 0``);
- claude: ``ANTHROPIC_BASE_URL``, ``ANTHROPIC_API_KEY``, ``CLAUDE_CODE_MAX_RETRIES=0``;
- gemini: ``GOOGLE_GEMINI_BASE_URL``, ``GEMINI_API_KEY``, ``GEMINI_MODEL``, and in
  ``~/.gemini/settings.json`` the API-key auth type and ``general.maxAttempts = 1``;
- opencode: an ``@ai-sdk/openai-compatible`` provider with ``baseURL`` in ``opencode.json``, its
  model priced there (``cost``) so opencode reports a cost as it does for a catalogued model
  (its session still retries 5 times, honouring ``retry-after-ms``, which the fake API
  keeps short).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI_DIR = ROOT / ".cache" / "agent-clis"
BIN_DIR = CLI_DIR / "node_modules" / ".bin"
FAKE_API = Path(__file__).resolve().with_name("fake_model_api.py")
# npm package and the version the tests and docs/runtimes.md were written against.
PACKAGES = {
    "codex": ("@openai/codex", "0.169.0"),
    "claude": ("@anthropic-ai/claude-code", "2.1.330"),
    "gemini": ("@google/gemini-cli", "0.61.0"),
    "opencode": ("opencode-ai", "1.18.33"),
}
GEMINI_MODEL = "gemini-2.5-pro"


def installed(cli: str) -> bool:
    """True when ``cli`` is installed in :data:`CLI_DIR`."""
    return (BIN_DIR / cli).exists()


def cli_path() -> str:
    """A PATH with the installed CLIs first."""
    return f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', os.defpath)}"


class FakeApi:
    """The fake model API as a child process; ``url(case)`` is a CLI's base URL for a case."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port_file = folder / "fake-api.port"
        self.log = folder / "fake-api.requests"
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def __enter__(self) -> FakeApi:  # noqa: PYI034 -- typing.Self needs Python 3.11
        self.proc = subprocess.Popen(
            [sys.executable, str(FAKE_API), "--port-file", str(self.port_file), "--log", str(self.log), "--lifetime", "3600"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not (self.port_file.exists() and self.port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the fake model API did not start")
            time.sleep(0.05)
        self.port = int(self.port_file.read_text())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def url(self, case: str) -> str:
        """Base URL answering ``case``; ``refused`` is a port nothing listens on."""
        if case == "refused":
            return "http://127.0.0.1:9/refused"
        return f"http://127.0.0.1:{self.port}/{case}"


def point_at(cli: str, home: Path, base_url: str) -> dict[str, str]:
    """Write ``cli``'s settings under ``home`` so it talks to ``base_url``; return the
    environment variables it needs on top."""
    if cli == "codex":
        codex_home = home / ".codex"
        codex_home.mkdir(parents=True, exist_ok=True)
        (codex_home / "config.toml").write_text(
            'model = "fake-model"\nmodel_provider = "fake"\n\n[model_providers.fake]\nname = "fake"\n'
            f'base_url = "{base_url}/v1"\nenv_key = "FAKE_API_KEY"\nwire_api = "responses"\n'
            "request_max_retries = 0\nstream_max_retries = 0\n"
        )
        return {"CODEX_HOME": str(codex_home), "FAKE_API_KEY": "fake-key"}
    if cli == "claude":
        return {
            "ANTHROPIC_BASE_URL": base_url,
            "ANTHROPIC_API_KEY": "sk-ant-fake",
            "CLAUDE_CODE_MAX_RETRIES": "0",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }
    if cli == "gemini":
        settings = home / ".gemini" / "settings.json"
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(json.dumps({"security": {"auth": {"selectedType": "gemini-api-key"}}, "general": {"maxAttempts": 1}}))
        tmp = home / "tmp"  # gemini leaves error reports in $TMPDIR
        tmp.mkdir(exist_ok=True)
        return {"GOOGLE_GEMINI_BASE_URL": base_url, "GEMINI_API_KEY": "fake-key", "GEMINI_MODEL": GEMINI_MODEL, "TMPDIR": str(tmp)}
    if cli == "opencode":
        config = home / ".config" / "opencode" / "opencode.json"
        config.parent.mkdir(parents=True, exist_ok=True)
        provider = {"npm": "@ai-sdk/openai-compatible", "name": "Fake", "options": {"baseURL": f"{base_url}/v1", "apiKey": "fake-key"},
                    "models": {"fake-model": {"name": "Fake model", "cost": {"input": 2, "output": 8, "cache_read": 0.5, "cache_write": 2.5}}}}
        config.write_text(json.dumps({"provider": {"fake": provider}, "model": "fake/fake-model", "autoupdate": False, "share": "disabled"}))
        return {"OPENCODE_CONFIG": str(config), "OPENCODE_DISABLE_AUTOUPDATE": "1", "OPENCODE_DISABLE_MODELS_FETCH": "1"}
    raise ValueError(f"unknown CLI {cli!r}")
