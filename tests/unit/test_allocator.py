"""A node's memory stays bounded by settings, not by the keys written (issue 12)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from dscluster.allocator import MALLOC_ARENAS
from dscluster.store import ldb

# 8 threads alive at once, each allocating: glibc gives each its own arena unless bounded;
# malloc_stats() then lists every arena on stderr
_THREADS = """
import ctypes, sys, threading
from dscluster.allocator import bound_malloc_arenas
if sys.argv[1] == "bound":
    assert bound_malloc_arenas()
barrier = threading.Barrier(8)
def work():
    keep = [bytes(4096) for _ in range(100)]
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL(None).malloc_stats()
"""


def _arenas(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", _THREADS, mode], capture_output=True,
                         text=True, timeout=30, env=env, check=True)
    return sum(1 for line in out.stderr.splitlines() if line.startswith("Arena "))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
def test_worker_threads_share_the_bounded_arenas() -> None:
    assert _arenas("free") > MALLOC_ARENAS  # what the bound is for: one arena a thread
    assert _arenas("bound") <= MALLOC_ARENAS


def test_leveldb_is_opened_with_bounded_buffers(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[dict[str, object]] = []
    real = ldb.plyvel.DB

    def spy(name: str, **kw: object) -> object:
        opened.append(kw)
        return real(name, **kw)

    monkeypatch.setattr(ldb.plyvel, "DB", spy)
    ldb.open_leveldb(tmp_path / "db", "test db").close()
    assert opened[0]["write_buffer_size"] == ldb.LEVELDB_OPTIONS["write_buffer_size"]
    assert opened[0]["lru_cache_size"] == ldb.LEVELDB_OPTIONS["lru_cache_size"]
    assert all(0 < v <= 8 * ldb.MiB for v in ldb.LEVELDB_OPTIONS.values())
