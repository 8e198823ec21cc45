"""Rotating the cluster secret: the keyring's grace (keyring.py), what a node accepts and
refuses during and after it (net/handshake.py, node/server.py), the fetch only members
get (cluster/rotation.py), and sealed records carried over to the new secret."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from dscluster import wire
from dscluster.auth import Token, new_secret
from dscluster.cluster.credentials import TOKENS, CredentialBook
from dscluster.cluster.replica import ReplicaStore
from dscluster.cluster.rotation import SecretRotation
from dscluster.cluster.state import ClusterState
from dscluster.clustermap import JOINED, ClusterMap, Member
from dscluster.errors import Forbidden, Unauthorized
from dscluster.keyring import KEYRING_FILE, Keyring, key_id, now_ms
from dscluster.limits import Limits
from dscluster.net.channel import MessageChannel
from dscluster.net.handshake import client_handshake
from dscluster.net.tls import ANONYMOUS
from dscluster.node.server import Caller, NodeServer
from dscluster.store.memory import MemoryStore

from .net_support import End

MINUTE_MS = 60_000


def _rotated(grace_ms: int = MINUTE_MS) -> tuple[Keyring, bytes, bytes]:
    old, new = new_secret(), new_secret()
    k = Keyring(old)
    now = now_ms()
    assert k.adopt(1, new, now + grace_ms // 2, now + grace_ms)
    return k, old, new


def _end_grace(k: Keyring) -> None:
    k.switch_ms = k.deadline_ms = now_ms() - 1


def test_during_the_grace_both_secrets_prove_every_role_and_after_it_only_the_new():
    k, old, new = _rotated()
    for role in ("node", "client", "readonly", "admin"):
        old_tok, new_tok = Token.for_role(old, role), Token.for_role(new, role)
        got_old = k.role_key(role, key_id(old_tok.key))
        got_new = k.role_key(role, key_id(new_tok.key))
        assert got_old is not None and got_new is not None
        assert (got_old.key, got_old.generation, got_old.expired) == (old_tok.key, 0, False)
        assert (got_new.key, got_new.generation, got_new.expired) == (new_tok.key, 1, False)
        assert k.role_key(role, key_id(Token.for_role(new_secret(), role).key)) is None
        assert k.role_key(role).key == new_tok.key  # no key id: the current secret
    assert not k.expired(0) and not k.expired(1)
    assert k.node_token().key == old  # before the switch every node still knows the old
    k.switch_ms = now_ms() - 1
    assert k.node_token().key == new
    _end_grace(k)
    late = k.role_key("client", key_id(Token.for_role(old, "client").key))
    assert late is not None and late.expired
    assert k.expired(0) and not k.expired(1)
    assert k.secrets() == [new, old]


def test_an_older_generation_is_not_adopted_and_an_equal_secret_is_only_relabelled():
    k, old, new = _rotated()
    assert not k.adopt(1, new_secret(), 0, 0)  # not newer
    assert not k.adopt(0, old, 0, 0)
    assert (k.generation, k.secret) == (1, new)
    assert not k.adopt(5, new, 0, 0)  # node.token copied by hand: same secret, later label
    assert (k.generation, k.secret, k.previous) == (5, new, old)


def test_the_new_secret_is_durable_and_a_stop_between_the_two_files_loses_nothing(
        tmp_path: Path):
    token_path = tmp_path / "node.token"
    old = new_secret()
    Token("node", old).save(token_path)
    k = Keyring.load(token_path)
    new = new_secret()
    now = now_ms()
    k.adopt(1, new, now + 1000, now + 2000)
    assert Token.load(token_path).key == new
    assert (token_path.with_name(KEYRING_FILE).stat().st_mode & 0o777) == 0o600
    again = Keyring.load(token_path)
    assert (again.generation, again.secret, again.previous, again.deadline_ms) == (
        1, new, old, now + 2000)
    # killed after the keyring was written but before node.token: the old secret stays
    # current, one generation down, so the new one is fetched again
    Token("node", old).save(token_path)
    torn = Keyring.load(token_path)
    assert (torn.generation, torn.secret, torn.previous) == (0, old, None)


@asynccontextmanager
async def _stream(node: NodeServer, token: Token, peer: str = "client-peer",
                  ) -> AsyncIterator[MessageChannel]:
    a, b = trio.testing.memory_stream_pair()
    chan = MessageChannel(End(a, peer, "node-peer"),  # type: ignore[arg-type]
                          wire.Connection(wire.Role.CLIENT))
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            n.start_soon(node.handle_stream, End(b, "node-peer", peer))
            yield chan
            await chan.aclose()


async def _node(k: Keyring, members: tuple[str, ...] = ()) -> NodeServer:
    replica = await ReplicaStore.open(MemoryStore(), None, sync=False)
    cmap = ClusterMap.initial(1 + len(members))
    cmap = ClusterMap(cmap.epoch, tuple(
        Member(i, p, (f"/ip4/127.0.0.1/tcp/{4000 + i}",), JOINED)
        for i, p in enumerate(("node-peer", *members))), cmap.owners, cmap.replication)
    n = NodeServer(replica=replica, state=ClusterState(cmap), member_index=0,
                   peer_id="node-peer", secret=k, limits=Limits())
    n.credentials = CredentialBook(MemoryStore(), k)
    return n


async def test_an_old_token_works_during_the_grace_and_is_refused_after_it_open_streams_too():
    k, old, new = _rotated()
    node = await _node(k)
    async with _stream(node, Token.for_role(old, "client")) as old_chan:
        await client_handshake(old_chan, Token.for_role(old, "client"))
        assert isinstance(await old_chan.request(wire.Stats()), wire.StatsData)
        async with _stream(node, Token.for_role(new, "client")) as new_chan:
            await client_handshake(new_chan, Token.for_role(new, "client"))
            stats = await new_chan.request(wire.Stats())
            assert isinstance(stats, wire.StatsData) and stats.stats["secret_generation"] == 1
            _end_grace(k)
            with pytest.raises(Unauthorized, match="rotated"):
                await old_chan.request(wire.Stats())
            assert isinstance(await new_chan.request(wire.Stats()), wire.StatsData)
    async with _stream(node, Token.for_role(old, "client")) as chan:
        with pytest.raises(Unauthorized, match="rotated; ask the operator for the new token"):
            await client_handshake(chan, Token.for_role(old, "client"))


async def test_past_the_grace_the_old_node_secret_only_fetches_the_new_one_and_only_for_members():
    k, old, new = _rotated()
    node = await _node(k, members=("member-peer",))
    node.rotation = SecretRotation(k, MemoryStore(), None, None, 0,  # type: ignore[arg-type]
                                   trio.lowlevel.checkpoint)
    _end_grace(k)
    async with _stream(node, Token("node", old), peer="member-peer") as chan:
        await client_handshake(chan, Token("node", old))
        got = await chan.request(wire.SecretFetch(generation=0))
        assert isinstance(got, wire.SecretData)
        assert (got.generation, got.secret, got.deadline_ms) == (1, new, k.deadline_ms)
        with pytest.raises(Unauthorized, match="rotated"):
            await chan.request(wire.Stats())
    # someone who learnt the old secret but is no member, or is not identified (lane)
    for peer in ("stranger-peer", ANONYMOUS):
        ans = await node._dispatch(wire.SecretFetch(generation=0), Caller(peer, "node", "", b"", 0))
        assert isinstance(ans, wire.Error) and ans.code == Forbidden.code, peer
    ans = await node._dispatch(wire.SecretFetch(generation=0),
                               Caller("member-peer", "client", "", b"", 1))
    assert isinstance(ans, wire.Error) and ans.code == Forbidden.code
    # a member that already holds it gets the generation, not the secret again
    ans = await node._dispatch(wire.SecretFetch(generation=1), Caller("member-peer", "node"))
    assert isinstance(ans, wire.SecretData) and ans.secret == b""


async def test_during_the_grace_the_old_admin_token_mints_nothing_that_outlives_it():
    k, _, _ = _rotated()
    node = await _node(k)
    issue = wire.Admin(action="token-issue", args={"name": "ci", "role": "client"})
    ans = await node._dispatch(issue, Caller("p", "admin", "", b"", 0))
    assert isinstance(ans, wire.Error) and ans.code == Forbidden.code
    assert "new secret" in ans.message
    rotate = wire.Admin(action="secret-rotate", args={"grace": "60"})
    ans = await node._dispatch(rotate, Caller("p", "admin", "", b"", 0))
    assert isinstance(ans, wire.Error) and ans.code == Forbidden.code
    ans = await node._dispatch(issue, Caller("p", "admin", "", b"", 1))
    assert isinstance(ans, wire.AdminResult) and ans.result["token"].startswith("dsc1:client:ci:")


async def test_sealed_records_are_sealed_again_under_the_new_secret():
    store, old = MemoryStore(), new_secret()
    k = Keyring(old)
    book = CredentialBook(store, k)
    token_key = await book.issue_token("ci", "client")
    before = await store.get(f"{TOKENS}/ci")
    now = now_ms()
    k.adopt(1, new := new_secret(), now, now + MINUTE_MS)
    await book.reload()
    assert book.token_key("ci", "client") == token_key
    assert await store.get(f"{TOKENS}/ci") != before
    # a node that holds only the new secret opens it: the old one can be forgotten
    only_new = CredentialBook(store, new)
    await only_new.reload()
    assert only_new.token_key("ci", "client") == token_key
