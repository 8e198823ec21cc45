# dscluster — the two commands that matter: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint bench soak clean

$(STAMP): pyproject.toml scripts/system-deps.sh tests/js/package-lock.json
	bash scripts/system-deps.sh
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,kubo]'
	# Helia's S3 blockstore and UnixFS libraries for tests/integration/test_helia.py
	if command -v npm >/dev/null; then cd tests/js && npm ci --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the Helia tests will be skipped"; fi
	touch $(STAMP)

install: $(STAMP)

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

test: install
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python -m bench

soak: install
	$(BIN)/pytest -m soak

clean:
	rm -rf $(VENV) demo bench-out .pytest_cache .ruff_cache tests/js/node_modules
