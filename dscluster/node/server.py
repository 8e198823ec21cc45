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
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import trio

from .. import wire
from ..cluster.liveness import Liveness
from ..cluster.state import ClusterState
from ..datastore import BatchOp
from ..errors import (
    DSClusterError,
    Forbidden,
    InternalError,
    InvalidArgument,
    InvalidKey,
    NotFound,
    ProtocolError,
    Redirect,
    TooLarge,
    Unavailable,
)
from ..keys import clean_path, slot_of
from ..limits import PREAUTH_TIMEOUT, Limits
from ..logs import RateLimitedLog
from ..net.base import ByteStream
from ..net.channel import MessageChannel, error_message
from ..net.handshake import server_handshake
from ..net.tls import ANONYMOUS
from ..query import Entry, filter_from_wire
from ..store.base import Store

log = logging.getLogger(__name__)
# refused peers are an attacker's to multiply: one line per kind per 10 s
_limited = RateLimitedLog(log)

# for a stream no transport admitted (admitted ones have their connection's deadline)
HANDSHAKE_TIMEOUT = PREAUTH_TIMEOUT
IDLE_TIMEOUT = 300.0
# refused to read-only callers; Sync too: it makes the node flush others' writes, and
# a reader has none of its own to make durable
WRITES = (wire.Put, wire.Delete, wire.Batch, wire.CheckBatch, wire.Sync)

JoinHandler = Callable[[str, wire.Join], Awaitable[dict[str, Any]]]


class _KeyLocks:
    """Exclusive holds on sets of keys, so that a write-once check and the write it
    allowed cannot interleave with another write of the same key."""

    def __init__(self) -> None:
        self._held: set[str] = set()
        self._released = trio.Event()

    @contextlib.asynccontextmanager
    async def hold(self, keys: Collection[str]) -> AsyncIterator[None]:
        # all the keys at once or none, so two batches never wait for each other
        while not self._held.isdisjoint(keys):
            await self._released.wait()
        self._held.update(keys)
        try:
            yield
        finally:
            self._held.difference_update(keys)
            self._released.set()
            self._released = trio.Event()


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated peer on a stream and the role it proved."""

    peer: str
    role: str


class NodeServer:
    def __init__(
        self,
        *,
        store: Store,
        state: ClusterState,
        member_index: int,
        peer_id: str,
        secret: bytes,
        limits: Limits,
        disable_delete: bool = False,
        on_join: JoinHandler | None = None,
        liveness: Liveness | None = None,
    ) -> None:
        self.store = store
        self.state = state
        self.index = member_index
        self.peer_id = peer_id
        self.secret = secret
        self.limits = limits
        self.disable_delete = disable_delete
        self._key_locks = _KeyLocks()
        self.on_join = on_join
        # this node's view of which members answer, reported in Stats
        self.liveness = liveness or Liveness()
        self._handlers: dict[type[wire.Message], Callable[[Any, Caller], Awaitable[Any]]] = {
            wire.Get: self._get,
            wire.Has: self._has,
            wire.GetSize: self._get_size,
            wire.Put: self._put,
            wire.Delete: self._delete,
            wire.Batch: self._batch,
            wire.CheckBatch: self._check_batch,
            wire.Query: self._query,
            wire.Sync: self._sync,
            wire.DiskUsage: self._disk_usage,
            wire.Stats: self._stats,
            wire.GetMap: self._get_map,
            wire.Join: self._join,
        }

    # -- stream loop --------------------------------------------------------------------
    async def handle_stream(self, stream: ByteStream) -> None:
        chan = MessageChannel(stream, wire.Connection(wire.Role.SERVER, self.limits))
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
                role = await server_handshake(chan, self.secret, welcome)
        except trio.TooSlowError:
            _limited.info("handshake timeout", "peer %s did not finish the handshake in time",
                          peer)
            return
        except DSClusterError as e:
            _limited.warning(("refused", type(e).__name__), "refused peer %s: %s", peer, e)
            await self._try_final_error(chan, e)
            return
        if role is None:
            return
        caller = Caller(peer, role)
        while True:
            try:
                with trio.move_on_after(IDLE_TIMEOUT) as idle:
                    msg = await chan.receive()
                if idle.cancelled_caught or msg is None:
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
        try:
            if isinstance(msg, WRITES) and caller.role == "readonly":
                raise Forbidden("this client is read-only")
            return await self._handlers[type(msg)](msg, caller)
        except DSClusterError as e:
            return error_message(e)
        except Exception as e:  # a bug must not take the node down; report it
            log.exception("internal error serving %s from %s", type(msg).__name__, caller.peer)
            return error_message(InternalError(f"internal error: {type(e).__name__}: {e}"))

    async def _try_final_error(self, chan: MessageChannel, e: DSClusterError) -> None:
        try:
            await chan.send_final_error(e)
        except DSClusterError:
            pass

    # -- validation ---------------------------------------------------------------------
    def _key(self, key: str) -> str:
        if len(key.encode()) > self.limits.max_key_bytes:
            raise InvalidKey(f"key is longer than {self.limits.max_key_bytes} bytes")
        if not key.startswith("/") or clean_path(key) != key:
            raise InvalidKey(f"key {key!r} is not a clean datastore key")
        slot = slot_of(key)
        cmap = self.state.map
        if not cmap.owns(self.index, slot):
            owner = cmap.owners_of_slot(slot)[0]
            raise Redirect(
                f"slot {slot} is served by {owner.describe()}",
                slot=slot, epoch=cmap.epoch, owner=owner.peer_id,
            )
        return key

    def _value(self, value: bytes) -> bytes:
        if len(value) > self.limits.max_value_bytes:
            raise TooLarge(
                f"value of {len(value)} bytes exceeds the {self.limits.max_value_bytes}-byte "
                "limit"
            )
        return value

    def _no_delete(self) -> None:
        if self.disable_delete:
            raise Forbidden("deletes are disabled on this node")

    # -- handlers -----------------------------------------------------------------------
    async def _get(self, m: wire.Get, caller: Caller) -> wire.Message:
        return wire.Value(value=await self.store.get(self._key(m.key)))

    async def _has(self, m: wire.Has, caller: Caller) -> wire.Message:
        return wire.Bool(value=await self.store.has(self._key(m.key)))

    async def _get_size(self, m: wire.GetSize, caller: Caller) -> wire.Message:
        return wire.Size(value=await self.store.get_size(self._key(m.key)))

    async def _put(self, m: wire.Put, caller: Caller) -> wire.Message:
        key, value = self._key(m.key), self._value(m.value)
        async with self._writing([key]):
            await self._refuse_overwrites([BatchOp(key, value)])
            await self.store.put(key, value)
        return wire.Ok()

    async def _delete(self, m: wire.Delete, caller: Caller) -> wire.Message:
        self._no_delete()
        await self.store.delete(self._key(m.key))
        return wire.Ok()

    async def _batch(self, m: wire.Batch, caller: Caller) -> wire.Message:
        ops = self._batch_ops(m.ops)
        async with self._writing([op.key for op in ops]):
            await self._refuse_overwrites(ops)  # before anything is written
            await self.store.apply(ops)
        return wire.Ok()

    async def _check_batch(self, m: wire.CheckBatch, caller: Caller) -> wire.Message:
        await self._refuse_overwrites(self._batch_ops(m.ops))
        return wire.Ok()

    def _batch_ops(self, raw_ops: list[Any]) -> list[BatchOp]:
        if len(raw_ops) > self.limits.max_batch_ops:
            raise TooLarge(f"batch of {len(raw_ops)} operations exceeds the limit of "
                           f"{self.limits.max_batch_ops}")
        ops: dict[str, BatchOp] = {}
        for raw in raw_ops:
            if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], str)
                    and (raw[1] is None or isinstance(raw[1], bytes))):
                raise InvalidArgument("batch operations must be [key, value or nil]")
            key = self._key(raw[0])
            if raw[1] is None:
                self._no_delete()
            else:
                self._value(raw[1])
            ops.pop(key, None)  # last operation on a key wins
            ops[key] = BatchOp(key, raw[1])
        return list(ops.values())

    def _writing(self, keys: Collection[str]) -> AbstractAsyncContextManager[None]:
        # only write-once nodes check before they write, so only they need the keys held
        if self.disable_delete:
            return self._key_locks.hold(keys)
        return contextlib.nullcontext()

    async def _refuse_overwrites(self, ops: Sequence[BatchOp]) -> None:
        """With disable_delete stored data is write-once: overwriting a value destroys it
        as surely as deleting it. Writing the very same bytes again is no change, so
        retries and re-added blocks still succeed."""
        if not self.disable_delete:
            return
        for op in ops:
            assert op.value is not None  # _batch_ops refused deletes on this node
            try:
                same = (await self.store.get_size(op.key) == len(op.value)
                        and await self.store.get(op.key) == op.value)
            except NotFound:
                continue
            if not same:
                raise Forbidden(f"overwrites are disabled on this node (disable_delete): "
                                f"{op.key} already holds a different value")

    async def _query(self, m: wire.Query, caller: Caller) -> wire.Message:
        if not 1 <= m.limit <= self.limits.max_page_entries:
            raise InvalidArgument(
                f"query page limit must be 1..{self.limits.max_page_entries}")
        prefix = clean_path(m.prefix)
        filters = [filter_from_wire(f) for f in m.filters]
        cmap, index = self.state.map, self.index

        def wanted(e: Entry) -> bool:
            # keys in slots this node does not serve (e.g. left behind by a move) are
            # never reported: another node answers for them
            return cmap.owns(index, slot_of(e.key)) and all(f(e) for f in filters)

        page = await self.store.scan(
            prefix, start_after=m.start_after, reverse=m.reverse, limit=m.limit,
            max_bytes=self.limits.page_bytes, keys_only=m.keys_only, predicate=wanted,
        )
        return wire.QueryPage(
            entries=[[e.key, e.value, e.size] for e in page.entries], cursor=page.cursor
        )

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
        })

    async def _get_map(self, m: wire.GetMap, caller: Caller) -> wire.Message:
        cmap = self.state.map
        return wire.MapData(map=None if m.known_epoch == cmap.epoch else cmap.to_dict())

    async def _join(self, m: wire.Join, caller: Caller) -> wire.Message:
        if self.on_join is None:
            raise Forbidden("this node is not the bootstrapper; join through the bootstrapper")
        if caller.role != "node":
            raise Forbidden("only nodes holding the cluster secret may join")
        if caller.peer == ANONYMOUS:
            raise Forbidden("join over libp2p: the data lane does not identify the caller")
        return wire.MapData(map=await self.on_join(caller.peer, m))
