"""go-ds-flatfs (github.com/ipfs/go-ds-flatfs, Kubo's block store), from
tests/go/flatfs, on the blocks/ directory of a real dscluster node's flatfs store: it
reads every key the node wrote, byte for byte, and what it writes into a stopped node's
tree is served by the node once the node has reconciled its key index at start.

The expected go-ds-flatfs key of every datastore key is computed here from doc/storage.md
("Key → file name"), not with the store's own code: `/blocks/X` (X in [0-9A-Z+-_=], not
starting with `_`) is `/X`; any other key is `/_` + unpadded upper-case base32 of its
UTF-8 bytes; a name over 240 characters is invisible to go-ds-flatfs.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from dscluster.client.connect import open_cluster
from dscluster.config import load_node_config, resolve
from dscluster.datastore import BatchOp
from dscluster.gc.claims import is_block_key
from dscluster.gc.keys import owned_key
from dscluster.localcluster import Cluster
from dscluster.query import Query
from dscluster.store.memory import MemoryStore
from dscluster.unixfs import AddOptions, add_stream

from .conftest import harness, run

pytestmark = pytest.mark.timeout(180)

SHARDING = "/repo/flatfs/shard/v1/next-to-last/2"
_RAW = re.compile(r"[0-9A-Z+\-_=]+")


def flatfs_key(key: str) -> str | None:
    """go-ds-flatfs's key for datastore key ``key`` in our tree (None: invisible)."""
    name = key.removeprefix("/blocks/")
    if not (key.startswith("/blocks/") and _RAW.fullmatch(name) and not name.startswith("_")):
        name = "_" + base64.b32encode(key.encode()).decode().rstrip("=")
    return None if len(name) > 240 else "/" + name


def _datastore_key(flatfs: str) -> str:
    """The datastore key of a go-ds-flatfs key, for the keys flatfs_key encodes."""
    name = flatfs.removeprefix("/")
    if not name.startswith("_"):
        return "/blocks/" + name
    raw = name[1:]
    return base64.b32decode(raw + "=" * (-len(raw) % 8)).decode()


def blocks_of(data: bytes) -> tuple[str, dict[str, bytes]]:
    """The CID and the blocks (datastore key → bytes) `ipfs add` makes of ``data``."""
    async def build() -> tuple[str, dict[str, bytes]]:
        local = MemoryStore()

        async def source():
            yield data
        cid = (await add_stream(local, source(), options=AddOptions())).cid
        return cid, {e.key: e.value async for e in local.query(Query(prefix="/blocks"))}
    return trio.run(build)


def blocks_dir(c: Cluster, index: int) -> Path:
    conf = c.nodes[index].conf
    return resolve(conf, load_node_config(conf).store.path) / "blocks"


def ok(p) -> bytes:
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return p.stdout


def dump(root: Path) -> dict:
    return json.loads(run([harness("flatfs"), "dump", root], timeout=60).stdout)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Cluster]:
    """A 1-node flatfs cluster: every key is on node 0."""
    c = Cluster(tmp_path / "cluster", nodes=1).start()
    try:
        yield c
    finally:
        c.stop()


def write_through_cluster(c: Cluster, tmp_path: Path) -> tuple[str, bytes, dict[str, bytes]]:
    """A `dsclient add` of a 700 KB file and `dsclient put`s of keys that are no IPFS
    blocks; (cid, file bytes, every datastore key written → its value)."""
    data = os.urandom(700_000)
    f = tmp_path / "file.bin"
    f.write_bytes(data)
    cid, written = blocks_of(data)
    assert ok(c.dsclient("add", "-Q", "--no-progress", str(f))).decode().strip() == cid
    others = {
        "/a/b": b"a value under /a",
        "/blocks/_X": b"a /blocks name that starts with _",
        "/blocks/lower-case": b"a /blocks name that is not flatfs-safe",
        "/blocks/" + "L" * 300: b"a /blocks name too long for one file name",
        "/long/" + "x" * 1500: os.urandom(3000),  # 2 continuation directories
        "/empty": b"",
    }
    # one batch through the library, not a `dsclient put` process each: the keys' path
    # through the node to the disk is the same
    async def put_others() -> None:
        async with open_cluster(c.client()) as ds:
            await ds.apply([BatchOp(k, v) for k, v in others.items()])

    trio.run(put_others)
    return cid, data, {**written, **others}


def test_go_ds_flatfs_reads_every_key_a_stopped_node_wrote(node: Cluster, tmp_path: Path):
    _, _, written = write_through_cluster(node, tmp_path)
    node.nodes[0].kill(signal.SIGTERM)  # a clean stop: diskUsage.cache is written
    got = dump(blocks_dir(node, 0))
    assert got["shard"] == SHARDING
    expected = {flatfs_key(k): v for k, v in written.items() if flatfs_key(k) is not None}
    assert len(expected) == len(written) - 2  # the two long keys are invisible
    keys = {e["key"]: base64.b64decode(e["value"] or "") for e in got["keys"]}
    # the add's garbage-collection records (dscluster/gc: a marker per block, a lease)
    gc_records = {k: keys.pop(k) for k in list(keys)
                  if _datastore_key(k).startswith("/.ipfs/")}
    assert {_datastore_key(k) for k in gc_records} >= {
        owned_key(k) for k in written if is_block_key(k)}
    assert sorted(keys) == sorted(expected)
    for k, v in expected.items():
        assert keys[k] == v, f"{k}: {len(keys[k])} bytes differ from the {len(v)} written"
    # go-ds-flatfs starts from our diskUsage.cache: value bytes of every key, long ones too
    assert got["disk_usage"] == (sum(len(v) for v in written.values())
                                 + sum(len(v) for v in gc_records.values()))


def test_node_serves_what_go_ds_flatfs_wrote_into_its_stopped_tree(node: Cluster,
                                                                   tmp_path: Path):
    cid, data, _ = write_through_cluster(node, tmp_path)
    node.nodes[0].kill(signal.SIGTERM)
    root = blocks_dir(node, 0)
    tool = harness("flatfs")
    # what Kubo would do: a file's blocks at /<base32 multihash>, and one more key
    new = os.urandom(600_000)
    new_cid, new_blocks = blocks_of(new)
    assert new_cid != cid
    for i, (key, value) in enumerate(new_blocks.items()):
        (tmp_path / f"block{i}").write_bytes(value)
        run([tool, "put", root, flatfs_key(key), tmp_path / f"block{i}"], timeout=60)
    (tmp_path / "value").write_bytes(b"written by go-ds-flatfs")
    run([tool, "put", root, flatfs_key("/from-go/x"), tmp_path / "value"], timeout=60)
    run([tool, "delete", root, flatfs_key("/a/b")], timeout=60)

    node.restart(0)
    log = node.nodes[0].log.read_text()
    assert "index reconciled (changed)" in log, log[-3000:]
    out = tmp_path / "out.bin"
    ok(node.dsclient("get", new_cid, "-o", str(out)))
    assert out.read_bytes() == new
    async def read_blocks() -> None:
        async with open_cluster(node.client()) as ds:
            for key, value in new_blocks.items():
                assert await ds.get(key) == value, key

    trio.run(read_blocks)
    assert ok(node.dsclient("get-key", "/from-go/x")) == b"written by go-ds-flatfs"
    assert node.dsclient("has", "/a/b").returncode == 1  # deleted by go-ds-flatfs
    assert ok(node.dsclient("cat", cid)) == data  # what was there before is intact
