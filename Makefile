# The two commands of the README:
#   make run    run the daemon on its embedded SQLite default (./data/tracker.db)
#   make test   run the whole test suite
# Both set everything up on a fresh machine: the virtual environment, the Python packages and the
# Debian packages (chromium, prometheus, CJK fonts).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test test-fast setup system-deps lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip "setuptools>=69" wheel
	$(BIN)/pip install -q -e '.[dev,postgres,charts]'
	touch $(STAMP)

setup: $(STAMP)

system-deps:
	scripts/install-system-deps.sh

run: $(STAMP)
	scripts/install-system-deps.sh --runtime
	$(BIN)/tracker run

test: $(STAMP) system-deps
	$(BIN)/pytest

# Skips the long end-to-end and reliability tests (marked slow); `make test` runs everything.
test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check tracker scrapers tests bench

bench: $(STAMP) system-deps
	$(BIN)/python -m bench.all

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
