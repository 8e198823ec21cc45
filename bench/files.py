"""`dsclient add` and `dsclient get` of one large file through the cluster, against
Kubo's own `ipfs add` of the same file into a local flatfs repo.

The dsclient runs are separate processes, as a user runs them, so their peak RSS is
theirs alone (``os.wait4``).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from dscluster.localcluster import Cluster, tool

from .kubo_add import kubo_add_throughput, kubo_unavailable_reason

FILE_MIB = 100


@dataclass
class Run:
    seconds: float
    peak_rss_mb: float
    stdout: bytes


def run_and_measure(argv: list[str]) -> Run:
    """Run a command, reaping it ourselves so that its rusage is its own."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {err.decode()}")
    return Run(seconds, usage.ru_maxrss / 1024, out)


def bench_files(cluster: Cluster, tmp: Path) -> list[str]:
    path = tmp / "bench-100MiB.bin"
    with open(path, "wb") as f:
        for _ in range(FILE_MIB):
            f.write(os.urandom(1 << 20))
    size_mb = path.stat().st_size / 1e6
    conf = f"--conf={cluster.client()}"
    add = run_and_measure([tool("dsclient"), conf, "add", "-Q", "--no-progress", str(path)])
    cid = add.stdout.decode().strip()
    out = tmp / "bench-out.bin"
    get = run_and_measure([tool("dsclient"), conf, "get", cid, "-o", str(out)])
    assert out.stat().st_size == path.stat().st_size
    add_mb, get_mb = size_mb / add.seconds, size_mb / get.seconds
    lines = [
        f"dsclient add {FILE_MIB} MiB: {add_mb:7.1f} MB/s, peak RSS {add.peak_rss_mb:.0f} MB",
        f"dsclient get {FILE_MIB} MiB: {get_mb:7.1f} MB/s, peak RSS {get.peak_rss_mb:.0f} MB",
    ]
    reason = kubo_unavailable_reason()
    if reason:
        lines.append(f"Kubo baseline skipped: {reason}")
        return lines
    kubo = kubo_add_throughput(path, repeat=3)
    lines += [
        f"kubo ipfs add (local flatfs) {FILE_MIB} MiB: {kubo:7.1f} MB/s",
        f"ratio add/kubo {add_mb / kubo:.2f}, get/kubo {get_mb / kubo:.2f} "
        f"(target >= 0.30 each: {'met' if min(add_mb, get_mb) >= 0.3 * kubo else 'NOT met'})",
    ]
    return lines
