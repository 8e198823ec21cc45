"""Fixtures shared by the integration and conformance suites."""

from __future__ import annotations

import compileall
from collections.abc import Iterator

import pytest

from dscluster.localcluster import Cluster

from .goharness import REPO
from .mongodb_server import mongodb_server


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile the project's modules once, before any test. Where PYTHONDONTWRITEBYTECODE
    is set nothing else writes them, and each of the hundreds of `dscluster`, `dsclient`
    and `dscfg` processes the suite starts would compile them from source again: about a
    fifth of a process's start-up. Sources edited later are recompiled by the next
    session (a cached file whose source is newer is not used)."""
    for package in ("dscluster", "dsclient", "dscfg"):
        compileall.compile_dir(REPO / package, quiet=2)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One 3-node flatfs cluster of real processes with the default replication (3),
    shared by tests that do not break it."""
    c = Cluster(tmp_path_factory.mktemp("cluster"), replication=3).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session")
def mongodb_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A MongoDB server for the session: ``DSCLUSTER_TEST_MONGODB_URI``'s, else FerretDB
    (tests/go/ferretdb) on 127.0.0.1, stopped at the end; a skip where neither is at hand."""
    with mongodb_server(tmp_path_factory.mktemp("mongodb")) as uri:
        yield uri
