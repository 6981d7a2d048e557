# The README's two commands: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Tests run on PostgreSQL and Redis at their default local ports unless told otherwise.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/milepost
TEST_BROKER_URL ?= redis://127.0.0.1:6379/1
DEMO_QUEUES := ingest,evaluate,journeys,messages.email,messages.sms,messages.push,maintenance

# Browser tests drive this Chromium (Debian's package; `make browser` installs it).
CHROMIUM ?= /usr/bin/chromium

.PHONY: demo test install browser lint typecheck migrations-check schema-check pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[demo]"
	touch $@

install: $(VENV)/.installed-dev

demo: $(VENV)/.installed-demo
	mkdir -p var/broker/queue var/broker/processed var/broker/control
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py migrate --noinput
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py demo_seed
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py milestones_demo_seed
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py messaging_demo_seed
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py journeys_demo_seed
	DEBUG=$${DEBUG:-1} DEMO_QUEUES=$(DEMO_QUEUES) PATH="$(CURDIR)/$(BIN):$$PATH" \
		$(BIN)/honcho --procfile Procfile.demo start

test: install browser lint typecheck migrations-check schema-check pytest

# Debian's chromium for the browser tests (tests/browser), installed once.
browser:
	@test -x $(CHROMIUM) || { \
		echo "Installing Debian's chromium for the browser tests"; \
		SUDO=$$(test "$$(id -u)" -eq 0 || echo sudo); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@test -x $(CHROMIUM) || { echo "FATAL: $(CHROMIUM) missing" >&2; exit 1; }

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	DEBUG=1 $(BIN)/mypy .

migrations-check: install
	DEBUG=1 DATABASE_URL= $(BIN)/python manage.py makemigrations --check --dry-run

schema-check: install
	DEBUG=1 DATABASE_URL= $(BIN)/python manage.py spectacular --validate --fail-on-warn --file /dev/null

pytest: install
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} \
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)} \
	SECRET_KEY=$${SECRET_KEY:-test-only-secret-key-not-for-production} \
	CHROMIUM=$(CHROMIUM) \
		$(BIN)/pytest

bench: install
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/milestones.py
	$(BIN)/python bench/messaging.py
	$(BIN)/python bench/journeys.py

clean:
	rm -rf $(VENV) var
