# One entry point for people and CI. `make run` and `make test` set everything up on a fresh
# machine (a virtual environment in .venv) and are safe to run again.
PYTHON ?= python3
VENV   ?= .venv
# The torch build to install. torch==2.13.0 is the CPU build on CI machines; on your own
# machine pick the build for your accelerator, e.g.
#   make run TORCH="torch --index-url https://download.pytorch.org/whl/cu128"
TORCH  ?= torch==2.13.0
BIN     = $(VENV)/bin
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1

.PHONY: setup run test bench bench-reward bench-ppo bench-playground screenshot package clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

# Builds the demo workspace the first time (a small model trained on CPU), then opens the GUI.
run: setup
	$(BIN)/rlhf-desk demo

test: setup
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/bench_pairs.py

# Needs TRL (a benchmark-only dependency) for the comparison.
bench-reward: setup
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python bench/bench_reward.py

bench-ppo: setup
	$(BIN)/python bench/bench_ppo.py

bench-playground: setup
	$(BIN)/python bench/bench_playground.py

# Re-renders docs/comparison-view.png from the demo workspace (offscreen).
screenshot: setup
	QT_QPA_PLATFORM=offscreen $(BIN)/python docs/make_screenshot.py docs/comparison-view.png

# A one-folder app in dist/rlhf-desk/ (PyInstaller, own venv in packaging/.build-venv with
# $(TORCH)); fails unless the built app passes its --smoke-test. See packaging/README.md.
package:
	TORCH="$(TORCH)" PYTHON="$(PYTHON)" packaging/build.sh

clean:
	rm -rf $(VENV) build dist *.egg-info
