"""Object bytes and records in the datastore: the one place that reads and writes them.

Theory of operation. A small object (one PUT of at most ``max_value_size`` bytes) is
its bytes at its data key; anything larger, and every multipart upload, is a UnixFS
file in ``/blocks`` (added exactly as ``ipfs add`` would, so its CID is Kubo's) whose
data key holds the pointer ``/ipfs/<cid>``. Metadata and data key are written
concurrently (see ``commit``). Lookups read the bucket record (unless kept, see
bucketcache.py), the metadata and the data key concurrently, so a GET costs one round
trip of latency. Only keys of existing buckets are
served: other datastore keys (``dsclient put /health/x``) are not the gateway's to show.
Every object write goes through ``commit``, which refuses to put anything but a block's
own bytes at an IPFS block key (blocks.py).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from ..datastore import BatchOp, Datastore
from ..errors import NotFound
from ..gc.claims import open_claims
from ..query import Entry, Query
from ..unixfs import AddedFile, AddOptions, add_stream, concat, read_file
from . import keymap
from .blocks import check_block
from .errors import S3Error
from .grants import Caller
from .meta import BucketRecord, ObjectMeta, decode, encode, pointer

if TYPE_CHECKING:
    from .bucketcache import BucketCache

# operations per datastore batch when deleting many keys, well under the cluster's
# max_batch_ops
DELETE_BATCH_OPS = 512


async def gather(*calls: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run calls concurrently; their results in order, or the first call's error as is
    (not wrapped in an exception group, so callers catch NotFound and S3Error plainly)."""
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException | None] = [None] * len(calls)

    async def run(i: int, call: Callable[[], Awaitable[Any]]) -> None:
        try:
            results[i] = await call()
        except Exception as e:
            errors[i] = e

    async with trio.open_nursery() as nursery:
        for i, call in enumerate(calls):
            nursery.start_soon(run, i, call)
    for e in errors:
        if e is not None:
            raise e
    return results


@asynccontextmanager
async def open_query(ds: Datastore, q: Query) -> AsyncIterator[AsyncIterator[Entry]]:
    """A datastore query that is closed (its pages released) when the block is left,
    also when the caller stops early."""
    entries = ds.query(q)
    try:
        yield entries
    finally:
        aclose = getattr(entries, "aclose", None)
        if aclose is not None:
            await aclose()


async def get_or_none(ds: Datastore, key: str) -> bytes | None:
    try:
        return await ds.get(key)
    except NotFound:
        return None


async def size_or_none(ds: Datastore, key: str) -> int | None:
    try:
        return await ds.get_size(key)
    except NotFound:
        return None


async def bucket_record(ds: Datastore, bucket: str) -> BucketRecord | None:
    return decode(BucketRecord, await get_or_none(ds, keymap.bucket_key(bucket)))


async def first_key_under(ds: Datastore, prefix: str) -> str | None:
    """Some datastore key under ``prefix`` (the first), or None when there is none."""
    async with open_query(ds, Query(prefix=prefix, keys_only=True, limit=1)) as entries:
        async for e in entries:
            return e.key
    return None


@dataclass(frozen=True, slots=True)
class Found:
    meta: ObjectMeta
    data: bytes | None  # an inline object's bytes, when they were read


async def find_object(ds: Datastore, buckets: BucketCache, bucket: str, key: str, *,
                      with_data: bool, reader: Caller | None = None) -> Found:
    """An object's metadata (and, if asked, inline bytes); NoSuchBucket / NoSuchKey, and
    AccessDenied when ``reader`` is given and may not read it (grants.py). The bucket's
    record comes from ``buckets``, or is read together with the object, so checking costs
    no round trip."""
    keymap.check_bucket_name(bucket)
    keymap.check_object_key(key)
    dkey = keymap.data_key(bucket, key)

    async def data() -> tuple[int | None, bytes | None]:
        if with_data:
            value = await get_or_none(ds, dkey)
            return (None if value is None else len(value)), value
        return await size_or_none(ds, dkey), None

    record, raw_meta, (size, value) = await gather(
        lambda: buckets.get(bucket),
        lambda: get_or_none(ds, keymap.meta_key(bucket, key)), data)
    if record is None:
        raise S3Error("NoSuchBucket", BucketName=bucket)

    def missing() -> S3Error:
        if reader is not None and not reader.may_list(record):
            return S3Error("AccessDenied")
        return S3Error("NoSuchKey", Key=key)

    if size is None:
        raise missing()
    meta = decode(ObjectMeta, raw_meta)
    if meta is not None and meta.describes(size, value):
        found = Found(meta, value if meta.cid is None else None)
    else:
        if value is None:  # no trustworthy record: the ETag needs the bytes
            value = await get_or_none(ds, dkey)
            if value is None:
                raise missing()
        found = Found(ObjectMeta.foreign(len(value), value), value)
    if reader is not None and not reader.may_read(record, found.meta):
        raise S3Error("AccessDenied")
    return found


async def commit(ds: Datastore, bucket: str, key: str, meta: ObjectMeta,
                 data: bytes | None = None) -> None:
    """Write an object: ``data`` for an inline one, the pointer when ``meta.cid`` is set.

    The record and the data key are two concurrent writes, not one batch: the two keys
    lie on different nodes, and the cluster first has every node check such a batch
    (CheckBatch, which carries the values), which sent the object's bytes twice and cost
    a round trip more. What the check would add is refusing both when one is refused:
    for the gateway's writes only a ``disable_delete`` node refuses, and there an
    existing object's record is always refused (its time differs), so the bytes next to
    it stay the ones it describes."""
    value = pointer(meta.cid) if meta.cid is not None else data
    assert value is not None
    check_block(keymap.data_key(bucket, key), data if meta.cid is None else None)
    await gather(lambda: ds.put(keymap.meta_key(bucket, key), encode(meta)),
                 lambda: ds.put(keymap.data_key(bucket, key), value))


async def delete_objects(ds: Datastore, bucket: str, keys: list[str]) -> None:
    """Delete objects (missing ones are no error); the DAG blocks stay, see doc/s3.md."""
    per_batch = DELETE_BATCH_OPS // 2  # two keys per object
    for i in range(0, len(keys), per_batch):
        ops = []
        for key in keys[i:i + per_batch]:
            ops += [BatchOp(keymap.data_key(bucket, key), None),
                    BatchOp(keymap.meta_key(bucket, key), None)]
        await ds.apply(ops)


async def delete_prefix(ds: Datastore, prefix: str) -> None:
    """Delete every key under ``prefix``, a batch at a time."""
    while True:
        q = Query(prefix=prefix, keys_only=True, limit=DELETE_BATCH_OPS)
        async with open_query(ds, q) as entries:
            ops = [BatchOp(e.key, None) async for e in entries]
        if not ops:
            return
        await ds.apply(ops)


async def add_file(ds: Datastore, source: AsyncIterable[bytes]) -> AddedFile:
    """Store a byte stream as a UnixFS file with `ipfs add`'s defaults, its blocks
    claimed for garbage collection (the caller writes its record right after)."""
    async with open_claims(ds, "S3 upload") as claiming:
        return await add_stream(claiming, source, options=AddOptions())


async def concat_files(ds: Datastore, parts: list[AddedFile]) -> AddedFile:
    async with open_claims(ds, "S3 multipart completion") as claiming:
        return await concat(claiming, parts, options=AddOptions())


async def open_content(ds: Datastore, found: Found, offset: int,
                       length: int) -> AsyncIterator[bytes]:
    """The bytes [offset, offset+length) of an object.

    The first piece is read before this returns, so a missing or corrupt root block is
    an error response rather than a connection cut after the headers.
    """
    if found.meta.cid is None:
        assert found.data is not None, "an inline object is found with its bytes"
        return _once(found.data[offset:offset + length])
    pieces = read_file(ds, found.meta.cid, offset=offset, length=length)
    assert isinstance(pieces, AsyncGenerator)
    first = await anext(pieces, b"") if length else b""
    return prepend(first, pieces)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def prepend(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    """``first``, then the pieces of ``rest`` (closed when this is)."""
    async with aclosing(rest):
        yield first
        async for piece in rest:
            yield piece
