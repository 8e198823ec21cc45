"""dsclient add/get/cat/ls/stat through three real node processes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from dscluster.blocks import BLOCKS_PREFIX
from dscluster.clustermap import ClusterMap
from dscluster.config import MAP_FILE
from dscluster.keys import slot_of
from dscluster.localcluster import Cluster, run_measured, tool
from dscluster.unixfs import block_key
from tests.unit.test_unixfs_tree import KUBO_TREE_ROOT
from tests.unit.unixfs_support import VECTORS, make_tree, vector_data

pytestmark = pytest.mark.timeout(180)


def ok(p: subprocess.CompletedProcess[bytes]) -> bytes:
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout


def test_add_gives_kubos_cids_and_get_returns_the_bytes(cluster: Cluster, tmp_path: Path):
    for v in VECTORS["files"]:
        f = tmp_path / v["name"]
        f.write_bytes(vector_data(v))
        out = ok(cluster.dsclient("add", "--no-progress", str(f))).decode().split()
        assert out == ["added", v["cid"], v["name"]]
        copy = tmp_path / ("copy-" + v["name"])
        ok(cluster.dsclient("get", v["cid"], "-o", str(copy)))
        assert copy.read_bytes() == f.read_bytes()
    big = next(v for v in VECTORS["files"] if v["name"] == "rand10m.bin")
    cat = ok(cluster.dsclient("cat", big["cid"]))
    assert hashlib.sha256(cat).digest() == hashlib.sha256(vector_data(big)).digest()
    stat = ok(cluster.dsclient("stat", big["cid"])).decode()
    assert f"Size: {big['size']}" in stat and "Type: file" in stat
    # blocks are stored where Kubo keeps them, and spread over every node
    keys = ok(cluster.dsclient("ls", "/blocks")).decode().split()
    assert block_key(big["cid"]) in keys
    holders = {r["index"] for r in cluster_rows(cluster) if r["keys"] > 0}
    assert holders == {0, 1, 2}


def cluster_rows(cluster: Cluster) -> list[dict]:
    return json.loads(ok(cluster.dsclient("status", "--json")))["nodes"]


def test_add_r_and_get_a_directory_tree(cluster: Cluster, tmp_path: Path):
    tree = make_tree(tmp_path / "tree", hidden=False)
    lines = ok(cluster.dsclient("add", "-r", "--no-progress", str(tree))).decode().splitlines()
    assert lines[-1] == f"added {KUBO_TREE_ROOT} tree"
    listing = ok(cluster.dsclient("ls", KUBO_TREE_ROOT)).decode()
    assert listing.strip()
    out = tmp_path / "copy"
    ok(cluster.dsclient("get", KUBO_TREE_ROOT, "-o", str(out)))
    for p in tree.rglob("*"):
        q = out / p.relative_to(tree)
        if p.is_symlink():
            assert q.is_symlink() and q.readlink() == p.readlink()
        elif p.is_file():
            assert q.read_bytes() == p.read_bytes(), p


def _block_name(cluster: Cluster, marker: bytes) -> str:
    """The file name of a leaf block holding ``marker`` (on node 0): a sha2-256 block's
    name starts CIQ (other records, an add's gc lease naming the file, live beside it)."""
    for path in (cluster.nodes[0].conf / "data" / "blocks").rglob("CIQ*.data"):
        if marker in path.read_bytes():
            return path.name
    raise AssertionError(f"no block with {marker!r}")


def _block_file(cluster: Cluster, i: int, name: str) -> Path:
    [path] = (cluster.nodes[i].conf / "data" / "blocks").rglob(name)
    return path


def _corrupt(cluster: Cluster, name: str, marker: bytes, nodes: list[int]) -> None:
    """Flip a byte of block ``name`` on ``nodes``, behind the cluster's back."""
    for i in nodes:
        path = _block_file(cluster, i, name)
        path.write_bytes(path.read_bytes().replace(marker, marker.upper(), 1))


def test_a_block_corrupt_on_replicas_is_read_from_a_good_one_and_repaired(
        cluster: Cluster, tmp_path: Path):
    f = tmp_path / "rotting.bin"
    f.write_bytes(b"rotting " * 100_000)
    cid = ok(cluster.dsclient("add", "-Q", "--no-progress", str(f))).decode().strip()
    name = _block_name(cluster, b"rotting")
    # rot the copies of every owner a read asks before the last one (read-set order,
    # primary first), so that the read meets them all and must repair them
    cmap = ClusterMap.load(cluster.client() / MAP_FILE)
    owners = cmap.read_set(slot_of(BLOCKS_PREFIX + name.removesuffix(".data")))
    _corrupt(cluster, name, b"rotting", list(owners[:-1]))
    out = tmp_path / "out.bin"
    ok(cluster.dsclient("get", cid, "-o", str(out)))
    assert out.read_bytes() == f.read_bytes()
    for i in owners:  # the read wrote the good copy back over the rotten ones
        assert b"ROTTING" not in _block_file(cluster, i, name).read_bytes(), i


def test_corrupt_block_on_every_replica_is_detected_and_nothing_is_left(cluster: Cluster,
                                                                        tmp_path: Path):
    f = tmp_path / "victim.bin"
    f.write_bytes(b"precious " * 100_000)
    cid = ok(cluster.dsclient("add", "-Q", "--no-progress", str(f))).decode().strip()
    _corrupt(cluster, _block_name(cluster, b"precious"), b"precious",
             list(range(len(cluster.nodes))))
    out = tmp_path / "out.bin"
    p = cluster.dsclient("get", cid, "-o", str(out))
    err = p.stderr.decode()
    assert p.returncode != 0 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "corrupt" in err or "does not match" in err, err
    assert not out.exists() and not list(tmp_path.glob(".out.bin*"))


@pytest.mark.soak
@pytest.mark.timeout(900)
def test_a_1_gib_file_adds_and_gets_in_flat_memory(cluster: Cluster, tmp_path: Path):
    f = tmp_path / "big.bin"
    with open(f, "wb") as out:
        for _ in range(1024):
            out.write(os.urandom(1 << 20))
    conf = f"--conf={cluster.client()}"
    add_rss = run_measured([tool("dsclient"), conf, "add", "--no-progress", str(f)],
                           800).peak_rss_mb
    cid = ok(cluster.dsclient("add", "-Q", "--only-hash", "--no-progress", str(f))).strip()
    copy = tmp_path / "copy.bin"
    get_rss = run_measured([tool("dsclient"), conf, "get", cid.decode(), "-o", str(copy)],
                           800).peak_rss_mb
    assert copy.stat().st_size == f.stat().st_size
    with open(f, "rb") as a, open(copy, "rb") as b:
        while chunk := a.read(1 << 24):
            assert chunk == b.read(1 << 24)
    print(f"1 GiB: dsclient add peak RSS {add_rss:.0f} MB, get {get_rss:.0f} MB")
    assert add_rss < 200 and get_rss < 200, (add_rss, get_rss)
