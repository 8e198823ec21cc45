"""HAMT-sharded directories read back: get, cat, ls and stat of paths through plain and
sharded directories, lookups down a name's hash, malformed shards refused. (Their CIDs
against Kubo's, at the threshold and for 10,000 files, are in test_unixfs_kubo_add.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dscluster.store.memory import MemoryStore
from dscluster.unixfs import (
    MalformedBlock,
    PathNotFound,
    add_path,
    get_to_path,
    ls,
    read_file,
    stat,
)
from dscluster.unixfs._cid import CidPrefix
from dscluster.unixfs._exporter import Reader
from dscluster.unixfs._hamt import MURMUR3_X64_64, needs_sharding
from dscluster.unixfs._node import Child, hamt_shard
from tests.unit.test_dsclient_files import FakeApp, dsclient

pytestmark = pytest.mark.timeout(120)
NAME = "entry-{:05d}-" + "n" * 140  # 1500 x (152 + 34) bytes: past the threshold


def make_tree(root: Path) -> Path:
    shard = root / "top" / "shard"
    (shard / "inner").mkdir(parents=True)
    (shard / "inner" / "deep.txt").write_bytes(b"deep\n")
    for i in range(1500):
        (shard / NAME.format(i)).write_bytes(f"{i}\n".encode())
    (root / "top" / "readme.txt").write_bytes(b"hello\n")
    return root / "top"


async def test_paths_through_plain_and_sharded_directories(tmp_path: Path) -> None:
    ds = MemoryStore()
    top = make_tree(tmp_path / "in")
    added = {name: cid async for cid, name in add_path(ds, top, recursive=True)}
    root = added["top"]
    assert (await stat(ds, added["top/shard"])).type == "hamt-shard"
    assert (await stat(ds, f"{root}/shard")).cid == added["top/shard"]
    assert (await stat(ds, root)).type == "directory"

    async def cat(path: str) -> bytes:
        return b"".join([p async for p in read_file(ds, path)])

    assert await cat(f"{root}/shard/inner/deep.txt") == b"deep\n"
    assert await cat(f"/ipfs/{root}/shard/{NAME.format(1234)}") == b"1234\n"
    assert await cat(f"{root}/readme.txt") == b"hello\n"
    listing = await ls(ds, f"{root}/shard")
    assert sorted(e.name for e in listing) == sorted(os.listdir(top / "shard"))
    inner = next(e for e in listing if e.name == "inner")
    assert (inner.type, inner.size, inner.cid) == ("directory", 0, added["top/shard/inner"])
    for missing in ("shard/nope", "shard/inner/nope", "readme.txt/x"):
        with pytest.raises(PathNotFound):
            await stat(ds, f"{root}/{missing}")
    await get_to_path(ds, root, tmp_path / "out")
    for path in top.rglob("*"):
        copy = tmp_path / "out" / path.relative_to(top)
        assert copy.is_dir() if path.is_dir() else copy.read_bytes() == path.read_bytes()
    assert sum(1 for _ in (tmp_path / "out").rglob("*")) == sum(1 for _ in top.rglob("*"))
    await get_to_path(ds, f"{root}/shard/inner", tmp_path / "inner")
    assert (tmp_path / "inner" / "deep.txt").read_bytes() == b"deep\n"


async def test_every_entry_found_by_lookup_and_by_walk(tmp_path: Path) -> None:
    ds = MemoryStore()
    top = make_tree(tmp_path / "in")
    added = {name: cid async for cid, name in add_path(ds, top, recursive=True)}
    shard_cid = added["top/shard"]
    reader = Reader(ds)
    shard = await reader.root(shard_cid)
    walked = await reader.entries(shard)
    assert len(walked) == 1501
    for name, cid in walked[::50]:
        assert await reader.lookup(shard, name) == cid


def test_threshold_is_exceeding_256_kib() -> None:
    child = Child(CidPrefix().cid(b"x", 0x70), 0, 1)  # a 34-byte CIDv0
    entries = [(b"n" * 222 + f"{i:04d}".encode(), child) for i in range(1008)]  # 260 each
    assert not needs_sharding([*entries, (b"n" * 30, child)])  # exactly 262144
    assert needs_sharding([*entries, (b"n" * 31, child)])


async def test_malformed_shards_refused(tmp_path: Path) -> None:
    ds = MemoryStore()
    added = [c async for c, _ in add_path(ds, make_tree(tmp_path / "in") / "readme.txt")]
    file_cid = added[0]
    reader = Reader(ds)
    child_node = await reader.root(file_cid)
    child = Child(child_node.cid, child_node.content_size, child_node.cumulative_size)
    for links, fanout, hash_type, match in (
        ([(b"00a", child)], 256, 0x12, "hash function 0x12"),
        ([(b"00a", child)], 100, MURMUR3_X64_64, "invalid fanout 100"),
        ([(b"zza", child)], 256, MURMUR3_X64_64, "malformed link name"),
        ([(b"00", child)], 256, MURMUR3_X64_64, "as a sub-shard, but it is a file"),
        ([(b"00a", child), (b"01a", child)], 256, MURMUR3_X64_64, "duplicate"),
    ):
        block, _ = hamt_shard(links, b"\x03", fanout, hash_type, CidPrefix())
        await ds.put(block.cid.key, block.data)
        with pytest.raises(MalformedBlock, match=match):
            await ls(ds, str(block.cid))
        with pytest.raises(MalformedBlock, match=match):
            await get_to_path(ds, str(block.cid), tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_dsclient_get_cat_ls_of_paths(tmp_path: Path) -> None:
    app = FakeApp(MemoryStore())
    top = make_tree(tmp_path / "in")
    root = dsclient(app, "add", "-r", "-Q", str(top)).out.decode().strip()
    assert dsclient(app, "cat", f"{root}/shard/inner/deep.txt").out == b"deep\n"
    r = dsclient(app, "get", f"{root}/shard/{NAME.format(7)}", "-o", str(tmp_path / "seven"))
    assert r.code == 0 and (tmp_path / "seven").read_bytes() == b"7\n"
    lines = dsclient(app, "ls", f"{root}/shard").lines
    assert len(lines) == 1501 and any(line.endswith(" - inner/") for line in lines)
    r = dsclient(app, "cat", f"{root}/shard/missing")
    assert r.code == 1 and "no entry 'missing'" in r.err and "Traceback" not in r.err
