"""Replication through real node processes: kill -9, wipe, restart, repair, status.

The in-process equivalents (dscluster.testing.memcluster) are tests/unit/test_quorum.py
and tests/unit/test_repair.py; these check the same promises across processes, sockets,
durable records and restarts.
"""

from __future__ import annotations

import json
import math
import random
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
import trio

from dscluster import wire
from dscluster.blocks import block_matches
from dscluster.client.connect import open_cluster
from dscluster.client.datastore import ClusterDatastore
from dscluster.cluster.replica import DIGEST_BYTES, LIVE, TOMBSTONE
from dscluster.datastore import BatchOp
from dscluster.errors import NotFound
from dscluster.keys import SLOT_COUNT, slot_of, slot_ranges
from dscluster.localcluster import Cluster, tool
from dscluster.query import Query
from dscluster.unixfs import AddOptions, add_stream, block_key, read_file

pytestmark = pytest.mark.timeout(180)
T = TypeVar("T")

# The load runs this long before the kill and this long after it: long enough that every
# kind of operation meets the dead node several times (a few hundred operations), short
# enough for the default suite.
LOAD_BEFORE = 1.5
LOAD_AFTER = 3.0
# operations a load must make to prove anything, half of them before the kill
LEAST_OPS = 100
# From a restart (or a repair) to identical digests on every owner, and from there to no
# hint left. What it takes: the restarted node sees its peers up at its first ping and
# starts a pass at the next tick (1 s each), then pulls what it missed (a few hundred
# keys; pulls ran at about 300 keys/s on a busy 2-core machine); a hint waits at most
# HINT_RETRY (10 s) after a delivery that failed while its target was down, plus a tick.
# Measured: digests 0.3 s, hints 1-10 s; 30 s leaves room for a loaded machine.
CONVERGE_BOUND = 30.0


# -- the load -------------------------------------------------------------------------------


def _small_value(rnd: random.Random) -> bytes:
    # from one TCP segment to several, so that a kill can land in the middle of a value
    return rnd.randbytes(rnd.choice((16, 200, 3000, 70_000)))


@dataclass
class Load:
    """A mixed client load that remembers every acknowledged operation, so that what the
    cluster answers can be checked against it.

    Each writer task owns its keys (``{prefix}/w{n}/...``) and works on them one
    operation at a time, so "the last acknowledged value" of a key is well defined, and
    a listing of a writer's own keys must match its model exactly."""

    ds: ClusterDatastore
    prefix: str
    writers: int = 4
    keys_per_writer: int = 40
    seed: int = 1
    # the last acknowledged value of each key written; None: deleted
    acked: dict[str, bytes | None] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  # root CID -> content
    failed: list[str] = field(default_factory=list)  # operations that raised
    wrong: list[str] = field(default_factory=list)  # answers that contradict the model
    bad_listings: list[str] = field(default_factory=list)  # listings that did
    # keys an operation failed on: the model no longer knows what they hold
    uncertain: set[str] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)
    slowest: dict[str, float] = field(default_factory=dict)  # seconds, per kind of op
    runs: int = 0
    t0: float = field(default_factory=time.monotonic)

    def _log(self, into: list[str], what: str) -> None:
        into.append(f"t={time.monotonic() - self.t0:.2f}s {what}")

    def writer_prefix(self, w: int) -> str:
        return f"{self.prefix}/w{w}"

    async def run(self, seconds: float, stop: trio.Event | None = None) -> None:
        """Run until ``seconds`` have passed or ``stop`` is set. Each task finishes the
        operation it is in: one cancelled midway would be neither acknowledged nor
        known to have failed, and the model could not say what the key holds."""
        stop = trio.Event() if stop is None else stop
        self.runs += 1
        async with trio.open_nursery() as n:
            for w in range(self.writers):
                n.start_soon(self._writer, w, stop, random.Random(
                    f"{self.seed} {self.runs} {w}"))
            n.start_soon(self._adder, stop, random.Random(f"{self.seed} {self.runs} files"))
            with trio.move_on_after(seconds):
                await stop.wait()
            stop.set()

    async def _op(self, name: str, key: str, op: Awaitable[T]) -> T:
        self.counts[name] += 1
        t0 = time.monotonic()
        try:
            return await op
        except NotFound:
            raise
        except Exception as e:  # any failure counts, whatever layer it comes from
            self._log(self.failed, f"{name} {key}: {type(e).__name__}: {e}")
            raise _Failed from e
        finally:
            took = time.monotonic() - t0
            self.slowest[name] = max(took, self.slowest.get(name, 0.0))

    async def _writer(self, w: int, stop: trio.Event, rnd: random.Random) -> None:
        keys = [f"{self.writer_prefix(w)}/{i:03d}" for i in range(self.keys_per_writer)]
        uncertain = self.uncertain
        while not stop.is_set():
            k = rnd.choice(keys)
            r = rnd.random()
            try:
                if r < 0.40:
                    v = _small_value(rnd)
                    await self._op("put", k, self.ds.put(k, v))
                    self.acked[k] = v
                    # stamped by the same clock after any failed write: newer, it wins
                    uncertain.discard(k)
                elif r < 0.55:
                    await self._op("delete", k, self.ds.delete(k))
                    self.acked[k] = None
                    uncertain.discard(k)
                elif r < 0.80:
                    await self._check_get(k, uncertain)
                elif r < 0.90:
                    got = await self._op("has", k, self.ds.has(k))
                    if k not in uncertain and got != (self.acked.get(k) is not None):
                        self._log(self.wrong, f"has {k} = {got}, expected the opposite")
                else:
                    await self._check_listing(self.writer_prefix(w), uncertain)
            except _Failed:
                if r < 0.55:
                    uncertain.add(k)
                    self.acked.pop(k, None)

    async def _check_get(self, k: str, uncertain: set[str]) -> None:
        want = self.acked.get(k)
        try:
            got = await self._op("get", k, self.ds.get(k))
        except NotFound:
            got = None
        if k not in uncertain and got != want:
            self._log(self.wrong, f"get {k}: {_show(got)}, last acknowledged {_show(want)}")

    async def _check_listing(self, prefix: str, uncertain: set[str]) -> None:
        async def keys() -> list[str]:
            return [e.key async for e in self.ds.query(Query(prefix=prefix, keys_only=True))]

        got = await self._op("list", prefix, keys())
        problems = listing_problems(got, {k for k, v in self.acked.items()
                                          if k.startswith(prefix + "/") and v is not None},
                                    uncertain)
        if problems:
            self._log(self.bad_listings, f"listing {prefix}: {problems}")

    async def _adder(self, stop: trio.Event, rnd: random.Random) -> None:
        """Small UnixFS files: several 64 KiB blocks and a root each, added and read back."""
        options = AddOptions(chunk_size=64 * 1024)
        while not stop.is_set():
            data = rnd.randbytes(rnd.randrange(100_000, 300_000))

            async def source(data: bytes = data) -> AsyncIterator[bytes]:
                yield data

            try:
                added = await self._op("add", "-", add_stream(self.ds, source(),
                                                               options=options))
                self.files[added.cid] = data
                back = await self._op("cat", added.cid, _cat(self.ds, added.cid))
            except _Failed:
                continue
            if back != data:
                self._log(self.wrong, f"cat {added.cid}: {len(back)} bytes differ from the "
                          f"{len(data)} added")

    async def ran(self, seconds: float, ops: int) -> None:
        """Wait until ``seconds`` have passed and ``ops`` more operations were made: on a
        loaded machine a phase of the load takes longer rather than proving less."""
        until = trio.current_time() + seconds
        done = sum(self.counts.values()) + ops
        while trio.current_time() < until or sum(self.counts.values()) < done:
            await trio.sleep(0.05)

    def assert_clean(self, least_ops: int = LEAST_OPS) -> None:
        assert not self.failed, f"{len(self.failed)} failed operations: {self.failed[:10]}"
        assert not self.wrong, f"{len(self.wrong)} wrong answers: {self.wrong[:10]}"
        assert not self.bad_listings, (f"{len(self.bad_listings)} wrong listings: "
                                       f"{self.bad_listings[:10]}")
        # a load that did nothing proves nothing
        assert sum(self.counts.values()) >= least_ops, self.counts
        assert self.counts["delete"] and self.counts["list"] and self.files, self.counts

    async def verify(self, ds: ClusterDatastore | None = None) -> None:
        """Every acknowledged write reads back as last acknowledged, no acknowledged
        delete is back, listings are complete and without duplicates, files read."""
        ds = ds or self.ds
        wrong = []
        for k, want in sorted(self.acked.items()):
            try:
                got: bytes | None = await ds.get(k)
            except NotFound:
                got = None
            if got != want:
                wrong.append(f"{k}: {_show(got)}, last acknowledged {_show(want)}")
        listed = [e.key async for e in ds.query(Query(prefix=self.prefix, keys_only=True))]
        live = {k for k, v in self.acked.items() if v is not None}
        problems = listing_problems(listed, live, self.uncertain)
        if problems:
            wrong.append(f"listing {self.prefix}: {problems}")
        for cid, data in self.files.items():
            if await _cat(ds, cid) != data:
                wrong.append(f"file {cid} reads back different bytes")
        assert not wrong, f"{len(wrong)} wrong: {wrong[:10]}"


class _Failed(Exception):
    """An operation of the load failed (already recorded)."""


async def _cat(ds: ClusterDatastore, cid: str) -> bytes:
    return b"".join([piece async for piece in read_file(ds, cid)])


def _show(v: bytes | None) -> str:
    return "missing" if v is None else f"{len(v)} bytes {v[:8].hex()}…"


def listing_problems(got: list[str], live: set[str], uncertain: set[str]) -> str:
    """What is wrong with a listing that should be exactly ``live`` (keys in
    ``uncertain`` may be either way), or ""."""
    dups = [k for k, c in Counter(got).items() if c > 1]
    missing = sorted(live - set(got) - uncertain)
    extra = sorted(set(got) - live - uncertain)
    return "; ".join(p for p in (
        f"duplicates {dups[:5]}" if dups else "",
        f"missing {len(missing)} {missing[:5]}" if missing else "",
        f"resurrected or unknown {len(extra)} {extra[:5]}" if extra else "",
        "out of order" if got != sorted(got) else "",
    ) if p)


# -- convergence ------------------------------------------------------------------------------


async def digest_disagreement(ds: ClusterDatastore) -> tuple[set[int], dict[int, str]]:
    """Slots whose owners hold different records, and members that did not answer.

    Unlike ``disagreeing_slots``, a member that does not answer is reported: converged
    means every owner answered with the same digest."""
    cmap = ds.state.map
    per_member: dict[int, list[int]] = {}
    for s in range(SLOT_COUNT):
        for o in cmap.owners[s]:
            per_member.setdefault(o, []).append(s)
    held: dict[int, dict[int, bytes]] = {}
    down: dict[int, str] = {}

    async def one(member: int, slots: list[int]) -> None:
        try:
            ans = await ds.caller.ask(member, wire.SlotDigests(slots=slot_ranges(slots)))
        except Exception as e:  # reported: the caller decides what it means
            down[member] = f"{type(e).__name__}: {e}"
            return
        assert isinstance(ans, wire.Digests) and len(ans.digests) == DIGEST_BYTES * len(slots)
        for j, s in enumerate(slots):
            held.setdefault(s, {})[member] = ans.digests[j * DIGEST_BYTES:(j + 1) * DIGEST_BYTES]

    async with trio.open_nursery() as n:
        for member, slots in per_member.items():
            n.start_soon(one, member, slots)
    return {s for s, d in held.items() if len(set(d.values())) > 1}, down


async def wait_converged(ds: ClusterDatastore, cluster: Cluster,
                         bound: float = CONVERGE_BOUND) -> float:
    """Seconds until every owner of every slot holds the same records; fails after
    ``bound`` seconds with what still differs."""
    t0 = trio.current_time()
    while True:
        differing, down = await digest_disagreement(ds)
        if not differing and not down:
            return trio.current_time() - t0
        if trio.current_time() - t0 > bound:
            raise AssertionError(
                f"not converged after {bound:g}s: {len(differing)} slots differ "
                f"({slot_ranges(sorted(differing))[:5]}), down: {down}\n{cluster.logs()}")
        await trio.sleep(0.25)


async def wait_seen_up(ds: ClusterDatastore, index: int, bound: float = 15.0) -> None:
    """Until every other member's liveness view has ``index`` up. Nodes ping each other
    every second with a 2 s timeout, so it takes at most 3 s from the node's start; the
    bound leaves room for a loaded machine."""
    t0 = trio.current_time()
    while True:
        views = {}
        for m in ds.state.map.members:
            if m.index != index:
                ans = await ds.caller.ask(m.index, wire.Stats())
                views[m.index] = ans.stats["members"]  # type: ignore[attr-defined]
        if all(index in v["up"] for v in views.values()):
            return
        assert trio.current_time() - t0 < bound, f"node {index} not seen up: {views}"
        await trio.sleep(0.1)


def status_json(c: Cluster, conf: Path | None = None) -> tuple[int, dict]:
    r = c.dsclient("status", "--json", conf=conf)
    assert "Traceback" not in r.stderr.decode(), r.stderr.decode()
    return r.returncode, json.loads(r.stdout)


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Start clusters of one's own (nodes, replication); all stopped at teardown."""
    started: list[Cluster] = []

    def make(nodes: int = 3, replication: int = 3) -> Cluster:
        c = Cluster(tmp_path / f"c{len(started)}", nodes=nodes, replication=replication)
        c.root.mkdir()
        started.append(c)
        return c.start()

    try:
        yield make
    finally:
        for c in started:
            c.stop()


async def kill_under_load(c: Cluster, victim: int, prefix: str) -> Load:
    """A mixed load, node ``victim`` killed -9 in the middle of it: nothing fails, nothing
    is lost or comes back, with the node still down."""
    async with open_cluster(c.client()) as ds:
        load = Load(ds, prefix)
        stop = trio.Event()
        async with trio.open_nursery() as n:
            n.start_soon(load.run, math.inf, stop)
            await load.ran(LOAD_BEFORE, LEAST_OPS // 2)
            await trio.to_thread.run_sync(c.kill9, victim)  # the load goes on meanwhile
            killed_at = time.monotonic() - load.t0
            await load.ran(LOAD_AFTER, LEAST_OPS // 2)
            stop.set()
        print(f"node {victim} killed at t={killed_at:.2f}s; operations: {dict(load.counts)}; "
              f"slowest: {({k: round(v, 2) for k, v in load.slowest.items()})}")
        load.assert_clean()
        await load.verify()
    return load


async def restart_and_converge(c: Cluster, victim: int, load: Load) -> float:
    c.restart(victim)
    async with open_cluster(c.client()) as ds:
        # at once: reads must not wait for repair (a quorum read resolves a stale replica
        # by version). verify() lists after its reads, whose read repair hides a stale
        # listing: test_a_listing_right_after_a_restart_... lists first.
        await load.verify(ds)
        took = await wait_converged(ds, c)
        await load.verify(ds)
    print(f"node {victim} restarted; digests identical {took:.2f}s later")
    return took


def assert_status_healthy(c: Cluster) -> None:
    rc, status = status_json(c)
    assert rc == 0, status
    assert status["slots"] == {"ok": SLOT_COUNT, "under_replicated": 0, "unavailable": 0,
                               "disagreeing": 0}, status["slots"]
    text = c.dsclient("status").stdout.decode()
    assert f"slots: {SLOT_COUNT} ok, 0 under-replicated, 0 unavailable" in text, text


# -- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("victim", [0, 2], ids=["bootstrapper", "non-bootstrapper"])
async def test_kill_9_under_load_r3_loses_nothing_and_the_node_catches_up(
        make_cluster, victim: int):
    c = make_cluster(3, 3)
    load = await kill_under_load(c, victim, "/r3")
    await restart_and_converge(c, victim, load)
    assert_status_healthy(c)


def node_stats(c: Cluster) -> list[dict]:
    return status_json(c)[1]["nodes"]


async def hints_pending(ds: ClusterDatastore) -> dict[int, int]:
    """Each member's count of hints waiting for their targets."""
    out: dict[int, int] = {}
    for m in ds.state.map.members:
        ans = await ds.caller.ask(m.index, wire.Stats())
        out[m.index] = ans.stats["hints"]  # type: ignore[attr-defined]
    return out


async def test_r2_a_node_down_writes_go_on_through_hints_and_are_delivered(make_cluster):
    c = make_cluster(3, 2)
    victim = 1
    load = await kill_under_load(c, victim, "/r2")
    # the writes of slots the dead node owns were acknowledged with a hint elsewhere
    rows = {r["index"]: r for r in node_stats(c)}
    assert not rows[victim]["reachable"]
    kept = sum(r["hints"] for i, r in rows.items() if i != victim)
    assert kept > 0, rows
    c.restart(victim)
    async with open_cluster(c.client()) as ds:
        await load.verify(ds)
        took = await wait_converged(ds, c)
        # hints go once the target answers: every ping tick, or HINT_RETRY (10 s) after
        # a delivery that failed while it was down; the bound covers both
        t0 = trio.current_time()
        while any((left := await hints_pending(ds)).values()):
            assert trio.current_time() - t0 < CONVERGE_BOUND, f"hints not delivered: {left}"
            await trio.sleep(0.25)
        delivered = trio.current_time() - t0
        await load.verify(ds)
    print(f"{kept} hints kept while node {victim} was down; converged {took:.2f}s after "
          f"its restart, hints delivered {delivered:.2f}s after that")
    assert_status_healthy(c)


def ok(p: subprocess.CompletedProcess[bytes]) -> bytes:
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout


def error_line(p: subprocess.CompletedProcess[bytes]) -> str:
    """The one line a CLI command that failed prints: no traceback, no log noise."""
    err = p.stderr.decode()
    assert p.returncode not in (0, None), p
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err.strip()


async def write_some(ds: ClusterDatastore, prefix: str, n: int = 200) -> dict[str, bytes | None]:
    """``n`` keys in one batch, then every fifth deleted in another (tombstones must be
    repaired too); what each key must read as."""
    expect: dict[str, bytes | None] = {
        f"{prefix}/{i:04d}": f"value {i} ".encode() * (1 + i % 50) for i in range(n)}
    await ds.apply([BatchOp(k, v) for k, v in expect.items()])
    gone = list(expect)[::5]
    await ds.apply([BatchOp(k, None) for k in gone])
    expect.update(dict.fromkeys(gone))
    return expect


async def check_reads(ds: ClusterDatastore, expect: dict[str, bytes | None],
                      files: dict[str, bytes]) -> None:
    for k, want in expect.items():
        try:
            got: bytes | None = await ds.get(k)
        except NotFound:
            got = None
        assert got == want, k
    for cid, data in files.items():
        assert await _cat(ds, cid) == data, cid


async def test_a_wiped_node_is_refilled_by_dsclient_repair(make_cluster, tmp_path: Path):
    c = make_cluster(3, 3)
    f = tmp_path / "file.bin"
    f.write_bytes(random.Random(3).randbytes(600_000))
    cid = ok(c.dsclient("add", "-Q", "--no-progress", "--chunker=size-65536",
                        str(f))).decode().strip()
    files = {cid: f.read_bytes()}
    async with open_cluster(c.client()) as ds:
        expect = await write_some(ds, "/wipe")
        blocks = [e.key async for e in ds.query(Query(prefix="/blocks", keys_only=True))]
    assert len(blocks) == 11  # 10 leaves of 64 KiB and the root: the file is all there
    victim = 1
    assert c.nodes[victim].kill(signal.SIGTERM) == 0
    c.wipe(victim)
    c.restart(victim)
    async with open_cluster(c.client()) as ds:
        # a node skips, in its passes, a peer its pings last found down (and `repair`
        # then reports that peer unreachable), so first let every node see it back
        await wait_seen_up(ds, victim)
    r = c.dsclient("repair", "--no-progress", timeout=120)
    line = ok(r).decode().strip()
    # the node may have pulled some of it on its own already (it does on restart), so
    # the count of copies is not fixed; the line's form and the outcome are
    assert re.fullmatch(r"repaired 16384 slots: \d+ differed, \d+ keys \([\d.]+[KMG]?i?B\) "
                        r"copied", line), line
    async with open_cluster(c.client()) as ds:
        # repair waited for every owner's pass: nothing left to wait for
        differing, down = await digest_disagreement(ds)
        assert (differing, down) == (set(), {})
        # the node itself holds every key again, values and tombstones (asked directly:
        # a quorum read would hide a replica that lacks them)
        for k, want in expect.items():
            rec = await ds.caller.ask(victim, wire.ReadRecord(key=k, value=True))
            assert isinstance(rec, wire.Record)
            assert (rec.state, rec.value) == ((TOMBSTONE, None) if want is None
                                              else (LIVE, want)), k
        for k in blocks:
            rec = await ds.caller.ask(victim, wire.ReadRecord(key=k, value=True))
            assert isinstance(rec, wire.Record)
            assert rec.state == LIVE and block_matches(k, rec.value or b""), k
    for other in (0, 2):
        c.kill9(other)
        async with open_cluster(c.client()) as ds:
            await check_reads(ds, expect, files)
        c.restart(other)


def key_in(cmap, prefix: str, want: Callable[[tuple[int, ...]], bool]) -> str:
    """The first key ``{prefix}/<n>`` whose slot's owners satisfy ``want``."""
    return next(k for n in range(100_000) if want(cmap.owners[slot_of(k := f"{prefix}/{n}")]))


async def test_r3_of_5_with_two_nodes_down_blocks_read_and_writes_fail_per_slot(
        make_cluster, tmp_path: Path):
    c = make_cluster(5, 3)
    f = tmp_path / "file.bin"
    f.write_bytes(random.Random(4).randbytes(1_000_000))
    # 16 KiB chunks: 62 leaves and a root, spread over the slots of every owner set
    cid = ok(c.dsclient("add", "-Q", "--no-progress", "--chunker=size-16384",
                        str(f))).decode().strip()
    blocks = ok(c.dsclient("ls", "/blocks")).decode().split()
    assert block_key(cid) in blocks and len(blocks) == 63
    dead = (1, 3)
    async with open_cluster(c.client()) as ds:
        cmap = ds.state.map
    both = [b for b in blocks if set(dead) <= set(cmap.owners[slot_of(b)])]
    assert both, "no block lost two owners: the test would prove nothing"
    for i in dead:
        c.kill9(i)
    # every block has an owner left, and one good copy is all a block read needs
    assert ok(c.dsclient("cat", cid, timeout=120)) == f.read_bytes()
    async with open_cluster(c.client()) as ds:
        for b in both:
            assert block_matches(b, await ds.get(b)), b
    # a write needs two of its three owners
    lost_two = key_in(cmap, "/w", lambda o: set(dead) <= set(o))
    lost_one = key_in(cmap, "/w", lambda o: len(set(dead) & set(o)) == 1)
    lost_none = key_in(cmap, "/w", lambda o: not set(dead) & set(o))
    line = error_line(c.dsclient("put", lost_two, input=b"x"))
    slot = slot_of(lost_two)
    assert line.startswith(f"dsclient: error: write of slot {slot} failed: needs 2 of its 3 "
                           f"owners"), line
    for k in (lost_one, lost_none):
        ok(c.dsclient("put", k, input=k.encode()))
        assert ok(c.dsclient("get-key", k)) == k.encode()
    rc, status = status_json(c)
    assert rc == 1
    # no slot has all three owners down; 4 of the 5 x 4 parts lost one owner or two
    assert status["slots"]["unavailable"] == 0 and status["slots"]["ok"] > 0
    assert status["slots"]["under_replicated"] > 0, status["slots"]


async def test_a_client_joins_through_any_member_and_works_while_the_bootstrapper_is_dead(
        make_cluster):
    """What tests/integration/test_cluster_failures.py checks with R=1, with R=3: the
    bootstrapper's slots stay readable and writable through the new client."""
    c = make_cluster(3, 3)
    async with open_cluster(c.client()) as ds:
        cmap = ds.state.map
    before = key_in(cmap, "/boot", lambda o: o[0] == 0)
    after = key_in(cmap, "/boot/later", lambda o: o[0] == 0)
    ok(c.dsclient("put", before, input=b"written before"))
    via = c.multiaddr(1)
    c.kill9(0)
    late = c.root / "late"
    init = subprocess.run(
        [tool("dsclient"), f"--conf={late}", "init", f"--bootstrapper={via}",
         f"--token-file={c.client_token}"], capture_output=True, timeout=60)
    assert init.returncode == 0, init.stderr
    assert ok(c.dsclient("get-key", before, conf=late)) == b"written before"
    ok(c.dsclient("put", after, conf=late, input=b"written after"))
    assert ok(c.dsclient("get-key", after, conf=late)) == b"written after"
    rc, status = status_json(c, conf=late)
    assert rc == 1
    assert [n["reachable"] for n in status["nodes"]] == [False, True, True]
    assert status["slots"] == {"ok": 0, "under_replicated": SLOT_COUNT, "unavailable": 0,
                               "disagreeing": 0}


def test_status_with_a_node_killed_shows_it_down_and_no_slot_unavailable(make_cluster):
    c = make_cluster(3, 3)
    ok(c.dsclient("put", "/st/a", input=b"a"))
    c.kill9(1)
    # the live nodes ping every member each second (2 s timeout): both see it down
    # within 3 s; 20 s leaves room for a loaded machine
    deadline = time.monotonic() + 20
    while True:
        rc, status = status_json(c)
        if sorted(status["nodes"][1]["seen_down_by"]) == [0, 2] or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert rc == 1 and not status["nodes"][1]["reachable"]
    assert sorted(status["nodes"][1]["seen_down_by"]) == [0, 2], status["nodes"][1]
    assert status["slots"] == {"ok": 0, "under_replicated": SLOT_COUNT, "unavailable": 0,
                               "disagreeing": 0}
    r = c.dsclient("status")
    assert r.returncode == 1
    text = r.stdout.decode()
    node1 = next(line for line in text.splitlines() if line.startswith("node 1 "))
    assert "DOWN (seen down by node 0, 2)" in node1, text
    assert f"slots: 0 ok, {SLOT_COUNT} under-replicated, 0 unavailable" in text, text


async def test_a_listing_right_after_a_restart_shows_what_the_node_missed(make_cluster):
    c = make_cluster(3, 3)
    victim = 2
    async with open_cluster(c.client()) as ds:
        before = await write_some(ds, "/l/before", 300)
    c.kill9(victim)
    async with open_cluster(c.client()) as ds:
        # enough that the node needs seconds to pull them all (at a few hundred keys a
        # second), so that the listing below comes while it still lacks some
        during = await write_some(ds, "/l/during", 1500)
        gone = [k for k, v in before.items() if v is not None][::3]
        await ds.apply([BatchOp(k, None) for k in gone])
        before.update(dict.fromkeys(gone))
    c.restart(victim)
    # a client that did not see the node down lists at once, before any read could
    # repair the node: the listing must still hold what it missed and not what was deleted
    async with open_cluster(c.client("fresh")) as ds:
        listed = [e.key async for e in ds.query(Query(prefix="/l", keys_only=True))]
    live = {k for k, v in {**before, **during}.items() if v is not None}
    assert not listing_problems(listed, live, set()), listing_problems(listed, live, set())
