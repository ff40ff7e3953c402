# MACP: `make demo` runs the controller on a throwaway repository; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUNTIME_CODE := bin tools

AGENT_CLIS := .cache/agent-clis
AGENT_CLI_PACKAGES := @openai/codex@0.169.0 @anthropic-ai/claude-code@2.1.330 @google/gemini-cli@0.61.0 opencode-ai@1.18.33

SYNAPSE := .cache/synapse
SYNAPSE_PACKAGE := matrix-synapse==1.163.2

.PHONY: demo test pytest lint conformance agent-clis synapse slurm live capture-runtimes bench clean

$(STAMP): tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $(STAMP)

# The demo needs only python3 and git (no virtual environment). DEMO_DIR picks its folder.
demo:
	$(PYTHON) tools/orchestrator-matrix/demo/run_demo.py

test: lint agent-clis synapse slurm pytest

pytest: $(STAMP)
	$(VPY) -m pytest tests

# The real agent CLIs for the live tests (tests/test_live_agent_clis.py), from the npm
# registry into an ignored folder, once. Without npm the live tests skip.
agent-clis: $(AGENT_CLIS)/.installed

$(AGENT_CLIS)/.installed:
	@if command -v npm >/dev/null 2>&1; then \
		mkdir -p $(AGENT_CLIS) && \
		npm install --prefix $(AGENT_CLIS) --no-audit --no-fund --no-save --loglevel=error $(AGENT_CLI_PACKAGES) && \
		touch $@; \
	else echo "npm not found: the live agent-CLI tests will be skipped"; fi

# A real Matrix homeserver for the transport tests (tests/test_transport.py): Synapse from
# PyPI in its own virtual environment (its pins stay apart from the test tools'), once.
synapse: $(SYNAPSE)/.installed

$(SYNAPSE)/.installed:
	$(PYTHON) -m venv $(SYNAPSE)
	$(SYNAPSE)/bin/python -m pip install --quiet --disable-pip-version-check $(SYNAPSE_PACKAGE)
	touch $@

# A real Slurm cluster for the Slurm tests (tests/slurm_harness.py): Debian's packages, as
# root, once; the tests start munged, slurmctld and two slurmd on loopback themselves.
# Elsewhere (not root, no apt-get) the Slurm tests skip, saying why.
SLURM_PACKAGES := slurm-wlm slurmctld slurmd slurm-client munge

slurm:
	@if command -v sbatch >/dev/null 2>&1 && [ -x /usr/sbin/slurmctld ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq --no-install-recommends $(SLURM_PACKAGES) >/dev/null 2>&1 \
		|| { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends $(SLURM_PACKAGES) >/dev/null 2>&1; } \
		|| echo "slurm: apt-get could not install $(SLURM_PACKAGES): the Slurm tests will be skipped"; \
	else echo "slurm: not installed and not root with apt-get: the Slurm tests will be skipped"; fi

# The benchmark suite (bench/run.py): MACP against peers (nq, jq) where they are installed;
# the table goes to the terminal and bench/latest.json. Targets live here, not in tests.
bench:
	@command -v nq >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get install -y -qq nq >/dev/null; } \
		|| echo "bench: nq is not installed (Debian: apt-get install nq); the rows that compare with it are skipped"
	$(PYTHON) bench/run.py --rounds 5 --json bench/latest.json

# Only the live tests against the real CLIs.
live: $(STAMP) agent-clis
	$(VPY) -m pytest tests/test_live_agent_clis.py -v

# Regenerate tests/data/runtimes/ from the real CLIs (a few minutes).
capture-runtimes: agent-clis
	$(PYTHON) tests/live/capture_runtimes.py

# ruff for style and bugs; mypy for types; vermin proves the run-time code still runs on Python 3.10.
lint: $(STAMP)
	$(VENV)/bin/ruff check --config tests/ruff.toml $(RUNTIME_CODE) tests bench
	$(VENV)/bin/mypy --config-file tests/mypy.ini -p macp -p controller -p dispatcher -p protocol -p transport
	$(VENV)/bin/vermin --quiet --no-tips --violations --target=3.10- --eval-annotations \
		$$(find $(RUNTIME_CODE) -name '*.py') bin/mosaic bin/mosaic-macp bin/mosaic-orchestrator-run

# The third-party conformance suites alone, with their pass counts.
conformance: $(STAMP)
	$(VPY) -m pytest tests/test_conformance_json_schema.py -q -rs

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
