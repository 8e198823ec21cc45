"""The libp2p transport: Ed25519 identity, Noise only, yamux, TCP.

py-libp2p's defaults are wrong for us in three measured ways: its default host also
accepts the unencrypted /plaintext/2.0.0 security (we pass Noise as the only security
option), each dial waits 250 ms unless ``max_connections_per_peer=1``, and its
``read_exactly`` gives up after 100 partial reads (our codec buffers partial frames
itself, so only plain ``read`` is used).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio
from libp2p import create_yamux_muxer_option, new_host
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.network.stream.exceptions import StreamEOF, StreamError
from libp2p.network.stream.net_stream import INetStream
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport

from ..errors import ConfigError, Unavailable
from ..identity import Identity
from .addrs import parse_maddr
from .base import StreamHandler

PROTOCOL = TProtocol("/dscluster/kv/1.0.0")
log = logging.getLogger(__name__)



class Libp2pStream:
    __slots__ = ("_s", "local_peer", "remote_peer")

    def __init__(self, s: INetStream, local_peer: str) -> None:
        self._s = s
        self.local_peer = local_peer
        self.remote_peer = s.muxed_conn.peer_id.to_base58()

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
    def __init__(self, ident: Identity, connect_timeout: float = 5.0) -> None:
        key_pair = ident.libp2p_keypair()
        self._connect_timeout = connect_timeout
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
                max_connections_per_peer=1, dial_timeout=connect_timeout
            ),
        )
        self.peer_id = self.host.get_id().to_base58()
        self._dial_locks: dict[str, trio.Lock] = {}

    def listen_addrs(self) -> list[str]:
        """The libp2p addresses this host listens on, without /p2p/<id>."""
        # get_addrs() appends /p2p/<id>; the map stores bare transport addresses
        return [str(a).split("/p2p/")[0] for a in self.host.get_addrs()]

    def set_handler(self, handler: StreamHandler) -> None:
        async def on_stream(s: INetStream) -> None:
            stream = Libp2pStream(s, self.peer_id)
            try:
                await handler(stream)
            finally:
                await stream.aclose()

        self.host.set_stream_handler(PROTOCOL, on_stream)

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
        await self.host.connect(PeerInfo(pid, maddrs))


@asynccontextmanager
async def open_libp2p_transport(
    ident: Identity, listen: Sequence[str] = (), connect_timeout: float = 5.0
) -> AsyncIterator[Libp2pTransport]:
    t = Libp2pTransport(ident, connect_timeout)
    addrs = [parse_maddr(a) for a in listen]
    try:
        async with t.host.run(addrs):
            # the auto-connector dials every peer in the peerstore to keep a connection
            # count up: we connect to a node only when we have something to ask it
            await t.host.get_network().auto_connector.stop()
            yield t
    except OSError as e:
        raise ConfigError(f"cannot listen on {', '.join(listen)}: {e.strerror or e}") from None
