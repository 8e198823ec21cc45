"""Interop harnesses in Go (tests/go/<harness>, built by `make go-harnesses` into
.cache/go/bin; found by tests/goharness.py), run against real dscluster processes on
127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from dscluster.config import free_tcp_port
from dscluster.localcluster import Cluster
from tests.goharness import harness as harness  # the interop tests import it from here

REGION = "us-east-1"


def run(argv: list[str | Path], *, timeout: float, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a harness; on failure the assertion shows what it printed."""
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    if check:
        assert p.returncode == 0, (f"{' '.join(map(str, argv))} exited {p.returncode}\n"
                                   f"--- stdout (tail)\n{p.stdout[-6000:]}\n"
                                   f"--- stderr (tail)\n{p.stderr[-3000:]}")
    return p


def s3_credential(c: Cluster) -> dict[str, str]:
    """The S3 credential `dscfg cluster` gave the bootstrapper."""
    cfg = json.loads((c.nodes[0].conf / "config.json").read_text())
    return cfg["s3"]["credentials"][0]


def s3_client(c: Cluster, endpoint: str) -> Any:
    cred = s3_credential(c)
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id=cred["access_key"],
                        aws_secret_access_key=cred["secret_key"],
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1}))


def _gateway(factory: pytest.TempPathFactory, name: str, nodes: int,
             replication: int) -> Iterator[tuple[Cluster, str]]:
    port = free_tcp_port()
    c = Cluster(factory.mktemp(name), nodes=nodes, replication=replication,
                node0_args=[f"--s3-listen=127.0.0.1:{port}"])
    c.start()
    try:
        yield c, f"http://127.0.0.1:{port}"
    finally:
        c.stop()


@pytest.fixture(scope="module")
def gateway_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, str]]:
    """A 3-node flatfs cluster with replication 3 whose bootstrapper serves the S3
    gateway: (cluster, endpoint URL)."""
    yield from _gateway(tmp_path_factory, "interop-s3", 3, 3)


@pytest.fixture(scope="session")
def gateway_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, str]]:
    """A 1-node flatfs cluster serving the S3 gateway: (cluster, endpoint URL). One for
    the session: each test module works in buckets of its own."""
    yield from _gateway(tmp_path_factory, "interop-s3-node", 1, 1)
