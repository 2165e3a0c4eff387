# segjax: `make demo` trains and evaluates the paper's U-Net on ISBI 2012;
# `make test` installs the dev extra at the versions of constraints.txt and runs the fast test
# suite (the Colab notebooks included); `make test-latest` runs the tests of models, training,
# checkpoints, data and the notebooks on the newest jax/flax/optax/orbax/grain the package index
# serves, in a separate venv (.venv-latest) without PyTorch; `make test-export` exports models to
# ONNX and LiteRT and checks them against JAX, in a venv with TensorFlow (.venv-export).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := constraints.txt
WORKDIR ?= runs/unet_isbi_demo
PYTEST_ARGS ?=

# The newest jax needs Python 3.12+ (jax 0.11 dropped 3.11): the first interpreter found of
# python3.12 / python3.13 on PATH (pyenv's shims only count when they run), then pyenv's own.
PYTHON_LATEST ?= $(shell for p in python3.12 python3.13 \
	$$(ls -d $$HOME/.pyenv/versions/3.12*/bin/python3 $$HOME/.pyenv/versions/3.13*/bin/python3 \
	2>/dev/null); do $$p -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null \
	&& { command -v $$p; break; }; done)
VENV_LATEST := .venv-latest
PY_LATEST := $(VENV_LATEST)/bin/python
# The packages test-latest upgrades to the newest release the index serves.
LATEST_PACKAGES := jax jaxlib flax optax orbax-checkpoint grain
# What test-latest runs (with -m "not slow"): code whose behaviour the JAX stack's versions
# decide, without PyTorch, in a few minutes. Models: every registered model built and its
# parameters counted (`python -m segjax.models`' listing), every encoder's features by stride,
# a model's forward and backward pass, the paper U-Net's sizes (flax); training: the loop and
# exact resume, the step, FSDP over 8 devices, several processes and elastic resume (jax.jit,
# sharding, optax); checkpoints (orbax); data (grain); the seven notebooks end to end, which
# also train with bfloat16, remat, FSDP, volumes, panoptic and transformer models.
# Left out: PyTorch parity tests (torch is not installed there, and their torch side does not
# change with JAX); tracing each registered model's backward pass (one test per model, the
# constrained job runs them); configs, CLIs, run guards, inference, export, which reach the
# JAX stack through the code paths above and run in the constrained job.
REGISTRY_TESTS := tests/models/test_registry.py
LATEST_TESTS := $(REGISTRY_TESTS)::test_models_listing_prints_name_count_and_paper \
	$(REGISTRY_TESTS)::test_every_encoder_returns_features_keyed_by_stride \
	$(REGISTRY_TESTS)::test_a_small_model_runs_forward_and_backward tests/models/test_unet.py \
	tests/train/test_loop.py tests/train/test_step.py tests/train/test_checkpoint.py \
	tests/train/test_fsdp.py tests/train/test_sharding.py tests/train/test_elastic.py \
	tests/test_checkpoints.py tests/data tests/test_notebooks.py

# test-export: the export extra (TensorFlow, tf2onnx, onnx, onnxruntime, ai-edge-litert) at the
# versions of constraints-export.txt, on top of constraints.txt's (nothing there changes), without
# PyTorch. The fast run exports a representative subset of the canon (convolutions, transposed
# convolutions, attention, depthwise convolutions, pooling), No New-Net (3D) and the blocked
# case, and runs predict through the exported models; `make test-export-slow` every family at
# two sizes. The constrained job's venv has no TensorFlow: these tests skip there.
VENV_EXPORT := .venv-export
PY_EXPORT := $(VENV_EXPORT)/bin/python
CONSTRAINTS_EXPORT := constraints-export.txt
EXPORT_TESTS := tests/test_export.py tests/export

.PHONY: venv install install-dev demo test test-latest test-slow test-export test-export-slow \
	bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Re-install when the dependency lists change.
$(VENV)/.installed: $(PY) setup.py pyproject.toml requirements.txt $(CONSTRAINTS)
	$(PIP) install --quiet -c $(CONSTRAINTS) -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev-nodeps.txt
	$(PIP) install --quiet -c $(CONSTRAINTS) -e ".[dev]"
	$(PIP) install --quiet -c $(CONSTRAINTS) --no-deps -r requirements-dev-nodeps.txt
	touch $@

venv: $(PY)
install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(PY) -m segjax.main --config configs/unet_isbi.py --workdir $(WORKDIR)

test: install-dev
	$(PY) -m pytest -m "not slow" -q -n 2 $(PYTEST_ARGS)

$(PY_LATEST):
	@test -n "$(PYTHON_LATEST)" || { echo "make test-latest: no Python 3.12+ found (the newest \
	jax needs it); set PYTHON_LATEST=/path/to/python3.12" >&2; exit 1; }
	$(PYTHON_LATEST) -m venv $(VENV_LATEST)
	$(PY_LATEST) -m pip install --quiet --upgrade pip

# No constraints file: every dependency resolves to the newest release the index serves.
test-latest: $(PY_LATEST)
	$(PY_LATEST) -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[test]" \
		$(LATEST_PACKAGES)
	@$(PY_LATEST) -c "import sys, importlib.metadata as m; print('test-latest: Python', \
	sys.version.split()[0] + ',', ', '.join(f'{p} {m.version(p)}' for p in sys.argv[1:]))" \
		$(LATEST_PACKAGES) numpy
	$(PY_LATEST) -m pytest -m "not slow" -q -n 2 $(PYTEST_ARGS) $(LATEST_TESTS)

test-slow: install-dev
	$(PY) -m pytest -m slow -q $(PYTEST_ARGS)

$(PY_EXPORT):
	$(PYTHON) -m venv $(VENV_EXPORT)
	$(PY_EXPORT) -m pip install --quiet --upgrade pip

$(VENV_EXPORT)/.installed: $(PY_EXPORT) setup.py pyproject.toml requirements.txt $(CONSTRAINTS) \
		$(CONSTRAINTS_EXPORT)
	$(PY_EXPORT) -m pip install --quiet -c $(CONSTRAINTS) -c $(CONSTRAINTS_EXPORT) -e ".[test,export]"
	touch $@

test-export: $(VENV_EXPORT)/.installed
	$(PY_EXPORT) -m pytest -m "not slow" -q $(PYTEST_ARGS) $(EXPORT_TESTS)

test-export-slow: $(VENV_EXPORT)/.installed
	$(PY_EXPORT) -m pytest -m slow -q $(PYTEST_ARGS) $(EXPORT_TESTS)

bench: install-dev
	$(PY) experiments/bench_conv.py

clean:
	rm -rf $(VENV) $(VENV_LATEST) $(VENV_EXPORT) .pytest_cache
