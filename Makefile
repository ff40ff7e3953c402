# MACP: `make demo` runs the controller on a throwaway repository; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUNTIME_CODE := bin tools

.PHONY: demo test pytest lint conformance clean

$(STAMP): tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $(STAMP)

# The demo needs only python3 and git (no virtual environment). DEMO_DIR picks its folder.
demo:
	$(PYTHON) tools/orchestrator-matrix/demo/run_demo.py

test: lint pytest

pytest: $(STAMP)
	$(VPY) -m pytest tests

# ruff for style and bugs; vermin proves the run-time code still runs on Python 3.10.
lint: $(STAMP)
	$(VENV)/bin/ruff check --config tests/ruff.toml $(RUNTIME_CODE) tests
	$(VENV)/bin/vermin --quiet --no-tips --violations --target=3.10- --eval-annotations \
		$$(find $(RUNTIME_CODE) -name '*.py') bin/mosaic bin/mosaic-macp bin/mosaic-orchestrator-run

# The third-party conformance suites alone, with their pass counts.
conformance: $(STAMP)
	$(VPY) -m pytest tests/test_conformance_json_schema.py -q -rs

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
