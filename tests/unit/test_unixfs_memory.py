"""Memory stays flat whatever the file size: add, get and read in a subprocess, whose
peak RSS (resource.getrusage) is checked. The 1 GiB run is a soak test (`make soak`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("unixfs_soak_worker.py")


def run_worker(tmp_path: Path, size: int, timeout: float) -> dict:
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path), str(size)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["ok"] and result["size"] == size
    return result


def test_memory_is_flat_for_64_mib(tmp_path: Path) -> None:
    assert run_worker(tmp_path, 64 << 20, timeout=60)["max_rss_mb"] < 120


@pytest.mark.soak
@pytest.mark.timeout(900)
def test_memory_is_flat_for_1_gib(tmp_path: Path) -> None:
    assert run_worker(tmp_path, 1 << 30, timeout=800)["max_rss_mb"] < 200
