"""The cluster's credentials (cluster/credentials.py): sealed at rest, named tokens
checked and revoked by the node, the reserved prefix closed to clients."""

from __future__ import annotations

import base64

import pytest
import trio
import trio.testing

from dscluster import wire
from dscluster.auth import Token, new_secret
from dscluster.cluster.credentials import PREFIX, S3_KEYS, TOKENS, CredentialBook
from dscluster.cluster.replica import ReplicaStore
from dscluster.cluster.state import ClusterState
from dscluster.clustermap import ClusterMap
from dscluster.errors import ConfigError, Forbidden, Unauthorized
from dscluster.limits import Limits
from dscluster.net.channel import MessageChannel
from dscluster.net.handshake import client_handshake
from dscluster.node.server import Caller, NodeServer
from dscluster.query import Query
from dscluster.store.memory import MemoryStore

from .net_support import End


async def _dump(store: MemoryStore) -> bytes:
    """Every key and value of the store, as a backup would copy them."""
    out = b""
    async for e in store.query(Query()):
        out += e.key.encode() + b"\0" + (e.value or b"") + b"\0"
    return out


async def test_a_store_dump_shows_no_secret():
    store, secret = MemoryStore(), new_secret()
    book = CredentialBook(store, secret)
    await book.put_s3_key("DSCKAAAAAAAAAAAAAAAA", "s3-secret-that-must-not-leak")
    token_key = await book.issue_token("ci", "client")
    dump = await _dump(store)
    assert b"DSCKAAAAAAAAAAAAAAAA" in dump and b"/tokens/ci" in dump  # the records are there
    for secret_bytes in (b"s3-secret-that-must-not-leak", token_key,
                         base64.urlsafe_b64encode(token_key), secret):
        assert secret_bytes not in dump
    # another node of the cluster reads them back; a book with another secret cannot
    again = CredentialBook(store, secret)
    await again.reload()
    assert again.s3_secret("DSCKAAAAAAAAAAAAAAAA") == "s3-secret-that-must-not-leak"
    assert again.token_key("ci", "client") == token_key
    assert again.token_key("ci", "admin") is None  # the role is part of the record
    stranger = CredentialBook(store, new_secret())
    await stranger.reload()
    assert stranger.s3_secret("DSCKAAAAAAAAAAAAAAAA") is None
    assert stranger.token_key("ci", "client") is None


async def test_a_sealed_value_does_not_open_under_another_key():
    store, secret = MemoryStore(), new_secret()
    book = CredentialBook(store, secret)
    await book.put_s3_key("DSCKAAAAAAAAAAAAAAAA", "one")
    # copied to another access key's record, it must not become that key's secret
    await store.put(f"{S3_KEYS}/DSCKBBBBBBBBBBBBBBBB",
                    await store.get(f"{S3_KEYS}/DSCKAAAAAAAAAAAAAAAA"))
    await book.reload()
    assert book.s3_secret("DSCKAAAAAAAAAAAAAAAA") == "one"
    assert book.s3_secret("DSCKBBBBBBBBBBBBBBBB") is None


async def test_a_key_added_elsewhere_is_found_at_once_and_a_removed_one_is_forgotten():
    store, secret = MemoryStore(), new_secret()
    here, elsewhere = CredentialBook(store, secret), CredentialBook(store, secret)
    await here.reload()
    await elsewhere.put_s3_key("DSCKCCCCCCCCCCCCCCCC", "s")
    assert here.s3_secret("DSCKCCCCCCCCCCCCCCCC") is None  # not reloaded yet
    assert await here.look_up_s3("DSCKCCCCCCCCCCCCCCCC") == "s"
    await elsewhere.remove_s3_key("DSCKCCCCCCCCCCCCCCCC")
    assert await here.look_up_s3("DSCKCCCCCCCCCCCCCCCC") is None
    assert here.s3_secret("DSCKCCCCCCCCCCCCCCCC") is None
    # made-up names never reach the datastore
    assert await here.look_up_s3("../../x") is None


async def _node(book: CredentialBook, secret: bytes) -> NodeServer:
    replica = await ReplicaStore.open(MemoryStore(), None, sync=False)
    n = NodeServer(replica=replica, state=ClusterState(ClusterMap.initial(1)),
                   member_index=0, peer_id="node-peer", secret=secret, limits=Limits())
    n.credentials = book
    return n


async def test_a_named_token_works_until_revoked_and_its_open_stream_is_then_closed():
    secret = new_secret()
    book = CredentialBook(MemoryStore(), secret)
    token = Token("client", await book.issue_token("ci", "client"), "ci")
    node = await _node(book, secret)
    a, b = trio.testing.memory_stream_pair()
    chan = MessageChannel(End(a, "client-peer", "node-peer"),  # type: ignore[arg-type]
                          wire.Connection(wire.Role.CLIENT))
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            n.start_soon(node.handle_stream, End(b, "node-peer", "client-peer"))
            welcome = await client_handshake(chan, token)
            assert welcome.role == "client"
            assert isinstance(await chan.request(wire.Stats()), wire.StatsData)
            await book.revoke_token("ci")
            with pytest.raises(Unauthorized, match="revoked"):
                await chan.request(wire.Stats())
    # and a new stream with it is refused in the handshake; so is a wrong key
    for refused in (token, Token("client", b"k" * 32, "other")):
        a, b = trio.testing.memory_stream_pair()
        chan = MessageChannel(End(a, "client-peer", "node-peer"),  # type: ignore[arg-type]
                              wire.Connection(wire.Role.CLIENT))
        with trio.fail_after(10):
            async with trio.open_nursery() as n:
                n.start_soon(node.handle_stream, End(b, "node-peer", "client-peer"))
                with pytest.raises(Unauthorized, match="unknown or revoked"):
                    await client_handshake(chan, refused)


async def test_no_client_role_reads_writes_or_lists_the_reserved_prefix():
    secret = new_secret()
    node = await _node(CredentialBook(MemoryStore(), secret), secret)
    key = f"{TOKENS}/ci"
    write = wire.WriteRecords(ops=[[key, b"v", 1, "w"]])
    for role in ("client", "readonly", "admin"):
        for msg in (wire.ReadRecord(key=key), write):
            ans = await node._dispatch(msg, Caller("p", role))
            assert isinstance(ans, wire.Error) and ans.code == Forbidden.code, (role, msg)
    assert isinstance(await node._dispatch(write, Caller("p", "node")), wire.Written)
    query = wire.SlotQuery(prefix="/", limit=100, slots=[[0, 16384]])
    listed = await node._dispatch(query, Caller("p", "admin"))
    assert isinstance(listed, wire.QueryPage)
    assert not [e for e in listed.entries if e[0].startswith(PREFIX)]
    as_node = await node._dispatch(query, Caller("p", "node"))
    assert isinstance(as_node, wire.QueryPage) and [e[0] for e in as_node.entries] == [key]


def test_a_named_token_names_itself_and_no_node_token_is_named():
    named = Token("readonly", b"k" * 32, "backup.reader")
    assert named.encode().startswith("dsc1:readonly:backup.reader:")
    assert Token.parse(named.encode()) == named
    assert Token.parse(Token("client", b"k" * 32).encode()).name == ""
    for bad in ("dsc1:node:n:" + named.encode().rsplit(":", 1)[1],
                "dsc1:client:Bad/Name:" + named.encode().rsplit(":", 1)[1]):
        with pytest.raises(ConfigError, match="token name"):
            Token.parse(bad)
