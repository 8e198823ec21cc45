"""Real Kubo through the S3 gateway: tests/go/kubo (Kubo with an S3 datastore plugin
that takes go-ds-s3's spec; doc/ipfs.md), given the Datastore.Spec `dscfg ipfs` prints.

Used by tests/interop/test_kubo_s3.py and by `make bench`, which times `ipfs add` of a
100 MiB file into the cluster through the gateway against the same binary on its own
default repo (flatfs with sync for blocks, leveldb for the rest).

Every repo is made offline (`ipfs init --profile=test`: no bootstrap peers, loopback
listen addresses only, no mDNS, no autoconf fetch) and every command runs with
``--offline``, so Kubo never opens a connection except to the gateway.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from dscluster.localcluster import tool

from .files import FILE_MIB

ROOT = Path(__file__).resolve().parent.parent
KUBO = ROOT / ".cache" / "go" / "bin" / "kubo"  # tests/go/kubo, built by `make go-harnesses`
TIMEOUT = 600.0  # one Kubo command


def kubo(binary: Path, repo: Path, *args: str | Path,
         timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run Kubo on ``repo``; a failure raises with what it printed."""
    p = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL,
                       env={**os.environ, "IPFS_PATH": str(repo)})
    if p.returncode != 0:
        raise RuntimeError(f"ipfs {' '.join(map(str, args))} exited {p.returncode}: "
                           f"{(p.stderr or p.stdout).strip()[-2000:]}")
    return p


def dscfg_ipfs(endpoint: str, bucket: str, node_conf: Path) -> tuple[dict[str, Any], str]:
    """Kubo's Datastore.Spec and the datastore_spec line, as `dscfg ipfs` prints them."""
    out = subprocess.run([tool("dscfg"), "ipfs", "--s3", endpoint, "--bucket", bucket,
                          "--conf", str(node_conf)], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    spec, rest = out.split("set Datastore.Spec in $IPFS_PATH/config to\n", 1)[1].split("\n\n", 1)
    disk_spec = rest.split("$IPFS_PATH/datastore_spec:\n", 1)[1].split("\n", 1)[0]
    return json.loads(spec), disk_spec


def init_repo(binary: Path, root: Path, spec: dict[str, Any] | None = None) -> Path:
    """A new offline Kubo repo at root/repo: Kubo's default datastore, or ``spec``.

    With a spec, `ipfs init` is given a whole config file (a scratch repo's, which holds a
    new identity, with the spec put in), so that Kubo itself creates the datastore and
    writes datastore_spec, as it does for a new repo of any layout."""
    root.mkdir(parents=True, exist_ok=True)  # Kubo makes the repo's directory, not its parents
    repo = root / "repo"
    if spec is None:
        kubo(binary, repo, "init", "--profile=test")
        return repo
    scratch = root / "scratch"
    kubo(binary, scratch, "init", "--profile=test", "--empty-repo")
    config = json.loads((scratch / "config").read_text())
    config["Datastore"]["Spec"] = spec
    (root / "config.json").write_text(json.dumps(config))
    kubo(binary, repo, "init", "--profile=test", root / "config.json")
    return repo


def _timed_add(binary: Path, repo: Path, path: Path) -> float:
    """Seconds of one whole `ipfs add` command (Kubo's start-up included, ~0.5 s)."""
    t0 = time.perf_counter()
    kubo(binary, repo, "add", "-Q", "--offline", path)
    return time.perf_counter() - t0


def bench_kubo_s3(endpoint: str, node_conf: Path, tmp: Path, repeat: int = 3) -> list[str]:
    """`ipfs add` of FILE_MIB MiB through the gateway vs on Kubo's own flatfs: the median
    of ``repeat`` runs each, every run into a new repo (and, through the gateway, a new
    bucket), since a repo that holds the blocks already skips their writes."""
    if not KUBO.exists():
        return [f"kubo + S3 gateway add: skipped ({KUBO.relative_to(ROOT)} is not built: "
                "make go-harnesses)"]
    path = tmp / "bench-kubo-s3.bin"
    with open(path, "wb") as f:
        for _ in range(FILE_MIB):
            f.write(os.urandom(1 << 20))
    size_mb = path.stat().st_size / 1e6
    s3 = None
    local, gateway = [], []
    for run in range(repeat):
        local.append(_timed_add(KUBO, init_repo(KUBO, tmp / f"kubo-local-{run}"), path))
        bucket = f"kubo-bench-{run}"
        spec, _ = dscfg_ipfs(endpoint, bucket, node_conf)
        if s3 is None:
            child = spec["mounts"][0]["child"]
            s3 = boto3.client("s3", endpoint_url=endpoint, region_name=child["region"],
                              aws_access_key_id=child["accessKey"],
                              aws_secret_access_key=child["secretKey"],
                              config=Config(s3={"addressing_style": "path"}))
        s3.create_bucket(Bucket=bucket)
        repo = init_repo(KUBO, tmp / f"kubo-s3-{run}", spec)
        gateway.append(_timed_add(KUBO, repo, path))
    flatfs_mb = size_mb / statistics.median(local)
    gw_mb = size_mb / statistics.median(gateway)
    return [
        f"kubo ipfs add {FILE_MIB} MiB (tests/go/kubo, own flatfs):      {flatfs_mb:7.1f} MB/s",
        f"kubo ipfs add {FILE_MIB} MiB (tests/go/kubo, via S3 gateway):  {gw_mb:7.1f} MB/s",
        f"ratio kubo add via S3 gateway / on its own flatfs: {gw_mb / flatfs_mb:.2f} "
        f"(whole commands, median of {repeat})",
    ]
