"""Where the time goes: CPU, requests, syscalls and hot code per operation, per process.

    python -m bench --profile [--seconds 5]

On a 3-node R=1 cluster (the replication factor issue 12's targets hold for), one client
process (this one, 8 trio tasks) runs each workload of PROFILED for ``seconds`` twice:

1. measured: CPU per operation of the client and of the nodes (utime + stime from
   /proc/<pid>/stat, all threads), node requests per operation by wire message (the
   nodes' own ``dscluster_requests`` counters, from their metrics ports), and py-spy
   sampling every process (``--nonblocking``, so nothing is paused; ``--gil``, so only
   threads running Python count, not ones waiting in epoll or sleeping) for the files
   and functions that time is spent in (self time; C code that keeps the GIL counts in
   the Python function that called it, C code that releases it, such as the ssl
   module's encryption, is in the CPU per op but not in the hot code);
   the nodes' background work (credential reloads, anti-entropy, pings) is measured
   for a quiet window just before, once the nodes are idle, and its CPU and requests
   over as long are subtracted;
2. under ``strace -c -f``: syscalls per operation of each process (fsyncs, sends,
   receives, file opens and renames, futex hand-offs between threads, epoll, and the
   commonest four). strace slows what it traces, so only its counts are used.

Without py-spy or strace that part is skipped with a line saying so.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

import trio
from prometheus_client.parser import text_string_to_metric_families

from dscluster.client.connect import open_cluster
from dscluster.config import free_tcp_port
from dscluster.localcluster import BIN, Cluster

from .kv import Result, get_window, put_window

NODES = 3
PROFILED = [("get", 1024, 8), ("put", 1024, 8), ("put", 256 * 1024, 8)]
TOP = 6
ROOT = Path(__file__).resolve().parent.parent
QUIET_WAIT = 60.0
QUIET_WINDOW = 2.0
SYSCALLS = {"fsync": ("fsync", "fdatasync"),
            "send": ("sendto", "sendmsg", "write", "writev"),
            "recv": ("recvfrom", "recvmsg", "read", "readv"),
            "open": ("openat",), "rename": ("rename", "renameat", "renameat2"),
            # thread hand-offs (trio.to_thread) and event-loop waits
            "futex": ("futex",), "epoll": ("epoll_wait", "epoll_pwait", "epoll_ctl")}


def kernel_seconds(pid: int) -> float:
    return _stat_ticks(pid)[1] / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    return sum(_stat_ticks(pid)) / os.sysconf("SC_CLK_TCK")


def _stat_ticks(pid: int) -> tuple[int, int]:
    """utime and stime of /proc/<pid>/stat (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def node_requests(ports: list[int]) -> Counter[str]:
    """Requests answered so far, by wire message, summed over the nodes."""
    total: Counter[str] = Counter()
    for port in ports:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        for fam in text_string_to_metric_families(text.decode()):
            if fam.name == "dscluster_requests":
                for s in fam.samples:
                    if s.name.endswith("_total"):
                        total[s.labels["operation"]] += int(s.value)
    return total


class Watch:
    """Processes watched over one window: py-spy recorders or strace counters."""

    def __init__(self, argv: list[list[str]], outs: list[Path]) -> None:
        self.outs = outs
        self.procs = [subprocess.Popen(a, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                      for a in argv]
        time.sleep(0.5)  # attached before the load starts

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGINT)  # both write their results on SIGINT
        for p in self.procs:
            p.wait(timeout=60)


def pyspy(pids: list[int], out: Path, seconds: float) -> Watch | None:
    exe = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if exe is None:
        return None
    outs = [out / f"pyspy-{i}.txt" for i in range(len(pids))]
    return Watch([[exe, "record", "--nonblocking", "--gil", "-r", "200", "-f", "raw", "-d",
                   str(int(seconds) + 5), "-o", str(o), "-p", str(pid)]
                  for pid, o in zip(pids, outs, strict=True)], outs)


def strace(pids: list[int], out: Path) -> Watch | None:
    exe = shutil.which("strace")
    if exe is None:
        return None
    outs = [out / f"strace-{i}.txt" for i in range(len(pids))]
    return Watch([[exe, "-c", "-f", "-q", "-o", str(o), "-p", str(pid)]
                  for pid, o in zip(pids, outs, strict=True)], outs)


def hot(raw: list[Path]) -> tuple[Counter[str], Counter[str], int]:
    """Self-time samples by file and by function over py-spy raw outputs."""
    files: Counter[str] = Counter()
    funcs: Counter[str] = Counter()
    total = 0
    for path in raw:
        for line in path.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            leaf = stack.rsplit(";", 1)[-1]
            name, _, where = leaf.partition(" (")
            file = _short(where.rsplit(":", 1)[0])
            files[file] += int(n)
            funcs[f"{name} ({file})"] += int(n)
            total += int(n)
    return files, funcs, total


def _short(path: str) -> str:
    for mark in ("site-packages/", f"/lib/python{sys.version_info[0]}.{sys.version_info[1]}/",
                 f"{ROOT}/"):
        if mark in path:
            return path.split(mark, 1)[1]
    return path


def syscalls(summary: Path) -> Counter[str]:
    """strace -c's table: calls by syscall."""
    out: Counter[str] = Counter()
    for line in summary.read_text().splitlines():
        cols = line.split()
        if len(cols) >= 5 and cols[1].replace(".", "").isdigit() and cols[-1] != "total":
            out[cols[-1]] += int(cols[3])
    return out


def grouped(calls: Counter[str]) -> Counter[str]:
    """Calls by group of SYSCALLS, and "all"."""
    out = Counter({g: sum(calls[n] for n in names) for g, names in SYSCALLS.items()})
    out["all"] = sum(calls.values())
    return out


def _quiet(pids: list[int], metrics: list[int]) -> tuple[float, Counter[str]]:
    """Once the nodes are idle (their start-up and anti-entropy passes done, at most
    QUIET_WAIT s): their CPU seconds and requests per second of background work."""
    deadline = time.monotonic() + QUIET_WAIT
    while True:
        before = sum(cpu_seconds(p) for p in pids)
        req = node_requests(metrics)
        time.sleep(QUIET_WINDOW)
        busy = sum(cpu_seconds(p) for p in pids) - before
        if busy < 0.05 * QUIET_WINDOW * len(pids) or time.monotonic() > deadline:
            reqs = node_requests(metrics) - req
            return busy / QUIET_WINDOW, Counter(
                {k: v / QUIET_WINDOW for k, v in reqs.items()})


class Probe:
    """CPU seconds per process and node requests over one window, with what ``watch``
    starts (py-spy or strace) running during it."""

    def __init__(self, pids: list[int], metrics: list[int],
                 watch: Callable[[], Watch | None]) -> None:
        self.pids, self.metrics, self.watch = pids, metrics, watch
        self.watching: Watch | None = None
        self.cpu: list[float] = []
        self.kernel: list[float] = []
        self.requests: Counter[str] = Counter()
        self.seconds = 0.0

    # the watchers run inside the readings, so that the readings (a metrics scrape is an
    # HTTP request) stay out of what strace counts
    def start(self) -> None:
        self.cpu = [cpu_seconds(p) for p in self.pids]
        self.kernel = [kernel_seconds(p) for p in self.pids]
        self.requests = node_requests(self.metrics)
        self.seconds = time.perf_counter()
        self.watching = self.watch()

    def stop(self) -> None:
        if self.watching is not None:
            self.watching.stop()
        self.seconds = time.perf_counter() - self.seconds
        self.cpu = [cpu_seconds(p) - b for p, b in zip(self.pids, self.cpu, strict=True)]
        self.kernel = [kernel_seconds(p) - b
                       for p, b in zip(self.pids, self.kernel, strict=True)]
        self.requests = node_requests(self.metrics) - self.requests


async def _window(c: Cluster, op: str, size: int, conc: int, seconds: float,
                  probe: Probe) -> Result:
    """One window of the workload, probed once the keys to get are written."""
    async with open_cluster(c.client()) as ds:
        keys: list[str] = []
        if op == "get":
            _, keys = await put_window(ds, "fill", size, conc, 2.0, "/profile/fill")
        probe.start()
        try:
            if op == "get":
                return await get_window(ds, "profile", keys, size, conc, seconds)
            return (await put_window(ds, "profile", size, conc, seconds, "/profile"))[0]
        finally:
            probe.stop()


def bench_profile(tmp: Path, seconds: float) -> list[str]:
    metrics = [free_tcp_port() for _ in range(NODES)]
    c = Cluster(tmp / "profile", nodes=NODES, replication=1,
                node0_args=[f"--metrics-listen=127.0.0.1:{metrics[0]}"],
                node_args=[[f"--metrics-listen=127.0.0.1:{m}"] for m in metrics[1:]]).start()
    out: list[str] = []
    try:
        pids = [os.getpid()] + [n.proc.pid for n in c.nodes]  # type: ignore[union-attr]
        for op, size, conc in PROFILED:
            what = f"{op} {size // 1024} KiB x{conc}"
            idle_cpu, idle_req = _quiet(pids[1:], metrics)
            spy_dir = tmp / f"spy-{op}-{size}"
            spy_dir.mkdir()
            probe = Probe(pids, metrics, partial(pyspy, pids, spy_dir, seconds))
            r = trio.run(_window, c, op, size, conc, seconds, probe)
            ops = r.ops
            background = idle_cpu * probe.seconds
            probe.requests.subtract({k: v * probe.seconds for k, v in idle_req.items()})
            out.append(f"profile {what}: {r.ops_per_s:.0f} ops/s with py-spy sampling; "
                       f"CPU per op: client {probe.cpu[0] / ops * 1e3:.3f} ms (kernel "
                       f"{probe.kernel[0] / ops * 1e3:.3f}), nodes "
                       f"{(sum(probe.cpu[1:]) - background) / ops * 1e3:.3f} ms (kernel "
                       f"{sum(probe.kernel[1:]) / ops * 1e3:.3f}; less {background:.2f} s of "
                       f"background CPU over the {probe.seconds:.1f} s)")
            out.append(f"profile {what}: node requests per op: " + ", ".join(
                f"{k} {v / ops:.2f}" for k, v in probe.requests.most_common()
                if v / ops >= 0.005))
            if probe.watching is not None:
                outs = probe.watching.outs
                for who, paths in (("client", outs[:1]), ("nodes", outs[1:])):
                    files, funcs, total = hot(paths)
                    out.append(f"profile {what}: {who} self time by file: " + ", ".join(
                        f"{f} {n / total:.0%}" for f, n in files.most_common(TOP)))
                    out.append(f"profile {what}: {who} hottest functions: " + ", ".join(
                        f"{f} {n / total:.0%}" for f, n in funcs.most_common(TOP)))
            else:
                out.append("profile: py-spy not found (pip install -e '.[bench]'): no hot code")
            trace_dir = tmp / f"strace-{op}-{size}"
            trace_dir.mkdir()
            probe = Probe(pids, metrics, partial(strace, pids, trace_dir))
            r = trio.run(_window, c, op, size, conc, seconds, probe)
            if probe.watching is not None:
                counts = [syscalls(p) for p in probe.watching.outs]
                nodes = sum(counts[1:], Counter())
                for who, n in (("client", counts[0]), ("nodes", nodes)):
                    g = grouped(n)
                    out.append(f"profile {what}: {who} syscalls per op under strace: "
                               + ", ".join(f"{k} {g[k] / r.ops:.2f}" for k in (*SYSCALLS, "all"))
                               + "; most: " + ", ".join(f"{k} {v / r.ops:.1f}"
                                                        for k, v in n.most_common(4)))
            else:
                out.append("profile: strace not found: no syscall counts")
    finally:
        c.stop()
    return out
