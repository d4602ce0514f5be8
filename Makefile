# Set-up and the jobs the README names. Everything installs into .venv, pinned by constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo lint test test-all reports constraints clean

install: $(VENV)/.installed

# torch is installed first and pinned: that release is a quick CPU build here, where an unpinned torch
# would pull a multi-GB CUDA build. Every other package is pinned by constraints.txt, so a green CI
# can be reproduced (`make constraints` refreshes it).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[test,lint,opacus,examples,ray]"
	touch $@

# The main job on the built-in demo data set (no data file, no network): train a model, then audit it
# with membership inference and with canaries; reports land in out/.
demo: install
	$(BIN)/privaudit train --demo --out out/demo.pt
	$(BIN)/privaudit info out/demo.pt
	$(BIN)/privaudit mia out/demo.pt --shadows 8 --report out/demo-mia
	$(BIN)/privaudit canary --demo --insert 7 --repeat 1,4,16 --report out/demo-canary

# Style, types and the import-layer contract (tests/test_import_layers.py).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_import_layers.py

# The fast lane: tiny data sets, two workers (one per core; a test file stays on one worker, so its
# module fixtures are built once).
test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# Also the full-size runs: the whole demo data set, and SNIPS from ../shared.
test-all: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "slow or not slow"

# The example reports linked from the README: the same audit of a non-DP and a DP-SGD model on the
# built-in demo data set. Exit code 1 (a threshold crossed) is the expected outcome for the non-DP one.
reports: install
	for name in demo-nondp demo-dp; do \
	  $(BIN)/privaudit audit --config reports/$$name.toml --report reports/$$name --format junit \
	    --output reports/$$name/junit.xml || test $$? -eq 1 || exit 1; \
	done

# Re-pin every dependency to what a fresh install resolves today (torch stays at the line above).
constraints:
	rm -rf .venv-pin
	$(PYTHON) -m venv .venv-pin
	.venv-pin/bin/pip install -q --upgrade pip
	.venv-pin/bin/pip install -q torch==2.13.0
	.venv-pin/bin/pip install -q -e ".[test,lint,opacus,examples,ray]"
	{ echo "# Every dependency pinned to what CI installs (make install uses it; make constraints refreshes it)."; \
	  echo "# torch is pinned in the Makefile: the local CPU build, torch==2.13.0."; \
	  .venv-pin/bin/pip freeze --exclude-editable | grep -v "^torch=="; } > constraints.txt
	rm -rf .venv-pin

clean:
	rm -rf $(VENV) out .pytest_cache
