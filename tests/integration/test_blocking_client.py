"""The blocking facade, from plain threads."""

from __future__ import annotations

import threading

import pytest

from dscluster.client.blocking import BlockingClusterDatastore
from dscluster.errors import ConfigError, NotFound
from dscluster.localcluster import Cluster
from dscluster.query import Query

pytestmark = pytest.mark.timeout(120)


def test_blocking_facade_from_threads(cluster: Cluster):
    with BlockingClusterDatastore(cluster.client()) as ds:
        def worker(w: int) -> None:
            for i in range(50):
                ds.put(f"/blocking/{w}/{i:03d}", f"{w}-{i}".encode())

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert ds.get("/blocking/2/007") == b"2-7" and ds.has("/blocking/0/000")
        with pytest.raises(NotFound):
            ds.get("/blocking/none")
        keys = [e.key for e in ds.query(Query(prefix="/blocking", keys_only=True))]
        assert len(keys) == 200 and keys == sorted(keys)
        # stopping early closes the query cleanly
        first = next(iter(ds.query(Query(prefix="/blocking", limit=5))))
        assert first.key == "/blocking/0/000"
        b = ds.batch()
        b.put("/blocking/b", b"1")
        b.delete("/blocking/0/000")
        b.commit()
        assert ds.get("/blocking/b") == b"1" and not ds.has("/blocking/0/000")
        assert ds.disk_usage() > 0
    with pytest.raises(RuntimeError):
        ds.get("/blocking/b")


def test_blocking_facade_reports_open_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a client directory"):
        BlockingClusterDatastore(tmp_path / "missing")
