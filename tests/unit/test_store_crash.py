"""kill -9 a process that writes to a store; every acknowledged write must survive.

The writer (store_crash_writer.py) announces each key before its put starts and again
after the put returned (acknowledged). We SIGKILL it mid-stream, reopen the store and
check every acknowledged key with its exact value, that the store lists only keys whose
put had started, and that the store agrees with itself. flatfs must get there from its
journal alone: the machine kept running, so its index lost no write and the tree is not
walked.

Why both announcements: a key may be stored but unacknowledged when the kill lands (its
put finished, its ``ok`` line was not written yet). Bounding those by the writer's
concurrency worked, but a miscount of the acknowledgements read (see run_and_kill) then
looked like a store listing keys it never wrote. With the ``put`` lines the check is
exact: nothing to count, no bound to keep in step with the writer.
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
from .test_store_flatfs import forbid_walk

WRITER = Path(__file__).with_name("store_crash_writer.py")
ACKS_BEFORE_KILL = 300


def run_and_kill(kind: str, path: Path, sync: bool) -> tuple[set[str], list[str]]:
    """Start the writer, SIGKILL it after some acknowledgements; the keys whose put had
    started, and the acknowledged keys."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), kind, str(path), "sync" if sync else "nosync"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started: set[str] = set()
    acked: list[str] = []

    def take(line: str) -> None:
        what, key = line.split(" ")
        if what == "put":
            started.add(key)
        else:
            acked.append(key)

    deadline = time.monotonic() + 20
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n", proc.stderr.read() if proc.stderr else ""
        while len(acked) < ACKS_BEFORE_KILL and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "writer stopped early"
            take(line.rstrip("\n"))
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
    # whole lines printed before the kill count; a cut last line does not (a cut "ok"
    # line is a put that had not returned, a cut "put" line one that had not started)
    for line in rest.split("\n")[:-1]:
        take(line)
    assert len(acked) >= ACKS_BEFORE_KILL, f"only {len(acked)} puts returned within 20 s"
    return started, acked


@pytest.mark.parametrize(
    ("kind", "sync"),
    [("flatfs", False), ("flatfs", True), ("leveldb", False), ("leveldb", True)],
)
async def test_acknowledged_writes_survive_kill9(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, sync: bool
) -> None:
    started, acked = run_and_kill(kind, tmp_path, sync)
    forbid_walk(monkeypatch)
    store = await open_store(kind, tmp_path, sync=sync)
    try:
        if isinstance(store, FlatFSStore):
            assert store.recovery == "journal"
        for key in acked:
            assert await store.get(key) == value_of(key), key
        entries = (await store.scan("/crash", limit=100_000, keys_only=True)).entries
        listed = [e.key for e in entries]
        assert set(acked) <= set(listed)
        assert await store.count() == len(listed)
        if isinstance(store, FlatFSStore):  # leveldb's counts its files instead
            assert await store.disk_usage() == sum(e.size for e in entries)
        never_put = sorted(set(listed) - started)
        assert not never_put, f"listed, but the writer never began to put: {never_put}"
        # nothing listed points at a missing or different value
        for e in entries:
            try:
                value = await store.get(e.key)
            except NotFound:
                pytest.fail(f"listed key without a value: {e.key}")
            assert value == value_of(e.key) and e.size == len(value)
    finally:
        await store.close()
