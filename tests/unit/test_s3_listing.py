"""Listing pages straight over a store: S3 order across the two key spaces, and the
bounded work a page costs however large the bucket (seeks, not scans)."""

from __future__ import annotations

from typing import Any

from dscluster.s3 import keymap
from dscluster.s3.listing import just_before, list_page, successor
from dscluster.s3.meta import ObjectMeta, encode
from dscluster.store.base import ScanPage
from dscluster.store.memory import MemoryStore


class CountingStore(MemoryStore):
    """A MemoryStore that counts the entries its scans hand out."""

    def __init__(self) -> None:
        super().__init__()
        self.scanned = 0

    async def scan(self, prefix: str, **kw: Any) -> ScanPage:
        kw["limit"] = min(kw.get("limit", 1000), 64)  # small pages make over-reading visible
        page = await super().scan(prefix, **kw)
        self.scanned += len(page.entries)
        return page


async def fill(ds: MemoryStore, keys: list[str], bucket: str = "b") -> None:
    for k in keys:
        await ds.put(keymap.data_key(bucket, k), b"v")
        await ds.put(keymap.meta_key(bucket, k),
                     encode(ObjectMeta(size=1, etag="e" * 32, mtime_ms=1)))


def test_successor_and_just_before() -> None:
    assert successor("a/") == "a0" and successor("ab") == "ac"
    assert successor("a\U0010ffff") == "b" and successor("\U0010ffff") is None
    assert successor("\ud7ff") == "\ue000"
    for s in ("a", "a0", "/b/x", "\ue000"):
        assert just_before(s) < s
    assert just_before("ab\0") == "ab"


async def test_two_spaces_merge_in_s3_order() -> None:
    ds = MemoryStore()
    keys = ["a", "a/", "a//b", "a/b", "/z", "z", "%", "%a", "%/x", "a/.", "a/./b", "a0"]
    await fill(ds, keys)
    page = await list_page(ds, "b")
    assert [c.key for c in page.contents] == sorted(keys, key=str.encode)
    assert all(c.meta is not None and c.meta.etag for c in page.contents)
    rolled = await list_page(ds, "b", delimiter="/")
    assert rolled.prefixes == ["%/", "/", "a/"]
    assert [c.key for c in rolled.contents] == ["%", "%a", "a", "a0", "z"]


async def test_records_that_do_not_match_their_data_are_ignored() -> None:
    ds = MemoryStore()
    await ds.put("/b/k", b"12345")
    await ds.put(keymap.meta_key("b", "k"), encode(ObjectMeta(size=3, etag="x", mtime_ms=1)))
    await ds.put(keymap.meta_key("b", "orphan"), encode(ObjectMeta(size=1, etag="y",
                                                                   mtime_ms=1)))
    page = await list_page(ds, "b")
    assert [(c.key, c.size, c.meta) for c in page.contents] == [("k", 5, None)]


async def test_a_page_deep_in_a_big_bucket_reads_about_a_page() -> None:
    ds = CountingStore()
    keys = [f"k{i:05d}" for i in range(5000)]
    await fill(ds, keys)
    ds.scanned = 0
    page = await list_page(ds, "b", after="k04000", max_keys=10)
    assert [c.key for c in page.contents] == keys[4001:4011] and page.truncated
    assert ds.scanned < 300


async def test_a_large_common_prefix_is_skipped_by_seeking() -> None:
    ds = CountingStore()
    await fill(ds, [f"dir/{i:05d}" for i in range(3000)] + ["a", "zz"])
    ds.scanned = 0
    page = await list_page(ds, "b", delimiter="/")
    assert page.prefixes == ["dir/"] and [c.key for c in page.contents] == ["a", "zz"]
    assert ds.scanned < 500


async def test_prefix_in_the_middle_of_a_segment() -> None:
    ds = CountingStore()
    keys = [f"photos/20{i:02d}/x" for i in range(100)] + ["photos/2", "photos/1", "photos/3"]
    await fill(ds, keys)
    ds.scanned = 0
    page = await list_page(ds, "b", prefix="photos/205")
    assert [c.key for c in page.contents] == [f"photos/205{i}/x" for i in range(10)]
    assert ds.scanned < 150
