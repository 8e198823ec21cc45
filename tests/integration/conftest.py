from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dscluster.client.connect import open_cluster
from dscluster.client.datastore import ClusterDatastore
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
