"""Bucket records kept for a moment (dscluster/s3/bucketcache.py): reads saved, and
deletions and ACL changes refused or applied as promptly as doc/s3.md says."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from botocore import UNSIGNED
from botocore.exceptions import ClientError

from dscluster.errors import ConfigError
from dscluster.s3 import bucketcache, keymap
from dscluster.s3.bucketcache import BucketCache
from dscluster.s3.meta import PUBLIC_READ, BucketRecord, encode
from dscluster.s3.settings import S3Settings
from dscluster.store.memory import MemoryStore

from .support import OpenDatastore, code_of, gateway_settings, run_gateway

pytestmark = pytest.mark.timeout(30)
TTL = 1.0


class CountingStore(MemoryStore):
    """A MemoryStore that counts gets and can hold their answers (read already, still
    on the way) until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0
        self.release: trio.Event | None = None

    async def get(self, key: str) -> bytes:
        self.gets += 1
        value = await super().get(key)
        if self.release is not None:
            await self.release.wait()
        return value


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def with_bucket(name: str = "b1", acl: str = "private") -> CountingStore:
    ds = CountingStore()
    await ds.put(keymap.bucket_key(name), encode(BucketRecord(1, owner="AK", acl=acl)))
    return ds


async def test_a_record_is_read_once_per_period_and_a_deletion_is_seen_after_it() -> None:
    ds, clock = await with_bucket(), Clock()
    cache = BucketCache(ds, TTL, clock)
    first = await cache.get("b1")
    assert first is not None and first.owner == "AK"
    clock.now += TTL * 0.9
    assert await cache.get("b1") == first
    assert ds.gets == 1
    # deleted around this gateway (another node's): refused once the period is over
    await ds.delete(keymap.bucket_key("b1"))
    clock.now += TTL * 0.2
    assert await cache.get("b1") is None
    assert ds.gets == 2


async def test_absence_is_not_kept() -> None:
    ds, clock = CountingStore(), Clock()
    cache = BucketCache(ds, TTL, clock)
    assert await cache.get("b1") is None
    # created through another node a moment later: usable at once
    await ds.put(keymap.bucket_key("b1"), encode(BucketRecord(1)))
    assert await cache.get("b1") is not None


async def test_forget_refuses_at_once_and_keep_applies_at_once() -> None:
    ds, clock = await with_bucket(), Clock()
    cache = BucketCache(ds, TTL, clock)
    record = await cache.get("b1")
    assert record is not None
    cache.keep("b1", BucketRecord(1, owner="AK", acl=PUBLIC_READ))  # PutBucketAcl
    found = await cache.get("b1")
    assert found is not None and found.acl == PUBLIC_READ
    await ds.delete(keymap.bucket_key("b1"))
    cache.forget("b1")  # DeleteBucket
    assert await cache.get("b1") is None


async def test_a_read_racing_a_deletion_does_not_bring_the_record_back() -> None:
    ds, clock = await with_bucket(), Clock()
    cache = BucketCache(ds, TTL, clock)
    ds.release = trio.Event()
    seen: list[BucketRecord | None] = []
    async with trio.open_nursery() as nursery:
        async def read() -> None:
            seen.append(await cache.get("b1"))

        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        cache.forget("b1")  # the bucket is deleted while the read is in flight
        await ds.delete(keymap.bucket_key("b1"))
        ds.release.set()
    assert seen[0] is not None  # the read itself answered what it found then
    ds.release = None
    assert await cache.get("b1") is None


async def test_zero_seconds_reads_every_time() -> None:
    ds = await with_bucket()
    cache = BucketCache(ds, 0, Clock())
    for _ in range(3):
        assert await cache.get("b1") is not None
    assert ds.gets == 3


async def test_entries_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bucketcache, "MAX_ENTRIES", 2)
    ds = CountingStore()
    for name in ("b1", "b2", "b3"):
        await ds.put(keymap.bucket_key(name), encode(BucketRecord(1)))
    cache = BucketCache(ds, TTL, Clock())
    for name in ("b1", "b2", "b3"):
        await cache.get(name)
    await cache.get("b3")
    await cache.get("b2")
    assert ds.gets == 3
    await cache.get("b1")  # the oldest was dropped
    assert ds.gets == 4


def test_through_the_gateway_changes_apply_at_once(open_ds: OpenDatastore) -> None:
    # records kept for a minute: only what the gateway does on a change can explain
    # that the change applies to the very next request
    with run_gateway(gateway_settings(bucket_cache_seconds=60), open_ds) as g:
        s3, anon = g.client(), g.client(signature_version=UNSIGNED)
        name = g.bucket(s3)
        s3.put_object(Bucket=name, Key="k", Body=b"x")  # its record is now kept
        s3.put_bucket_acl(Bucket=name, ACL="public-read")
        assert anon.list_objects_v2(Bucket=name)["KeyCount"] == 1
        s3.put_bucket_acl(Bucket=name, ACL="private")
        with pytest.raises(ClientError) as e:
            anon.list_objects_v2(Bucket=name)
        assert code_of(e) == ("AccessDenied", 403)
        s3.delete_object(Bucket=name, Key="k")
        s3.delete_bucket(Bucket=name)
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=name, Key="k", Body=b"x")
        assert code_of(e) == ("NoSuchBucket", 404)


def test_with_zero_seconds_a_deletion_around_the_gateway_is_seen_at_once(
        open_ds: OpenDatastore) -> None:
    with run_gateway(gateway_settings(bucket_cache_seconds=0), open_ds) as g:
        s3 = g.client()
        name = g.bucket(s3)
        s3.put_object(Bucket=name, Key="k", Body=b"x")
        g.call(g.ds.delete, keymap.bucket_key(name))  # as another node's gateway would
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket=name, Key="k")
        assert code_of(e) == ("NoSuchBucket", 404)
        g.call(g.ds.delete, keymap.data_key(name, "k"))
        g.call(g.ds.delete, keymap.meta_key(name, "k"))


@pytest.mark.parametrize("value", [-1, 61, "1", True, None])
def test_bucket_cache_seconds_is_checked(value: Any) -> None:
    with pytest.raises(ConfigError, match="bucket_cache_seconds"):
        S3Settings.from_dict({"bucket_cache_seconds": value})
