"""Helia's storage stack (blockstore-s3 and the UnixFS importer/exporter, from npm) on
the cluster through the S3 gateway, sharing blocks with dsclient both ways.

Needs Node.js and `npm ci` in tests/js (`make install` does it when npm is present)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dscluster.localcluster import Cluster

from .test_s3_node import credential, ensure_blocks_bucket

JS = Path(__file__).resolve().parents[1] / "js"
pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which("node") is None or not (JS / "node_modules").is_dir(),
                       reason="Node.js or tests/js/node_modules missing (run: make install)"),
]


def helia(c: Cluster, endpoint: str, *args: str) -> bytes:
    cred = credential(c)
    p = subprocess.run(["node", str(JS / "helia_s3.mjs"), endpoint, cred["access_key"],
                        cred["secret_key"], "blocks", *args], capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout


def test_helia_reads_what_dsclient_added(s3_cluster, tmp_path: Path):
    c, endpoint = s3_cluster
    ensure_blocks_bucket(c, endpoint)
    f = tmp_path / "from-dsclient.bin"
    f.write_bytes(os.urandom(700_000))  # several leaves under a root
    p = c.dsclient("add", "-Q", "--no-progress", str(f))
    cid = p.stdout.decode().strip()
    assert p.returncode == 0 and cid.startswith("Qm")
    assert helia(c, endpoint, "cat", cid) == f.read_bytes()


def test_dsclient_reads_what_helia_added_with_the_same_cid(s3_cluster, tmp_path: Path):
    c, endpoint = s3_cluster
    ensure_blocks_bucket(c, endpoint)
    f = tmp_path / "from-helia.bin"
    f.write_bytes(os.urandom(900_000))
    cid = helia(c, endpoint, "add", str(f)).decode().strip()
    # Helia with `ipfs add`'s options made the DAG dsclient makes
    ours = c.dsclient("add", "-Q", "--only-hash", "--no-progress", str(f))
    assert ours.stdout.decode().strip() == cid
    out = tmp_path / "out.bin"
    p = c.dsclient("get", cid, "-o", str(out))
    assert p.returncode == 0, p.stderr.decode()
    assert out.read_bytes() == f.read_bytes()
