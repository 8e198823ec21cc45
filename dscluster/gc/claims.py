"""Claims: how a writer of UnixFS DAGs tells garbage collection which blocks are its.

Theory of operation. A block at ``/blocks/<NAME>`` is collectable only if dscluster
wrote it, which its ownership marker (keys.py) says; a block without one (written by
Kubo or Helia through the gateway, by `dsclient put`, or found on disk) is never
touched. ``ClaimingDatastore.put`` of a block writes the marker first and the block
after it, every time (also when the block is there already): a block is never stored
by us without its marker, and the marker's version is the time of the newest claim, so
a block an add is using again looks new to the collector.

While an add runs, nothing refers to its blocks yet (its pin or object record comes
last), so ``open_claims`` also holds a *lease*: a record written when the add starts,
rewritten every ``LEASE_REFRESH`` seconds and once more when it ends. The collector
keeps every block claimed after the start of a lease it sees live (written within its
grace period), so an add that takes hours is as safe as a quick one, and the final
rewrite keeps the add's blocks for one more grace period after it returned: time for
its caller to write the pin or object record. A lease whose writer died stops being
refreshed and the collector removes it once it is older than the grace period.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio

from ..blocks import block_multihash
from ..concurrency import open_nursery
from ..datastore import Batch, BatchOp, Datastore
from ..query import Entry, Query
from .keys import lease_key, owned_key

# seconds between two writes of a live lease; a collector's grace period must be longer
# (plus the writers' clock skew), see doc/operations.md
LEASE_REFRESH = 60.0


def is_block_key(key: str) -> bool:
    return block_multihash(key) is not None


class ClaimingDatastore:
    """A datastore whose block writes are claimed (see the module's docstring); every
    other operation passes through."""

    def __init__(self, inner: Datastore) -> None:
        self.inner = inner

    async def put(self, key: str, value: bytes) -> None:
        if is_block_key(key):
            await self.inner.put(owned_key(key), b"")
        await self.inner.put(key, value)

    async def apply(self, ops: Sequence[BatchOp]) -> None:
        claims = [BatchOp(owned_key(op.key), b"") for op in ops
                  if op.value is not None and is_block_key(op.key)]
        if claims:
            await self.inner.apply(claims)
        await self.inner.apply(ops)

    def batch(self) -> Batch:
        return Batch(self.apply)

    async def get(self, key: str) -> bytes:
        return await self.inner.get(key)

    async def has(self, key: str) -> bool:
        return await self.inner.has(key)

    async def get_size(self, key: str) -> int:
        return await self.inner.get_size(key)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    def query(self, q: Query) -> AsyncIterator[Entry]:
        return self.inner.query(q)

    async def sync(self, prefix: str = "/") -> None:
        await self.inner.sync(prefix)

    async def disk_usage(self) -> int:
        return await self.inner.disk_usage()

    async def close(self) -> None:
        return None  # the inner datastore belongs to the caller


def lease_value(started_ms: int, what: str) -> bytes:
    return json.dumps({"v": 1, "started_ms": started_ms, "what": what[:200]}).encode()


def lease_started(raw: bytes) -> int | None:
    """A lease's start (unix ms), or None for a record that is not a lease."""
    try:
        d = json.loads(raw)
        started = d["started_ms"] if isinstance(d, dict) and d.get("v") == 1 else None
    except (ValueError, KeyError):
        return None
    return started if isinstance(started, int) else None


@asynccontextmanager
async def open_claims(ds: Datastore, what: str,
                      refresh: float = LEASE_REFRESH) -> AsyncIterator[ClaimingDatastore]:
    """A claiming view of ``ds`` under a lease named by ``what`` (shown by `dsclient gc`).

    Write the reference to what was added (pin, object record) right after the block
    returns: the lease protects the blocks for one grace period from then."""
    key = lease_key(secrets.token_hex(16))
    value = lease_value(int(time.time() * 1000), what)
    await ds.put(key, value)

    async def keep_alive() -> None:
        while True:
            await trio.sleep(refresh)
            await ds.put(key, value)

    async with open_nursery() as nursery:
        nursery.start_soon(keep_alive)
        yield ClaimingDatastore(ds)
        nursery.cancel_scope.cancel()
    await ds.put(key, value)
