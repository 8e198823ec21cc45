"""S3 gateway throughput with boto3: PutObject, then GetObject of what was put.

    python -m bench.bench_s3 --endpoint http://127.0.0.1:9000 --access-key AK --secret-key SK

``make bench`` calls ``bench_gateway`` against a real cluster's gateway. Each phase runs
``threads`` blocking boto3 workers for ``seconds`` (the way S3 tools load a server);
the bucket it creates is emptied and removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import boto3
import trio
from botocore.config import Config
from botocore.exceptions import ClientError

from dscluster.client.connect import open_cluster
from dscluster.config import free_tcp_port
from dscluster.localcluster import Cluster

from .kv import Result, run_kv
from .profile import cpu_seconds


def _run(threads: int, seconds: float, work: Callable[[int, int], int]) -> tuple[int, int, float]:
    """Call ``work(thread, i)`` (returning bytes moved) in a loop on every thread until
    ``seconds`` have passed: (operations, bytes, elapsed seconds)."""
    deadline = time.monotonic() + seconds
    totals = [(0, 0)] * threads
    errors: list[BaseException] = []

    def loop(t: int) -> None:
        ops = moved = 0
        try:
            while time.monotonic() < deadline:
                moved += work(t, ops)
                ops += 1
        except BaseException as e:
            errors.append(e)
        totals[t] = (ops, moved)

    start = time.monotonic()
    workers = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    return sum(o for o, _ in totals), sum(m for _, m in totals), time.monotonic() - start


def bench_gateway(endpoint: str, access_key: str, secret_key: str, *, size: int = 262144,
                  threads: int = 8, seconds: float = 5.0,
                  cpu_of: Sequence[int] = ()) -> dict[str, Any]:
    """PUT then GET ``size``-byte objects from ``threads`` threads for ``seconds`` each;
    MB/s (10^6 bytes) and operations per second of both phases, and the CPU
    milliseconds per operation of each process in ``cpu_of`` (``put_cpu_ms``,
    ``get_cpu_ms``), this one included."""
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=threads,
                      retries={"max_attempts": 1}))
    bucket = f"bench-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    payload = os.urandom(size)
    written = [0] * threads

    def put(t: int, i: int) -> int:
        s3.put_object(Bucket=bucket, Key=f"{t}/{i}", Body=payload)
        written[t] = i + 1
        return size

    def get(t: int, i: int) -> int:
        return len(s3.get_object(Bucket=bucket, Key=f"{t}/{i % written[t]}")["Body"].read())

    cpu: dict[str, list[float]] = {}

    def phase(name: str, work: Callable[[int, int], int]) -> tuple[int, int, float]:
        before = [cpu_seconds(p) for p in cpu_of]
        ops, moved, elapsed = _run(threads, seconds, work)
        cpu[name] = [round((cpu_seconds(p) - b) * 1000 / max(ops, 1), 2)
                     for p, b in zip(cpu_of, before, strict=True)]
        return ops, moved, elapsed

    try:
        put_ops, put_bytes, put_s = phase("put", put)
        get_ops, get_bytes, get_s = phase("get", get)
    finally:
        _remove_bucket(s3, bucket)
    return {
        "put_cpu_ms": cpu["put"],
        "get_cpu_ms": cpu["get"],
        "size": size,
        "threads": threads,
        "put_mb_s": round(put_bytes / put_s / 1e6, 1),
        "get_mb_s": round(get_bytes / get_s / 1e6, 1),
        "put_ops_s": round(put_ops / put_s, 1),
        "get_ops_s": round(get_ops / get_s, 1),
    }


def gateway_credential(conf: Path) -> tuple[str, str]:
    """(access key, secret key) of the first S3 credential of a node's config.json."""
    cred = json.loads((conf / "config.json").read_text())["s3"]["credentials"][0]
    return cred["access_key"], cred["secret_key"]


async def _native(cluster: Cluster, size: int, threads: int, seconds: float) -> list[Result]:
    async with open_cluster(cluster.client()) as ds:
        return await run_kv(ds, "native", size, threads, seconds, "/bench/native")


def bench_versus_native(tmp: Path, seconds: float, nodes: int,
                        replications: Sequence[int]) -> list[str]:
    """``python -m bench --s3``: the gateway against the native client alone, 256 KiB x8,
    on one cluster of ``nodes`` per replication factor (node 0 serves S3), one after the
    other: the native client's put and get, then bench_gateway's, with the CPU per
    operation of the gateway's node and of the benchmark process (boto3)."""
    size, threads = 256 * 1024, 8
    lines = []
    for replication in replications:
        port = free_tcp_port()
        cluster = Cluster(tmp / f"s3-r{replication}", nodes=nodes, replication=replication,
                          node0_args=[f"--s3-listen=127.0.0.1:{port}"]).start()
        gateway = cluster.nodes[0]
        assert gateway.proc is not None
        try:
            native = trio.run(_native, cluster, size, threads, seconds)
            gw = bench_gateway(f"http://127.0.0.1:{port}", *gateway_credential(gateway.conf),
                               size=size, threads=threads, seconds=seconds,
                               cpu_of=[gateway.proc.pid, os.getpid()])
        finally:
            cluster.stop()
        for r in native:
            mbs = gw[f"{r.op}_mb_s"]
            gateway_ms, boto3_ms = gw[f"{r.op}_cpu_ms"]
            lines.append(f"R={replication} S3 gateway {r.op:<3} {size // 1024} KiB x{threads}: "
                         f"{mbs:6.1f} MB/s = {mbs / r.mb_per_s:.2f} x native "
                         f"({r.mb_per_s:.1f} MB/s); CPU per op: gateway node {gateway_ms:.2f} "
                         f"ms, boto3 {boto3_ms:.2f} ms")
    return lines


def _remove_bucket(s3: Any, bucket: str) -> None:
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        s3.delete_bucket(Bucket=bucket)
    except ClientError as e:
        print(f"bench_s3: could not remove bucket {bucket}: {e}")


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_s3")
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--access-key", required=True)
    ap.add_argument("--secret-key", required=True)
    ap.add_argument("--size", type=int, default=262144)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=5.0)
    a = ap.parse_args()
    print(json.dumps(bench_gateway(a.endpoint, a.access_key, a.secret_key, size=a.size,
                                   threads=a.threads, seconds=a.seconds)))


if __name__ == "__main__":
    main()
