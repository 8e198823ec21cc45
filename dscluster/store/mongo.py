"""The MongoDB store (pymongo): one document per key.

Documents: ``{_id: key, v: Binary(value), n: len(value), s: slot_of(key)}`` in one
collection (default ``kv`` in the URI's database, else in ``dscluster``), with a compound
index ``(s, _id)`` so a slot's keys come sorted straight from the index (slot migration).
A side collection ``<name>.meta`` holds ``{_id: "format", version: 1}`` and the marker
``sync()`` writes, so the key collection holds keys only. Scans sort on ``_id``: MongoDB
compares strings by simple binary comparison of their UTF-8 bytes unless a collation is
set, which equals Python's str order; a collection with a non-simple default collation
is refused at open. Keys up to 2048 bytes need MongoDB >= 4.2 (no index key size limit).

With ``sync`` on, writes use write concern ``j: true``: acknowledged once in the on-disk
journal. Without it they are acknowledged once applied in the server's memory (the server
journals within ~100 ms); our own process holds nothing, so a kill -9 of it loses nothing.
A batch is one ordered ``bulk_write``: atomic per document, not across documents
(MongoDB needs a replica set and a transaction for that). Writes of one key are
serialised in the process (``KeyLocks``): two upserts of one new ``_id`` at once may fail
one with a duplicate key error (E11000), which MongoDB >= 4.2 retries itself but other
servers (FerretDB) and older MongoDB return to the client.

pymongo blocks, so every call runs in a worker thread through ``BlockingCalls``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import pymongo
import trio
from bson import Binary
from pymongo import DeleteOne, ReplaceOne, WriteConcern
from pymongo.errors import ConfigurationError, DocumentTooLarge, PyMongoError

from ..datastore import BatchOp
from ..errors import ConfigError, NotFound, StoreError, TooLarge
from ..keylocks import KeyLocks
from ..keys import slot_of, validate_key
from .base import (
    DEFAULT_THREADS,
    SCAN_EXAMINE_FACTOR,
    KeyRange,
    ScanPage,
    ScanQueryMixin,
    ValueSource,
    checked_ops,
)
from .blocking import BlockingCalls

DEFAULT_DATABASE = "dscluster"
SLOT_INDEX = "slot_1__id_1"
FORMAT_VERSION = 1
# how long opening waits for a server before it reports the store unreachable
CONNECT_TIMEOUT = 3.0


class MongoStore(ScanQueryMixin):
    kind = "mongo"

    def __init__(
        self, coll: Any, *, client: Any, owns_client: bool, sync: bool, what: str, threads: int
    ) -> None:
        self._client = client
        self._owns_client = owns_client
        self._sync = sync
        write_concern = WriteConcern(j=True) if sync else WriteConcern()
        self._coll = coll.with_options(write_concern=write_concern)
        self._meta = _meta_collection(coll).with_options(write_concern=WriteConcern(j=True))
        self._calls = BlockingCalls(what, (PyMongoError,), threads)
        self._key_locks = KeyLocks()

    @classmethod
    async def open(
        cls,
        *,
        uri: str | None = None,
        client: Any = None,
        database: str | None = None,
        collection: str = "kv",
        sync: bool = True,
        threads: int = DEFAULT_THREADS,
    ) -> MongoStore:
        """Connect to ``uri`` (or use ``client``, any pymongo-compatible client, which the
        store then does not close) and prepare the collection. Without ``database``, the
        URI's database (``mongodb://host/DB``) is used, else ``dscluster``."""

        def open_() -> MongoStore:
            return cls._open(uri, client, database, collection, sync, threads)

        return await trio.to_thread.run_sync(open_)

    @classmethod
    def _open(
        cls,
        uri: str | None,
        client: Any,
        database: str | None,
        collection: str,
        sync: bool,
        threads: int,
    ) -> MongoStore:
        owns_client = client is None
        if client is None:
            if not uri:
                raise ConfigError("the mongo store needs a MongoDB URI (mongodb_uri)")
            try:
                client = pymongo.MongoClient(
                    uri,
                    serverSelectionTimeoutMS=int(CONNECT_TIMEOUT * 1000),
                    connectTimeoutMS=int(CONNECT_TIMEOUT * 1000),
                )
            except (ConfigurationError, ValueError) as e:
                raise ConfigError(f"invalid MongoDB URI for mongo store at {_hosts(uri)}: "
                                  f"{e}") from None
        name = database or client.get_default_database(DEFAULT_DATABASE).name
        what = f"mongo store {name}.{collection}" + (f" at {_hosts(uri)}" if uri else "")
        try:
            client.admin.command("ping")
            coll = client[name][collection]
            _check_collation(coll, what)
            _check_format(_meta_collection(coll), what)
            coll.create_index([("s", 1), ("_id", 1)], name=SLOT_INDEX)
        except BaseException as e:
            if owns_client:
                client.close()
            if isinstance(e, PyMongoError):
                raise StoreError(f"{what} is unreachable or refused: {e}") from None
            raise
        return cls(
            coll, client=client, owns_client=owns_client, sync=sync, what=what, threads=threads
        )

    async def close(self) -> None:
        if await self._calls.drain() and self._owns_client:
            await trio.to_thread.run_sync(self._client.close)

    async def get(self, key: str) -> bytes:
        return bytes((await self._find_one(key, "v"))["v"])

    async def has(self, key: str) -> bool:
        k = validate_key(key)
        doc = await self._calls.run(self._coll.find_one, {"_id": k}, {"_id": 1})
        return doc is not None

    async def get_size(self, key: str) -> int:
        return int((await self._find_one(key, "n"))["n"])

    async def _find_one(self, key: str, field: str) -> dict[str, Any]:
        k = validate_key(key)
        doc = await self._calls.run(self._coll.find_one, {"_id": k}, {field: 1})
        if doc is None:
            raise NotFound(f"key not found: {k}")
        return doc

    async def apply(self, ops: Sequence[BatchOp]) -> None:
        requests: list[ReplaceOne | DeleteOne] = []
        keys: set[str] = set()
        for k, value in checked_ops(ops):
            keys.add(k)
            if value is None:
                requests.append(DeleteOne({"_id": k}))
            else:
                doc = {"_id": k, "v": Binary(value), "n": len(value), "s": slot_of(k)}
                requests.append(ReplaceOne({"_id": k}, doc, upsert=True))
        if requests:
            async with self._key_locks.hold(keys):
                await self._calls.run(self._bulk_write, requests)

    def _bulk_write(self, requests: list[ReplaceOne | DeleteOne]) -> None:
        try:
            self._coll.bulk_write(requests, ordered=True)
        except DocumentTooLarge as e:
            raise TooLarge(f"value too large for a MongoDB document: {e}") from None

    @contextlib.contextmanager
    def _scan_items(self, r: KeyRange, *, reverse: bool, keys_only: bool,
                    limit: int) -> Iterator[Iterable[tuple[str, int, ValueSource]]]:
        bounds: dict[str, str] = {"$gte" if r.low_inclusive else "$gt": r.low}
        if r.high is not None:
            bounds["$lt"] = r.high
        projection = {"n": 1} if keys_only else {"n": 1, "v": 1}
        # a page examines at most this many documents, plus one to know whether more are
        # left (page_from_items returns the cursor when it sees the next one)
        examine = SCAN_EXAMINE_FACTOR * max(limit, 1) + 1
        cursor = (
            self._coll.find({"_id": bounds}, projection)
            .sort("_id", pymongo.DESCENDING if reverse else pymongo.ASCENDING)
            .limit(examine)
        )
        with contextlib.closing(cursor):
            yield ((d["_id"], d["n"], bytes(d.get("v", b""))) for d in cursor)

    async def _run_scan(self, page: Callable[[], ScanPage]) -> ScanPage:
        return await self._calls.run(page)

    async def keys_in_slot(self, slot: int) -> list[str]:
        def keys() -> list[str]:
            cursor = self._coll.find({"s": slot}, {"_id": 1}).sort("_id", pymongo.ASCENDING)
            return [d["_id"] for d in cursor]

        return await self._calls.run(keys)

    async def count(self) -> int:
        return await self._calls.run(self._coll.count_documents, {})

    async def disk_usage(self) -> int:
        """Bytes of stored values (the sum of ``n``; MongoDB's own storage is compressed)."""

        def total() -> int:
            rows = list(self._coll.aggregate([{"$group": {"_id": None, "b": {"$sum": "$n"}}}]))
            return int(rows[0]["b"]) if rows else 0

        return await self._calls.run(total)

    async def sync(self, prefix: str = "/") -> None:
        # with sync on every write is journaled already; otherwise one journaled write
        # (to the meta collection, so the key space stays clean) commits the journal,
        # which holds every earlier write as well
        if self._sync:
            return
        await self._calls.run(
            lambda: self._meta.update_one({"_id": "sync"}, {"$inc": {"n": 1}}, upsert=True)
        )


def _meta_collection(coll: Any) -> Any:
    return coll.database.get_collection(f"{coll.name}.meta")


def _check_format(meta: Any, what: str) -> None:
    """Record the document format in a new collection; refuse one of another format."""
    doc = meta.find_one({"_id": "format"})
    if doc is None:
        meta.with_options(write_concern=WriteConcern(j=True)).update_one(
            {"_id": "format"}, {"$setOnInsert": {"version": FORMAT_VERSION}}, upsert=True
        )
    elif doc.get("version") != FORMAT_VERSION:
        raise StoreError(
            f"{what} has format version {doc.get('version')!r}, expected {FORMAT_VERSION}"
        )


def _check_collation(coll: Any, what: str) -> None:
    """Refuse a collection whose default collation is not binary: its _id order would not
    be the byte order every other store and the cluster's merged queries use. (The _id
    index carries the collection's default collation.)"""
    id_index = coll.index_information().get("_id_", {})
    locale = id_index.get("collation", {}).get("locale", "simple")
    if locale != "simple":
        raise ConfigError(f"{what} has collation {locale!r}; dscluster needs binary order")


def _hosts(uri: str) -> str:
    """The hosts of a MongoDB URI, for messages: never its credentials, and without
    parse_uri, which resolves mongodb+srv names over DNS."""
    authority = uri.split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0]
    return authority.rsplit("@", 1)[-1]
