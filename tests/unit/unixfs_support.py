"""Shared helpers of the UnixFS tests: vectors, sources, a tree, an instrumented store."""

from __future__ import annotations

import json
import os
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import trio

from dscluster.datastore import BatchOp
from dscluster.store.memory import MemoryStore

REPO = Path(__file__).resolve().parents[2]
# a copy of shared/vectors/kubo-cids.json: CIDs Kubo's `ipfs add` gives for known files
VECTORS = json.loads((REPO / "tests" / "data" / "kubo-cids.json").read_text())
CHUNK = 262144


def vector_data(v: dict) -> bytes:
    if "content" in v:
        return v["content"].encode()
    if v.get("zeros"):
        return bytes(v["size"])
    return random.Random(v["seed"]).randbytes(v["size"])


async def pieces(data: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    """``data`` in pieces of ``size`` bytes (not aligned with any chunk size)."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


def make_tree(root: Path, *, hidden: bool) -> Path:
    """A tree with every kind of entry `ipfs add -r` handles. Its CIDs are pinned in the
    tests (computed by Kubo v0.22); ``hidden`` adds entries whose names start with '.'."""

    def write(rel: str, data: bytes) -> None:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

    write("a.txt", b"hello\n")
    write("B.bin", random.Random(1).randbytes(300_000))  # two chunks; sorts before "a"
    write("empty.bin", b"")
    write("exact.bin", random.Random(2).randbytes(262_144))
    write("\u00fcn\u00efcode-\u540d\u524d.txt", b"unicode\n")
    write("sub/deeper/c.txt", b"c\n")
    write("sub/z.txt", b"z")
    (root / "sub" / "emptydir").mkdir()
    os.symlink("a.txt", root / "link")
    if hidden:
        write(".hidden", b"secret")
        write(".hiddendir/x.txt", b"x")
    return root


class CountingStore(MemoryStore):
    """A MemoryStore that counts gets and the most keys in requests in flight at once,
    with an optional delay per request so that requests overlap."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.gets: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def _request(self, keys: int = 1) -> None:
        self.in_flight += keys
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await trio.sleep(self.delay)
        finally:
            self.in_flight -= keys

    async def get(self, key: str) -> bytes:
        self.gets.append(key)
        await self._request()
        return await super().get(key)

    async def put(self, key: str, value: bytes) -> None:
        await self._request()
        await super().put(key, value)

    async def apply(self, ops: Sequence[BatchOp]) -> None:
        await self._request(len(ops))
        await super().apply(ops)


