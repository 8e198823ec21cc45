"""Fixtures shared by the integration and conformance suites."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dscluster.localcluster import Cluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One 3-node flatfs cluster of real processes with the default replication (3),
    shared by tests that do not break it."""
    c = Cluster(tmp_path_factory.mktemp("cluster"), replication=3).start()
    try:
        yield c
    finally:
        c.stop()
