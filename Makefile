# Two commands on a fresh machine: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
PY := .venv/bin/python
PYTEST_ARGS ?= -n 2
export UV_PYTHON := 3.11

.PHONY: run serve test test-sqlite test-postgres lint bench k8s-validate clean system-deps venv

$(UV):
	@echo "uv not found: installing uv $(UV_VERSION) from PyPI into .tools/"
	python3 -m venv .tools && .tools/bin/pip install -q "uv==$(UV_VERSION)"

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	@touch $@

venv: .venv/.synced

run: venv  ## migrate, load the sample base libraries, serve on 127.0.0.1:8000, print URLs and tokens
	.venv/bin/pdg run

serve: venv  ## serve without sample data
	.venv/bin/pdg serve

system-deps:  ## Debian's Chromium and a CJK font for the browser tests (installed only when missing)
	bash scripts/system-deps.sh

test: venv system-deps test-sqlite test-postgres  ## every test, on SQLite and on PostgreSQL

test-sqlite: venv
	PDG_TEST_DB=sqlite $(PY) -m pytest $(PYTEST_ARGS) -m "not serial"

test-postgres: venv
	@$(PY) -c "import psycopg; psycopg.connect('host=127.0.0.1 port=5432 user=postgres dbname=test', connect_timeout=5).close()" \
	  || { echo "PostgreSQL on 127.0.0.1:5432 is not reachable: start it (see README, 'Tests')"; exit 1; }
	PDG_TEST_DB=postgresql $(PY) -m pytest $(PYTEST_ARGS) -m "not serial"
	PDG_TEST_DB=postgresql $(PY) -m pytest -m serial  # alone: these restart PostgreSQL

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy common gmcrypto audit identity oversight policies catalog sandbox datarange gateway

k8s-validate: venv  ## render every overlay and validate every manifest offline
	bash scripts/validate-k8s.sh --install-tools

clean:
	rm -rf .venv .tools var .pytest_cache .mypy_cache .ruff_cache
