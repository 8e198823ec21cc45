from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dscluster.client.connect import open_cluster
from dscluster.client.datastore import ClusterDatastore
from dscluster.config import free_tcp_port
from dscluster.localcluster import Cluster


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster of its own, for tests that kill or restart nodes."""
    c = Cluster(tmp_path).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
async def client_ds(cluster: Cluster) -> AsyncIterator[ClusterDatastore]:
    async with open_cluster(cluster.client()) as ds:
        yield ds


@pytest.fixture(scope="session")
def s3_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, str]]:
    """A replicated cluster whose bootstrapper serves the S3 gateway: (cluster, endpoint
    URL)."""
    port = free_tcp_port()
    c = Cluster(tmp_path_factory.mktemp("s3node"), node0_args=[f"--s3-listen=127.0.0.1:{port}"],
                replication=3)
    c.start()
    try:
        yield c, f"http://127.0.0.1:{port}"
    finally:
        c.stop()
