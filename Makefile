# Every target sets itself up: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: test lint typecheck unit run bench synth clean chromium

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) chromium
	$(BIN)/pytest

# The dashboard's browser test drives Debian's chromium through Playwright (never a browser
# Playwright downloads). Installed here when missing, if we are root on a Debian-like system;
# otherwise the test skips with the reason (and fails under CI=true).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser test"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
	      || echo "apt-get could not install chromium: the browser test will not run"; \
	  else \
	    echo "chromium is missing and only root can install it (apt-get install chromium)"; \
	  fi; }

test: lint typecheck unit

# A laptop server on 127.0.0.1: targets on this machine (e.g. `timebridge demo-receiver`) may be
# called unless TIMEBRIDGE_ALLOWED_TARGET_NETWORKS says otherwise.
run: export TIMEBRIDGE_ALLOWED_TARGET_NETWORKS ?= 127.0.0.1/32
run: $(STAMP)
	$(BIN)/uvicorn service.main:app --host 127.0.0.1 --port 8000

bench: $(STAMP)
	$(BIN)/python bench/schedule_math.py

# Offline: no AWS credentials or Docker needed (Lambda bundles are built by infra/bundle.py).
CDK_ENV := PATH="$(CURDIR)/$(BIN):$$PATH" VIRTUAL_ENV="$(CURDIR)/$(VENV)" \
	JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=1 JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION=1 \
	CDK_DISABLE_VERSION_CHECK=1 CDK_DISABLE_CLI_TELEMETRY=true

synth: $(STAMP)
	$(CDK_ENV) npx --yes aws-cdk@2 synth --quiet --no-notices
	$(BIN)/cfn-lint --ignore-checks W3005 -- cdk.out/*.template.json

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis cdk.out build
