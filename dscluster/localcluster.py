"""A local cluster of real `dscluster` processes on loopback, started from `dscfg` output.

Used by the integration tests and `make bench`.

Every process is started with a timeout on its readiness, its log goes to a file the
failing test prints, and ``stop`` kills whatever is left (tests use it in a finally or
a fixture teardown), so no test leaves a process behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import CONFIG_FILE, load_node_config, resolve, write_config
from .daemon import RECORDS_DIR

BIN = Path(sys.executable).parent
READY_TIMEOUT = 30.0


def tool(name: str) -> str:
    return str(BIN / name)


class NodeProc:
    def __init__(self, index: int, conf: Path, log: Path) -> None:
        self.index = index
        self.conf = conf
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        # append, so a restarted node's log keeps its history and "ready" counts grow
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [tool("dscluster"), f"--conf={self.conf}", *args],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                start_new_session=True,
            )

    def ready_count(self) -> int:
        return self.log.read_text(errors="replace").count(" ready: ") if self.log.exists() else 0

    def wait_ready(self, previous: int = 0, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready_count() > previous:
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"node {self.index} exited {self.proc.returncode}:\n"
                                   + self.log.read_text(errors="replace")[-4000:])
            time.sleep(0.05)
        raise TimeoutError(f"node {self.index} not ready after {timeout}s:\n"
                           + self.log.read_text(errors="replace")[-4000:])

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        return self.proc.wait(timeout=20)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    def __init__(self, root: Path, nodes: int = 3, store: str = "flatfs",
                 extra_cfg: Sequence[str] = (), node0_args: Sequence[str] = (),
                 replication: int = 1, node_args: Sequence[Sequence[str]] = (),
                 node0_config: Mapping[str, Any] | None = None) -> None:
        self.root = root
        self.n = nodes
        self.store = store
        # 1, not dscfg's min(3, N): the tests written before replication count on each
        # key living on one node (stop its owner, it is gone); new tests ask for more
        self.replication = replication
        self.extra_cfg = list(extra_cfg)
        self.node0_args = list(node0_args)  # e.g. --s3-listen for the bootstrapper
        # entries of the bootstrapper's config.json (e.g. "connections") set before its
        # first start: cheaper than a start, a rewrite and a restart
        self.node0_config = dict(node0_config or {})
        # the same for members 1, 2, ... at their first start
        self.node_args = [list(a) for a in node_args]
        self.nodes: list[NodeProc] = []
        self.bootstrapper = ""

    def dscfg_command(self, boot: Path) -> list[str]:
        """The ``dscfg cluster`` that provisions the bootstrapper's directory."""
        return [tool("dscfg"), "cluster", f"--cluster-node-number={self.n}",
                f"--replication-factor={self.replication}", f"--store={self.store}",
                *self.extra_cfg, str(boot)]

    def node_proc(self, i: int) -> NodeProc:
        return NodeProc(i, self.root / f"srv{i + 1:02d}", self.root / f"node{i}.log")

    def start(self) -> Cluster:
        boot = self.root / "srv01"
        out = subprocess.run(self.dscfg_command(boot), check=True, capture_output=True,
                             text=True, timeout=60)
        self.bootstrapper = out.stdout.strip()
        if self.node0_config:
            conf = boot / CONFIG_FILE
            write_config(conf, {**json.loads(conf.read_text()), **self.node0_config})
        self.node_token = boot / "node.token"
        self.client_token = boot / "client.token"
        self.readonly_token = boot / "readonly.token"
        for i in range(self.n):
            self.nodes.append(self.node_proc(i))
        try:
            self.nodes[0].start(self.node0_args)
            self.nodes[0].wait_ready()
            for node in self.nodes[1:]:
                extra = (self.node_args[node.index - 1]
                         if node.index - 1 < len(self.node_args) else [])
                node.start([*self.join_args(node.index), *extra])
            for node in self.nodes[1:]:
                node.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def join_args(self, index: int) -> list[str]:
        return [f"--bootstrapper={self.bootstrapper}", f"--identity={index}",
                f"--token-file={self.node_token}", f"--store={self.store}"]

    def add_node(self, via: int = 0, args: Sequence[str] = ()) -> NodeProc:
        """Start one more node that joins as a new member (no --identity) through member
        ``via``'s multiaddr; it owns nothing until a rebalance. Its index is the next
        member's, which ``self.nodes`` mirrors."""
        node = self.node_proc(len(self.nodes))
        self.nodes.append(node)
        node.start([f"--bootstrapper={self.multiaddr(via)}", f"--token-file={self.node_token}",
                    f"--store={self.store}", *args])
        node.wait_ready()
        return node

    def admin(self) -> Path:
        """A client directory initialised with the admin token."""
        return self.client("admin", self.root / "srv01" / "admin.token")

    def restart(self, index: int) -> None:
        node = self.nodes[index]
        before = node.ready_count()
        node.start([])
        node.wait_ready(before)

    def kill9(self, index: int) -> None:
        """A crash: no shutdown code runs, the store is left as it was mid-write."""
        self.nodes[index].kill(signal.SIGKILL)

    def wipe(self, index: int) -> None:
        """Lose a stopped node's data (its store and its records), keeping its identity,
        config and cached map: a disk replaced under the same node."""
        node = self.nodes[index]
        assert not node.alive, f"node {index} must be stopped before its data is wiped"
        cfg = load_node_config(node.conf)
        # a mongo store lives elsewhere and a memory store died with the process
        lost = [resolve(node.conf, cfg.store.path)] if cfg.store.type == "flatfs" else []
        for d in [*lost, node.conf / RECORDS_DIR]:
            if d.exists():
                shutil.rmtree(d)

    def multiaddr(self, index: int) -> str:
        """Node ``index``'s libp2p multiaddr with its peer id, as `--bootstrapper` takes
        it, from the map the node itself saved."""
        member = json.loads((self.nodes[index].conf / "clustermap.json").read_text())[
            "nodes"][index]
        swarm = next(a for a in member["swarm"] if not a.endswith("/tls"))
        return f"{swarm}/p2p/{member['id']}"

    def client(self, name: str = "cli", token: Path | None = None) -> Path:
        d = self.root / name
        if not (d / "config.json").exists():
            subprocess.run(
                [tool("dsclient"), f"--conf={d}", "init", f"--bootstrapper={self.bootstrapper}",
                 f"--token-file={token or self.client_token}"],
                check=True, capture_output=True, timeout=60,
            )
        return d

    def dsclient(self, *args: str, conf: Path | None = None, input: bytes | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [tool("dsclient"), f"--conf={conf or self.client()}", *args],
            capture_output=True, input=input, timeout=timeout,
        )

    def stop(self) -> None:
        # every node is told first, then waited for: they shut down side by side
        stopping = [node for node in self.nodes if node.alive]
        for node in stopping:
            assert node.proc is not None
            with contextlib.suppress(ProcessLookupError):  # it may have just exited
                os.killpg(node.proc.pid, signal.SIGTERM)
        for node in stopping:
            assert node.proc is not None
            try:
                node.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                node.kill(signal.SIGKILL)

    def logs(self) -> str:
        return "\n".join(f"--- node {n.index}\n" + n.log.read_text(errors="replace")[-3000:]
                         for n in self.nodes if n.log.exists())


@dataclass
class Run:
    seconds: float
    peak_rss_mb: float
    stdout: bytes


def _vm_hwm_mb(pid: int) -> float | None:
    """The process's peak RSS so far (VmHWM starts afresh at exec, unlike ru_maxrss of
    a forked child, which also counts the parent's pages before the exec)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def run_measured(argv: list[str], timeout: float = 900) -> Run:
    """Run a command to success; its wall time and its own peak RSS (sampled until it
    exits; killed after ``timeout`` seconds)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(argv, stdout=out, stderr=err)
        peak = 0.0
        while p.poll() is None:
            peak = max(peak, _vm_hwm_mb(p.pid) or 0.0)
            if time.perf_counter() - t0 > timeout:
                p.kill()
                p.wait()
                raise TimeoutError(f"{' '.join(argv)} ran over {timeout:g}s")
            time.sleep(0.02)
        seconds = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {err.read().decode()}")
        return Run(seconds, peak, out.read())
