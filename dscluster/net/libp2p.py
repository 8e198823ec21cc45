"""The libp2p transport: Ed25519 identity, Noise only, yamux, TCP.

py-libp2p's defaults are wrong for us in three measured ways: its default host also
accepts the unencrypted /plaintext/2.0.0 security (we pass Noise as the only security
option), each dial waits 250 ms unless ``max_connections_per_peer=1``, and its
``read_exactly`` gives up after 100 partial reads (our codec buffers partial frames
itself, so only plain ``read`` is used).

Its accept path is wrong for a server too: the swarm's inbound limiter (250 slots) keeps
the slot of every connection that ever completed the upgrade until the swarm stops (the
handler awaits the swarm's end), so after 250 inbound connections in its life a node
refused every new one; and an idle TCP connection held a slot for 10 s of upgrade
timeout. py-libp2p has no hook for its accept path (its connection gate only checks
allow and deny lists, its resource manager counts upgraded connections), so
``Libp2pTransport`` replaces the swarm's per-connection accept handler with its own:
admission per source address (admission.py), one deadline from accept for Noise, yamux
and our stream handshake, and the admission released when the connection closes.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial

import trio
from libp2p import create_yamux_muxer_option, new_host
from libp2p.abc import IMuxedConn
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.io.abc import ReadWriteCloser
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.network.stream.exceptions import StreamEOF, StreamError
from libp2p.network.stream.net_stream import INetStream
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from multiaddr import Multiaddr

from ..errors import ConfigError, Unavailable
from ..identity import Identity
from ..limits import ConnectionLimits
from ..logs import RateLimitedLog
from .addrs import parse_maddr
from .admission import AdmissionControl, Refused, Ticket, has_spoken, unmetered
from .base import Admission, StreamHandler

PROTOCOL = TProtocol("/dscluster/kv/1.0.0")
log = logging.getLogger(__name__)
_limited = RateLimitedLog(log)
# seconds to close a connection politely (yamux GO_AWAY) before its socket is closed
CLOSE_TIMEOUT = 1.0
# py-libp2p's own connection caps count outbound connections too and must never bind
# before admission's: this much room above the inbound caps is left for our dials
OUTBOUND_CONNECTIONS = 1024
# Streams open before any stream of their connection authenticated, per connection and
# in all: yamux buffers up to a window (256 KiB) per stream for us. A client's pool opens
# up to DEFAULT_STREAMS_PER_PEER (32) at once on a fresh connection, so no fewer.
PREAUTH_STREAMS = 32
PREAUTH_STREAMS_TOTAL = 1024


class Libp2pStream:
    __slots__ = ("_s", "admission", "local_peer", "remote_peer")
    transport = "libp2p"

    def __init__(self, s: INetStream, local_peer: str,
                 admission: Admission | None = None) -> None:
        self._s = s
        self.local_peer = local_peer
        self.remote_peer = s.muxed_conn.peer_id.to_base58()
        self.admission = admission

    async def send_all(self, data: bytes) -> None:
        try:
            await self._s.write(data)
        except (StreamError, OSError) as e:
            raise Unavailable(
                f"stream to {self.remote_peer} failed: {e or type(e).__name__}"
            ) from None

    async def receive_some(self, max_bytes: int) -> bytes:
        try:
            return await self._s.read(max_bytes)
        except StreamEOF:
            return b""
        except (StreamError, OSError) as e:
            raise Unavailable(
                f"stream from {self.remote_peer} failed: {e or type(e).__name__}"
            ) from None

    async def aclose(self) -> None:
        try:
            await self._s.close()
        except Exception:  # closing a dead stream is not an error worth reporting
            log.debug("closing stream to %s failed", self.remote_peer, exc_info=True)


class Libp2pTransport:
    def __init__(self, ident: Identity, connect_timeout: float = 5.0,
                 connections: ConnectionLimits | None = None) -> None:
        key_pair = ident.libp2p_keypair()
        self._connect_timeout = connect_timeout
        limits = connections or ConnectionLimits()
        self.admission = AdmissionControl(limits, name="libp2p")
        most = limits.unauthenticated + limits.authenticated + OUTBOUND_CONNECTIONS
        sec = {
            NOISE_PROTOCOL_ID: NoiseTransport(
                key_pair, noise_privkey=new_x25519_key_pair().private_key
            )
        }
        self.host = new_host(
            key_pair=key_pair,
            sec_opt=sec,
            muxer_opt=create_yamux_muxer_option(),
            connection_config=ConnectionConfig(
                max_connections_per_peer=1, dial_timeout=connect_timeout,
                max_connections=most, high_watermark=most, low_watermark=0,
                min_connections=0,
            ),
        )
        # py-libp2p retries a refused dial three times with backoff (0.7 s of sleep); the
        # member caller already retries once after a map refresh, and a dead node must
        # fail fast. new_host does not pass this setting on to its swarm.
        self.host.get_network().retry_config = RetryConfig(max_retries=0)
        self.peer_id = self.host.get_id().to_base58()
        self._dial_locks: dict[str, trio.Lock] = {}
        # id(muxed connection) -> its admission, for inbound connections until they close
        self._inbound: dict[int, Ticket] = {}
        # id(muxed connection) -> its streams open before any of them authenticated
        self._preauth_streams: dict[int, int] = {}
        # the one replacement of py-libp2p's accept path (see the module doc); its TCP
        # listener looks the handler up on each connection
        self.host.get_network()._handle_inbound_connection = self._accept  # type: ignore[method-assign]

    def listen_addrs(self) -> list[str]:
        """The libp2p addresses this host listens on, without /p2p/<id>."""
        # get_addrs() appends /p2p/<id>; the map stores bare transport addresses
        return [str(a).split("/p2p/")[0] for a in self.host.get_addrs()]

    async def _accept(self, rwc: ReadWriteCloser, maddr: Multiaddr) -> None:
        swarm = self.host.get_network()
        # py-libp2p's TCP listener hands over its TrioTCPStream around trio's SocketStream
        sock: trio.socket.SocketType = rwc.stream.socket  # type: ignore[attr-defined]
        try:
            # not rwc.get_remote_address(): it gives None for IPv6 peers
            source = str(sock.getpeername()[0])
        except OSError:  # gone before we got to it
            source = ""
        ticket = self.admission.admit_unauthenticated(source) if source else None
        if not isinstance(ticket, Ticket):
            if isinstance(ticket, Refused):
                _limited.warning("refused", "refusing a libp2p connection: %s", ticket.reason)
            with contextlib.suppress(Exception):
                await rwc.close()
            return
        muxed: IMuxedConn | None = None
        try:
            with ticket.scope:
                if not has_spoken(sock):
                    await trio.lowlevel.wait_readable(sock)  # its multistream header
                ticket.heard_from()
                raw = RawConnection(rwc, False)
                secured = await swarm.upgrader.upgrade_security(raw, False)
                muxed = await swarm.upgrader.upgrade_connection(
                    secured, secured.get_remote_peer())
                # before add_conn starts accepting its streams, so each finds its ticket
                self._inbound[id(muxed)] = ticket
                await swarm.add_conn(muxed, direction="inbound")
                await muxed.event_closed.wait()  # type: ignore[attr-defined]
        except Exception as e:  # py-libp2p raises many unrelated types for a failed upgrade
            log.debug("inbound libp2p connection from %s ended: %s", source, e)
        finally:
            ticket.release()
            with trio.CancelScope(shield=True, deadline=trio.current_time() + CLOSE_TIMEOUT):
                if muxed is not None:
                    self._inbound.pop(id(muxed), None)
                    with contextlib.suppress(Exception):
                        await muxed.close()
                with contextlib.suppress(Exception):
                    await rwc.close()
        if ticket.scope.cancelled_caught and trio.current_time() >= ticket.deadline:
            _limited.info("pre-auth timeout", "closed a libp2p connection from %s that did "
                          "not authenticate within %gs", source,
                          self.admission.limits.preauth_timeout)

    def _admission_of(self, s: INetStream) -> Admission:
        ticket = self._inbound.get(id(s.muxed_conn))
        if ticket is None or ticket.authenticated:
            # a connection we dialed, or one a stream authenticated: the stream's own
            # handshake still has the pre-auth time
            return unmetered(self.admission.limits.preauth_timeout)
        return ticket

    def set_handler(self, handler: StreamHandler) -> None:
        self.host.set_stream_handler(PROTOCOL, partial(self._serve_stream, handler))

    async def _serve_stream(self, handler: StreamHandler, s: INetStream) -> None:
        admission = self._admission_of(s)
        conn = id(s.muxed_conn)
        preauth = isinstance(admission, Ticket) and not admission.authenticated
        if preauth:
            if self._preauth_streams.get(conn, 0) >= PREAUTH_STREAMS \
                    or sum(self._preauth_streams.values()) >= PREAUTH_STREAMS_TOTAL:
                _limited.warning("streams", "reset a stream of an unauthenticated libp2p "
                                 "connection: too many open")
                with contextlib.suppress(Exception):
                    await s.reset()
                return
            self._preauth_streams[conn] = self._preauth_streams.get(conn, 0) + 1
        stream = Libp2pStream(s, self.peer_id, admission)
        try:
            await handler(stream)
        finally:
            if preauth:
                self._preauth_streams[conn] -= 1
                if not self._preauth_streams[conn]:
                    del self._preauth_streams[conn]
            if isinstance(admission, Ticket) and not admission.authenticated:
                # refused: a reset drops what yamux buffered and tells the peer to stop
                # sending, where a close would keep receiving into the window
                with contextlib.suppress(Exception):
                    await s.reset()
            else:
                await stream.aclose()

    async def open_stream(self, peer_id: str, addrs: Sequence[str]) -> Libp2pStream:
        pid = ID.from_base58(peer_id)
        # one dial per peer at a time, so a burst of requesters shares one connection
        lock = self._dial_locks.setdefault(peer_id, trio.Lock())
        try:
            with trio.fail_after(self._connect_timeout):
                async with lock:
                    had_connection = bool(self.host.get_network().get_connections(pid))
                    if not had_connection:
                        await self._dial(pid, addrs)
                try:
                    s = await self.host.new_stream(pid, [PROTOCOL])
                except Exception:  # libp2p raises many unrelated types here
                    if not had_connection:
                        raise
                    # the connection we had died with the peer (a restart): dial afresh
                    async with lock:
                        await self.host.disconnect(pid)
                        await self._dial(pid, addrs)
                    s = await self.host.new_stream(pid, [PROTOCOL])
        except trio.TooSlowError:
            raise Unavailable(
                f"peer {peer_id} at {', '.join(addrs) or 'no address'} did not answer "
                f"within {self._connect_timeout:g}s"
            ) from None
        except Unavailable:
            raise
        except Exception as e:  # libp2p raises many unrelated types when a dial fails
            raise Unavailable(
                f"cannot reach peer {peer_id} at {', '.join(addrs) or 'no address'}: "
                f"{e or type(e).__name__}"
            ) from None
        return Libp2pStream(s, self.peer_id)


    async def _dial(self, pid: ID, addrs: Sequence[str]) -> None:
        # data lane addresses (…/tls) are not libp2p's
        maddrs = [parse_maddr(a) for a in addrs if not a.endswith("/tls")]
        # py-libp2p refuses for 60 s to dial a peer whose last dial failed; our callers
        # decide when to try again (a restarted node must be reachable at once)
        self.host.get_network().unblock_peer(pid)
        await self.host.connect(PeerInfo(pid, maddrs))


def _check_can_listen(maddr: Multiaddr) -> None:
    """Bind the port once without SO_REUSEPORT: py-libp2p binds with it, so it would
    silently share a port another node holds, and it only logs other failures."""
    proto, host, transport, port = (str(maddr).split("/") + [""] * 4)[1:5]
    if proto not in ("ip4", "ip6") or transport != "tcp" or port == "0":
        return
    try:
        with socket.socket(socket.AF_INET if proto == "ip4" else socket.AF_INET6) as s:
            # SO_REUSEADDR: a port left in TIME_WAIT by a node that just stopped is free
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, int(port)))
    except OSError as e:
        raise ConfigError(f"cannot listen on {maddr}: {e.strerror or e}") from None


@asynccontextmanager
async def open_libp2p_transport(
    ident: Identity, listen: Sequence[str] = (), connect_timeout: float = 5.0,
    connections: ConnectionLimits | None = None,
) -> AsyncIterator[Libp2pTransport]:
    t = Libp2pTransport(ident, connect_timeout, connections)
    addrs = [parse_maddr(a) for a in listen]
    for a in addrs:
        _check_can_listen(a)
    async with t.host.run(addrs):
        listening = t.host.get_network().listeners
        for a in addrs:
            if str(a) not in listening:  # py-libp2p logged why and carried on without it
                raise ConfigError(f"cannot listen on {a}")
        # the auto-connector dials every peer in the peerstore to keep a connection
        # count up: we connect to a node only when we have something to ask it
        await t.host.get_network().auto_connector.stop()
        yield t
