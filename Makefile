# One-command set-up: every target installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PATH := $(BIN):$(PATH)

.PHONY: install rabbitmq signing-tools browser-tools deploy-tools check-deploy docs definitions demo up test lint bench drills clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

## install: the virtual environment with hocba and everything its tests need
install: $(VENV)/.installed

## rabbitmq: make sure RabbitMQ answers at AMQP_URL (installs Debian's rabbitmq-server and starts it when missing),
## with its management API (enabled on a local broker: the broker users' provisioning path for remote brokers)
## and its Prometheus metrics on :15692 (rabbitmq_prometheus: the queue-depth rules, RabbitMQDown, the dashboard)
rabbitmq: install
	@$(BIN)/python -m hocba.infra reachable || { \
	  if ! command -v rabbitmq-server >/dev/null && [ ! -x /usr/sbin/rabbitmq-server ]; then \
	    echo "installing rabbitmq-server from Debian's packages"; \
	    $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server; \
	  fi; \
	  $(BIN)/python -m hocba.infra start; }
	@$(BIN)/python -m hocba.infra management || echo "without them, the management-API test of the broker users and the monitoring test fail under make test"

## signing-tools: SoftHSM2 (the PKCS#11 token the tests sign with), DejaVu fonts (Vietnamese in printed
## copies) and poppler-utils (pdftoppm, to look at a printed copy), from Debian's packages when missing
signing-tools:
	@missing=""; \
	  [ -e /usr/lib/softhsm/libsofthsm2.so ] && command -v softhsm2-util >/dev/null || missing="$$missing softhsm2"; \
	  [ -e /usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf ] || missing="$$missing fonts-dejavu-core"; \
	  command -v pdftoppm >/dev/null || missing="$$missing poppler-utils"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing$$missing from Debian's packages"; \
	    $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  fi

## browser-tools: Debian's chromium and chromium-driver (the same version), for the web page's browser test
## (tests/e2e/test_web_school_year.py drives /usr/bin/chromium headless through /usr/bin/chromedriver); installed when missing
browser-tools:
	@missing=""; \
	  [ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	  [ -x /usr/bin/chromedriver ] || missing="$$missing chromium-driver"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing$$missing from Debian's packages"; \
	    $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  fi

## deploy-tools: promtool (Debian's prometheus package) and, without the compose plugin, Debian's
## docker-compose, to check deploy/ without a container engine; installed when missing
deploy-tools:
	@missing=""; \
	  command -v promtool >/dev/null || missing="$$missing prometheus"; \
	  docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing$$missing from Debian's packages"; \
	    $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  fi

## check-deploy: Prometheus rules and their unit tests, scrape configs, compose, Kubernetes manifests, AsyncAPI documents
check-deploy: install deploy-tools
	cd deploy/prometheus && promtool check rules rules/*.yml && promtool test rules tests/*.test.yml
	HOCBA_REQUIRE_TOOLS=1 $(BIN)/python -m pytest tests/deploy -q -p no:cacheprovider

## docs: regenerate docs/asyncapi/<service>.json from the code with `faststream docs gen` (commit the result)
docs: install
	$(BIN)/python docs/asyncapi/generate.py

## definitions: regenerate deploy/rabbitmq/definitions.json (the broker users, without passwords) from hocba/broker.py
definitions: install
	$(BIN)/hocba broker definitions --output deploy/rabbitmq/definitions.json

## demo: a term end for one school of 1,000 students on a fresh local stack
demo: rabbitmq
	$(BIN)/hocba demo $(DEMO_ARGS)

## up: the whole system locally until Ctrl-C
up: rabbitmq
	$(BIN)/hocba up

## lint: architecture contracts (services never import each other; shared never imports services), ruff, mypy
lint: install
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/mypy

## test: every test layer (unit, wiring, integration, end to end) against real RabbitMQ and MongoDB-wire
test: rabbitmq signing-tools browser-tools deploy-tools lint
	HOCBA_REQUIRE_TOOLS=1 $(BIN)/python -m pytest tests -q -p no:cacheprovider

## bench: term-end throughput next to raw signing and raw insert baselines (N=10000 by default)
bench: rabbitmq
	$(BIN)/python bench/term_end.py $(BENCH_ARGS)

## drills: the failure drills at full size on a RabbitMQ node (and a three-node cluster) of their own (DRILL_ARGS: --records, --kills, --only)
drills: rabbitmq
	$(BIN)/python bench/drills.py $(DRILL_ARGS)

clean:
	rm -rf $(VENV) .hocba .pytest_cache
