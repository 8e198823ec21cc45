"""The small-operation anchor: redis-py's RedisCluster against a 3-master Redis Cluster.

Debian's ``redis-server`` (scripts/system-deps.sh installs it) is started three times on
127.0.0.1 with free ports, as masters without replicas, and driven by redis-py's
``RedisCluster`` from one process with 1 or 8 threads, doing what ``run_kv`` does for our
client: the same keys, sizes, concurrency and windows. Threads, not trio or asyncio
tasks: redis-py's synchronous client is its fastest (here 1.4x its asyncio client for a
1 KiB get x1 and 1.9x at x8), and the anchor should be the best Redis can do from Python.
Gets are timed with persistence off (Redis answering from memory); puts with
``appendonly yes`` and ``appendfsync always``, so that an acknowledged write is on disk
as it is with our flatfs with sync on. One cluster serves both: persistence is switched
on with CONFIG SET between the two passes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from dscluster.config import free_tcp_port

from .kv import Result, verdict

if TYPE_CHECKING:
    from redis.cluster import RedisCluster

MASTERS = 3
READY_TIMEOUT = 30.0
LABEL = "redis cluster"
# issue 12's targets: our client / redis-py on the same operation (1.0 = Redis's pace);
# R=1 is measured against them, the default R is reported next to it
TARGETS = {("get", 1024, 1): 1.0, ("get", 1024, 8): 1.0,
           ("put", 1024, 1): 1.0, ("put", 1024, 8): 1.0,
           ("put", 256 * 1024, 8): 1.0, ("get", 256 * 1024, 8): 1.0}


def unavailable_reason() -> str | None:
    for exe in ("redis-server", "redis-cli"):
        if shutil.which(exe) is None:
            return f"{exe} not found (scripts/system-deps.sh installs Debian's redis-server)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "redis-py not installed (pip install -e '.[bench]')"
    return None


@contextmanager
def redis_cluster(root: Path) -> Iterator[list[int]]:
    """Three Redis Cluster masters on 127.0.0.1, persistence off; yields their ports and
    kills them on exit."""
    procs: list[subprocess.Popen[bytes]] = []
    ports = []
    try:
        for i in range(MASTERS):
            d = root / f"redis{i}"
            d.mkdir(parents=True)
            # the bus port is given explicitly: the default port + 10000 may be taken
            port, bus = free_tcp_port(), free_tcp_port()
            with open(d / "redis.log", "wb") as log:
                procs.append(subprocess.Popen(
                    ["redis-server", "--port", str(port), "--cluster-port", str(bus),
                     "--bind", "127.0.0.1", "--dir", str(d), "--cluster-enabled", "yes",
                     "--cluster-config-file", "nodes.conf", "--save", "",
                     "--appendonly", "no", "--daemonize", "no"],
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            ports.append(port)
        for p in ports:
            _wait(lambda p=p: _cli(p, "ping") == "PONG", f"redis on port {p} did not start")
        subprocess.run(["redis-cli", "--cluster", "create",
                        *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "0",
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)
        for p in ports:
            _wait(lambda p=p: "cluster_state:ok" in _cli(p, "cluster", "info"),
                  f"redis cluster on port {p} not ok")
        yield ports
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=20)


def _cli(port: int, *args: str) -> str:
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                          text=True, timeout=10).stdout.strip()


def _wait(ok: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not ok():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def durable(ports: list[int]) -> None:
    """Every master to ``appendonly yes``, ``appendfsync always``, once the AOF rewrite
    that switching it on starts has finished (until then writes are not yet logged)."""
    for p in ports:
        _cli(p, "config", "set", "appendfsync", "always")
        _cli(p, "config", "set", "appendonly", "yes")
    for p in ports:
        _wait(lambda p=p: _aof_on(p), f"redis on port {p}: AOF not on")


def _aof_on(port: int) -> bool:
    info = _cli(port, "info", "persistence")
    return all(f in info for f in ("aof_enabled:1", "aof_rewrite_in_progress:0",
                                   "aof_rewrite_scheduled:0"))


def _run_kv_threads(rc: RedisCluster, size: int, concurrency: int, seconds: float,
                    prefix: str) -> list[Result]:
    """run_kv's measurement (bench/kv.py), key for key, with threads for tasks."""
    value = os.urandom(size)
    written: list[str] = []
    counts = [0] * concurrency

    def timed(worker: Callable[[int, float], None]) -> tuple[int, float]:
        counts[:] = [0] * concurrency
        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(w, t0 + seconds))
                   for w in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(counts), time.perf_counter() - t0

    def put_worker(w: int, until: float) -> None:
        i = 0
        while time.perf_counter() < until:
            k = f"{prefix}/{size}/{concurrency}/{w}/{i}"
            rc.set(k, value)
            written.append(k)
            counts[w] += 1
            i += 1

    puts, put_s = timed(put_worker)
    keys = list(written)

    def get_worker(w: int, until: float) -> None:
        i = w
        while time.perf_counter() < until:
            got = rc.get(keys[i % len(keys)])
            assert isinstance(got, bytes) and len(got) == size
            counts[w] += 1
            i += concurrency

    gets, get_s = timed(get_worker)
    return [Result(LABEL, "put", size, concurrency, puts, put_s),
            Result(LABEL, "get", size, concurrency, gets, get_s)]


def _run(port: int, matrix: list[tuple[int, int]], seconds: float,
         prefix: str) -> list[Result]:
    from redis.cluster import RedisCluster

    rc = RedisCluster(host="127.0.0.1", port=port)
    try:
        return [r for size, conc in matrix
                for r in _run_kv_threads(rc, size, conc, seconds, prefix)]
    finally:
        rc.close()


def bench_redis(tmp: Path, matrix: list[tuple[int, int]], seconds: float) -> list[Result]:
    """Gets from the cluster without persistence, puts from it with AOF always on."""
    with redis_cluster(tmp / "redis") as ports:
        volatile = _run(ports[0], matrix, seconds, "/bench/redis/mem")
        durable(ports)
        synced = _run(ports[0], matrix, seconds, "/bench/redis/aof")
    return ([r for r in volatile if r.op == "get"]
            + [r for r in synced if r.op == "put"])


def ratio_lines(by: dict[tuple[str, str, int, int], Result], replications: list[int],
                label: Callable[[int], str]) -> list[str]:
    """Ours / Redis for every targeted operation: the first replication factor is held
    to the target, the others reported next to it."""
    out = []
    for (op, size, conc), target in TARGETS.items():
        redis = by[(LABEL, op, size, conc)].ops_per_s
        ratios = [by[(label(r), op, size, conc)].ops_per_s / redis for r in replications]
        shown = ", ".join(f"R={r} {x:.2f}" for r, x in zip(replications, ratios, strict=True))
        anchor = "no persistence" if op == "get" else "appendfsync always"
        out.append(f"vs Redis Cluster ({anchor}) {op:<3} {size // 1024:>3} KiB x{conc}: "
                   f"{shown}{verdict(ratios[0], target)}")
    return out
