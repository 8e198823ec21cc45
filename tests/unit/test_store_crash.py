"""kill -9 a process that writes to a store; every acknowledged write must survive.

The writer (store_crash_writer.py) prints a key only after its put returned. We SIGKILL
it mid-stream, reopen the store and check every printed key with its exact value, and
that the store agrees with itself (flatfs: the index was reconciled with the tree).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dscluster.errors import NotFound
from dscluster.store import FlatFSStore, open_store

from .store_crash_writer import value_of

WRITER = Path(__file__).with_name("store_crash_writer.py")
ACKS_BEFORE_KILL = 300


def run_and_kill(kind: str, path: Path, sync: bool) -> list[str]:
    """Start the writer, SIGKILL it after some acknowledgements; the acknowledged keys."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), kind, str(path), "sync" if sync else "nosync"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acked: list[str] = []
    deadline = time.monotonic() + 20
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n", proc.stderr.read() if proc.stderr else ""
        while len(acked) < ACKS_BEFORE_KILL and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "writer stopped early"
            acked.append(line.rstrip("\n"))
        os.kill(proc.pid, signal.SIGKILL)
        # read the rest through the same file object: readline() has buffered lines
        # that communicate() would skip (it reads the raw descriptor), and those are
        # acknowledged writes too. Miscounting them once made 305 listed keys look like
        # 300 acknowledged ones. The writer is dead, so neither pipe can block it.
        rest = proc.stdout.read()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # whole lines printed before the kill are acknowledged too; a cut last line is not
    lines = rest.split("\n")
    acked += [line for line in lines[:-1] if line]
    assert len(acked) >= ACKS_BEFORE_KILL
    return acked


@pytest.mark.parametrize(
    ("kind", "sync"),
    [("flatfs", False), ("flatfs", True), ("leveldb", False), ("leveldb", True)],
)
async def test_acknowledged_writes_survive_kill9(tmp_path: Path, kind: str, sync: bool) -> None:
    acked = run_and_kill(kind, tmp_path, sync)
    store = await open_store(kind, tmp_path, sync=sync)
    try:
        if isinstance(store, FlatFSStore):
            assert store.recovery == "dirty"
        for key in acked:
            assert await store.get(key) == value_of(key), key
        entries = (await store.scan("/crash", limit=100_000, keys_only=True)).entries
        listed = [e.key for e in entries]
        assert set(acked) <= set(listed)
        assert await store.count() == len(listed)
        # nothing listed points at a missing or different value: at most the writes in
        # flight at the kill (one per writer task) were not acknowledged
        assert len(listed) - len(acked) <= 4
        for e in entries:
            try:
                value = await store.get(e.key)
            except NotFound:
                pytest.fail(f"listed key without a value: {e.key}")
            assert value == value_of(e.key) and e.size == len(value)
    finally:
        await store.close()
