"""Throughput of the content-defined chunkers (`--chunker rabin`, `buzhash`), alone:
cutting an in-memory buffer of random bytes, no hashing or storing, so that the number
is the chunker's own (target: at least 30 MB/s each).

    .venv/bin/python -m bench.chunkers        # also part of `make bench`
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator

import trio

from dscluster.unixfs._chunker import content_chunks, parse_chunker

SIZE_MIB = 64
TARGET_MB_S = 30


async def _pieces(data: bytes, size: int = 1 << 20) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def _cut(data: bytes, spec: str) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = 0
    async for _ in content_chunks(_pieces(data), parse_chunker(spec)):
        n += 1
    return n, time.perf_counter() - t0


def bench_chunkers() -> list[str]:
    data = os.urandom(SIZE_MIB << 20)
    lines = []
    for spec in ("rabin", "buzhash"):
        chunks, seconds = trio.run(_cut, data, spec)
        rate = len(data) / seconds / 1e6
        met = "met" if rate >= TARGET_MB_S else "NOT met"
        lines.append(f"chunker {spec:16s} {SIZE_MIB} MiB: {rate:7.1f} MB/s, {chunks} chunks "
                     f"(target >= {TARGET_MB_S} MB/s: {met})")
    return lines


if __name__ == "__main__":
    print("\n".join(bench_chunkers()))
