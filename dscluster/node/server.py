"""The data-node server: authenticate the peer, check slot ownership, run the store.

Theory of operation: every incoming stream is one conversation (see wire). After the
handshake the node answers requests one at a time. Frame-level violations (a frame too
large, undecodable or out of order) get a final Error and the stream is closed; a
request the node refuses (bad key, slot owned elsewhere, read-only peer, value too
large, missing key) gets an Error and the stream carries on. Either way the node keeps
serving everyone else.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from .. import wire
from ..cluster import admin
from ..cluster.credentials import CredentialBook, internal
from ..cluster.liveness import Liveness
from ..cluster.replica import KeyLocks, ReplicaStore, VersionedOp
from ..cluster.state import ClusterState
from ..cluster.versions import MAX_AHEAD_MS, MAX_WRITER_CHARS, ZERO, HybridClock, Version
from ..clustermap import JOINED
from ..errors import (
    CatchingUp,
    DSClusterError,
    Forbidden,
    InternalError,
    InvalidArgument,
    InvalidKey,
    NotFound,
    ProtocolError,
    Redirect,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from ..keyring import Keyring
from ..keys import SLOT_COUNT, clean_path, slot_of
from ..limits import PREAUTH_TIMEOUT, Limits
from ..logs import RateLimitedLog
from ..metrics import NodeMetrics
from ..net.base import ByteStream
from ..net.channel import MessageChannel, error_message
from ..net.handshake import server_handshake
from ..net.tls import ANONYMOUS
from ..query import Entry, filter_from_wire

if TYPE_CHECKING:
    from ..cluster.repair import AntiEntropy
    from ..cluster.rotation import SecretRotation

log = logging.getLogger(__name__)
# refused peers are an attacker's to multiply: one line per kind per 10 s
_limited = RateLimitedLog(log)

# for a stream no transport admitted (admitted ones have their connection's deadline)
HANDSHAKE_TIMEOUT = PREAUTH_TIMEOUT
IDLE_TIMEOUT = 300.0
# refused to read-only callers; Sync too: it makes the node flush others' writes, and
# a reader has none of its own to make durable
WRITES = (wire.WriteRecords, wire.StoreHints, wire.CheckBatch, wire.Sync, wire.Repair)
# hints one node keeps for members that are down, at most; past it a write finds
# another holder or counts one copy less, and anti-entropy still repairs the owner
MAX_HINTS = 200_000

JoinHandler = Callable[[str, wire.Join], Awaitable[dict[str, Any]]]
RebalanceHandler = Callable[[wire.Rebalance], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated peer on a stream and the role it proved (with a named token:
    its name and key, checked again before each request; with a role token: the
    generation of the cluster secret it derives from, keyring.py)."""

    peer: str
    role: str
    token: str = ""
    key: bytes = b""
    generation: int | None = None


class NodeServer:
    def __init__(
        self,
        *,
        replica: ReplicaStore,
        state: ClusterState,
        member_index: int,
        peer_id: str,
        secret: bytes | Keyring,
        limits: Limits,
        disable_delete: bool = False,
        on_join: JoinHandler | None = None,
        on_rebalance: RebalanceHandler | None = None,
        liveness: Liveness | None = None,
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.replica = replica
        self.store = replica.store
        # stamps nothing itself: it tells how far ahead of this node a writer's clock is
        self.clock = HybridClock(peer_id)
        # set by the daemon once the node's anti-entropy exists (it needs the caller)
        self.anti_entropy: AntiEntropy | None = None
        # named tokens and S3 keys; set by the daemon (it needs the caller too)
        self.credentials: CredentialBook | None = None
        # rotating the cluster secret; set by the daemon likewise
        self.rotation: SecretRotation | None = None
        self.state = state
        self.index = member_index
        self.peer_id = peer_id
        self.keyring = secret if isinstance(secret, Keyring) else Keyring(secret)
        self.limits = limits
        self.disable_delete = disable_delete
        self._key_locks = KeyLocks()
        self.on_join = on_join
        # the bootstrapper's move coordinator (cluster/rebalance.py)
        self.on_rebalance = on_rebalance
        # this node's view of which members answer, reported in Stats
        self.liveness = liveness or Liveness()
        self.metrics = metrics or NodeMetrics()
        self._handlers: dict[type[wire.Message], Callable[[Any, Caller], Awaitable[Any]]] = {
            wire.ReadRecord: self._read_record,
            wire.WriteRecords: self._write_records,
            wire.StoreHints: self._store_hints,
            wire.CheckBatch: self._check_batch,
            wire.SlotDigests: self._slot_digests,
            wire.SlotVersions: self._slot_versions,
            wire.SlotQuery: self._slot_query,
            wire.Repair: self._repair,
            wire.Sync: self._sync,
            wire.DiskUsage: self._disk_usage,
            wire.Stats: self._stats,
            wire.GetMap: self._get_map,
            wire.Join: self._join,
            wire.Rebalance: self._rebalance,
            wire.Admin: self._admin_request,
            wire.SecretFetch: self._secret_fetch,
        }

    # -- stream loop --------------------------------------------------------------------
    async def handle_stream(self, stream: ByteStream) -> None:
        chan = MessageChannel(self.metrics.counted(stream),
                              wire.Connection(wire.Role.SERVER, self.limits))
        peer = stream.remote_peer
        admission = stream.admission
        # the transport's deadline counts from accept: its TLS or Noise handshake too
        deadline = (admission.deadline if admission is not None
                    else trio.current_time() + HANDSHAKE_TIMEOUT)

        def welcome(role: str) -> wire.Welcome:
            # the proofs are checked: the connection now needs room among authenticated ones
            if admission is not None and not admission.promote(role):
                raise Unavailable(f"node {self.index} has no room for another {role} "
                                  "connection; try again later")
            return wire.Welcome(epoch=self.state.epoch, node_index=self.index, role=role)

        try:
            with trio.fail_at(deadline):
                proven = await server_handshake(chan, self.keyring, welcome,
                                                named=self._named_key)
        except trio.TooSlowError:
            _limited.info("handshake timeout", "peer %s did not finish the handshake in time",
                          peer)
            return
        except DSClusterError as e:
            _limited.warning(("refused", type(e).__name__), "refused peer %s: %s", peer, e)
            await self._try_final_error(chan, e)
            return
        if proven is None:
            return
        caller = Caller(peer, proven.role, proven.token, proven.key, proven.generation)
        while True:
            try:
                with trio.move_on_after(IDLE_TIMEOUT) as idle:
                    msg = await chan.receive()
                if idle.cancelled_caught or msg is None:
                    return
                if caller.token and not await self._still_valid(caller):
                    await self._try_final_error(chan, Unauthorized(
                        f"token {caller.token!r} was revoked"))
                    return
                if (caller.generation is not None
                        and self.keyring.expired(caller.generation)
                        and not (caller.role == "node" and isinstance(msg, wire.SecretFetch))):
                    # past the grace, the old node secret may only fetch the new one
                    await self._try_final_error(chan, Unauthorized(
                        f"the cluster secret this {caller.role} token derives from was "
                        "rotated; ask the operator for the new token"))
                    return
                await chan.send(await self._answer(msg, caller))
            except (ProtocolError, TooLarge) as e:
                log.warning("closing stream from %s: %s", peer, e)
                await self._try_final_error(chan, e)
                return
            except Unavailable as e:
                log.debug("stream from %s ended: %s", peer, e)
                return

    async def answer_local(self, msg: wire.Message) -> wire.Message:
        """Answer a request from inside this process (the node's own S3 gateway): the
        same checks and handlers as a remote request, without sockets or encryption."""
        return await self._answer(msg, Caller(self.peer_id, "node"))

    async def _answer(self, msg: wire.Message, caller: Caller) -> wire.Message:
        start = time.perf_counter()
        reply = await self._dispatch(msg, caller)
        # clients are too many to label one by one; members are few
        self.metrics.answered(type(msg).__name__, reply, time.perf_counter() - start,
                              caller.peer if caller.role == "node" else caller.role)
        return reply

    async def _dispatch(self, msg: wire.Message, caller: Caller) -> wire.Message:
        try:
            if isinstance(msg, WRITES) and caller.role == "readonly":
                raise Forbidden("this client is read-only")
            return await self._handlers[type(msg)](msg, caller)
        except DSClusterError as e:
            return error_message(e)
        except Exception as e:  # a bug must not take the node down; report it
            log.exception("internal error serving %s from %s", type(msg).__name__, caller.peer)
            return error_message(InternalError(f"internal error: {type(e).__name__}: {e}"))

    async def _named_key(self, name: str, role: str) -> bytes | None:
        book = self.credentials
        if book is None:
            return None
        return book.token_key(name, role) or await book.look_up_token(name, role)

    async def _still_valid(self, caller: Caller) -> bool:
        book = self.credentials
        if book is None:
            return False
        # the copy may be a moment older than the token: ask the cluster before refusing
        return book.still_valid(caller.token, caller.role, caller.key) or (
            await book.look_up_token(caller.token, caller.role) is not None
            and book.still_valid(caller.token, caller.role, caller.key))

    async def _try_final_error(self, chan: MessageChannel, e: DSClusterError) -> None:
        try:
            await chan.send_final_error(e)
        except DSClusterError:
            pass

    # -- validation ---------------------------------------------------------------------
    def _key(self, key: str) -> str:
        """A key this node holds a replica of."""
        key = self._clean_key(key)
        self._own(slot_of(key))
        return key

    def _own(self, slot: int) -> None:
        cmap = self.state.map
        if not cmap.owns(self.index, slot):
            owner = cmap.owners_of_slot(slot)[0]
            raise Redirect(
                f"slot {slot} is served by {owner.describe()}",
                slot=slot, epoch=cmap.epoch, owner=owner.peer_id,
            )

    def _clean_key(self, key: str) -> str:
        if len(key.encode()) > self.limits.max_key_bytes:
            raise InvalidKey(f"key is longer than {self.limits.max_key_bytes} bytes")
        if not key.startswith("/") or clean_path(key) != key:
            raise InvalidKey(f"key {key!r} is not a clean datastore key")
        return key

    def _slots(self, ranges: list[Any]) -> list[int]:
        """``[[first, end), ...]`` from a peer, bounded before anything is built."""
        slots: list[int] = []
        for r in ranges:
            if not (isinstance(r, list) and len(r) == 2 and all(
                    isinstance(x, int) and not isinstance(x, bool) for x in r)
                    and 0 <= r[0] < r[1] <= SLOT_COUNT):
                raise InvalidArgument(f"slot ranges must be [first, end) within 0..{SLOT_COUNT}")
            if len(slots) + r[1] - r[0] > SLOT_COUNT:
                raise InvalidArgument(f"at most {SLOT_COUNT} slots per request")
            slots.extend(range(r[0], r[1]))
        return slots

    def _value(self, value: bytes) -> bytes:
        if len(value) > self.limits.max_value_bytes:
            raise TooLarge(
                f"value of {len(value)} bytes exceeds the {self.limits.max_value_bytes}-byte "
                "limit"
            )
        return value

    def _internal_only(self, keys: Collection[str], caller: Caller) -> None:
        """The cluster's own records (credentials.py) are for nodes only."""
        if caller.role != "node" and any(internal(k) for k in keys):
            raise Forbidden("keys under /.dscluster are the cluster's own; no client may "
                            "read or write them")

    def _no_delete(self) -> None:
        if self.disable_delete:
            raise Forbidden("deletes are disabled on this node")

    def _admin(self, caller: Caller, what: str = "this request") -> None:
        # nodes too: a member relays an operator's request, and holds the secret anyway
        if caller.role not in ("admin", "node"):
            raise Forbidden(f"{what} needs the admin token (admin.token, written by dscfg "
                            f"cluster); this client holds a {caller.role} token")

    def _current_secret(self, caller: Caller, what: str) -> None:
        """During a rotation's grace the old secret still reads and writes, but it may not
        mint what outlives the grace (named tokens, S3 keys, another rotation, a member)."""
        if caller.generation is not None and caller.generation < self.keyring.generation:
            raise Forbidden(f"{what} needs a token of the cluster's new secret (generation "
                            f"{self.keyring.generation}); this one is of the rotated one")

    # -- handlers -----------------------------------------------------------------------
    async def _read_record(self, m: wire.ReadRecord, caller: Caller) -> wire.Message:
        self._internal_only([m.key], caller)
        held = await self.replica.read(self._key(m.key), value=m.value)
        return wire.Record(hlc=held.version.hlc, writer=held.version.writer,
                           state=held.state, size=held.size, value=held.value)

    async def _write_records(self, m: wire.WriteRecords, caller: Caller) -> wire.Message:
        ops = self._versioned_ops(m.ops, owned=True, new=not m.repair)
        self._internal_only([op.key for op in ops], caller)
        cmap = self.state.map
        if ops and not m.repair and m.layout_epoch < cmap.layout_epoch:
            # The writer's map predates a slot move: it may not send to the targets,
            # and an acknowledgement from the old owners alone could be lost when the
            # move completes. Repairs only ever add what is newer, wherever they come from.
            slot = slot_of(ops[0].key)
            raise Redirect(f"the writer's map predates layout epoch {cmap.layout_epoch} "
                           f"of node {self.index}", slot=slot, epoch=cmap.epoch,
                           owner=cmap.owners_of_slot(slot)[0].peer_id)
        async with self._writing([op.key for op in ops]):
            await self._refuse_overwrites(ops)  # before anything is written
            results = await self.replica.write(ops)
        return wire.Written(results=[[ok, v.hlc, v.writer] for ok, v in results])

    async def _store_hints(self, m: wire.StoreHints, caller: Caller) -> wire.Message:
        if not 0 <= m.target < len(self.state.map.members) or m.target == self.index:
            raise InvalidArgument(f"no other member {m.target} to keep hints for")
        ops = self._versioned_ops(m.ops, owned=False, new=False)
        self._internal_only([op.key for op in ops], caller)
        if self.replica.hint_count() + len(ops) > MAX_HINTS:
            raise Unavailable(f"node {self.index} already keeps {MAX_HINTS} hints")
        await self.replica.add_hints(m.target, ops)
        return wire.Ok()

    async def _check_batch(self, m: wire.CheckBatch, caller: Caller) -> wire.Message:
        if len(m.ops) > self.limits.max_batch_ops:
            raise TooLarge(f"batch of {len(m.ops)} operations exceeds the limit of "
                           f"{self.limits.max_batch_ops}")
        ops = []
        for raw in m.ops:
            if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], str)
                    and (raw[1] is None or isinstance(raw[1], bytes))):
                raise InvalidArgument("batch operations must be [key, value or nil]")
            ops.append(self._checked_op(raw[0], raw[1], ZERO, owned=True))
        self._internal_only([op.key for op in ops], caller)
        await self._refuse_overwrites(ops)
        return wire.Ok()

    def _versioned_ops(self, raw_ops: list[Any], *, owned: bool,
                       new: bool) -> list[VersionedOp]:
        if len(raw_ops) > self.limits.max_batch_ops:
            raise TooLarge(f"batch of {len(raw_ops)} operations exceeds the limit of "
                           f"{self.limits.max_batch_ops}")
        ops: dict[str, VersionedOp] = {}
        for raw in raw_ops:
            if not (isinstance(raw, list) and len(raw) == 4 and isinstance(raw[0], str)
                    and (raw[1] is None or isinstance(raw[1], bytes))
                    and isinstance(raw[2], int) and not isinstance(raw[2], bool)
                    and 0 <= raw[2] < 1 << 63 and isinstance(raw[3], str)
                    and len(raw[3]) <= MAX_WRITER_CHARS):
                raise InvalidArgument("versioned operations must be [key, value or nil, "
                                      "hlc, writer]")
            version = Version(raw[2], raw[3])
            if new:
                ahead = self.clock.too_far_ahead(version)
                if ahead is not None:
                    raise InvalidArgument(
                        f"a write to {raw[0]} is stamped {ahead / 1000:.0f} s ahead of node "
                        f"{self.index}'s clock (at most {MAX_AHEAD_MS // 1000} s): check "
                        "the writer's clock")
            op = self._checked_op(raw[0], raw[1], version, owned=owned)
            prev = ops.pop(op.key, None)  # one operation per key: the newest
            ops[op.key] = op if prev is None or op.version >= prev.version else prev
        return list(ops.values())

    def _checked_op(self, key: str, value: bytes | None, version: Version, *,
                    owned: bool) -> VersionedOp:
        key = self._key(key) if owned else self._clean_key(key)
        if value is None:
            self._no_delete()
        else:
            self._value(value)
        return VersionedOp(key, value, version)

    def _writing(self, keys: Collection[str]) -> AbstractAsyncContextManager[None]:
        # only write-once nodes check before they write, so only they need the keys held
        if self.disable_delete:
            return self._key_locks.hold(keys)
        return contextlib.nullcontext()

    async def _refuse_overwrites(self, ops: Sequence[VersionedOp]) -> None:
        """With disable_delete stored data is write-once: overwriting a value destroys it
        as surely as deleting it. Writing the very same bytes again is no change, so
        retries, re-added blocks and repairs still succeed."""
        if not self.disable_delete:
            return
        for op in ops:
            assert op.value is not None  # _checked_op refused deletes on this node
            try:
                same = (await self.store.get_size(op.key) == len(op.value)
                        and await self.store.get(op.key) == op.value)
            except NotFound:
                continue
            if not same:
                raise Forbidden(f"overwrites are disabled on this node (disable_delete): "
                                f"{op.key} already holds a different value")

    async def _slot_digests(self, m: wire.SlotDigests, caller: Caller) -> wire.Message:
        return wire.Digests(digests=self.replica.digests(self._slots(m.slots)))

    async def _slot_versions(self, m: wire.SlotVersions, caller: Caller) -> wire.Message:
        if not 0 <= m.slot < SLOT_COUNT:
            raise InvalidArgument(f"slot must be 0..{SLOT_COUNT - 1}")
        if not 1 <= m.limit <= self.limits.max_page_entries:
            raise InvalidArgument(
                f"page limit must be 1..{self.limits.max_page_entries}")
        entries, cursor = await self.replica.slot_versions(m.slot, m.start_after, m.limit)
        hidden = caller.role != "node"
        return wire.VersionPage(entries=[[k, v.hlc, v.writer, dead] for k, v, dead in entries
                                         if not (hidden and internal(k))], cursor=cursor)

    async def _slot_query(self, m: wire.SlotQuery, caller: Caller) -> wire.Message:
        if not 1 <= m.limit <= self.limits.max_page_entries:
            raise InvalidArgument(
                f"query page limit must be 1..{self.limits.max_page_entries}")
        prefix = clean_path(m.prefix)
        filters = [filter_from_wire(f) for f in m.filters]
        wanted_slots = bytearray(SLOT_COUNT)
        slots = self._slots(m.slots)
        cmap = self.state.map
        for slot in slots:
            self._own(slot)
            if cmap.incoming(self.index, slot):
                raise CatchingUp(f"node {self.index} is still receiving slot {slot} "
                                 "(a move); its old owners list it")
            wanted_slots[slot] = 1
        behind = (None if m.catching_up_ok or self.anti_entropy is None
                  else self.anti_entropy.catching_up(slots))
        if behind is not None:
            raise CatchingUp(f"node {self.index} has not caught up on slot {behind} since "
                             "it started; another owner lists it")

        hidden = caller.role != "node"

        def wanted(e: Entry) -> bool:
            # the client asks each slot of one owner; keys in other slots (another
            # owner lists them, or they were left behind by a move) are not reported
            return (bool(wanted_slots[slot_of(e.key)]) and not (hidden and internal(e.key))
                    and all(f(e) for f in filters))

        page = await self.store.scan(
            prefix, start_after=m.start_after, reverse=m.reverse, limit=m.limit,
            max_bytes=self.limits.page_bytes, keys_only=m.keys_only, predicate=wanted,
        )
        return wire.QueryPage(
            entries=[[e.key, e.value, e.size] for e in page.entries], cursor=page.cursor
        )

    async def _repair(self, m: wire.Repair, caller: Caller) -> wire.Message:
        if self.anti_entropy is None:
            raise Unavailable(f"node {self.index} runs no repair")
        if m.bytes_per_second:
            # a pass at a rate of its own skips the background throttle: a move's
            self._admin(caller)
        return wire.RepairReport(report=await self.anti_entropy.repair(
            self._slots(m.slots), m.bytes_per_second))

    async def _sync(self, m: wire.Sync, caller: Caller) -> wire.Message:
        await self.store.sync(clean_path(m.prefix))
        return wire.Ok()

    async def _disk_usage(self, m: wire.DiskUsage, caller: Caller) -> wire.Message:
        return wire.Size(value=await self.store.disk_usage())

    async def _stats(self, m: wire.Stats, caller: Caller) -> wire.Message:
        cmap = self.state.map
        return wire.StatsData(stats={
            "peer_id": self.peer_id,
            "index": self.index,
            "epoch": cmap.epoch,
            "store": self.store.kind,
            "keys": await self.store.count(),
            "disk_usage": await self.store.disk_usage(),
            "slots": cmap.describe_ranges(self.index),
            "disable_delete": self.disable_delete,
            "members": self.liveness.view(),
            "replication": cmap.replication,
            "hints": self.replica.hint_count(),
            "secret_generation": self.keyring.generation,
            **({"repair": self.anti_entropy.progress()} if self.anti_entropy else {}),
        })

    async def _get_map(self, m: wire.GetMap, caller: Caller) -> wire.Message:
        cmap = self.state.map
        return wire.MapData(map=None if m.known_epoch == cmap.epoch else cmap.to_dict())

    async def _rebalance(self, m: wire.Rebalance, caller: Caller) -> wire.Message:
        if self.on_rebalance is None:
            raise Forbidden(f"node {self.index} does not coordinate slot moves; the "
                            "bootstrapper (member 0) does")
        if m.action != "status":
            self._admin(caller)
        return wire.RebalanceStatus(status=await self.on_rebalance(m))

    async def _admin_request(self, m: wire.Admin, caller: Caller) -> wire.Message:
        self._admin(caller, "managing the cluster's credentials")
        self._current_secret(caller, "managing the cluster's credentials")
        if self.credentials is None:
            raise Unavailable(f"node {self.index} keeps no cluster credentials")
        return wire.AdminResult(result=await admin.handle(self.credentials, m.action, m.args,
                                                          self.rotation))

    async def _secret_fetch(self, m: wire.SecretFetch, caller: Caller) -> wire.Message:
        # the old node secret gets a caller this far; only its peer id, which Noise
        # proves on libp2p, tells a member from someone who merely learnt that secret
        if self.rotation is None:
            raise Unavailable(f"node {self.index} does not rotate secrets")
        if caller.role != "node":
            raise Forbidden("only members fetch the cluster secret")
        if caller.peer == ANONYMOUS:
            raise Forbidden("fetch the cluster secret over libp2p: the data lane does not "
                            "identify the caller")
        member = self.state.map.member_by_peer(caller.peer)
        if member is None or member.state != JOINED:
            raise Forbidden(f"peer {caller.peer} is not a member of this cluster")
        return self.rotation.answer(m)

    async def _join(self, m: wire.Join, caller: Caller) -> wire.Message:
        if self.on_join is None:
            raise Forbidden("this node is not the bootstrapper; join through the bootstrapper")
        if caller.role != "node":
            raise Forbidden("only nodes holding the cluster secret may join")
        if caller.peer == ANONYMOUS:
            raise Forbidden("join over libp2p: the data lane does not identify the caller")
        if self.state.map.member_by_peer(caller.peer) is None:
            # a member re-announcing itself may still dial with the old secret
            self._current_secret(caller, "joining as a new member")
        return wire.MapData(map=await self.on_join(caller.peer, m))
