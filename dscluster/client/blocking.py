"""The cluster datastore for code that is not async: scripts, threads, notebooks.

``BlockingClusterDatastore`` runs one trio event loop in a background thread holding an
open ``ClusterDatastore`` (with its pooled connections), and every method hands its call
to that loop with ``trio.from_thread.run``. It is safe to call from several threads at
once: their requests run concurrently on the loop.

    with BlockingClusterDatastore(Path("./cli")) as ds:
        ds.put("/foo/bar", b"value")
        for entry in ds.query(Query(prefix="/foo")):
            ...
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import trio

from ..datastore import Batch, BatchOp
from ..query import Entry, Query
from .connect import open_cluster
from .datastore import ClusterDatastore

T = TypeVar("T")
QUERY_CHUNK = 256


class BlockingClusterDatastore:
    def __init__(self, conf_dir: Path) -> None:
        self._conf_dir = conf_dir
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._ds: ClusterDatastore | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=trio.run, args=(self._main,),
                                        name="dscluster-client", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    async def _main(self) -> None:
        try:
            async with open_cluster(self._conf_dir) as ds:
                self._ds = ds
                self._token = trio.lowlevel.current_trio_token()
                self._stop = trio.Event()
                self._ready.set()
                await self._stop.wait()
        except BaseException as e:  # handed to the constructor's caller
            self._error = e
            self._ready.set()

    def _run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        if self._token is None or self._stop is None or self._stop.is_set():
            raise RuntimeError("the datastore is closed")
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    @property
    def async_datastore(self) -> ClusterDatastore:
        assert self._ds is not None
        return self._ds

    def get(self, key: str) -> bytes:
        return self._run(self.async_datastore.get, key)

    def has(self, key: str) -> bool:
        return self._run(self.async_datastore.has, key)

    def get_size(self, key: str) -> int:
        return self._run(self.async_datastore.get_size, key)

    def put(self, key: str, value: bytes) -> None:
        self._run(self.async_datastore.put, key, value)

    def delete(self, key: str) -> None:
        self._run(self.async_datastore.delete, key)

    def apply(self, ops: Sequence[BatchOp]) -> None:
        self._run(self.async_datastore.apply, ops)

    def batch(self) -> BlockingBatch:
        return BlockingBatch(self)

    def sync(self, prefix: str = "/") -> None:
        self._run(self.async_datastore.sync, prefix)

    def disk_usage(self) -> int:
        return self._run(self.async_datastore.disk_usage)

    def status(self) -> list[dict[str, Any]]:
        return self._run(self.async_datastore.status)

    def query(self, q: Query) -> Iterator[Entry]:
        """Results in chunks, so a large result is never held whole in memory."""
        gen: AsyncIterator[Entry] = self.async_datastore.query(q)

        async def chunk() -> list[Entry]:
            out: list[Entry] = []
            async for e in gen:
                out.append(e)
                if len(out) >= QUERY_CHUNK:
                    break
            return out

        try:
            while entries := self._run(chunk):
                yield from entries
        finally:
            self._run(gen.aclose)  # type: ignore[attr-defined]

    def close(self) -> None:
        if self._token is not None and self._stop is not None and not self._stop.is_set():
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            self._thread.join()

    def __enter__(self) -> BlockingClusterDatastore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BlockingBatch:
    """A Batch whose commit blocks; buffering reuses the async Batch's rules."""

    def __init__(self, ds: BlockingClusterDatastore) -> None:
        self._ds = ds
        self._batch = Batch(ds.async_datastore.apply)

    def put(self, key: str, value: bytes) -> None:
        self._batch.put(key, value)

    def delete(self, key: str) -> None:
        self._batch.delete(key)

    def commit(self) -> None:
        self._ds._run(self._batch.commit)
