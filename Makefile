# Two commands set everything up: `make install`, then `make test`.
VENV ?= .venv
PYTHON ?= python3
# torch is installed first, from TORCH_SPEC (pip's arguments: a requirement, and options such
# as --index-url) or TORCH_INDEX (an index URL on its own), only where the venv has none.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
SWEEP ?= tiny
STORAGE ?= runs
RESULTS ?= results
PY ?= $(VENV)/bin/python

.PHONY: install test test-slow test-gpu lint format smoke sweep study adaptive adaptive-suggest adaptive-optuna simulate plan plots bench gpu-check clean

install:
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	# Install torch first (the CPU wheel by default) so the project's `torch` range is
	# already satisfied and pip never pulls a CUDA build. TORCH_SPEC is left unquoted: its
	# words are pip's arguments (quote a requirement with < or > inside it).
	$(VENV)/bin/python -c "import torch" 2>/dev/null || \
	  $(VENV)/bin/python -m pip install $(TORCH_SPEC) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(VENV)/bin/python -m pip install -e ".[all,dev]"

test:
	$(PY) -m pytest -q

test-slow:
	$(PY) -m pytest -q -m slow

# The tests marked gpu (skipped without a CUDA device); `make gpu-check` is the GPU path's
# full check. Markers ray and distributed select the Ray and data-parallel tests likewise.
test-gpu:
	$(PY) -m pytest -q -m gpu -rs

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format:
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

smoke:
	$(VENV)/bin/dualsweep train --config sweeps/smoke.yaml --alpha 0.5 --repetitions 4 --out runs/smoke-run --force

# Run (or resume) a sweep: embedded Ray by default, a cluster when RAY_ADDRESS is set.
sweep:
	$(VENV)/bin/dualsweep sweep sweeps/$(SWEEP).yaml --storage $(STORAGE) --results $(RESULTS)

# The committed laptop study: the 50-point tiny sweep, its seed and allocation companions
# (about 30 minutes in all on 2 cores), then every figure, table and results/tiny/REPORT.md.
study:
	$(VENV)/bin/dualsweep sweep sweeps/tiny.yaml --storage $(STORAGE)
	$(VENV)/bin/dualsweep sweep sweeps/tiny-seeds.yaml --storage $(STORAGE)
	$(VENV)/bin/dualsweep sweep sweeps/tiny-allocation.yaml --storage $(STORAGE)
	$(VENV)/bin/dualsweep plots tiny --results $(RESULTS)

# The adaptive designs against the tiny grid (about 45 minutes on 2 cores), then
# results/tiny-adaptive/REPORT.md. Suggest rounds: round N's sweep file is written once to
# sweeps/tiny-suggest-rounds/ and kept, so a re-run resumes (or, finished, trains nothing).
ADAPTIVE_ROUNDS ?= 6
ADAPTIVE_BUDGET ?= 6
adaptive: adaptive-suggest adaptive-optuna
	$(PY) -m analysis.adaptive --results $(RESULTS)

# The designs against two known truths, no training (results/simulated-designs/REPORT.md;
# `make adaptive` quotes it). SIM_NOISE and SIM_SEED_EFFECT: the tiny study's own noise in
# final_held_out_ar_loss, from its seeds companion pooled over R (results/tiny/REPORT.md,
# section 6): paired SD 0.126, so a run's own part 0.126 / sqrt 2 = 0.09; single-run SD
# 0.109, so the part shared by every alpha at one seed and R sqrt(0.109^2 - 0.09^2) = 0.06.
SIM_NOISE ?= 0.09
SIM_SEED_EFFECT ?= 0.06
SIM_STUDIES ?= 10
simulate:
	$(VENV)/bin/dualsweep simulate --truth dualsweep.analysis.truths:paper_shaped \
	  dualsweep.analysis.truths:flat --noise $(SIM_NOISE) --seed-effect $(SIM_SEED_EFFECT) \
	  --studies $(SIM_STUDIES) --designs grid checkerboard suggest optuna --sweep tiny \
	  --out $(RESULTS)/simulated-designs

adaptive-suggest:
	$(VENV)/bin/dualsweep sweep sweeps/tiny-suggest.yaml --storage $(STORAGE) --results $(RESULTS)
	@mkdir -p sweeps/tiny-suggest-rounds; previous=sweeps/tiny-suggest.yaml; \
	for i in $$(seq 1 $(ADAPTIVE_ROUNDS)); do \
	  round=sweeps/tiny-suggest-rounds/round-$$i.yaml; \
	  test -f $$round || $(VENV)/bin/dualsweep suggest $$previous --budget $(ADAPTIVE_BUDGET) \
	    --out $$round --results $(RESULTS) || exit 1; \
	  $(VENV)/bin/dualsweep sweep $$round --storage $(STORAGE) --results $(RESULTS) || exit 1; \
	  previous=$$round; \
	done

adaptive-optuna:
	$(VENV)/bin/dualsweep sweep sweeps/tiny-optuna.yaml --storage $(STORAGE) --results $(RESULTS)

# PLAN_ARGS: e.g. "--gpus 16 --time 48" for the wall-clock, job submissions and storage.
PLAN_ARGS ?=
plan:
	$(VENV)/bin/dualsweep plan sweeps/$(SWEEP).yaml $(PLAN_ARGS)

# Every figure and table of a sweep from its Parquet tables (no Ray, no torch).
plots:
	$(VENV)/bin/dualsweep plots $(SWEEP) --results $(RESULTS)

# Speed as ratios against baselines measured in the same run; rewrites benchmarks/RESULTS.md.
bench:
	$(PY) -m benchmarks.run

# The GPU check, in stages (README, "Performance"): JSON, markdown and log into OUT after every
# stage. No venv needed: `make gpu-check PY=python3` runs it with any python3 holding torch
# and Lightning; DEVICE=cpu is the rehearsal (about two minutes here, tests/test_gpu_check.py).
OUT ?= runs/gpu-check
DEVICE ?= cuda
gpu-check:
	PYTHONPATH=.$(if $(PYTHONPATH),:$(PYTHONPATH)) $(PY) -m benchmarks.gpu_check --device $(DEVICE) --out $(OUT)

clean:
	rm -rf runs .pytest_cache .ruff_cache
