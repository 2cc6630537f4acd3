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

setup: $(VENV)/.installed $(VENV)/.compiled ## create .venv, install crmbonus with its test tools, compile its pure core

#: The modules setup.py compiles (its COMPILED list): the build is redone when one of them changes.
COMPILED_SOURCES := $(shell sed -n '/^COMPILED = \[/,/^\]/p' setup.py | grep -o '[a-z_/]*\.py')

# The pure core compiled with mypyc (issue 18: ~13% less worker CPU), in place, unless CRMBONUS_PURE=1.
# Without a C compiler it stays pure Python, which runs the same source and gives the same results.
$(VENV)/.compiled: $(VENV)/.installed setup.py $(COMPILED_SOURCES)
	@if [ "$$CRMBONUS_PURE" = 1 ]; then echo "CRMBONUS_PURE=1: the pure core runs as pure Python"; exit 0; fi; \
	if CRMBONUS_COMPILE=1 $(PY) setup.py build_ext --inplace >$(VENV)/compile.log 2>&1; then \
	  echo "compiled the pure core with mypyc ($(words $(COMPILED_SOURCES)) modules; make pure undoes it)"; \
	else rm -f stream/*.cpython-*.so; \
	  echo "note: mypyc could not compile the pure core (see $(VENV)/compile.log); it runs as pure Python"; fi; \
	touch $@

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

compiled: $(VENV)/.installed ## compile the pure core with mypyc again, in place (setup.py, ~15 s; `make setup` does it when needed)
	CRMBONUS_COMPILE=1 $(PY) setup.py build_ext --inplace
	touch $(VENV)/.compiled

pure: ## remove what `make compiled` built: the pure-Python modules run (the next `make setup` compiles again)
	rm -f stream/*.cpython-*.so $(VENV)/.compiled
	rm -rf build/mypyc

unit-pure: $(VENV)/.installed ## the unit tests on the pure-Python modules, as a plain wheel runs them (removes the compiled build)
	$(MAKE) --no-print-directory pure
	$(PY) -m pytest -q tests/unit

.PHONY: compiled pure unit-pure

bench: setup ## the throughput/latency/RSS benchmark on tansu and Apache Kafka (~7 min), prints the table
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
