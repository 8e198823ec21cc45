"""open_store: kinds, protocol conformance, and readable errors when a store cannot open."""

from __future__ import annotations

import time
from pathlib import Path

import plyvel
import pytest

from dscluster.datastore import Datastore
from dscluster.errors import ConfigError, StoreError
from dscluster.store import STORE_KINDS, LevelDBStore, Store, open_store
from dscluster.store.mongo import _check_collation, _hosts
from tests.conformance.mongomock_compat import mongomock_client


@pytest.mark.parametrize("kind", STORE_KINDS)
async def test_every_kind_opens_and_implements_the_protocols(tmp_path: Path, kind: str) -> None:
    store = await open_store(kind, tmp_path / kind, mongo_client=mongomock_client())
    try:
        assert store.kind == kind
        assert isinstance(store, Store)
        assert isinstance(store, Datastore)
        await store.put("/k", b"v")
        assert await store.get("/k") == b"v"
    finally:
        await store.close()


async def test_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown store kind 'rocksdb' \(expected one of"):
        await open_store("rocksdb", tmp_path)


@pytest.mark.parametrize("kind", ["flatfs", "leveldb"])
async def test_directory_required(kind: str) -> None:
    with pytest.raises(ConfigError, match="needs a directory"):
        await open_store(kind, None)


async def test_mongo_needs_uri() -> None:
    with pytest.raises(ConfigError, match="MongoDB URI"):
        await open_store("mongo", None)


async def test_leveldb_in_use(tmp_path: Path) -> None:
    store = await LevelDBStore.open(tmp_path)
    try:
        with pytest.raises(StoreError) as err:
            await open_store("leveldb", tmp_path)
        assert str(err.value) == f"leveldb store at {tmp_path} is in use by another process"
    finally:
        await store.close()


async def test_flatfs_in_use_message(tmp_path: Path) -> None:
    store = await open_store("flatfs", tmp_path)
    try:
        with pytest.raises(StoreError) as err:
            await open_store("flatfs", tmp_path)
        assert (
            str(err.value) == f"flatfs store at {tmp_path / 'blocks'} is in use by another process"
        )
    finally:
        await store.close()


async def test_unreachable_mongo_fails_fast_and_hides_credentials() -> None:
    start = time.monotonic()
    with pytest.raises(StoreError) as err:
        # port 1 on loopback: nothing listens there
        await open_store("mongo", None, mongodb_uri="mongodb://user:secret@127.0.0.1:1/")
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert message.startswith("mongo store dscluster.kv at 127.0.0.1:1 is unreachable")
    assert "secret" not in message and "\n" not in message


async def test_invalid_mongo_uri() -> None:
    with pytest.raises(ConfigError, match="invalid MongoDB URI"):
        await open_store("mongo", None, mongodb_uri="http://not-mongo")


def test_hosts_never_show_credentials() -> None:
    assert _hosts("mongodb://u:p@h1:27017,h2/db?authSource=admin") == "h1:27017,h2"
    assert _hosts("mongodb+srv://u:p%40x@cluster0.example.net/") == "cluster0.example.net"


def test_collection_with_a_collation_is_refused() -> None:
    class Collection:
        def __init__(self, locale: str | None) -> None:
            self.locale = locale

        def index_information(self) -> dict[str, dict[str, object]]:
            info: dict[str, object] = {"key": [("_id", 1)]}
            if self.locale is not None:
                info["collation"] = {"locale": self.locale, "strength": 2}
            return {"_id_": info}

    _check_collation(Collection(None), "test")
    _check_collation(Collection("simple"), "test")
    with pytest.raises(ConfigError, match="collation 'en'"):
        _check_collation(Collection("en"), "test")


async def test_mongo_records_and_checks_its_format() -> None:
    client = mongomock_client()
    store = await open_store("mongo", None, mongo_client=client)
    await store.close()
    meta = client["dscluster"]["kv.meta"]
    assert meta.find_one({"_id": "format"}) == {"_id": "format", "version": 1}
    assert client["dscluster"]["kv"].count_documents({}) == 0  # keys only in "kv"
    meta.update_one({"_id": "format"}, {"$set": {"version": 2}})
    with pytest.raises(StoreError, match="format version 2, expected 1"):
        await open_store("mongo", None, mongo_client=client)


async def test_leveldb_checks_its_format(tmp_path: Path) -> None:
    await (await LevelDBStore.open(tmp_path)).close()
    db = plyvel.DB(str(tmp_path))
    assert db.get(b"mversion") == b"1"
    db.put(b"mversion", b"2")
    db.close()
    with pytest.raises(StoreError, match="format version b'2'"):
        await LevelDBStore.open(tmp_path)
