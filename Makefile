# One-command set-up: every target installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PATH := $(BIN):$(PATH)

.PHONY: install rabbitmq demo up test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

## install: the virtual environment with hocba and everything its tests need
install: $(VENV)/.installed

## rabbitmq: make sure RabbitMQ answers at AMQP_URL (installs Debian's rabbitmq-server and starts it when missing)
rabbitmq: install
	@$(BIN)/python -m hocba.infra reachable || { \
	  if ! command -v rabbitmq-server >/dev/null && [ ! -x /usr/sbin/rabbitmq-server ]; then \
	    echo "installing rabbitmq-server from Debian's packages"; \
	    $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server; \
	  fi; \
	  $(BIN)/python -m hocba.infra start; }

## demo: a term end for one school of 1,000 students on a fresh local stack
demo: rabbitmq
	$(BIN)/hocba demo $(DEMO_ARGS)

## up: the whole system locally until Ctrl-C
up: rabbitmq
	$(BIN)/hocba up

## lint: architecture contracts (services never import each other; shared never imports services)
lint: install
	$(BIN)/lint-imports

## test: every test layer (unit, wiring, integration, end to end) against real RabbitMQ and MongoDB-wire
test: rabbitmq lint
	$(BIN)/python -m pytest tests -q -p no:cacheprovider

## bench: term-end throughput next to raw signing and raw insert baselines (N=10000 by default)
bench: rabbitmq
	$(BIN)/python bench/term_end.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .hocba .pytest_cache
