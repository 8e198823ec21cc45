# dscluster — the two commands that matter: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint bench soak clean go-harnesses

$(STAMP): pyproject.toml dscluster/unixfs/_cdc.c scripts/system-deps.sh tests/js/package-lock.json
	bash scripts/system-deps.sh
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,kubo,bench]'
	# Helia's S3 blockstore and UnixFS libraries for tests/integration/test_helia.py
	if command -v npm >/dev/null; then cd tests/js && npm ci --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the Helia tests will be skipped"; fi
	touch $(STAMP)

install: $(STAMP)

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

test: install go-harnesses
	$(BIN)/ruff check .
	$(BIN)/pytest

# Go interop harnesses (tests/go/<name>, each its own module with pinned versions; see
# doc/storage.md, "Go interop harnesses"): built into .cache/go/bin, run by
# tests/interop. Modules are fetched from the Go module proxy here, never at test time;
# the stamp makes a second build a no-op (and Go's build cache a rebuild quick).
GO ?= $(shell command -v go 2>/dev/null || { test -x /usr/local/go/bin/go && echo /usr/local/go/bin/go; })
GO_BIN := .cache/go/bin
GO_STAMP := .cache/go/stamp
GO_ENV := GOFLAGS='-mod=readonly -buildvcs=false' GOTOOLCHAIN=local

ifeq ($(GO),)
go-harnesses:
	@echo "go not found: the Go interop harnesses (tests/go) are skipped"
else
go-harnesses: $(GO_STAMP)

# a main package is built as a program, anything else as its `go test -c` binary
$(GO_STAMP): $(shell find tests/go -type f 2>/dev/null)
	@mkdir -p $(GO_BIN)
	@for h in tests/go/*/; do h=$${h%/}; n=$${h##*/}; out=$(CURDIR)/$(GO_BIN)/$$n; \
	  if grep -qs '^package main$$' $$h/*.go; then cmd="build -o $$out ."; else cmd="test -c -o $$out ."; fi; \
	  echo "go $$cmd  (in $$h)"; (cd $$h && $(GO_ENV) $(GO) $$cmd) || exit 1; touch $$out; done
	@touch $@
endif

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python -m bench

soak: install go-harnesses
	$(BIN)/pytest -m soak

clean:
	rm -rf $(VENV) demo bench-out .pytest_cache .ruff_cache tests/js/node_modules .cache/go
