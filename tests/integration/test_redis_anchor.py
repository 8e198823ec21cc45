"""The Redis Cluster that `make bench` times redis-py against (bench/redis_anchor.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench.redis_anchor import durable, redis_cluster, unavailable_reason

pytestmark = pytest.mark.skipif(unavailable_reason() is not None,
                                reason=unavailable_reason() or "")


def cli(port: int, *args: str) -> str:
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                          text=True, timeout=10, check=True).stdout


def test_three_masters_then_durable(tmp_path: Path) -> None:
    from redis.cluster import RedisCluster

    with redis_cluster(tmp_path) as ports:
        assert len(ports) == 3
        for p in ports:
            info = cli(p, "cluster", "info")
            assert "cluster_state:ok" in info and "cluster_size:3" in info
            assert "aof_enabled:0" in cli(p, "info", "persistence")  # gets: from memory
        rc = RedisCluster(host="127.0.0.1", port=ports[0])
        keys = [f"/k/{i}" for i in range(64)]
        for k in keys:
            rc.set(k, b"v")
        durable(ports)
        for k in keys:
            rc.set(k, b"w")
        rc.close()
        # every master logs every write with a sync per write, as flatfs with sync on
        for p in ports:
            assert cli(p, "config", "get", "appendfsync").split() == ["appendfsync", "always"]
            assert "aof_enabled:1" in cli(p, "info", "persistence")
        logged = b"".join(f.read_bytes() for f in tmp_path.rglob("*.incr.aof"))
        assert logged.count(b"\r\nw\r\n") == len(keys)
    # the servers are gone with the context
    for p in ports:
        assert subprocess.run(["redis-cli", "-p", str(p), "ping"], capture_output=True,
                              text=True, timeout=10).stdout.strip() != "PONG"
