"""The direct data lane: TLS 1.3 over plain TCP, one connection per channel.

Why: py-libp2p's Noise and yamux cost most of a request's CPU here. Measured on this
project's 2-core machines with both ends in one process: libp2p gave ~660 small round
trips/s and ~60 MB/s of 256 KiB messages; trio's SSLStream over TCP gave ~2,960
round trips/s and ~266 MB/s (doc/architecture.md has the run). The cluster's
security model is unchanged:

- A node's TLS certificate is self-signed with the node's own libp2p Ed25519 identity
  key, so it proves the node's peer id. A client accepts a node only if the
  certificate's key hashes to the peer id the cluster map lists for it (TLS 1.3's
  CertificateVerify proves possession of that key). Nothing else about the certificate
  matters, so there is no CA to manage.
- The client is authorised by the same challenge-response on the first frames as over
  libp2p (auth.py). The client has no certificate, so the node knows its role but not
  its peer id: requests that need a peer id (Join) are refused on the lane and go over
  libp2p.

Lane addresses are multiaddrs ending in ``/tls`` (``/ip4/127.0.0.1/tcp/4002/tls``)
listed among a member's addresses in the map; libp2p ignores them.

Each accepted connection is admitted first (admission.py): it has ``preauth_timeout``
from accept to finish TLS and the stream handshake, and counts against the caps of
unauthenticated connections until then.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import ssl
import tempfile
from collections.abc import Sequence
from functools import partial

import trio
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from ..errors import ConfigError, Unauthorized, Unavailable
from ..identity import Identity, peer_id_from_public
from ..limits import ConnectionLimits
from ..logs import RateLimitedLog
from .admission import AdmissionControl, Refused, Ticket, has_spoken
from .base import StreamHandler

log = logging.getLogger(__name__)
_limited = RateLimitedLog(log)
ANONYMOUS = "anonymous-lane-client"
# seconds to send an authenticated peer close_notify before its socket is closed anyway
CLOSE_TIMEOUT = 1.0
_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


def is_lane_addr(addr: str) -> bool:
    return addr.endswith("/tls")


def lane_host_port(addr: str) -> tuple[str, int]:
    parts = addr.strip("/").split("/")
    if len(parts) != 5 or parts[0] not in ("ip4", "ip6") or parts[2] != "tcp" \
            or parts[4] != "tls" or not parts[3].isdigit():
        raise ConfigError(f"invalid data lane address {addr!r} (expected "
                          "/ip4/<address>/tcp/<port>/tls)")
    return parts[1], int(parts[3])


def _certificate(ident: Identity) -> tuple[bytes, bytes]:
    key = ident.key
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dscluster node")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .sign(key, None))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def server_context(ident: Identity) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    cert, key = _certificate(ident)
    # ssl can only load a key from a file: a private directory that lives for one call
    with tempfile.TemporaryDirectory(prefix="dscluster-tls-") as d:
        os.chmod(d, 0o700)
        cp, kpth = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        for path, data in ((cp, cert), (kpth, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        ctx.load_cert_chain(cp, kpth)
    return ctx


def client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    # the peer is authenticated by pinning its key to its peer id (see module doc),
    # not by a CA chain or a host name
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def peer_id_of_cert(der: bytes) -> str:
    key = x509.load_der_x509_certificate(der).public_key()
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise Unauthorized("node certificate does not carry an Ed25519 identity key")
    return peer_id_from_public(key.public_bytes(*_RAW))


class TlsStream:
    __slots__ = ("_s", "admission", "local_peer", "remote_peer")
    transport = "lane"

    def __init__(self, s: trio.SSLStream[trio.SocketStream], local: str, remote: str,
                 admission: Ticket | None = None) -> None:
        self._s = s
        self.local_peer = local
        self.remote_peer = remote
        self.admission = admission

    async def send_all(self, data: bytes) -> None:
        try:
            await self._s.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            raise Unavailable(f"lane to {self.remote_peer} failed: {e or type(e).__name__}") \
                from None

    async def receive_some(self, max_bytes: int) -> bytes:
        try:
            return await self._s.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            raise Unavailable(
                f"lane from {self.remote_peer} failed: {e or type(e).__name__}") from None

    async def aclose(self) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await self._s.aclose()


class TlsLane:
    """Both ends of the lane for one identity: a listener and a dialer."""

    def __init__(self, ident: Identity, connect_timeout: float,
                 connections: ConnectionLimits | None = None) -> None:
        self._ident = ident
        self.peer_id = ident.peer_id
        self._timeout = connect_timeout
        self.admission = AdmissionControl(connections or ConnectionLimits(), name="data lane")
        self._client_ctx = client_context()
        self._server_ctx: ssl.SSLContext | None = None

    async def open_stream(self, peer_id: str, addr: str) -> TlsStream:
        host, port = lane_host_port(addr)
        try:
            with trio.fail_after(self._timeout):
                tcp = await trio.open_tcp_stream(host, port)
                s = trio.SSLStream(tcp, self._client_ctx, server_hostname=None)
                await s.do_handshake()
        except trio.TooSlowError:
            raise Unavailable(f"peer {peer_id} at {addr} did not answer within "
                              f"{self._timeout:g}s") from None
        except (OSError, trio.BrokenResourceError, ssl.SSLError) as e:
            raise Unavailable(f"cannot reach peer {peer_id} at {addr}: "
                              f"{e or 'the connection was closed'}") from None
        got = peer_id_of_cert(s.getpeercert(binary_form=True) or b"")
        if got != peer_id:
            await s.aclose()
            raise Unauthorized(f"{addr} presented identity {got}, not {peer_id}")
        return TlsStream(s, ANONYMOUS, peer_id)

    async def serve(self, addr: str, handler: StreamHandler,
                    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        host, port = lane_host_port(addr)
        self._server_ctx = self._server_ctx or server_context(self._ident)
        ctx = self._server_ctx
        admission = self.admission

        async def on_tcp(tcp: trio.SocketStream) -> None:
            try:
                source = tcp.socket.getpeername()[0]
            except OSError:  # gone before we got to it
                await tcp.aclose()
                return
            ticket = admission.admit_unauthenticated(source)
            if isinstance(ticket, Refused):
                _limited.warning("refused", "refusing a data lane connection: %s",
                                 ticket.reason)
                await tcp.aclose()
                return
            s = trio.SSLStream(tcp, ctx, server_side=True)
            stream = TlsStream(s, self.peer_id, ANONYMOUS, ticket)
            try:
                with ticket.scope:
                    if not has_spoken(tcp.socket):
                        await trio.lowlevel.wait_readable(tcp.socket)  # its ClientHello
                    ticket.heard_from()
                    await s.do_handshake()
                    await handler(stream)
            except (trio.BrokenResourceError, ssl.SSLError, OSError) as e:
                log.debug("lane connection ended: %s", e)
            finally:
                ticket.release()
                if ticket.authenticated:
                    with trio.move_on_after(CLOSE_TIMEOUT):
                        await stream.aclose()
                else:  # no close_notify (before the handshake, aclose would run it first)
                    await trio.aclose_forcefully(s)
            if ticket.scope.cancelled_caught and trio.current_time() >= ticket.deadline:
                _limited.info("pre-auth timeout", "closed a data lane connection from %s "
                              "that did not authenticate within %gs", source,
                              admission.limits.preauth_timeout)

        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as e:
            raise ConfigError(f"cannot listen on data lane {addr}: {e.strerror or e}") \
                from None
        bound = listeners[0].socket.getsockname()
        task_status.started(f"/{'ip6' if ':' in host else 'ip4'}/{host}/tcp/{bound[1]}/tls")
        await trio.serve_listeners(partial(on_tcp), listeners)


def lane_addr(addrs: Sequence[str]) -> str | None:
    return next((a for a in addrs if is_lane_addr(a)), None)
