"""One stream test for every transport (libp2p, and the TLS data lane)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from dscluster.errors import Unauthorized, Unavailable
from dscluster.identity import Identity
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
    async with open_transport(Identity.generate(), use_lane=use_lane, connect_timeout=3) as client:
        with trio.fail_after(10), pytest.raises(Unavailable):
            await client.open_stream(
                "12D3KooWKMBjPPMF3sAeHkSxRUZGbYCFV7c2bFf88ycFpyaMwUC9",
                [f"/ip4/127.0.0.1/tcp/{free}", f"/ip4/127.0.0.1/tcp/{free}/tls"])


async def test_lane_caps_concurrent_connections(monkeypatch):
    import dscluster.net.tls as tls

    monkeypatch.setattr(tls, "MAX_LANE_CONNECTIONS", 2)
    async with open_transport(Identity.generate(), lane="/ip4/127.0.0.1/tcp/0/tls") as srv:
        srv.set_handler(echo)
        async with open_transport(Identity.generate()) as client:
            kept = [await client.open_stream(srv.peer_id, srv.listen_addrs()) for _ in range(2)]
            for s in kept:
                await read_line(s)  # both are served
            with pytest.raises(Unavailable):
                extra = await client.open_stream(srv.peer_id, srv.listen_addrs())
                await read_line(extra)
            await kept[0].aclose()
            await trio.sleep(0.2)
            again = await client.open_stream(srv.peer_id, srv.listen_addrs())
            assert (await read_line(again)).startswith(srv.peer_id)
