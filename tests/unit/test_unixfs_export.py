"""The exporter: ranges, verification, atomic get, stat and ls."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest
from multiformats import CID, multihash

from dscluster.errors import InvalidArgument, Unavailable
from dscluster.query import Query
from dscluster.store.memory import MemoryStore
from dscluster.unixfs import (
    AddOptions,
    BlockCid,
    BlockNotFound,
    CorruptBlock,
    DirEntry,
    InvalidCid,
    LocalFileError,
    MalformedBlock,
    NodeStat,
    NotAFile,
    UnsupportedCid,
    UnsupportedNode,
    add_path,
    add_stream,
    get_to_path,
    ls,
    read_file,
    stat,
    stream_file,
)
from dscluster.unixfs._cid import DAG_PB, CidPrefix
from dscluster.unixfs._dagpb import DataType, FSData, encode_fsdata, encode_node
from dscluster.unixfs._fetch import fetch_node
from dscluster.unixfs._node import Block, basic_directory, file_leaf, file_parent
from tests.unit.unixfs_support import CHUNK, CountingStore, make_tree, pieces

SMALL = 1024
DATA = random.Random(11).randbytes(10 * SMALL + 123)


async def read_all(ds: Any, cid: str, **kw: Any) -> bytes:
    return b"".join([c async for c in read_file(ds, cid, **kw)])


async def streamed(ds: Any, cid: str, **kw: Any) -> bytes:
    out: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        out.append(chunk)

    await stream_file(ds, cid, sink, **kw)
    return b"".join(out)


async def small_file(ds: Any, data: bytes = DATA, **kw: Any) -> str:
    return (await add_stream(ds, pieces(data), options=AddOptions(chunk_size=SMALL, **kw))).cid


async def leaf_cids(ds: Any, cid: str) -> list[BlockCid]:
    node = await fetch_node(ds, BlockCid.parse(cid))
    return [node.link_cid(i) for i in range(len(node.links))]


async def put(ds: Any, block: Block) -> str:
    await ds.put(block.cid.key, block.data)
    return str(block.cid)


RANGES = [
    (0, None), (0, 0), (0, 1), (SMALL - 1, 2), (SMALL, SMALL), (3 * SMALL + 5, 2 * SMALL),
    (len(DATA) - 1, 10), (len(DATA), 5), (len(DATA) + 10, None), (0, len(DATA) + 100),
    (123, None),
]


@pytest.mark.parametrize(("offset", "length"), RANGES)
@pytest.mark.parametrize("raw_leaves", [False, True])
async def test_ranges(offset: int, length: int | None, raw_leaves: bool) -> None:
    ds = MemoryStore()
    cid = await small_file(ds, raw_leaves=raw_leaves)
    end = None if length is None else offset + length
    for read in (read_all, streamed):
        assert await read(ds, cid, offset=offset, length=length, window=2) == DATA[offset:end]


async def test_read_file_steps_through_windows() -> None:
    ds = MemoryStore()
    data = random.Random(12).randbytes(5 * CHUNK + 17)
    cid = (await add_stream(ds, pieces(data))).cid
    for window in (1, 2, 32):
        assert await read_all(ds, cid, window=window) == data
        assert await read_all(ds, cid, offset=CHUNK + 3, length=3 * CHUNK, window=window) == (
            data[CHUNK + 3 : 4 * CHUNK + 3])


async def test_range_reads_skip_other_blocks() -> None:
    ds = CountingStore()
    cid = await small_file(ds)
    leaves = await leaf_cids(ds, cid)
    ds.gets.clear()
    assert await read_all(ds, cid, offset=3 * SMALL + 10, length=20) == DATA[3 * SMALL + 10 :][:20]
    assert ds.gets == [BlockCid.parse(cid).key, leaves[3].key]


async def test_reads_prefetch_within_the_window() -> None:
    ds = CountingStore(delay=0.002)
    cid = await small_file(ds)
    ds.max_in_flight = 0
    assert await streamed(ds, cid, window=4) == DATA
    assert 2 <= ds.max_in_flight <= 4


async def test_negative_range_is_refused() -> None:
    ds = MemoryStore()
    cid = await small_file(ds)
    with pytest.raises(InvalidArgument, match="offset"):
        await read_all(ds, cid, offset=-1)
    with pytest.raises(InvalidArgument, match="length"):
        await read_all(ds, cid, length=-1)


@pytest.mark.parametrize("which", ["root", "leaf"])
async def test_corrupt_block_names_its_cid(which: str) -> None:
    ds = MemoryStore()
    cid = await small_file(ds)
    bad = BlockCid.parse(cid) if which == "root" else (await leaf_cids(ds, cid))[4]
    block = bytearray(await ds.get(bad.key))
    block[len(block) // 2] ^= 1
    await ds.put(bad.key, bytes(block))
    with pytest.raises(CorruptBlock, match=str(bad)):
        await read_all(ds, cid)
    with pytest.raises(CorruptBlock, match=str(bad)):
        await streamed(ds, cid)


async def test_missing_block_names_its_cid() -> None:
    ds = MemoryStore()
    cid = await small_file(ds)
    gone = (await leaf_cids(ds, cid))[7]
    await ds.delete(gone.key)
    with pytest.raises(BlockNotFound, match=f"{gone}.*{gone.key}"):
        await read_all(ds, cid)
    # a range that does not touch the missing block still reads
    assert await read_all(ds, cid, length=SMALL) == DATA[:SMALL]


async def test_store_errors_pass_through_unwrapped() -> None:
    class Down(MemoryStore):
        async def get(self, key: str) -> bytes:
            raise Unavailable("node down")

    with pytest.raises(Unavailable, match="node down"):
        await read_all(Down(), "QmfDmsHTywy6L9Ne5RXsj5YumDedfBLMvCvmaxjBoe6w4d")


async def test_bad_cids() -> None:
    ds = MemoryStore()
    cbor = str(CID("base32", 1, "dag-cbor", multihash.digest(b"x", "sha2-256")))
    for call in (
        lambda c: read_all(ds, c), lambda c: stat(ds, c), lambda c: ls(ds, c),
        lambda c: get_to_path(ds, c, Path("/nonexistent/never")),
    ):
        with pytest.raises(InvalidCid, match="not-a-cid"):
            await call("not-a-cid")
        with pytest.raises(UnsupportedCid, match="dag-cbor"):
            await call(cbor)


async def test_identity_cids_need_no_store() -> None:
    ds = CountingStore()
    cid = str(CID("base32", 1, "raw", multihash.digest(b"inline", "identity")))
    assert await read_all(ds, cid) == b"inline"
    assert await read_all(ds, cid, offset=2, length=2) == b"li"
    assert ds.gets == []


async def test_malformed_dags_are_refused(tmp_path: Path) -> None:
    ds = MemoryStore()
    garbage = b"\x0a\x03\x08"  # dag-pb whose Data is not valid UnixFS
    cid = await put(ds, Block(BlockCid.for_block(garbage, version=0, codec=DAG_PB), garbage))
    with pytest.raises(MalformedBlock, match=cid):
        await stat(ds, cid)

    leaf, child = file_leaf(b"abc", raw=False, prefix=CidPrefix())
    await put(ds, leaf)
    lying = type(child)(child.cid, 4, child.tsize)  # says the leaf holds 4 bytes
    parent, _ = file_parent([lying, lying], prefix=CidPrefix())
    with pytest.raises(MalformedBlock, match="3 bytes"):
        await read_all(ds, await put(ds, parent))

    evil, _ = basic_directory([(b"../evil", child)], prefix=CidPrefix())
    with pytest.raises(MalformedBlock, match=r"unsafe entry name '\.\./evil'"):
        await get_to_path(ds, await put(ds, evil), tmp_path / "out")
    assert os.listdir(tmp_path) == []


async def test_unsupported_nodes(tmp_path: Path) -> None:
    ds = MemoryStore()
    meta = encode_node([], encode_fsdata(FSData(DataType.METADATA)))
    cid = await put(ds, Block(BlockCid.for_block(meta, version=0, codec=DAG_PB), meta))
    assert (await stat(ds, cid)).type == "metadata"
    with pytest.raises(UnsupportedNode, match="metadata"):
        await ls(ds, cid)
    with pytest.raises(UnsupportedNode, match="metadata"):
        await get_to_path(ds, cid, tmp_path / "out")
    with pytest.raises(NotAFile, match="metadata"):
        await read_all(ds, cid)
    assert os.listdir(tmp_path) == []


async def test_get_file_is_atomic(tmp_path: Path) -> None:
    ds = MemoryStore()
    cid = await small_file(ds)
    out = tmp_path / "copy.bin"
    out.write_bytes(b"old content")
    await get_to_path(ds, cid, out)  # an existing file is replaced
    assert out.read_bytes() == DATA
    out.write_bytes(b"old content")
    gone = (await leaf_cids(ds, cid))[9]
    await ds.delete(gone.key)
    with pytest.raises(BlockNotFound, match=str(gone)):
        await get_to_path(ds, cid, out)
    assert out.read_bytes() == b"old content"  # untouched
    assert os.listdir(tmp_path) == ["copy.bin"]  # no temporary left
    with pytest.raises(BlockNotFound):
        await get_to_path(ds, cid, tmp_path / "new.bin")
    assert os.listdir(tmp_path) == ["copy.bin"]
    with pytest.raises(LocalFileError, match="nowhere is not a directory"):
        await get_to_path(ds, cid, tmp_path / "nowhere" / "new.bin")


async def test_get_tree_is_atomic(tmp_path: Path) -> None:
    ds = MemoryStore()
    src = make_tree(tmp_path / "tree", hidden=False)
    entries = [x async for x in add_path(ds, src, recursive=True)]
    root = entries[-1][0]
    deep = dict((name, cid) for cid, name in entries)["tree/sub/deeper/c.txt"]
    key = BlockCid.parse(deep).key
    await ds.put(key, b"tampered")
    out = tmp_path / "out"
    with pytest.raises(CorruptBlock, match=deep):
        await get_to_path(ds, root, out)
    assert sorted(os.listdir(tmp_path)) == ["tree"]
    # an existing directory is never replaced, even by a complete tree
    await ds.delete(key)
    (tmp_path / "exists").mkdir()
    [(other, _)] = [x async for x in add_path(ds, src / "sub" / "z.txt")]
    for cid in (root, other):
        with pytest.raises(LocalFileError, match="already exists"):
            await get_to_path(ds, cid, tmp_path / "exists")
    assert os.listdir(tmp_path / "exists") == []


async def test_stat_and_ls(tmp_path: Path) -> None:
    ds = MemoryStore()
    src = make_tree(tmp_path / "tree", hidden=False)
    cids = {name: cid for cid, name in [x async for x in add_path(ds, src, recursive=True)]}
    root = cids["tree"]
    total_blocks = sum([len(e.value or b"") async for e in ds.query(Query())])
    info = await stat(ds, root)
    assert info.type == "directory" and info.size == 0 and info.num_links == 7
    # every block is under the root once, except the shared empty-file and empty-dir
    # nodes, which are distinct here; so the cumulative size is all the stored bytes
    assert info.cumulative_size == total_blocks
    b_bin = await stat(ds, cids["tree/B.bin"])
    assert (b_bin.type, b_bin.size, b_bin.num_links) == ("file", 300_000, 2)
    assert (await stat(ds, cids["tree/link"])).type == "symlink"
    assert (await stat(ds, cids["tree/link"])).size == len("a.txt")

    listing = await ls(ds, root)
    assert [e.name for e in listing] == [
        "B.bin", "a.txt", "empty.bin", "exact.bin", "link", "sub",
        "\u00fcn\u00efcode-\u540d\u524d.txt",
    ]
    assert listing[0] == DirEntry("B.bin", cids["tree/B.bin"], 300_000, "file")
    assert listing[4] == DirEntry("link", cids["tree/link"], 5, "symlink")
    assert listing[5] == DirEntry("sub", cids["tree/sub"], 0, "directory")
    chunks = await ls(ds, cids["tree/B.bin"])
    assert [(e.name, e.size, e.type) for e in chunks] == [("", CHUNK, "file"),
                                                          ("", 300_000 - CHUNK, "file")]

    raw = (await add_stream(ds, pieces(b"raw!"), options=AddOptions(cid_version=1))).cid
    assert await stat(ds, raw) == NodeStat(raw, "raw", 4, 4, 0, 4)
    assert await ls(ds, raw) == []
    with pytest.raises(NotAFile, match="is a directory"):
        await read_all(ds, root)
