"""The move coordinator: rebalancing slots and draining members, run by the bootstrapper.

Theory of operation (Garage's staged layouts, Redis Cluster's resharding):

1. **Stage.** A plan (cluster/placement.py) gives new owner lists; ``ClusterMap.stage``
   publishes them as targets in one new epoch. From then on writes go to owners and
   targets with a quorum in each list, reads ask the old owners, listings skip a target
   (quorum.py, node/server.py), and a node refuses writes from a writer whose map
   predates the layout.
2. **Wait until the live members have the staged map** (they ping each other every
   second and adopt newer maps). A member that still had the old layout could accept a
   write from a writer that does not know the targets; once every member refuses such
   writers, each acknowledged write is either on a majority of the targets' lists or
   already on the old owners when the copy starts.
3. **Copy.** Each target runs an anti-entropy pass over its incoming slots (``Repair``
   with the move's rate): it pulls from every other owner what it lacks, by slot
   digest, key version and value (cluster/repair.py).
4. **Finish.** A slot whose targets all finished a pass that reached enough old owners
   (every set of ``owner_quorum`` old owners meets them, so no acknowledged write was
   missed) gets its targets as owners in the next epoch. Slots go in batches, so the map
   shows progress and a crash loses at most one batch of work.

Everything the coordinator needs to resume is durable: the targets are in the map
(saved with fsync before anyone sees it) and the job (what was asked, its rate, its
counters) in ``rebalance.json`` beside it. A coordinator killed at any point finds both
when it starts and carries on; a target or source that dies makes its slots wait and
retry; nothing is finished that was not copied. ``abort`` drops the targets that are
left: their old owners got every write, so the layout is consistent at once.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import trio

from .. import wire
from ..clustermap import JOINED, MAX_WEIGHT, RETIRED, ClusterMap
from ..concurrency import open_nursery
from ..errors import ClusterError, ConfigError, DSClusterError, InvalidArgument, Unavailable
from ..identity import write_private_file
from ..keys import SLOT_COUNT, slot_ranges
from .caller import MemberCaller
from .placement import owner_quorum
from .repair import UNTHROTTLED
from .state import ClusterState

log = logging.getLogger(__name__)

JOB_FILE = "rebalance.json"
# slots finished per epoch: progress shows in the map and in status every batch, and a
# crash repeats at most one batch of copying
BATCH = 1024
# batches copied at once: a pass spends much of its time waiting on round trips and
# fsyncs, so a few side by side keep the members' disks and cores busy
PARALLEL_BATCHES = 3
# how long the coordinator waits for the live members to adopt a staged layout before
# it copies anyway (they ping each other every second; see step 2 above)
ADOPT_TIMEOUT = 15.0
# a batch that finished nothing (a target or source down) waits this long, doubling
RETRY_MIN, RETRY_MAX = 1.0, 10.0
ACTIONS = ("plan", "start", "abort", "remove", "status")
IDLE, MOVING, FINISHED, ABORTED = "idle", "moving", "finished", "aborted"


def _fresh_job() -> dict[str, Any]:
    return {"state": IDLE, "action": None, "node": None, "rate": 0, "stage_epoch": 0,
            "started": None,
            "finished": None, "slots_total": 0, "slots_done": 0, "bytes": 0,
            "keys": 0, "estimated_bytes": 0, "error": None}


class Coordinator:
    def __init__(self, state: ClusterState, caller: MemberCaller, own_index: int,
                 job_path: Path) -> None:
        self.state = state
        self.caller = caller
        self.index = own_index
        self.path = job_path
        self.job = self._load()
        self._wake = trio.Event()
        self._driving: trio.CancelScope | None = None
        self._last_error: str | None = None

    # -- durable job ----------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        try:
            job = json.loads(self.path.read_text())
        except FileNotFoundError:
            return _fresh_job()
        except (OSError, ValueError) as e:
            raise ConfigError(f"{self.path}: cannot read the rebalance job: {e}") from None
        if not isinstance(job, dict):
            raise ConfigError(f"{self.path}: the rebalance job is not an object")
        return {**_fresh_job(), **job}

    def _save(self) -> None:
        write_private_file(self.path, (json.dumps(self.job, indent=1) + "\n").encode(),
                           sync_dir=True)

    # -- requests -------------------------------------------------------------------------
    async def handle(self, m: wire.Rebalance) -> dict[str, Any]:
        if m.action not in ACTIONS:
            raise InvalidArgument(f"unknown rebalance action {m.action!r} "
                                  f"(one of {', '.join(ACTIONS)})")
        if m.rate < 0:
            raise InvalidArgument("the rate must be a number of bytes a second, 0 for "
                                  "no limit")
        if m.action == "status":
            return self.status()
        if m.action == "abort":
            return self.abort()
        weights = self._weights(m.weights)
        if m.action == "plan":
            return await self.dry_run(m.node if m.node >= 0 else None, weights)
        return await self.start(m.rate, m.node if m.action == "remove" else None, weights)

    def _weights(self, raw: dict[str, Any]) -> dict[int, float]:
        cmap = self.state.map
        out: dict[int, float] = {}
        for k, w in raw.items():
            try:
                i, weight = int(k), float(w)
            except (TypeError, ValueError):
                raise InvalidArgument(f"a weight is a member index and a number, not "
                                      f"{k!r}: {w!r}") from None
            if not 0 <= i < len(cmap.members) or cmap.members[i].state == RETIRED:
                raise InvalidArgument(f"node {i} is not a member of this cluster")
            if not 0 < weight <= MAX_WEIGHT:  # also refuses NaN
                raise InvalidArgument(f"a weight is more than 0 and at most {MAX_WEIGHT:g} "
                                      f"(node {i}: {w}); remove a node with remove-node")
            out[i] = weight
        return out

    def _busy(self) -> None:
        cmap = self.state.map
        if cmap.moving or self.job["state"] == MOVING:
            raise ClusterError(
                f"a {self.job['action'] or 'rebalance'} is running: "
                f"{len(cmap.moving)} slots still moving; watch it with `dsclient rebalance "
                "--wait` or stop it with `dsclient rebalance --abort`")

    def _drained(self, cmap: ClusterMap, node: int | None,
                 weights: dict[int, float]) -> ClusterMap:
        """``cmap`` with the new ``weights`` and ``node`` (if any) given weight 0, after
        the checks a removal must pass."""
        for i, w in weights.items():
            if cmap.members[i].weight != w:
                cmap = cmap.with_member(replace(cmap.members[i], weight=w))
        if node is None:
            return cmap
        if not 0 <= node < len(cmap.members):
            raise InvalidArgument(f"node {node} does not exist: this cluster has nodes "
                                  f"0..{len(cmap.members) - 1}")
        member = cmap.members[node]
        if member.state == RETIRED:
            raise InvalidArgument(f"node {node} is already removed")
        if node == self.index:
            raise InvalidArgument(f"node {node} is the bootstrapper, which coordinates "
                                  "every move; it cannot be removed")
        active = [i for i in cmap.active_members() if i != node]
        if len(active) < cmap.replication:
            raise InvalidArgument(
                f"removing node {node} would leave {len(active)} members to hold "
                f"{cmap.replication} replicas of every slot; add a node first")
        down = {i for i in range(len(cmap.members)) if i != node
                and self.caller.liveness.refusal(i) is not None}
        for s in range(SLOT_COUNT):
            if cmap.owns(node, s) and all(o in down or o == node
                                          for o in cmap.write_set(s)):
                raise InvalidArgument(
                    f"node {node} is the last live owner of slot {s} (its other owners "
                    f"{', '.join(str(o) for o in cmap.write_set(s) if o != node)} are "
                    "down); bring them back before removing it")
        return cmap.with_member(replace(member, weight=0.0))

    async def dry_run(self, node: int | None,
                      weights: dict[int, float] | None = None) -> dict[str, Any]:
        cmap = self._drained(self.state.map, node, weights or {})
        new = cmap.plan()
        moves = [s for s in range(SLOT_COUNT) if set(new[s]) != set(cmap.owners[s])]
        per_slot = await self._bytes_per_slot(cmap)
        gain = dict.fromkeys(range(len(cmap.members)), 0)
        lose = dict.fromkeys(range(len(cmap.members)), 0)
        copies = 0
        estimate = 0.0
        for s in moves:
            for t in set(new[s]) - set(cmap.owners[s]):
                gain[t] += 1
                copies += 1
                estimate += per_slot.get(s, 0.0)
            for o in set(cmap.owners[s]) - set(new[s]):
                lose[o] += 1
        after = {i: sum(i in o for o in new) for i in range(len(cmap.members))}
        return {
            "slots": len(moves), "replicas": copies, "estimated_bytes": int(estimate),
            "ranges": slot_ranges(moves),
            "members": [{"index": i, "weight": cmap.members[i].weight,
                         "slots_before": cmap.held(i),
                         "slots_after": after[i], "gains": gain[i], "loses": lose[i]}
                        for i in range(len(cmap.members))
                        if cmap.members[i].state != RETIRED],
        }

    async def _bytes_per_slot(self, cmap: ClusterMap) -> dict[int, float]:
        """An estimate of each slot's bytes: its owners' disk usage spread evenly over
        the slots they hold (nodes count bytes, not bytes per slot)."""
        per_member: dict[int, float] = {}

        async def one(i: int) -> None:
            try:
                ans = await self.caller.ask(i, wire.Stats())
            except DSClusterError:
                return
            if isinstance(ans, wire.StatsData):
                held = cmap.held(i)
                if held:
                    per_member[i] = float(ans.stats.get("disk_usage", 0)) / held

        async with open_nursery() as n:
            for m in cmap.members:
                if m.state == JOINED and m.peer_id:
                    n.start_soon(one, m.index)
        out: dict[int, float] = {}
        for s, owners in enumerate(cmap.owners):
            known = [per_member[o] for o in owners if o in per_member]
            if known:
                out[s] = sum(known) / len(known)
        return out

    async def start(self, rate: int, node: int | None,
                    weights: dict[int, float] | None = None) -> dict[str, Any]:
        self._busy()
        plan = await self.dry_run(node, weights)
        cmap = self._drained(self.state.map, node, weights or {})
        staged = cmap.stage(cmap.plan())
        self.job = {**_fresh_job(), "state": MOVING,
                    "action": "remove" if node is not None else "rebalance",
                    "node": node, "rate": rate, "started": time.time(),
                    "stage_epoch": staged.layout_epoch, "slots_total": len(staged.moving),
                    "estimated_bytes": plan["estimated_bytes"]}
        self._save()  # before the map: a crash between them resumes what the map says
        if staged.moving or node is not None or weights:
            self.state.offer(staged)
            log.info("%s staged at map epoch %d: %d slots move (%d replicas, about %d "
                     "bytes)", self.job["action"], staged.epoch, len(staged.moving),
                     plan["replicas"], plan["estimated_bytes"])
        self._wake.set()
        return self.status()

    def abort(self) -> dict[str, Any]:
        cmap = self.state.map
        if self._driving is not None:
            self._driving.cancel()
        if cmap.moving:
            self.state.offer(cmap.abort())
            log.info("rebalance aborted at map epoch %d: %d slots stay with their old "
                     "owners", self.state.epoch, len(cmap.moving))
        if self.job["state"] == MOVING:
            self.job.update(state=ABORTED, finished=time.time())
            self._save()
        return self.status()

    def status(self) -> dict[str, Any]:
        job = dict(self.job)
        cmap = self.state.map
        job["slots_moving"] = len(cmap.moving)
        job["epoch"] = cmap.epoch
        job["last_error"] = self._last_error
        end = job["finished"] or time.time()
        elapsed = max(end - job["started"], 1e-3) if job["started"] else 0.0
        job["elapsed"] = elapsed
        job["bytes_per_second"] = job["bytes"] / elapsed if elapsed else 0.0
        eta = None
        if job["state"] == MOVING and job["slots_done"] and job["bytes_per_second"] > 0:
            per_slot = job["bytes"] / job["slots_done"]
            eta = len(cmap.moving) * per_slot / job["bytes_per_second"]
        elif job["state"] == MOVING and job["slots_done"]:
            eta = len(cmap.moving) * elapsed / job["slots_done"]
        job["eta_seconds"] = eta
        return job

    # -- the loop -------------------------------------------------------------------------
    async def run(self) -> None:
        """Drive the job in the map and in rebalance.json, resuming one a crash left,
        until cancelled."""
        if self.state.map.moving and self.job["state"] != MOVING:
            # a map staged by a job whose record was lost: carry on with what it says
            self.job = {**_fresh_job(), "state": MOVING, "action": "rebalance",
                        "started": time.time(), "slots_total": len(self.state.map.moving),
                        "stage_epoch": self.state.map.layout_epoch}
            self._save()
        if self.job["state"] == MOVING:
            log.info("resuming the %s: %d slots still moving", self.job["action"],
                     len(self.state.map.moving))
        while True:
            if self.job["state"] == MOVING:
                with trio.CancelScope() as self._driving:
                    try:
                        await self._drive()
                    except DSClusterError as e:
                        # the job stays MOVING: it is resumed, not given up
                        self._last_error = str(e)
                        log.warning("rebalance: %s; retrying", e)
                        await trio.sleep(RETRY_MAX)
                        continue
                self._driving = None
            self._wake = trio.Event()
            await self._wake.wait()

    async def _drive(self) -> None:
        delay = RETRY_MIN
        # once per run (and again after a restart): later epochs only finish slots, and a
        # member that knows the staged targets refuses writers that do not
        await self._wait_adopted(self.job["stage_epoch"] or self.state.map.layout_epoch)
        while self.state.map.moving:
            moving = self.state.map.moving_slots()
            batches = [moving[i:i + BATCH]
                       for i in range(0, min(len(moving), BATCH * PARALLEL_BATCHES), BATCH)]
            finished: list[int] = []
            async with open_nursery() as n:
                for batch in batches:
                    n.start_soon(self._move_batch, batch, len(batches), finished)
            if finished:
                delay = RETRY_MIN
            else:
                await trio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
        self._complete()

    async def _move_batch(self, batch: list[int], batches: int, finished: list[int]) -> None:
        """Copy ``batch`` and hand over what was copied at once (not when the round of
        ``batches`` ends); the slots handed over go to ``finished``."""
        done, copied, keys = await self._copy(self.state.map, batch, batches)
        now = self.state.map
        done = [s for s in done if s in now.moving]  # an abort may have come
        if done:
            self.state.offer(now.finish(done))
        finished.extend(done)
        self.job["slots_done"] += len(done)
        self.job["bytes"] += copied
        self.job["keys"] += keys
        self._save()

    def _complete(self) -> None:
        node = self.job["node"]
        cmap = self.state.map
        if self.job["state"] != MOVING or cmap.moving:
            return  # aborted meanwhile
        if node is not None and cmap.members[node].state != RETIRED \
                and not any(cmap.owns(node, s) for s in range(SLOT_COUNT)):
            member = cmap.members[node]
            # it owns nothing now; retired, it is asked nothing and its peer id joins no more
            self.state.offer(cmap.with_member(replace(member, state=RETIRED, weight=0.0)))
            log.info("node %d removed from the cluster at map epoch %d", node,
                     self.state.epoch)
        self.job.update(state=FINISHED, finished=time.time())
        self._last_error = None
        self._save()
        log.info("%s finished: %d slots, %d keys, %d bytes copied", self.job["action"],
                 self.job["slots_done"], self.job["keys"], self.job["bytes"])

    async def _wait_adopted(self, layout_epoch: int) -> None:
        """Until every live member serves a map of at least ``layout_epoch`` (step 2)."""
        with trio.move_on_after(ADOPT_TIMEOUT):
            while True:
                behind = await self._behind(layout_epoch)
                if not behind:
                    return
                await trio.sleep(0.2)
        log.warning("members %s did not adopt layout epoch %d within %gs; copying anyway",
                    ", ".join(map(str, behind)), layout_epoch, ADOPT_TIMEOUT)

    async def _behind(self, layout_epoch: int) -> list[int]:
        behind: list[int] = []
        cmap = self.state.map

        async def one(i: int) -> None:
            try:
                ans = await self.caller.try_member(i, wire.GetMap(known_epoch=cmap.epoch))
            except DSClusterError:
                return  # down: it learns the map before it serves again (it pings first)
            if (isinstance(ans, wire.MapData) and ans.map is not None
                    and int(ans.map.get("epoch", 0)) < layout_epoch):
                behind.append(i)

        async with open_nursery() as n:
            for m in cmap.members:
                if m.state == JOINED and m.peer_id and m.index != self.index:
                    n.start_soon(one, m.index)
        return sorted(behind)

    async def _copy(self, cmap: ClusterMap, slots: Sequence[int],
                    batches: int = 1) -> tuple[list[int], int, int]:
        """Each target's pass over its incoming slots among ``slots``, at its share of
        the rate (``batches`` run at once); the slots every target of which finished a
        pass that reached enough old owners, the bytes and the keys copied."""
        incoming: dict[int, list[int]] = {}
        for s in slots:
            for t in cmap.moving[s]:
                if cmap.incoming(t, s):
                    incoming.setdefault(t, []).append(s)
        need = cmap.replication - owner_quorum(cmap.replication) + 1
        failed: set[int] = set()
        totals = [0, 0]
        rate = self.job["rate"] or UNTHROTTLED
        share = max(1, rate // (max(1, len(incoming)) * batches))

        async def one(target: int, mine: list[int]) -> None:
            try:
                ans = await self.caller.ask(target, wire.Repair(
                    slots=slot_ranges(mine), bytes_per_second=share), timeout=math.inf)
            except (Unavailable, DSClusterError) as e:
                self._last_error = f"target node {target}: {e}"
                log.info("rebalance: target node %d: %s", target, e)
                failed.update(mine)
                return
            report = ans.report if isinstance(ans, wire.RepairReport) else {}
            if int(report.get("slots", -1)) != len(mine):
                # it passed over slots it does not know it receives (its map is behind)
                self._last_error = f"target node {target} has not adopted the layout yet"
                failed.update(mine)
                return
            totals[0] += int(report.get("bytes", 0))
            totals[1] += int(report.get("pulled", 0))
            gone = {int(p) for p in report.get("peers_unreachable", ())}
            for s in mine:
                reached = sum(o not in gone and o != target for o in cmap.owners[s])
                if reached < need:
                    failed.add(s)
            if gone:
                self._last_error = (f"target node {target} could not reach "
                                    f"{', '.join(f'node {p}' for p in sorted(gone))}")

        async with open_nursery() as n:
            for target, mine in incoming.items():
                n.start_soon(one, target, mine)
        # a slot with no incoming target only reorders or drops owners: nothing to copy
        return [s for s in slots if s not in failed], totals[0], totals[1]
