# segjax: `make demo` trains and evaluates the paper's U-Net on ISBI 2012;
# `make test` installs the dev extra and runs the fast test suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
WORKDIR ?= runs/unet_isbi_demo
PYTEST_ARGS ?=

.PHONY: venv install install-dev demo test test-slow bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Re-install when the dependency lists change.
$(VENV)/.installed: $(PY) setup.py requirements.txt
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev-nodeps.txt
	$(PIP) install --quiet -e ".[dev]"
	$(PIP) install --quiet --no-deps -r requirements-dev-nodeps.txt
	touch $@

venv: $(PY)
install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(PY) -m segjax.main --config configs/unet_isbi.py --workdir $(WORKDIR)

test: install-dev
	$(PY) -m pytest -m "not slow" -q -n 2 $(PYTEST_ARGS)

test-slow: install-dev
	$(PY) -m pytest -m slow -q $(PYTEST_ARGS)

bench: install-dev
	$(PY) experiments/bench_conv.py

clean:
	rm -rf $(VENV) .pytest_cache
