"""What the conformance suite runs against.

Two registries, one fixture each:

- ``STORE_BACKENDS`` -> fixture ``store``: local stores (the Store protocol), used by
  ``test_store.py`` (paging, cursors, counts, slots, reopening).
- ``DATASTORE_BACKENDS`` -> fixture ``ds``: anything with the Datastore interface, used by
  ``test_datastore.py`` and ``test_query_combinations.py``. Every store backend is in it;
  to run the same tests through another implementation (e.g. a cluster-backed client),
  append a ``DatastoreBackend`` whose ``session`` yields a fresh, empty datastore.

Backend ``mongodb`` runs against a MongoDB-protocol server (fixture ``mongodb_uri``:
``DSCLUSTER_TEST_MONGODB_URI``'s, else FerretDB from tests/go/ferretdb; each test gets its
own database, dropped afterwards); ``mongomock`` needs no server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymongo
import pytest

from dscluster.client.connect import open_cluster
from dscluster.datastore import Datastore
from dscluster.namespace import NamespacedDatastore
from dscluster.store import FlatFSStore, LevelDBStore, MemoryStore, MongoStore, Store

from .mongomock_compat import mongomock_client


@dataclass(frozen=True)
class StoreBackend:
    name: str
    # opens the store kept under a directory; opening the same directory again after
    # close must give the same data when ``persistent``
    open: Callable[..., Awaitable[Store]]
    persistent: bool = True
    cleanup: Callable[..., Awaitable[None]] | None = None
    marks: tuple[Any, ...] = field(default_factory=tuple)
    # a fixture whose value (e.g. a server's URI) ``open`` and ``cleanup`` take after the
    # directory; ``bound`` supplies it
    server: str | None = None

    def bound(self, request: pytest.FixtureRequest) -> StoreBackend:
        """This backend with its server fixture's value supplied (a skip if there is
        none)."""
        if self.server is None:
            return self
        value = request.getfixturevalue(self.server)
        cleanup = self.cleanup and functools.partial(self.cleanup, server=value)
        return dataclasses.replace(self, open=functools.partial(self.open, server=value),
                                   cleanup=cleanup, server=None)

    @contextlib.asynccontextmanager
    async def session(self, path: Path) -> AsyncIterator[Store]:
        store = await self.open(path)
        try:
            yield store
        finally:
            await store.close()
            if self.cleanup is not None:
                await self.cleanup(path)


@dataclass(frozen=True)
class DatastoreBackend:
    name: str
    session: Callable[[Path], AbstractAsyncContextManager[Datastore]]
    marks: tuple[Any, ...] = field(default_factory=tuple)


# one mongomock client per test directory, so that reopening sees the same data
_mongomock_clients: dict[Path, Any] = {}


async def _open_mongomock(path: Path) -> Store:
    if path not in _mongomock_clients:
        _mongomock_clients[path] = mongomock_client()
    client = _mongomock_clients[path]
    return await MongoStore.open(client=client)


async def _drop_mongomock(path: Path) -> None:
    _mongomock_clients.pop(path, None)


def _mongo_database(path: Path) -> str:
    return "dscluster_test_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]


async def _open_real_mongo(path: Path, *, server: str) -> Store:
    return await MongoStore.open(uri=server, database=_mongo_database(path))


async def _drop_real_mongo(path: Path, *, server: str) -> None:
    with pymongo.MongoClient(server, serverSelectionTimeoutMS=3000) as client:
        client.drop_database(_mongo_database(path))


async def _open_memory(path: Path) -> Store:
    return MemoryStore()


STORE_BACKENDS: list[StoreBackend] = [
    StoreBackend("memory", _open_memory, persistent=False),
    StoreBackend("flatfs-sync", lambda p: FlatFSStore.open(p, sync=True)),
    StoreBackend("flatfs-nosync", lambda p: FlatFSStore.open(p, sync=False)),
    StoreBackend("leveldb", lambda p: LevelDBStore.open(p / "leveldb", sync=False)),
    StoreBackend("mongomock", _open_mongomock, cleanup=_drop_mongomock),
    StoreBackend("mongodb", _open_real_mongo, cleanup=_drop_real_mongo,
                 marks=(pytest.mark.mongo,), server="mongodb_uri"),
]

DATASTORE_BACKENDS: list[StoreBackend | DatastoreBackend] = list(STORE_BACKENDS)
# the whole cluster through its client: three real node processes (tests/conftest.py)
# shared by every test, each test in a namespace of its own so it starts empty
CLUSTER_BACKEND = "cluster"


@pytest.fixture(params=[pytest.param(b, id=b.name, marks=b.marks) for b in STORE_BACKENDS])
def store_backend(request: pytest.FixtureRequest) -> StoreBackend:
    return request.param.bound(request)


@pytest.fixture
async def store(store_backend: StoreBackend, tmp_path: Path) -> AsyncIterator[Store]:
    async with store_backend.session(tmp_path) as s:
        yield s


@pytest.fixture(params=[
    *(pytest.param(b, id=b.name, marks=b.marks) for b in DATASTORE_BACKENDS),
    pytest.param(CLUSTER_BACKEND, id=CLUSTER_BACKEND),
])
async def ds(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Datastore]:
    if request.param == CLUSTER_BACKEND:
        cluster = request.getfixturevalue("cluster")
        async with open_cluster(cluster.client()) as client:
            yield NamespacedDatastore(client, f"/conformance/{tmp_path.name}")
        return
    backend = request.param
    if isinstance(backend, StoreBackend):
        backend = backend.bound(request)
    async with backend.session(tmp_path) as d:
        yield d
