"""The data-node server: authenticate the peer, check slot ownership, run the store.

Theory of operation: every incoming stream is one conversation (see wire). After the
handshake the node answers requests one at a time. Frame-level violations (a frame too
large, undecodable or out of order) get a final Error and the stream is closed; a
request the node refuses (bad key, slot owned elsewhere, read-only peer, value too
large, missing key) gets an Error and the stream carries on. Either way the node keeps
serving everyone else.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from .. import wire
from ..cluster.state import ClusterState
from ..datastore import BatchOp
from ..errors import (
    DSClusterError,
    Forbidden,
    InternalError,
    InvalidArgument,
    InvalidKey,
    ProtocolError,
    Redirect,
    TooLarge,
    Unavailable,
)
from ..keys import clean_path, slot_of
from ..limits import Limits
from ..net.base import ByteStream
from ..net.channel import MessageChannel, error_message
from ..net.handshake import server_handshake
from ..net.tls import ANONYMOUS
from ..query import Entry, filter_from_wire
from ..store.base import Store

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 300.0
WRITES = (wire.Put, wire.Delete, wire.Batch)

JoinHandler = Callable[[str, wire.Join], Awaitable[dict[str, Any]]]


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
    ) -> None:
        self.store = store
        self.state = state
        self.index = member_index
        self.peer_id = peer_id
        self.secret = secret
        self.limits = limits
        self.disable_delete = disable_delete
        self.on_join = on_join
        self._handlers: dict[type[wire.Message], Callable[[Any, Caller], Awaitable[Any]]] = {
            wire.Get: self._get,
            wire.Has: self._has,
            wire.GetSize: self._get_size,
            wire.Put: self._put,
            wire.Delete: self._delete,
            wire.Batch: self._batch,
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
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                role = await server_handshake(
                    chan, self.secret,
                    lambda r: wire.Welcome(epoch=self.state.epoch, node_index=self.index,
                                           role=r),
                )
        except trio.TooSlowError:
            log.info("peer %s did not finish the handshake in time", peer)
            return
        except DSClusterError as e:
            log.warning("refused peer %s: %s", peer, e)
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
        await self.store.put(self._key(m.key), self._value(m.value))
        return wire.Ok()

    async def _delete(self, m: wire.Delete, caller: Caller) -> wire.Message:
        self._no_delete()
        await self.store.delete(self._key(m.key))
        return wire.Ok()

    async def _batch(self, m: wire.Batch, caller: Caller) -> wire.Message:
        if len(m.ops) > self.limits.max_batch_ops:
            raise TooLarge(f"batch of {len(m.ops)} operations exceeds the limit of "
                           f"{self.limits.max_batch_ops}")
        ops: dict[str, BatchOp] = {}
        for raw in m.ops:
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
        await self.store.apply(list(ops.values()))
        return wire.Ok()

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
