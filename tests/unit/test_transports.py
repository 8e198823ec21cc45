"""One stream test for every transport (libp2p, and the TLS data lane)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from libp2p.peer.id import ID

from dscluster.errors import Unauthorized, Unavailable
from dscluster.identity import Identity
from dscluster.limits import ConnectionLimits
from dscluster.net import libp2p as libp2p_module
from dscluster.net.admission import Ticket
from dscluster.net.base import ByteStream
from dscluster.net.tls import ANONYMOUS
from dscluster.net.transport import ClusterTransport, open_transport

pytestmark = pytest.mark.timeout(60)


async def echo(stream: ByteStream) -> None:
    # report who the server thinks it talks to, then echo until EOF
    await stream.send_all(f"{stream.local_peer} {stream.remote_peer}\n".encode())
    while data := await stream.receive_some(65536):
        await stream.send_all(data)


async def read_exactly(stream: ByteStream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = await stream.receive_some(n - len(buf))
        assert chunk, "unexpected EOF"
        buf += chunk
    return bytes(buf)


async def read_line(stream: ByteStream) -> str:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = await stream.receive_some(1)
        if not chunk:
            raise Unavailable("EOF before a line")
        buf += chunk
    return buf.decode().strip()


@pytest.fixture
async def server() -> AsyncIterator[ClusterTransport]:
    async with open_transport(Identity.generate(), listen=["/ip4/127.0.0.1/tcp/0"],
                              lane="/ip4/127.0.0.1/tcp/0/tls") as t:
        t.set_handler(echo)
        yield t


@pytest.fixture(params=["libp2p", "lane"])
async def stream(request, server: ClusterTransport) -> AsyncIterator[tuple[str, ByteStream]]:
    async with open_transport(Identity.generate(), use_lane=request.param == "lane") as client:
        s = await client.open_stream(server.peer_id, server.listen_addrs())
        try:
            yield request.param, s
        finally:
            await s.aclose()


async def test_both_ends_agree_on_identities(stream, server: ClusterTransport):
    kind, s = stream
    assert s.remote_peer == server.peer_id
    seen_local, seen_remote = (await read_line(s)).split()
    assert seen_local == server.peer_id
    assert seen_remote == s.local_peer
    assert (s.local_peer == ANONYMOUS) == (kind == "lane")


async def test_small_and_large_payloads_round_trip(stream):
    _, s = stream
    await read_line(s)
    for size in (1, 1000, 262144, 3 << 20):
        payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        async with trio.open_nursery() as n:
            n.start_soon(s.send_all, payload)
            assert await read_exactly(s, size) == payload


async def test_lane_refuses_a_node_with_another_identity(server: ClusterTransport):
    impostor = Identity.generate()
    async with open_transport(impostor) as client:
        lane = next(a for a in server.listen_addrs() if a.endswith("/tls"))
        with pytest.raises(Unauthorized, match="presented identity"):
            await client.open_stream(client.peer_id, [lane])


@pytest.mark.parametrize("use_lane", [False, True])
async def test_unreachable_peer_is_unavailable_quickly(use_lane: bool):
    port = trio.socket.socket()
    await port.bind(("127.0.0.1", 0))
    free = port.getsockname()[1]
    port.close()
    peer = "12D3KooWKMBjPPMF3sAeHkSxRUZGbYCFV7c2bFf88ycFpyaMwUC9"
    async with open_transport(Identity.generate(), use_lane=use_lane, connect_timeout=3) as client:
        t0 = trio.current_time()
        with trio.fail_after(10), pytest.raises(Unavailable, match=peer):
            # with the lane refused, libp2p is tried in what is left of the same timeout
            await client.open_stream(
                peer, [f"/ip4/127.0.0.1/tcp/{free}", f"/ip4/127.0.0.1/tcp/{free}/tls"])
        assert trio.current_time() - t0 < 3.5


async def promoting_echo(stream: ByteStream) -> None:
    """Echo for a peer that authenticates with the role it sends in its first line."""
    with contextlib.suppress(Unavailable):  # the peer left, or was closed
        role = await read_line(stream)
        assert stream.admission is not None
        if not stream.admission.promote(role):
            await stream.send_all(b"refused\n")
            return
        await stream.send_all(b"ok\n")
        while data := await stream.receive_some(65536):
            await stream.send_all(data)


@asynccontextmanager
async def admitting_server(**limits: Any) -> AsyncIterator[ClusterTransport]:
    caps = ConnectionLimits(**limits)
    async with open_transport(Identity.generate(), listen=["/ip4/127.0.0.1/tcp/0"],
                              lane="/ip4/127.0.0.1/tcp/0/tls", lane_connections=caps,
                              libp2p_connections=caps) as t:
        t.set_handler(promoting_echo)
        yield t


def port_of(srv: ClusterTransport, kind: str) -> int:
    addr = next(a for a in srv.listen_addrs() if a.endswith("/tls") == (kind == "lane"))
    return int(addr.split("/")[4])


async def authenticated_stream(client: ClusterTransport, srv: ClusterTransport,
                               role: str = "client") -> tuple[ByteStream, str]:
    s = await client.open_stream(srv.peer_id, srv.listen_addrs())
    await s.send_all(f"{role}\n".encode())
    return s, await read_line(s)


async def idle_flood(port: int, n: int, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Hold ``n`` silent connections to ``port``, reopening each one the server closes."""

    async def hold() -> None:
        while True:
            with contextlib.suppress(OSError, trio.BrokenResourceError):
                s = await trio.open_tcp_stream("127.0.0.1", port)
                with contextlib.suppress(trio.BrokenResourceError):
                    while await s.receive_some(4096):
                        pass
                await s.aclose()
            await trio.sleep(0.01)

    async with trio.open_nursery() as n_:
        for _ in range(n):
            n_.start_soon(hold)
        await trio.sleep(0.5)
        task_status.started()


@pytest.mark.parametrize("kind", ["lane", "libp2p"])
async def test_silent_connections_are_closed_after_the_preauth_timeout(kind: str):
    async with admitting_server(preauth_timeout=0.5) as srv:
        s = await trio.open_tcp_stream("127.0.0.1", port_of(srv, kind))
        t0 = trio.current_time()
        with trio.fail_after(3), contextlib.suppress(trio.BrokenResourceError):
            while await s.receive_some(4096):  # libp2p greets first: multistream's header
                pass
        assert 0.4 < trio.current_time() - t0 < 2
        await s.aclose()


async def test_a_libp2p_connection_that_authenticates_no_stream_is_closed():
    async with admitting_server(preauth_timeout=0.5) as srv, \
            open_transport(Identity.generate(), use_lane=False) as client:
        server_swarm = (await srv.libp2p()).host.get_network()
        p2p = await client.libp2p()
        await p2p.open_stream(srv.peer_id, [a for a in srv.listen_addrs() if "/tls" not in a])
        assert len(server_swarm.get_connections()) == 1
        await trio.sleep(1.5)  # a stream was opened but never authenticated
        assert server_swarm.get_connections() == []
        # one that authenticates stays open past the deadline
        s, answer = await authenticated_stream(client, srv)
        assert answer == "ok"
        await trio.sleep(1)
        await s.send_all(b"still here\n")
        assert await read_line(s) == "still here"


class _FakeConn:
    peer_id = ID(b"fake")


class _FakeStream:
    """What the libp2p transport's stream handler needs of py-libp2p's stream."""

    def __init__(self, conn: _FakeConn) -> None:
        self.muxed_conn = conn
        self.ended = ""

    async def reset(self) -> None:
        self.ended = "reset"

    async def close(self) -> None:
        self.ended = "closed"


async def test_unauthenticated_libp2p_connections_may_open_only_a_few_streams(
        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(libp2p_module, "PREAUTH_STREAMS", 3)
    monkeypatch.setattr(libp2p_module, "PREAUTH_STREAMS_TOTAL", 5)
    t = libp2p_module.Libp2pTransport(Identity.generate())
    conns = [_FakeConn(), _FakeConn()]
    for i, conn in enumerate(conns):  # as the accept path registers inbound connections
        ticket = t.admission.admit_unauthenticated(f"10.0.0.{i}")
        assert isinstance(ticket, Ticket)
        t._inbound[id(conn)] = ticket
    release = trio.Event()

    async def waiting(stream: ByteStream) -> None:
        await release.wait()

    streams = [_FakeStream(c) for c in conns for _ in range(4)]
    async with trio.open_nursery() as n:
        for s in streams:
            n.start_soon(t._serve_stream, waiting, s)
        await trio.sleep(0.1)
        # at most 3 of a connection's, and 5 in all, are served; the others were reset
        served = [sum(not s.ended for s in streams if s.muxed_conn is c) for c in conns]
        assert max(served) == 3 and sum(served) == 5
        assert sorted(t._preauth_streams.values()) == [2, 3]
        release.set()
    # refused (never authenticated) streams are reset too, so yamux drops their buffers
    assert all(s.ended == "reset" for s in streams) and t._preauth_streams == {}
    # once a connection authenticated, its streams are not counted and close normally
    assert t._inbound[id(conns[0])].promote("client")
    more = [_FakeStream(conns[0]) for _ in range(5)]
    async with trio.open_nursery() as n:
        for s in more:
            n.start_soon(t._serve_stream, waiting, s)
    assert [s.ended for s in more] == ["closed"] * 5


@pytest.mark.parametrize("kind", ["lane", "libp2p"])
async def test_an_idle_flood_from_the_clients_address_does_not_shut_them_out(kind: str):
    async with admitting_server(unauthenticated=8, unauthenticated_per_source=4) as srv, \
            trio.open_nursery() as n:
        await n.start(idle_flood, port_of(srv, kind), 100)
        admission = srv.lane.admission if kind == "lane" else (await srv.libp2p()).admission
        for _ in range(5):
            async with open_transport(Identity.generate(), use_lane=kind == "lane") as client:
                with trio.fail_after(10):
                    s, answer = await authenticated_stream(client, srv)
                assert (s.transport, answer) == (kind, "ok")
                await s.aclose()
            assert admission.unauthenticated <= 4
        assert admission.evicted > 100
        n.cancel_scope.cancel()


async def test_authenticated_capacity_keeps_a_reserve_for_members():
    async with admitting_server(authenticated=2, member_reserve=1) as srv, \
            open_transport(Identity.generate()) as client:
        held = [await authenticated_stream(client, srv, role)  # kept open: they count
                for role in ("client", "readonly", "node", "node")]
        assert [answer for _, answer in held] == ["ok", "refused", "ok", "refused"]


async def test_a_client_falls_back_to_libp2p_when_the_lane_refuses_it():
    async with admitting_server(unauthenticated_per_source=1) as srv, \
            open_transport(Identity.generate(), connect_timeout=3) as client:
        # the one unauthenticated connection 127.0.0.1 may hold has spoken: no room
        holder = await trio.open_tcp_stream("127.0.0.1", port_of(srv, "lane"))
        await holder.send_all(b"\x16")
        await trio.sleep(0.1)
        with trio.fail_after(3):
            s, answer = await authenticated_stream(client, srv)
        assert (s.transport, answer) == ("libp2p", "ok")
        await holder.aclose()


async def test_a_client_falls_back_to_libp2p_when_the_lane_port_is_closed():
    async with admitting_server() as srv, \
            open_transport(Identity.generate(), connect_timeout=3) as client:
        closed = trio.socket.socket()
        await closed.bind(("127.0.0.1", 0))
        dead_lane = f"/ip4/127.0.0.1/tcp/{closed.getsockname()[1]}/tls"
        closed.close()
        p2p = [a for a in srv.listen_addrs() if not a.endswith("/tls")]
        with trio.fail_after(3):
            s = await client.open_stream(srv.peer_id, [*p2p, dead_lane])
        assert s.transport == "libp2p"
