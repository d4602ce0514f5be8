# Set-up and the two jobs the README names. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test test-all reports clean

install: $(VENV)/.installed

# torch is installed first and pinned: that release is a quick CPU build here, where an unpinned torch
# would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test,opacus]"
	touch $@

# The main job on the built-in demo data set (no data file, no network): train a model, then audit it
# with membership inference and with canaries; reports land in out/.
demo: install
	$(BIN)/privaudit train --demo --out out/demo.pt
	$(BIN)/privaudit info out/demo.pt
	$(BIN)/privaudit mia out/demo.pt --shadows 8 --report out/demo-mia
	$(BIN)/privaudit canary --demo --insert 12 --repeat 1,4,16 --report out/demo-canary

test: install
	$(BIN)/python -m pytest -q

# Also the slow, full-size runs on SNIPS from ../shared.
test-all: install
	$(BIN)/python -m pytest -q -m "slow or not slow"

# The example reports linked from the README: the same audit of a non-DP and a DP-SGD model on the
# built-in demo data set. Exit code 1 (a threshold crossed) is the expected outcome for the non-DP one.
reports: install
	for name in demo-nondp demo-dp; do \
	  $(BIN)/privaudit audit --config reports/$$name.toml --report reports/$$name --format junit \
	    --output reports/$$name/junit.xml || test $$? -eq 1 || exit 1; \
	done

clean:
	rm -rf $(VENV) out .pytest_cache
