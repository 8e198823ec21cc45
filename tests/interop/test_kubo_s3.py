"""Real Kubo (tests/go/kubo: Kubo v0.43.1 with an S3 datastore plugin under go-ds-s3's
type "s3ds") keeping its blocks in a dscluster node through the S3 gateway, with the
Datastore.Spec that `dscfg ipfs` prints, sharing blocks with `dsclient` both ways.

Kubo runs offline with IPFS_PATH in the test's temporary directory: `ipfs init
--profile=test` from a config file (bench/kubo_s3.py; no network, no daemon), then
`--offline` commands.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.kubo_s3 import dscfg_ipfs, init_repo
from dscluster.localcluster import Cluster
from dscluster.unixfs import block_key

from .conftest import harness, run, s3_client

pytestmark = pytest.mark.timeout(300)

BUCKET = "blocks"
KUBO_TIMEOUT = 120  # one Kubo command; each starts an offline node (about 0.5 s here)


@dataclass
class Kubo:
    binary: Path
    repo: Path

    def __call__(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return run([self.binary, *args], env={"IPFS_PATH": str(self.repo)},
                   timeout=KUBO_TIMEOUT)


@pytest.fixture(scope="module")
def kubo_binary() -> Path:
    """Asked for before the gateway, so that a missing binary skips without a cluster."""
    return harness("kubo")


@pytest.fixture(scope="module")
def kubo(kubo_binary: Path, gateway_node: tuple[Cluster, str],
         tmp_path_factory: pytest.TempPathFactory) -> Kubo:
    binary = kubo_binary
    c, endpoint = gateway_node
    s3_client(c, endpoint).create_bucket(Bucket=BUCKET)
    spec, disk_spec = dscfg_ipfs(endpoint, BUCKET, c.nodes[0].conf)
    repo = init_repo(binary, tmp_path_factory.mktemp("kubo"), spec)
    # Kubo derived the same datastore_spec as dscfg printed for a repo made by hand
    assert (repo / "datastore_spec").read_text().strip() == disk_spec
    return Kubo(binary, repo)


def bucket_keys(c: Cluster, endpoint: str) -> set[str]:
    """The datastore keys of the blocks in the bucket, from its S3 listing."""
    pages = s3_client(c, endpoint).get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return {f"/{BUCKET}/{obj['Key']}" for page in pages for obj in page.get("Contents", [])}


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def make_tree(root: Path, seed: int) -> Path:
    """Files of several shapes: empty, one block, several 256 KiB chunks, nested."""
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty.txt").write_bytes(b"")
    (root / "small.txt").write_bytes(f"seed {seed}\n".encode())
    (root / "sub" / "two-chunks.bin").write_bytes(os.urandom(300 * 1024))
    (root / "sub" / "deeper" / "many-chunks.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    return root


def dsclient_add(c: Cluster, path: Path, *flags: str) -> str:
    p = c.dsclient("add", "-Q", "--no-progress", *flags, str(path), timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout.decode().strip()


def dsclient_get(c: Cluster, cid: str, out: Path) -> None:
    p = c.dsclient("get", cid, "-o", str(out), timeout=120)
    assert p.returncode == 0, p.stderr.decode()


def test_kubo_add_of_files_is_what_dsclient_gets(kubo: Kubo, gateway_node: tuple[Cluster, str],
                                                 tmp_path: Path):
    c, _ = gateway_node
    src = make_tree(tmp_path / "src", 1)
    for f in [p for p in src.rglob("*") if p.is_file()]:
        cid = kubo("add", "-Q", "--offline", f).stdout.strip()
        out = tmp_path / f"got-{f.name}"
        dsclient_get(c, cid, out)
        assert out.read_bytes() == f.read_bytes(), f.name
    # nothing went to a local blockstore: the spec has no flatfs mount
    assert not (kubo.repo / "blocks").exists()


def test_kubo_add_of_a_directory_is_what_dsclient_gets(kubo: Kubo,
                                                       gateway_node: tuple[Cluster, str],
                                                       tmp_path: Path):
    c, _ = gateway_node
    src = make_tree(tmp_path / "src", 2)
    cid = kubo("add", "-r", "-Q", "--offline", src).stdout.strip()
    dsclient_get(c, cid, tmp_path / "got")
    assert tree(tmp_path / "got") == tree(src)
    # the same tree added by dsclient is the same DAG (Kubo-identical importer)
    assert dsclient_add(c, src, "-r") == cid


def test_dsclient_add_is_what_kubo_cats_and_gets(kubo: Kubo, gateway_node: tuple[Cluster, str],
                                                 tmp_path: Path):
    c, _ = gateway_node
    src = make_tree(tmp_path / "src", 3)
    big = src / "sub" / "deeper" / "many-chunks.bin"
    cid = dsclient_add(c, big)
    p = subprocess.run([kubo.binary, "cat", "--offline", cid], capture_output=True,
                       env={**os.environ, "IPFS_PATH": str(kubo.repo)},
                       stdin=subprocess.DEVNULL, timeout=KUBO_TIMEOUT)
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    assert p.stdout == big.read_bytes()
    dir_cid = dsclient_add(c, src, "-r")
    kubo("get", "--offline", "-o", tmp_path / "got", dir_cid)
    assert tree(tmp_path / "got") == tree(src)


def test_kubo_refs_local_lists_the_bucket(kubo: Kubo, gateway_node: tuple[Cluster, str],
                                          tmp_path: Path):
    """`ipfs refs local` (a query of /blocks through the gateway) lists every block in
    the bucket, those dsclient wrote included, and nothing else."""
    c, endpoint = gateway_node
    cid = dsclient_add(c, make_tree(tmp_path / "src", 4), "-r")
    dag = {cid, *kubo("refs", "-r", "--offline", cid).stdout.split()}
    local = {block_key(x) for x in kubo("refs", "local").stdout.split()}
    assert {block_key(x) for x in dag} <= local
    assert local == bucket_keys(c, endpoint)


def test_kubo_repo_verify_reads_every_block(kubo: Kubo, gateway_node: tuple[Cluster, str],
                                            tmp_path: Path):
    """`ipfs repo verify` lists the blocks through the gateway, reads each and rehashes it."""
    kubo("add", "-r", "-Q", "--offline", make_tree(tmp_path / "src", 5))
    blocks = len(kubo("refs", "local").stdout.split())
    out = kubo("repo", "verify", "--enc=json").stdout
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert max(e.get("Progress", 0) for e in events) == blocks, out[-3000:]
    assert events[-1]["Msg"] == "verify complete, all blocks validated.", out[-3000:]
