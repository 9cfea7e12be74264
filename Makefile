# The two commands that do everything on a fresh machine:
#   make demo   set up, start the local infrastructure, run the demo month, print the KPIs
#   make test   set up, start the local infrastructure, run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The lock files (requirements/*.txt, every package pinned with its hashes, written by `make lock`):
# runtime.txt is what the image installs, tools.txt adds the tools extra, dev.txt everything here.
LOCK   := requirements/dev.txt
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) 2>/dev/null | sha256sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: setup lock lint infra test test-unit test-integration test-e2e test-dates demo down status bench-pipeline clean

$(STAMP): pyproject.toml $(LOCK)
	@deploy/scripts/ensure-python.sh $(PYTHON) $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --require-hashes -r $(LOCK)
	$(BIN)/pip install -q --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

setup: $(STAMP)

# Rewrite the lock files after a change to pyproject.toml's dependencies (the versions already
# locked are kept where they still fit; `make lock UV_ARGS=--upgrade` moves everything forward).
UV_ARGS ?=
lock: setup
	$(BIN)/uv pip compile pyproject.toml -q --universal --python-version 3.11 --generate-hashes \
	  --custom-compile-command "make lock" $(UV_ARGS) -o requirements/runtime.txt
	$(BIN)/uv pip compile pyproject.toml -q --universal --python-version 3.11 --generate-hashes --extra tools \
	  --custom-compile-command "make lock" $(UV_ARGS) -o requirements/tools.txt
	$(BIN)/uv pip compile pyproject.toml -q --universal --python-version 3.11 --generate-hashes --extra dev \
	  --custom-compile-command "make lock" $(UV_ARGS) -o requirements/dev.txt

# ruff on everything; mypy --strict on what [tool.mypy] lists (shared/ and each service's domain).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

infra: setup
	$(BIN)/aftersales infra up

# The linter first (seconds), so a lint finding fails before the infrastructure starts.
test: lint infra
	$(BIN)/pytest -ra --durations=20 $(PYTEST_ARGS)

# The date-sensitive tests (marker `dates`) on other days than the suite's fixed test moment:
# a public holiday, month and year ends, late evenings (AFTERSALES_TEST_NOW, Shanghai time).
TEST_DATES ?= 2026-10-01T09:30:00+08:00 2026-11-20T10:00:00+08:00 2026-12-31T23:20:00+08:00 \
              2027-02-06T15:00:00+08:00 2027-04-30T21:40:00+08:00 2027-09-15T20:30:00+08:00

test-dates: infra
	@rc=0; for at in $(TEST_DATES); do \
	  echo "=== make test-dates: AFTERSALES_TEST_NOW=$$at"; \
	  AFTERSALES_TEST_NOW=$$at $(BIN)/pytest -m dates -q $(PYTEST_ARGS) || rc=1; \
	done; exit $$rc

test-unit: setup
	$(BIN)/pytest -ra tests/unit $(PYTEST_ARGS)

test-integration: infra
	$(BIN)/pytest -ra tests/integration $(PYTEST_ARGS)

test-e2e: infra
	$(BIN)/pytest -ra tests/e2e $(PYTEST_ARGS)

# The fault-injection suite in full (docs/reliability.md): 20,000 upstream records while every
# service is SIGKILLed and restarted, Kafka and Postgres restarted, with one and then two
# replicas of every service, on the suite's own broker and database (never the shared ones).
# Each run takes about 3½ minutes on two quiet cores; `make test` runs the short variant.
.PHONY: test-faults
test-faults: setup
	@rc=0; \
	$(BIN)/aftersales faults --events 20000 --replicas 1 --kills 3 || rc=1; \
	$(BIN)/aftersales faults --events 20000 --replicas 2 --kills 3 || rc=1; \
	exit $$rc

demo: infra
	$(BIN)/aftersales demo

bench-pipeline: infra
	$(BIN)/aftersales bench pipeline --events 50000

status: setup
	$(BIN)/aftersales infra status

down: setup
	$(BIN)/aftersales infra down

clean: down
	rm -rf .local $(VENV)
