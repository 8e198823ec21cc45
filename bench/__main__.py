"""Run every benchmark and append the results to doc/performance.md.

    make bench            # or: .venv/bin/python -m bench [--seconds 3]

The cluster numbers come from three real dscluster processes on loopback (flatfs,
sync on) driven by one client process; the local-store numbers from the same store
opened in-process. The key-value numbers are taken twice, on a cluster with replication
factor 1 and on one with the default (min(3, N), so 3), to price replication, and so
are the file and S3 gateway numbers: issue 12's targets hold for R=1 and the default's
are printed next to them. The absolute targets of the first round use the default.
The small operations are also timed against redis-py on a 3-master Redis Cluster
(bench/redis_anchor.py), and every ratio printed with issue 12's target.
Machines here are shared and noisy: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import trio

from dscluster.client.connect import open_cluster
from dscluster.cluster.placement import default_replication
from dscluster.config import free_tcp_port
from dscluster.localcluster import Cluster
from dscluster.store import open_store

from .bench_s3 import bench_gateway, bench_versus_native, gateway_credential
from .chunkers import bench_chunkers
from .files import FileRun, bench_file, bench_files, kubo_anchor
from .kubo_s3 import bench_kubo_s3
from .kv import Result, run_kv, verdict
from .profile import bench_profile
from .redis_anchor import bench_redis, ratio_lines, unavailable_reason
from .reshard import bench_reshard
from .scale import bench_scale

ROOT = Path(__file__).resolve().parent.parent
PERF_DOC = ROOT / "doc" / "performance.md"
MATRIX = [(256 * 1024, 1), (256 * 1024, 8), (1024, 1), (1024, 8)]
NODES = 3
R_DEFAULT = default_replication(NODES)
# what replication may cost at 256 KiB x8: a put goes to all R owners (each syncs its
# copy) and waits for a majority, while a get still fetches the value from one owner
# (the others are only asked for its version)
REPLICATION_TARGETS = {"put": 0.5, "get": 0.9}
# issue 12's, at R=1: files against Kubo's own local add, the gateway against the native
# client at the same replication factor
FILE_TARGETS = [("library add", "lib_add", 0.75), ("library get", "lib_get", 0.75),
                ("dsclient add", "cmd_add", 0.6), ("dsclient get", "cmd_get", 0.6)]
GATEWAY_TARGET = 0.8


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}")


async def bench_local(seconds: float, tmp: Path) -> list[Result]:
    store = await open_store("flatfs", tmp / "local", sync=True)
    try:
        out = []
        for size, conc in MATRIX:
            out += await run_kv(store, "flatfs local", size, conc, seconds, "/bench/local")
        return out
    finally:
        await store.close()


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cluster_label(replication: int) -> str:
    return f"cluster R={replication}"


async def bench_cluster(seconds: float, cluster: Cluster) -> list[Result]:
    async with open_cluster(cluster.client()) as ds:
        out = []
        for size, conc in MATRIX:
            out += await run_kv(ds, cluster_label(cluster.replication), size, conc, seconds,
                                "/bench/cluster")
        return out


def bench_small_ops(tmp: Path, seconds: float) -> list[str]:
    """``--small-ops``: issue 12's ratios to Redis alone, to rerun them quickly when the
    machine is quiet: the Redis anchor, then the key-value runs on an R=1 and a default-R
    cluster, one after the other."""
    if (why := unavailable_reason()) is not None:
        return [f"Redis Cluster anchor skipped: {why}"]
    results = bench_redis(tmp, MATRIX, seconds)
    for replication in (1, R_DEFAULT):
        c = Cluster(tmp / f"small-r{replication}", nodes=NODES,
                    replication=replication).start()
        try:
            results += trio.run(bench_cluster, seconds, c)
        finally:
            c.stop()
    by = {(r.what, r.op, r.size, r.concurrency): r for r in results}
    return [r.line() for r in results] + ratio_lines(by, [1, R_DEFAULT], cluster_label)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    ap.add_argument("--reshard-only", action="store_true",
                    help="only the resharding benchmark (bench/reshard.py)")
    ap.add_argument("--scale", action="store_true",
                    help="only the scale benchmark: --keys 1 KiB keys (bench/scale.py)")
    ap.add_argument("--keys", type=int, default=1_000_000, help="keys for --scale")
    ap.add_argument("--profile", action="store_true",
                    help="only where the time goes: CPU, requests, syscalls and hot code per "
                    "operation (bench/profile.py)")
    ap.add_argument("--small-ops", action="store_true",
                    help="only the key-value runs and their ratios to Redis Cluster")
    ap.add_argument("--s3", action="store_true",
                    help="only the S3 gateway against the native client, 256 KiB x8, at R=1 "
                    "and the default R (bench_versus_native in bench/bench_s3.py)")
    args = ap.parse_args()
    lines: list[str] = []

    def say(s: str) -> None:
        print(s, flush=True)
        lines.append(s)

    # the machine is shared: the load others put on it is part of every number
    say(f"load average at start: {load_average()}")
    with tempfile.TemporaryDirectory(prefix="dscluster-bench-") as t:
        tmp = Path(t)
        if args.reshard_only or args.scale or args.profile or args.small_ops or args.s3:
            for line in (bench_scale(tmp, args.keys) if args.scale
                         else bench_profile(tmp, args.seconds) if args.profile
                         else bench_small_ops(tmp, args.seconds) if args.small_ops
                         else bench_versus_native(tmp, args.seconds, NODES, (1, R_DEFAULT))
                         if args.s3
                         else bench_reshard(tmp, R_DEFAULT, args.seconds)):
                say(line)
            mode = ("--scale`, bench/scale.py" if args.scale else
                    "--profile`, bench/profile.py" if args.profile else
                    "--small-ops`, bench_small_ops in bench/__main__.py" if args.small_ops
                    else "--s3`, bench_versus_native in bench/bench_s3.py" if args.s3
                    else "--reshard-only`, bench/reshard.py")
            append_report(lines, args.seconds, mode)
            return
        for line in bench_chunkers():
            say(line)
        local = trio.run(bench_local, args.seconds, tmp)
        for r in local:
            say(r.line())
        anchor: list[Result] = []
        if (why := unavailable_reason()) is not None:
            say(f"Redis Cluster anchor skipped: {why}")
        else:
            anchor = bench_redis(tmp, MATRIX, args.seconds)
            for r in anchor:
                say(r.line())
        # one cluster at a time, so two never share the CPU: R=1, which issue 12's
        # targets hold for, then the default R, reported next to it
        remote: dict[int, list[Result]] = {}
        files: dict[int, FileRun] = {}
        gateway: dict[int, dict[str, Any]] = {}
        path = bench_file(tmp)
        for replication in (1, R_DEFAULT):
            s3_port = free_tcp_port()
            cluster = Cluster(tmp / f"cluster-r{replication}", nodes=NODES,
                              replication=replication,
                              node0_args=[f"--s3-listen=127.0.0.1:{s3_port}"]).start()
            label = cluster_label(replication)
            try:
                remote[replication] = trio.run(bench_cluster, args.seconds, cluster)
                for r in remote[replication]:
                    say(r.line())
                files[replication] = bench_files(cluster, path, tmp)
                for line in files[replication].lines(label):
                    say(line)
                gateway[replication] = bench_gateway(
                    f"http://127.0.0.1:{s3_port}", *gateway_credential(cluster.nodes[0].conf),
                    size=256 * 1024, threads=8, seconds=args.seconds)
                for op in ("put", "get"):
                    say(f"{label} S3 gateway {op} 256 KiB x8 (boto3 threads): "
                        f"{gateway[replication][f'{op}_mb_s']:7.1f} MB/s")
                if replication == R_DEFAULT:
                    for line in bench_kubo_s3(f"http://127.0.0.1:{s3_port}",
                                              cluster.nodes[0].conf, tmp):
                        say(line)
            finally:
                cluster.stop()
        kubo, kubo_line = kubo_anchor(path)
        say(kubo_line)
        by = {(r.what, r.op, r.size, r.concurrency): r
              for r in local + anchor + remote[1] + remote[R_DEFAULT]}
        r1, rd = cluster_label(1), cluster_label(R_DEFAULT)
        for size, conc in MATRIX:
            for op in ("put", "get"):
                base = by[(r1, op, size, conc)].ops_per_s
                ratio = by[(rd, op, size, conc)].ops_per_s / base
                target = REPLICATION_TARGETS.get(op) if (size, conc) == (256 * 1024, 8) else None
                say(f"R={R_DEFAULT} / R=1 {op:<3} {size // 1024:>3} KiB x{conc}: "
                    f"{ratio:.2f}{verdict(ratio, target)}")
        if anchor:
            for line in ratio_lines(by, [1, R_DEFAULT], cluster_label):
                say(line)
        if kubo is not None:
            for what, attr, target in FILE_TARGETS:
                shown = ", ".join(f"R={r} {getattr(files[r], attr) / kubo:.2f}"
                                  for r in (1, R_DEFAULT))
                say(f"{what} / Kubo's local add: {shown}"
                    f"{verdict(getattr(files[1], attr) / kubo, target)}")
        for op in ("put", "get"):
            shown = []
            for r in (1, R_DEFAULT):
                native = by[(cluster_label(r), op, 256 * 1024, 8)].mb_per_s
                shown.append(f"R={r} {gateway[r][f'{op}_mb_s'] / native:.2f}")
            ratio = gateway[1][f"{op}_mb_s"] / by[(r1, op, 256 * 1024, 8)].mb_per_s
            say(f"S3 gateway {op} 256 KiB x8 (boto3) / native client: {', '.join(shown)}"
                f"{verdict(ratio, GATEWAY_TARGET)}")
        put256 = by[(rd, "put", 256 * 1024, 8)].mb_per_s
        get1k = by[(rd, "get", 1024, 8)].ops_per_s
        say(f"target 256 KiB put x8 >= 60 MB/s (R={R_DEFAULT}): {put256:.1f} MB/s "
            f"({'met' if put256 >= 60 else 'NOT met'})")
        say(f"target 1 KiB get x8 >= 1000 ops/s (R={R_DEFAULT}): {get1k:.0f} ops/s "
            f"({'met' if get1k >= 1000 else 'NOT met'})")
        # last, on a cluster of its own: it fills 256 MB
        for line in bench_reshard(tmp, R_DEFAULT, args.seconds):
            say(line)
    append_report(lines, args.seconds)


def append_report(lines: list[str], seconds: float, mode: str | None = None) -> None:
    """Append the run's lines to doc/performance.md; ``mode`` names a partial run, whose
    own module describes its setup."""
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                         capture_output=True, text=True).stdout.strip() or "unknown"
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = [f"\n### Run {stamp}, commit {rev}\n", f"Machine: {machine()}; load average "
             f"at the end {load_average()}.  ",
             f"Each number: {seconds:g} s of load; cluster = {NODES} dscluster processes + 1 "
             "client process on loopback, flatfs with sync on; `cluster R=1` and "
             f"`cluster R={R_DEFAULT}` are two such clusters, run one after the other, with "
             f"replication factor 1 and the default {R_DEFAULT}, each with files and the "
             f"S3 gateway on node 0; Kubo through the gateway on R={R_DEFAULT}; the reshard "
             "run is a cluster of its own (bench/reshard.py); "
             "`redis cluster` is redis-py's RedisCluster (threads) on 3 redis-server masters, "
             "gets without persistence, puts with appendfsync always.\n"
             if mode is None else f"Only `python -m bench {mode}, says how.\n",
             "```", *lines, "```\n"]
    PERF_DOC.parent.mkdir(exist_ok=True)
    if not PERF_DOC.exists():
        PERF_DOC.write_text("# Performance\n\n## Benchmark log (appended by `make bench`)\n")
    with PERF_DOC.open("a") as f:
        f.write("\n".join(block))
    print(f"appended to {PERF_DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
