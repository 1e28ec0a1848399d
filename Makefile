# drnngen — every install step lives here (or in scripts/ called from here).
# `make demo` and `make test` work on a fresh machine and are idempotent.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DRNNGEN := $(VENV)/bin/drnngen
INSTALLED := $(VENV)/.installed
export DRNNGEN_CACHE ?= $(HOME)/.cache/drnngen

.PHONY: help setup system-deps caffe venv demo test test-fast fuzz lint golden bench bench-tuners quality doctor clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup: system-deps venv caffe  ## everything: Debian packages, virtualenv, Caffe build

system-deps:  ## Debian packages Caffe and drnngen need (apt-get, root)
	bash scripts/system_deps.sh

# Caffe is compiled against the venv's Python and numpy, so the venv comes first.
# CAFFE_FLAGS=--gpu builds with CUDA (needs nvcc); see scripts/build_caffe.sh --help.
caffe: system-deps venv  ## build pycaffe into $(DRNNGEN_CACHE)/caffe-<version>-cpu (skipped when complete)
	bash scripts/build_caffe.sh --python $(PY) $(CAFFE_FLAGS)

venv: $(INSTALLED)  ## virtualenv with drnngen installed editable

# Editable install in setuptools' default (lenient) mode. drnngen/codegen and
# drnngen/tuner are symlinks to the top-level folders, so the source tree is the
# installed layout: mypy and ruff read it directly (no import hook to follow),
# pytest imports the checkout, and new modules need no reinstall. (A
# package_dir mapping instead would need `editable_mode=strict` for mypy, and
# break imports from the repository root, where drnngen/ lacks codegen/.)
$(INSTALLED): setup.py setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,serve]'
	touch $@

DEMO := out/demo
DEMO_MINUTES ?= 2
# The whole pipeline on a bundled example: a seeded synthetic log → Caffe HDF5
# → the paper's net for it → GenTune in Caffe for DEMO_MINUTES with the
# data-aware defaults (no --config/--space) → test-split evaluation against
# POP/S-POP/item-kNN/SKNN/V-SKNN → report with plots. Re-running replaces
# out/demo (the tuner's cache makes the re-run quicker).
demo: setup  ## run the whole pipeline on a bundled synthetic example (out/demo)
	$(DRNNGEN) synth --sessions 4000 --seed 7 --items 300 -o $(DEMO)/logs --force
	$(DRNNGEN) prepare $(DEMO)/logs/clicks.dat --buys $(DEMO)/logs/buys.dat --users $(DEMO)/logs/users.csv \
		--format yoochoose --max-pages 400 --max-items 60 -o $(DEMO)/data --force
	$(DRNNGEN) build examples/paper.yaml --data $(DEMO)/data -o $(DEMO)/paper-net
	$(DRNNGEN) draw examples/small.yaml -o $(DEMO)/small-net.svg
	rm -rf $(DEMO)/run
	$(DRNNGEN) tune --data $(DEMO)/data --time-budget $(DEMO_MINUTES) --population 6 --seed 7 -o $(DEMO)/run
	$(DRNNGEN) evaluate $(DEMO)/run --data $(DEMO)/data --k 1,5,10,20
	$(DRNNGEN) report $(DEMO)/run -o $(DEMO)/run/report
	@echo "demo done: see $(DEMO)/run/report/report.md"

test: setup  ## the whole suite (the README's test command; CI runs it)
	$(PY) -m pytest

# Runs on a machine without Caffe (a test that needs it is marked `caffe`); CI runs it first.
test-fast: venv  ## tests that need no Caffe build (no `caffe` or `slow` marker)
	$(PY) -m pytest -m "not caffe and not slow"

# Issue #13's promise over thousands of hostile inputs (tests/test_fuzz_*.py): one `error:`
# line and exit 2, or success, and nothing written outside -o. Prints the tally per command
# and category, and writes it to out/fuzz/tally.md. FUZZ_MARKERS="" adds the slow and Caffe cases.
FUZZ_MARKERS ?= not slow and not caffe
fuzz: venv  ## the fuzz suite with its tally (out/fuzz/tally.md)
	$(PY) -m pytest -q -p tests.fuzz_tally --fuzz-tally out/fuzz/tally.md -m "$(FUZZ_MARKERS)" \
		tests/test_fuzz_config.py tests/test_fuzz_data.py tests/test_fuzz_run.py tests/test_fuzz_recs.py \
		tests/test_fuzz_serve.py

lint: venv  ## ruff + mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

golden: venv  ## rewrite tests/golden/ on purpose (review the diff!)
	$(PY) -m tests.golden_tool

bench: setup  ## speed/memory figures and ratios
	$(PY) -m benchmarks

TUNER_BUDGET ?= 12
TUNER_SEEDS ?= 3
TUNER_ITERS ?= 270
# literal / elitist / literal + successive halving / random search / Optuna TPE with its
# successive-halving pruner, each for TUNER_BUDGET Caffe solver seconds per seed on one
# synthetic dataset and space (about 25 x TUNER_BUDGET x TUNER_SEEDS s of wall time on
# a loaded 2-core machine: 15 minutes at the defaults). Optuna is the `bench` extra, installed here only.
bench-tuners: setup  ## tuners at equal solver seconds: table + plot in out/bench-tuners (TUNER_BUDGET=12 s per run)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) -m benchmarks.bench_tuners --budget $(TUNER_BUDGET) --seeds $(TUNER_SEEDS) --iters $(TUNER_ITERS) \
		--out out/bench-tuners

QUALITY_MINUTES ?= 15
# DRNN vs POP/S-POP/item-kNN/SKNN/V-SKNN at Recall@20 and MRR@20 on MovieLens-100k
# (fetched from the recbole wheel into $(DRNNGEN_CACHE)/datasets) and a synthetic shop
# log (purchase and next-item): prepare, tune --time-budget, evaluate, per log. Three
# logs, so about 3 x QUALITY_MINUTES. QUALITY_TUNE_ARGS is appended to each `tune`.
quality: setup  ## DRNN vs every baseline on real and synthetic logs (out/quality; QUALITY_MINUTES=15 per log)
	$(PY) -m benchmarks.bench_quality --minutes $(QUALITY_MINUTES) --out out/quality

doctor: venv  ## where is Caffe, what can it do
	$(DRNNGEN) doctor

clean:  ## remove build outputs (keeps the Caffe cache)
	rm -rf build dist *.egg-info out .pytest_cache .mypy_cache .ruff_cache
