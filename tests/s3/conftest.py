"""Fixtures of the S3 gateway tests: gateways over a MemoryStore and over a real 3-node
cluster (three dscluster processes on loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore import UNSIGNED

from dscluster.client.connect import open_cluster

from .support import Gateway, OpenDatastore, gateway_settings, open_memory_store, run_gateway


@pytest.fixture(scope="session", params=["memory", "cluster"])
def open_ds(request: pytest.FixtureRequest) -> OpenDatastore:
    """What the gateways of the tests serve: opens the datastore in the gateway's loop.
    Every test runs twice: over a MemoryStore, and over the real 3-node cluster of
    tests/conftest.py through the cluster client."""
    if request.param == "memory":
        return open_memory_store
    client = request.getfixturevalue("cluster").client("s3-gateway")
    return lambda: open_cluster(client)


@pytest.fixture(scope="session")
def gw(open_ds: OpenDatastore) -> Iterator[Gateway]:
    with run_gateway(gateway_settings(), open_ds) as g:
        yield g


@pytest.fixture(scope="session")
def s3(gw: Gateway) -> Any:
    return gw.client()


@pytest.fixture(scope="session")
def anon(gw: Gateway) -> Any:
    """A client that signs nothing."""
    return gw.client(signature_version=UNSIGNED)


@pytest.fixture
def bucket(gw: Gateway, s3: Any) -> str:
    """A fresh, empty bucket for one test."""
    return gw.bucket(s3)
