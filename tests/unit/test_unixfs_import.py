"""The file importer: Kubo's CIDs, the balanced layout's shape, options, windows, concat."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dscluster.datastore import BatchOp
from dscluster.errors import InvalidArgument, Unavailable
from dscluster.store.memory import MemoryStore
from dscluster.unixfs import (
    AddedFile,
    AddOptions,
    BlockCid,
    BlockNotFound,
    add_stream,
    concat,
    read_file,
    stat,
)
from dscluster.unixfs._cid import DAG_PB, RAW
from dscluster.unixfs._fetch import fetch_node
from dscluster.unixfs._importer import rechunk
from dscluster.unixfs._node import Node
from tests.unit.unixfs_support import CHUNK, VECTORS, CountingStore, pieces, vector_data

# `ipfs add` (Kubo v0.22, default options) of random.Random(seed).randbytes(size): files of
# exactly 174 chunks (one full node) and of 174 chunks and a byte (a second level).
KUBO_174_LEAVES = (174, 174 * CHUNK, "QmcBhGGccFSorf9BZmCpWPtX9ne8e6joGfRfUhZbLuXVys")
KUBO_175_LEAVES = (175, 174 * CHUNK + 1, "QmR8LxuWpoVZbV6D9YQ1swKXbtT8sdV4AkC6eSygHnq4LR")
HELLO = b"hello world"


async def read_all(ds: Any, cid: str, **kw: Any) -> bytes:
    return b"".join([c async for c in read_file(ds, cid, **kw)])


async def node_of(ds: Any, cid: str | BlockCid) -> Node:
    return await fetch_node(ds, BlockCid.parse(cid))


async def shape(ds: Any, cid: BlockCid, counter: list[int]) -> Any:
    """The DAG under ``cid`` as nested lists of leaf numbers (leaves numbered in order)."""
    node = await node_of(ds, cid)
    if not node.links:
        counter[0] += 1
        return counter[0] - 1
    return [await shape(ds, node.link_cid(i), counter) for i in range(len(node.links))]


def go_balanced(n: int, max_links: int = 174) -> Any:
    """boxo's balanced.Layout (importer/balanced/builder.go), transcribed: the oracle of
    the tree's shape for any number of leaves."""
    leaves = iter(range(n))
    left = [n]

    def leaf() -> int:
        left[0] -= 1
        return next(leaves)

    def fill(node: list[Any], depth: int) -> list[Any]:
        while len(node) < max_links and left[0]:
            node.append(leaf() if depth == 1 else fill([], depth - 1))
        return node

    root: Any = leaf()
    depth = 1
    while left[0]:
        root = fill([root], depth)
        depth += 1
    return root


@pytest.mark.parametrize("vector", VECTORS["files"], ids=lambda v: v["name"])
async def test_kubo_vectors(vector: dict) -> None:
    data = vector_data(vector)
    ds = MemoryStore()
    added = await add_stream(ds, pieces(data))
    assert added == AddedFile(vector["cid"], vector["size"])
    assert await read_all(ds, added.cid) == data
    # only_hash computes the same CID and stores nothing
    empty = CountingStore()
    assert await add_stream(empty, pieces(data), options=AddOptions(only_hash=True)) == added
    assert await empty.count() == 0


@pytest.mark.parametrize("piece", [1000, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7])
async def test_cid_does_not_depend_on_source_pieces(piece: int) -> None:
    vector = next(v for v in VECTORS["files"] if v["name"] == "rand1m1.bin")
    data = vector_data(vector)
    added = await add_stream(MemoryStore(), pieces(data, piece), options=AddOptions(only_hash=True))
    assert added.cid == vector["cid"]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=20), st.integers(min_value=1, max_value=16))
async def test_rechunk(parts: list[bytes], size: int) -> None:
    async def source() -> AsyncIterator[bytes]:
        for p in parts:
            yield p

    chunks = [c async for c in rechunk(source(), size)]
    assert b"".join(chunks) == b"".join(parts)
    assert all(len(c) == size for c in chunks[:-1])
    assert not chunks or 0 < len(chunks[-1]) <= size


@pytest.mark.parametrize("leaves", [1, 2, 3, 174])
async def test_exact_chunk_multiples_make_no_empty_leaf(leaves: int) -> None:
    ds = MemoryStore()
    data = random.Random(leaves).randbytes(leaves * 64)
    added = await add_stream(ds, pieces(data, 1000), options=AddOptions(chunk_size=64))
    root = await node_of(ds, added.cid)
    if leaves == 1:
        assert root.links == () and root.data == data
    else:
        assert root.blocksizes == (64,) * leaves
    assert await read_all(ds, added.cid) == data


async def test_default_chunk_multiple() -> None:
    ds = MemoryStore()
    data = random.Random(3).randbytes(3 * CHUNK)
    added = await add_stream(ds, pieces(data))
    root = await node_of(ds, added.cid)
    assert root.blocksizes == (CHUNK, CHUNK, CHUNK)
    assert (await stat(ds, added.cid)).size == 3 * CHUNK


@pytest.mark.parametrize("expected", [KUBO_174_LEAVES, KUBO_175_LEAVES], ids=["174", "175"])
async def test_kubo_174_link_boundary_with_default_chunks(expected: tuple[int, int, str]) -> None:
    seed, size, cid = expected
    data = random.Random(seed).randbytes(size)
    ds = MemoryStore()
    added = await add_stream(ds, pieces(data, CHUNK))
    assert added == AddedFile(cid, size)
    root = await node_of(ds, cid)
    if seed == 174:
        assert len(root.links) == 174
    else:  # a new level: the full node, then a node holding the last leaf alone
        assert len(root.links) == 2
        first, second = [await node_of(ds, root.link_cid(i)) for i in (0, 1)]
        assert (len(first.links), len(second.links)) == (174, 1)
        assert second.blocksizes == (1,)


@pytest.mark.parametrize(
    "leaves", [1, 2, 173, 174, 175, 348, 349, 174 * 174, 174 * 174 + 1]
)
async def test_balanced_shape_matches_kubo_layout(leaves: int) -> None:
    ds = MemoryStore()
    data = bytes(i % 251 for i in range(leaves))
    added = await add_stream(ds, pieces(data, 4096), options=AddOptions(chunk_size=1))
    assert await shape(ds, BlockCid.parse(added.cid), [0]) == go_balanced(leaves)
    assert added.size == leaves


async def test_cid_version_1_and_raw_leaves() -> None:
    async def add(data: bytes, **kw: Any) -> tuple[MemoryStore, AddedFile]:
        ds = MemoryStore()
        return ds, await add_stream(ds, pieces(data), options=AddOptions(**kw))

    # one chunk: the root is the leaf itself
    assert (await add(HELLO))[1].cid == "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD"
    raw = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    assert (await add(HELLO, cid_version=1))[1].cid == raw
    assert (await add(HELLO, raw_leaves=True))[1].cid == raw  # raw leaves are CIDv1 always
    v1_pb = (await add(HELLO, cid_version=1, raw_leaves=False))[1].cid
    assert BlockCid.parse(v1_pb).multihash == BlockCid.parse(
        "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD").multihash
    assert (await add(b"", cid_version=1))[1].cid == (
        "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")

    data = random.Random(5).randbytes(2 * CHUNK + 10)
    for kw, root_version in (({"cid_version": 1}, 1), ({"raw_leaves": True}, 0)):
        ds, added = await add(data, **kw)
        root = BlockCid.parse(added.cid)
        assert (root.version, root.codec) == (root_version, DAG_PB)
        node = await node_of(ds, root)
        assert [(c.version, c.codec) for c in map(node.link_cid, range(3))] == [(1, RAW)] * 3
        assert await read_all(ds, added.cid) == data
        # Tsize of a raw leaf is its length
        assert [link.tsize for link in node.links] == [CHUNK, CHUNK, 10]


def test_add_options_are_checked() -> None:
    for bad in ({"chunk_size": 0}, {"chunk_size": (1 << 20) + 1}, {"cid_version": 2},
                {"window": 0}):
        with pytest.raises(InvalidArgument):
            AddOptions(**bad)
    assert AddOptions(cid_version=1).leaves_raw
    assert not AddOptions(cid_version=1, raw_leaves=False).leaves_raw
    assert AddOptions(raw_leaves=True).leaves_raw and not AddOptions().leaves_raw


async def test_block_writes_are_bounded_and_concurrent() -> None:
    ds = CountingStore(delay=0.002)
    data = random.Random(7).randbytes(100 * 1024)
    opts = AddOptions(chunk_size=1024, window=4)
    added = await add_stream(ds, pieces(data), options=opts)
    assert 2 <= ds.max_in_flight <= 4
    assert await read_all(ds, added.cid) == data


async def test_blocks_are_written_in_batches() -> None:
    ds = CountingStore()
    applies = 0
    apply = ds.apply

    async def counting(ops: Sequence[BatchOp]) -> None:
        nonlocal applies
        applies += 1
        await apply(ops)

    ds.apply = counting  # type: ignore[method-assign]
    data = random.Random(8).randbytes(64 * 1024)
    added = await add_stream(ds, pieces(data), options=AddOptions(chunk_size=1024))
    assert await read_all(ds, added.cid) == data
    # 64 leaves and their parent: in batches of 16 blocks, not one request per block
    assert applies == 5


async def test_a_failed_put_surfaces_as_one_error() -> None:
    class Failing(MemoryStore):
        async def apply(self, ops: Sequence[BatchOp]) -> None:
            raise Unavailable("node down")

    with pytest.raises(Unavailable, match="node down"):
        await add_stream(Failing(), pieces(bytes(10_000)), options=AddOptions(chunk_size=100))


async def test_concat() -> None:
    ds = MemoryStore()
    datas = [random.Random(i).randbytes(n) for i, n in enumerate([3 * CHUNK + 5, 0, 10, CHUNK])]
    parts = [await add_stream(ds, pieces(d)) for d in datas[:3]]
    parts.append(await add_stream(ds, pieces(datas[3]), options=AddOptions(raw_leaves=True)))
    whole = b"".join(datas)
    joined = await concat(ds, parts)
    assert joined.size == len(whole)
    assert await read_all(ds, joined.cid) == whole
    for offset, length in ((0, 1), (3 * CHUNK, 20), (3 * CHUNK + 3, 12), (len(whole) - 5, 50)):
        assert await read_all(ds, joined.cid, offset=offset, length=length) == (
            whole[offset : offset + length])
    root = await node_of(ds, joined.cid)
    assert root.blocksizes == (3 * CHUNK + 5, 10, CHUNK)  # the empty part is left out
    # the stored tree's sizes add up the way Kubo reports them
    info = await stat(ds, joined.cid)
    assert info.cumulative_size == root.block_size + sum(link.tsize or 0 for link in root.links)

    assert await concat(ds, parts[2:3]) == parts[2]
    assert (await concat(ds, [parts[1]])).cid == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    with pytest.raises(InvalidArgument, match="holds 10 bytes, not 11"):
        await concat(ds, [parts[0], AddedFile(parts[2].cid, 11)])
    missing = AddedFile("QmfDmsHTywy6L9Ne5RXsj5YumDedfBLMvCvmaxjBoe6w4d", 1)
    with pytest.raises(BlockNotFound, match=missing.cid):
        await concat(ds, [parts[0], missing])


async def test_concat_of_many_parts_is_a_balanced_tree() -> None:
    ds = MemoryStore()
    datas = [bytes([i]) * (i + 1) for i in range(200)]
    parts = [await add_stream(ds, pieces(d)) for d in datas]
    joined = await concat(ds, parts, options=AddOptions(cid_version=1))
    assert BlockCid.parse(joined.cid).version == 1
    root = await node_of(ds, joined.cid)
    assert len(root.links) == 2  # 174 parts under the first child, 26 under the second
    assert await read_all(ds, joined.cid) == b"".join(datas)
