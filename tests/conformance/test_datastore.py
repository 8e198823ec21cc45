"""The Datastore suite: only the go-datastore-shaped interface, through fixture ``ds``.

Every local store runs it, and so can any other Datastore (the cluster client): see
conftest.py. Each test starts from an empty datastore.
"""

from __future__ import annotations

import random

import pytest
import trio

from dscluster.datastore import BatchOp, Datastore
from dscluster.errors import InvalidKey, NotFound
from dscluster.keys import MAX_KEY_BYTES
from dscluster.namespace import NamespacedDatastore
from dscluster.query import Entry, Query


async def all_entries(ds: Datastore, prefix: str = "/") -> list[Entry]:
    return [e async for e in ds.query(Query(prefix=prefix, orders=("key",)))]


async def all_keys(ds: Datastore, prefix: str = "/") -> list[str]:
    q = Query(prefix=prefix, keys_only=True, orders=("key",))
    return [e.key async for e in ds.query(q)]


async def test_missing_key(ds: Datastore) -> None:
    with pytest.raises(NotFound):
        await ds.get("/missing")
    with pytest.raises(NotFound):
        await ds.get_size("/missing")
    assert not await ds.has("/missing")
    assert await all_keys(ds) == []


async def test_put_get_has_size(ds: Datastore) -> None:
    await ds.put("/a/b", b"hello")
    assert await ds.get("/a/b") == b"hello"
    assert await ds.has("/a/b")
    assert await ds.get_size("/a/b") == 5
    # neither the parent nor a sibling with the same start exists
    assert not await ds.has("/a")
    assert not await ds.has("/a/bb")


async def test_put_overwrites(ds: Datastore) -> None:
    await ds.put("/k", b"first value")
    await ds.put("/k", b"2nd")
    assert await ds.get("/k") == b"2nd"
    assert await ds.get_size("/k") == 3
    q = Query(returns_sizes=True)
    assert [(e.key, e.value, e.size) async for e in ds.query(q)] == [("/k", b"2nd", 3)]


async def test_empty_value(ds: Datastore) -> None:
    await ds.put("/empty", b"")
    assert await ds.has("/empty")
    assert await ds.get("/empty") == b""
    assert await ds.get_size("/empty") == 0
    assert [(e.key, e.value) for e in await all_entries(ds)] == [("/empty", b"")]


async def test_binary_values(ds: Datastore) -> None:
    values = {
        "/bin/all": bytes(range(256)) * 3,
        "/bin/nul": b"\x00" * 17,
        "/bin/ff": b"\xff\xfe\x00\x01",
        "/bin/text": "é 漢字 \n\r\t".encode(),
    }
    for k, v in values.items():
        await ds.put(k, v)
    for k, v in values.items():
        assert await ds.get(k) == v
    assert {e.key: e.value for e in await all_entries(ds)} == values


async def test_4mib_value(ds: Datastore) -> None:
    value = random.Random(4).randbytes(4 << 20)
    await ds.put("/big", value)
    assert await ds.get_size("/big") == len(value)
    assert await ds.get("/big") == value
    assert [(e.key, e.size) async for e in ds.query(Query(keys_only=True, returns_sizes=True))] == [
        ("/big", len(value))
    ]


KEY_SPELLINGS = [
    "/é/漢字/🙂",
    "/with space/and more",
    "/lower/case",
    "/plus+sign",
    "/eq=ual",
    "/_underscore",
    "/dots.in.name/x..y",
    "/blocks/CIQL7TG2PB52XIZLLHDYIUFMHUQLMMZWBNBZSLDXFCPZ5VDNQQ2WDZQ",  # flatfs-safe
    "/blocks/AFKREIA22FLID5AJ2KU7URG47MDLROZIH6YF2KALU2PWEFPVI37YLKRSCA",
    "/blocks/bafkreia22",  # lower case: not flatfs-safe
    "/blocks/_UNDERSCORE",  # safe characters, but reserved for encoded names
    "/blocks/A",  # shorter than the shard width
    "/blocks",
    "/blocks/NESTED/KEY",
    "/x",
    "/" + "k" * (MAX_KEY_BYTES - 1),  # exactly the limit
    "/" + "é" * ((MAX_KEY_BYTES - 1) // 2),  # multi-byte, at the limit
    "/long/" + "/".join(["segment"] * 200),
]


async def test_key_spellings(ds: Datastore) -> None:
    spellings = KEY_SPELLINGS
    if isinstance(ds, NamespacedDatastore):  # its prefix takes part of the key length
        spellings = [k for k in KEY_SPELLINGS if len(k.encode()) < MAX_KEY_BYTES // 2]
    for i, k in enumerate(spellings):
        await ds.put(k, f"value {i}".encode())
    for i, k in enumerate(spellings):
        assert await ds.get(k) == f"value {i}".encode(), k
        assert await ds.has(k)
        assert await ds.get_size(k) == len(f"value {i}")
    assert await all_keys(ds) == sorted(spellings)
    for k in spellings[::2]:
        await ds.delete(k)
    assert await all_keys(ds) == sorted(spellings[1::2])


async def test_key_length_limit(ds: Datastore) -> None:
    if isinstance(ds, NamespacedDatastore):
        pytest.skip("a namespace's prefix takes part of the key length")
    at_limit = "/" + "a" * (MAX_KEY_BYTES - 1)
    await ds.put(at_limit, b"ok")
    for too_long in ("/" + "a" * MAX_KEY_BYTES, "/" + "é" * (MAX_KEY_BYTES // 2)):
        with pytest.raises(InvalidKey):
            await ds.put(too_long, b"no")
    assert await all_keys(ds) == [at_limit]


async def test_keys_are_cleaned(ds: Datastore) -> None:
    await ds.put("/clean//me/./x/", b"v")
    assert await ds.get("/clean/me/x") == b"v"
    assert await all_keys(ds) == ["/clean/me/x"]


async def test_delete(ds: Datastore) -> None:
    await ds.put("/d/1", b"one")
    await ds.put("/d/2", b"two")
    await ds.delete("/d/1")
    with pytest.raises(NotFound):
        await ds.get("/d/1")
    with pytest.raises(NotFound):
        await ds.get_size("/d/1")
    assert not await ds.has("/d/1")
    # deleting a missing key, or twice, is not an error (go-datastore)
    await ds.delete("/d/1")
    await ds.delete("/never/there")
    assert await all_keys(ds) == ["/d/2"]
    await ds.put("/d/1", b"again")
    assert await ds.get("/d/1") == b"again"


async def test_prefix_matches_whole_segments(ds: Datastore) -> None:
    keys = ["/0", "/0key0", "/0/a", "/0/a/b", "/00", "/1/0", "/0-"]
    for k in keys:
        await ds.put(k, k.encode())
    assert await all_keys(ds, "/0") == ["/0/a", "/0/a/b"]
    assert await all_keys(ds, "/0/") == ["/0/a", "/0/a/b"]
    assert await all_keys(ds, "/0/a") == ["/0/a/b"]
    assert await all_keys(ds, "/0key0") == []
    assert await all_keys(ds, "/0/a/b") == []
    assert await all_keys(ds, "/") == sorted(keys)
    assert await all_keys(ds, "") == sorted(keys)


async def test_batch_last_op_wins(ds: Datastore) -> None:
    await ds.put("/b/existing", b"old")
    await ds.put("/b/doomed", b"bye")
    b = ds.batch()
    b.put("/b/k", b"1")
    b.put("/b/k", b"2")
    b.put("/b/put-then-delete", b"x")
    b.delete("/b/put-then-delete")
    b.delete("/b/delete-then-put")
    b.put("/b/delete-then-put", b"back")
    b.put("/b/existing", b"new")
    b.delete("/b/doomed")
    b.delete("/b/missing")
    # nothing is visible before commit
    assert await all_keys(ds) == ["/b/doomed", "/b/existing"]
    await b.commit()
    assert {e.key: e.value for e in await all_entries(ds)} == {
        "/b/k": b"2",
        "/b/delete-then-put": b"back",
        "/b/existing": b"new",
    }
    await ds.batch().commit()  # an empty batch is fine


async def test_apply(ds: Datastore) -> None:
    await ds.put("/ap/gone", b"x")
    await ds.apply([BatchOp("/ap/a", b"A"), BatchOp("/ap/gone", None), BatchOp("/ap/b", b"")])
    assert {e.key: e.value for e in await all_entries(ds)} == {"/ap/a": b"A", "/ap/b": b""}


async def test_concurrent_puts_of_one_key(ds: Datastore) -> None:
    values = [bytes([i]) * (100 + 37 * i) for i in range(24)]
    async with trio.open_nursery() as nursery:
        for v in values:
            nursery.start_soon(ds.put, "/race", v)
    got = await ds.get("/race")
    assert got in values
    # whichever write won, every view of the key agrees with it
    assert await ds.get_size("/race") == len(got)
    q = Query(keys_only=True, returns_sizes=True)
    assert [(e.key, e.size) async for e in ds.query(q)] == [("/race", len(got))]


async def test_concurrent_puts_and_deletes(ds: Datastore) -> None:
    keys = [f"/c/{i:03d}" for i in range(120)]
    async with trio.open_nursery() as nursery:
        for k in keys:
            nursery.start_soon(ds.put, k, k.encode() * 3)
    async with trio.open_nursery() as nursery:
        for k in keys[::3]:
            nursery.start_soon(ds.delete, k)
    kept = [k for k in keys if k not in keys[::3]]
    assert await all_keys(ds) == kept
    assert [e.value for e in await all_entries(ds)] == [k.encode() * 3 for k in kept]


async def test_sync_and_disk_usage(ds: Datastore) -> None:
    rnd = random.Random(7)
    values = [rnd.randbytes(10_000) for _ in range(5)]  # random: does not compress
    for i, v in enumerate(values):
        await ds.put(f"/du/{i}", v)
    await ds.sync("/du")
    await ds.sync("/")
    assert await ds.disk_usage() >= sum(len(v) for v in values)
