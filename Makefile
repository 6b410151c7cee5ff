# Switchyard — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
export LLAMA_SERVER_BIN ?= $(abspath ../shared/llama/llama-server)

.PHONY: install run test test-unit bench lock check-config clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check "uv==0.13.9"
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps --config-settings editable_mode=compat -e .
	@rm -f $(VENV)/.installed-* && touch $@

config/config.yaml:
	cp config/config.example.yaml config/config.yaml
	@echo "created config/config.yaml from config/config.example.yaml — edit it to add your models"

run: install config/config.yaml
	$(BIN)/switchyard db upgrade
	$(BIN)/switchyard serve

test: install
	$(BIN)/python -m pytest

test-unit: install
	$(BIN)/python -m pytest tests/unit -q

bench: install
	$(BIN)/python -m tests.bench.run $(BENCH_ARGS)

check-config: install config/config.yaml
	$(BIN)/switchyard config check config/config.yaml

lock: install
	$(BIN)/uv pip compile -q pyproject.toml --extra dev -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
