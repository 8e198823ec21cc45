"""The Go test harnesses (tests/go/<name>, built by `make go-harnesses` into .cache/go/bin).

A harness that is not built is skipped with one line: where Go is missing that is the
expected state; where Go is there, `make go-harnesses` (run by `make test`) builds it. A
harness older than its sources fails rather than test old code."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GO_SOURCES = REPO / "tests" / "go"
GO_BIN = REPO / ".cache" / "go" / "bin"  # where `make go-harnesses` puts them


def go_available() -> bool:
    return shutil.which("go") is not None or os.access("/usr/local/go/bin/go", os.X_OK)


def harness(name: str) -> Path:
    """The built binary of tests/go/<name>, or a skip saying why there is none."""
    binary = GO_BIN / name
    if not binary.exists():
        if not go_available():
            pytest.skip("Go toolchain not found: the Go interop harnesses are skipped")
        pytest.skip(f"Go harness {name} is not built: run `make go-harnesses`")
    built = binary.stat().st_mtime
    newer = [p for p in (GO_SOURCES / name).rglob("*") if p.is_file() and p.stat().st_mtime > built]
    if newer:
        pytest.fail(f"{binary} is older than {newer[0]}: run `make go-harnesses`")
    return binary
