"""Who may do what: strangers, read-only clients, joins, and hostile bytes."""

from __future__ import annotations

import contextlib
import struct
import subprocess
from pathlib import Path

import msgpack
import pytest
import trio

from dscluster import wire
from dscluster.auth import Token, new_secret
from dscluster.client.connect import open_cluster
from dscluster.errors import Forbidden, Unauthorized, Unavailable
from dscluster.identity import Identity
from dscluster.localcluster import Cluster, tool
from dscluster.net.base import ByteStream
from dscluster.net.channel import MessageChannel
from dscluster.net.handshake import client_handshake
from dscluster.net.libp2p import open_libp2p_transport
from dscluster.net.transport import open_transport

pytestmark = pytest.mark.timeout(120)


def stranger_token(tmp_path: Path, role: str = "client") -> Path:
    p = tmp_path / f"stranger-{role}.token"
    Token.for_role(new_secret(), role).save(p)
    return p


def test_client_with_another_clusters_token_is_refused(cluster: Cluster, tmp_path):
    p = subprocess.run(
        [tool("dsclient"), f"--conf={tmp_path / 'c'}", "init",
         f"--bootstrapper={cluster.bootstrapper}",
         f"--token-file={stranger_token(tmp_path)}"],
        capture_output=True, timeout=60)
    assert p.returncode == 1
    assert "did not prove" in p.stderr.decode() or "cluster map" in p.stderr.decode()


def test_node_with_another_clusters_token_cannot_join(cluster: Cluster, tmp_path):
    p = subprocess.run(
        [tool("dscluster"), f"--conf={tmp_path / 'n'}", f"--bootstrapper={cluster.bootstrapper}",
         "--identity=1", f"--token-file={stranger_token(tmp_path, 'node')}"],
        capture_output=True, timeout=90)
    assert p.returncode == 1 and "Traceback" not in p.stderr.decode()


def test_taken_identity_and_unknown_identity_are_refused(cluster: Cluster, tmp_path):
    for index, words in ((1, "already held"), (7, "does not exist")):
        p = subprocess.run(
            [tool("dscluster"), f"--conf={tmp_path / f'n{index}'}",
             f"--bootstrapper={cluster.bootstrapper}", f"--identity={index}",
             f"--token-file={cluster.node_token}"],
            capture_output=True, timeout=90)
        assert p.returncode == 1, p.stderr
        assert words in p.stderr.decode()


async def test_client_token_cannot_join_as_node(cluster: Cluster):
    async with open_cluster(cluster.client()) as ds:
        boot = ds.state.map.members[0]
        async with ds.pool.channel(boot.peer_id, boot.addrs) as chan:
            with pytest.raises(Forbidden):
                await chan.request(wire.Join(index=2, addrs=["/ip4/127.0.0.1/tcp/1"]))


async def test_read_only_client_reads_but_cannot_write(cluster: Cluster):
    async with open_cluster(cluster.client()) as rw:
        await rw.put("/ro/existing", b"v")
    ro_dir = cluster.client("ro", cluster.readonly_token)
    async with open_cluster(ro_dir) as ro:
        assert await ro.get("/ro/existing") == b"v"
        for op in (ro.put("/ro/x", b"1"), ro.delete("/ro/existing")):
            with pytest.raises(Forbidden):
                await op
        b = ro.batch()
        b.put("/ro/y", b"2")
        with pytest.raises(Forbidden):
            await b.commit()
        assert not await ro.has("/ro/x")


async def test_unauthenticated_peer_gets_nothing(cluster: Cluster):
    """A libp2p peer that skips the handshake is refused on the stream."""
    async with open_cluster(cluster.client()) as ds:
        m = ds.state.map.members[0]
        async with open_libp2p_transport(Identity.generate()) as t:
            s = await t.open_stream(m.peer_id, m.addrs)
            chan = MessageChannel(s, wire.Connection(wire.Role.CLIENT))
            chan.conn.state = wire.State.IDLE  # pretend the handshake happened
            await chan.send(wire.ReadRecord(key="/ro/existing"))
            ans = await chan.receive()
            assert isinstance(ans, wire.Error) and ans.code == "protocol_error"
            assert await s.receive_some(10) == b""  # and the stream is closed
            # a real handshake with a wrong key fails on the client's own check
            s2 = await t.open_stream(m.peer_id, m.addrs)
            chan2 = MessageChannel(s2, wire.Connection(wire.Role.CLIENT))
            with pytest.raises(Unauthorized):
                await client_handshake(chan2, Token.for_role(new_secret(), "client"))


async def test_bad_frames_get_an_error_and_the_node_keeps_serving(cluster: Cluster):
    async with open_cluster(cluster.client()) as ds:
        m = ds.state.map.members[1]
        token = ds.pool.token
        async with open_libp2p_transport(Identity.generate()) as t:
            async def send_raw(chan: MessageChannel, data: bytes) -> None:
                # bytes the codec would never produce; the node's answer is awaited
                await chan.stream.send_all(data)
                chan.conn.state = wire.State.BUSY

            async def authed() -> MessageChannel:
                chan = MessageChannel(await t.open_stream(m.peer_id, m.addrs),
                                      wire.Connection(wire.Role.CLIENT))
                await client_handshake(chan, token)
                return chan

            # garbage msgpack
            chan = await authed()
            await send_raw(chan, wire.encode_frame(b"\xc1\xc1"))
            ans = await chan.receive()
            assert isinstance(ans, wire.Error) and ans.code == "protocol_error"
            # an oversized frame is refused from its header, before any body is sent
            chan = await authed()
            await send_raw(chan, struct.pack(">I", 1 << 30))
            ans = await chan.receive()
            assert isinstance(ans, wire.Error) and ans.code == "too_large"
            # a well-formed frame of the wrong shape
            chan = await authed()
            await send_raw(chan, wire.encode_frame(msgpack.packb([wire.WriteRecords.TYPE, "/k"])))
            ans = await chan.receive()
            assert isinstance(ans, wire.Error) and ans.code == "protocol_error"
            # an unclean key is a request error: the stream stays usable
            chan = await authed()
            with pytest.raises(Exception, match="not a clean datastore key"):
                await chan.request(wire.ReadRecord(key="/a//b"))
            assert isinstance(await chan.request(wire.DiskUsage()), wire.Size)
        # and everyone else is still served
        await ds.put("/still/serving", b"yes")
        assert await ds.get("/still/serving") == b"yes"


async def test_disable_delete_is_honoured(tmp_path):
    c = Cluster(tmp_path, nodes=1, node0_config={"disable_delete": True})
    c.start()
    try:
        async with open_cluster(c.client()) as ds:
            await ds.put("/keep", b"v")
            with pytest.raises(Forbidden, match="deletes are disabled"):
                await ds.delete("/keep")
            b = ds.batch()
            b.delete("/keep")
            with pytest.raises(Forbidden):
                await b.commit()
            assert await ds.get("/keep") == b"v"
    finally:
        c.stop()


async def test_stranger_is_refused_over_the_data_lane_too(cluster: Cluster, tmp_path):
    d = cluster.client("lane-stranger")
    Token.for_role(new_secret(), "client").save(d / "client.token")
    async with open_cluster(d) as ds:  # its cached map lists the nodes' lane addresses
        assert any(a.endswith("/tls") for a in ds.state.map.members[1].addrs)
        with pytest.raises(Unauthorized):
            await ds.get("/anything")


async def test_read_only_client_cannot_sync(cluster: Cluster):
    async with open_cluster(cluster.client()) as rw:
        await rw.sync("/")
    async with open_cluster(cluster.client("ro", cluster.readonly_token)) as ro:
        with pytest.raises(Forbidden, match="read-only"):
            await ro.sync("/")


# 10 MiB of msgpack, one array of 10.5 M empty arrays: sent before Hello it used to cost a
# node ~18 s of event loop and +600 MB, and every client of that node timed out
_EMPTY_ARRAYS = wire.encode_frame(
    b"\xdd" + ((10 << 20) - 5).to_bytes(4, "big") + b"\x90" * ((10 << 20) - 5))


async def test_hostile_frames_before_hello_do_not_stall_a_node(cluster: Cluster):
    """Whole and half-sent 10 MiB frames on the data lane and libp2p, before Hello, while
    another client keeps asking the same node."""
    async with open_cluster(cluster.client()) as ds:
        await ds.put("/hostile/probe", b"v")
        m = ds.state.map.primary("/hostile/probe")
        answers: list[bytes] = []

        async def attack(s: ByteStream, data: bytes) -> None:
            got = bytearray()

            async def read() -> None:
                with contextlib.suppress(Unavailable):
                    while chunk := await s.receive_some(65536):
                        got.extend(chunk)

            # reading while sending: the node answers after the header, and a reset
            # once it hangs up would discard an answer not read yet
            async with trio.open_nursery() as n:
                n.start_soon(read)
                with contextlib.suppress(Unavailable):  # the node hangs up mid-frame
                    await s.send_all(data)
            answers.append(bytes(got))

        async with open_transport(Identity.generate(), use_lane=True) as lane, \
                open_transport(Identity.generate(), use_lane=False) as p2p:
            streams = [(await t.open_stream(m.peer_id, m.addrs), data)
                       for t in (lane, p2p)
                       for data in [_EMPTY_ARRAYS] * 2 + [_EMPTY_ARRAYS[:5 << 20]] * 8]
            slowest = 0.0
            with trio.fail_after(60):
                async with trio.open_nursery() as n:
                    for s, data in streams:
                        n.start_soon(attack, s, data)
                    while len(answers) < len(streams):
                        t0 = trio.current_time()
                        assert await ds.get("/hostile/probe") == b"v"
                        slowest = max(slowest, trio.current_time() - t0)
                        await trio.sleep(0.05)
            for s, _ in streams:
                await s.aclose()
    assert slowest < 2.0, f"a request waited {slowest:.1f}s behind the hostile frames"
    # every hostile stream got a too_large answer, refused from the 4-byte header
    for got in answers:
        assert len(got) > 4, "the node hung up without an answer"
        code, message = msgpack.unpackb(got[4:4 + struct.unpack(">I", got[:4])[0]])[1:3]
        assert code == "too_large" and "before the handshake" in message, message
