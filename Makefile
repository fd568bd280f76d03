# hotdesk — the two commands a fresh Debian machine needs are `make up` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
APT_PACKAGES := sip-tester baresip-core kamailio nginx-light chromium espeak-ng sox openssl

.PHONY: up test check lint typecheck pytest deps system-deps venv bench prompts asyncapi clean

## up: run the whole system (embedded nats-server, demo directory)
up: venv
	$(BIN)/hotdesk up

## test: install everything the suite needs, then lint, type-check and run every test
test: deps check

check: lint typecheck pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy contracts/hotdesk_contracts ledger/hotdesk_ledger runtime/hotdesk_runtime \
		cli/hotdesk_cli services/sip-edge/hotdesk_sip_edge services/ivr/hotdesk_ivr \
		services/provisioner/hotdesk_provisioner services/presence/hotdesk_presence

# pytest exits 5 when it collected nothing: that must fail, and it does here.
pytest: venv
	$(BIN)/pytest

deps: system-deps venv

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

venv: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV) || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv && \
		$(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

## bench: run every benchmark; figures land in bench/results/
bench: deps
	$(BIN)/python -m bench

asyncapi: venv
	$(BIN)/python -m hotdesk_contracts.asyncapi > contracts/asyncapi.json

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
