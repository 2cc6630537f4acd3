# crmbonus — every command the README mentions. `make help` lists them.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
BIN   := $(VENV)/bin
PYTHON ?= python3

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed ## create .venv and install crmbonus with its test tools

system-deps: ## Debian packages the tests use: promtool (prometheus) and chromium (browser test)
	@if ! command -v promtool >/dev/null || ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus chromium >/dev/null; \
	  else echo "note: install Debian's prometheus and chromium for the promtool and browser tests (they are skipped otherwise)"; fi; \
	fi

demo: setup ## the main job: a month of CRM activity through the embedded stack, leaderboard, settlement, payroll file
	$(BIN)/crmbonus demo

lint: setup ## ruff, mypy and the layers' import contracts (pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: setup system-deps java-deps lint ## lint, then every test (unit, integration, faults) on the embedded broker, Apache Kafka and a real Postgres
	@$(PY) -m tests.apache_kafka jars || echo "note: no Apache Kafka jars: its tier is skipped, the reason is printed below (-rs)"
	$(PY) -m pytest -rs

unit: setup ## the unit tests only (seconds)
	$(PY) -m pytest tests/unit

wheel-test: setup ## build the wheel, install it (not editable) in a fresh venv, replay the worked example from an empty dir (~30 s)
	PYTHON=$(PY) tests/packaging/check_wheel.sh

compiled: setup ## compile the pure core with mypyc, in place (setup.py, CRMBONUS_COMPILE=1, ~15 s); `make pure` undoes it
	CRMBONUS_COMPILE=1 $(PY) setup.py build_ext --inplace

pure: ## remove what `make compiled` built: the pure-Python modules run again
	rm -f stream/*.cpython-*.so
	rm -rf build/mypyc

.PHONY: compiled pure

bench: setup ## the throughput/latency/RSS benchmark on tansu and Apache Kafka (~4 min), prints the table
	$(PY) -m benchmarks.run

bench-smoke: setup ## every benchmark measurement, tiny (CI; figures printed, nothing asserted)
	$(PY) -m benchmarks.run --smoke

clean: ## remove the embedded data directory (.crmbonus/)
	rm -rf .crmbonus

docs: setup ## regenerate the generated parts of docs/*.md (plan keys, events, reasons, columns, metrics, ...)
	$(PY) -m stream.docs

.PHONY: docs

.PHONY: help setup system-deps demo lint test unit wheel-test bench bench-smoke clean

# --- a real Apache Kafka broker (KRaft, one node) for tests, benchmarks and local use: tests/apache_kafka.py
KAFKA_WORKDIR ?= .crmbonus/apache-kafka
KAFKA_PORT    ?=

java-deps: ## Java 17+ and Maven for the Apache Kafka tier (Debian's default-jdk-headless, maven)
	@if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends default-jdk-headless maven >/dev/null; \
	  else echo "note: no java or mvn: the Apache Kafka tier will be skipped (install Debian's default-jdk-headless and maven)"; fi; \
	fi

kafka-jars: setup ## fetch Apache Kafka's jars from Maven Central (deploy/kafka/pom.xml) into ~/.cache/crmbonus, once
	$(PY) -m tests.apache_kafka jars

kafka: setup kafka-jars ## an Apache Kafka broker in the foreground until Ctrl-C (data in .crmbonus/apache-kafka; KAFKA_PORT=N)
	$(PY) -m tests.apache_kafka run --workdir $(KAFKA_WORKDIR) $(if $(KAFKA_PORT),--port $(KAFKA_PORT))

.PHONY: java-deps kafka-jars kafka
