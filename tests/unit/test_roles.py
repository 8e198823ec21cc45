"""The four roles end to end without sockets: tokens, the stream handshake over an
in-memory stream, how admission counts each role, and who may do what on a node
(the admin role: everything a client may, plus the layout requests)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio
import trio.testing

from dscluster import wire
from dscluster.auth import CLIENT_ROLES, ROLES, Token, new_secret, role_key
from dscluster.cluster.replica import ReplicaStore
from dscluster.cluster.state import ClusterState
from dscluster.clustermap import ClusterMap
from dscluster.errors import ConfigError, Forbidden, Unauthorized
from dscluster.limits import ConnectionLimits, Limits
from dscluster.net.admission import AdmissionControl, Ticket
from dscluster.net.channel import MessageChannel
from dscluster.net.handshake import client_handshake, server_handshake
from dscluster.node.server import Caller, NodeServer
from dscluster.provision import create_client, create_cluster, token_from
from dscluster.store.memory import MemoryStore
from tests.unit.net_support import End


def test_the_admin_token_derives_from_the_secret_one_way():
    secret = new_secret()
    keys = {r: Token.for_role(secret, r).key for r in ROLES}
    assert len(set(keys.values())) == 4  # no role's key opens another's door
    admin = Token.for_role(secret, "admin")
    assert admin.encode().startswith("dsc1:admin:")
    assert Token.parse(admin.encode()) == admin
    assert role_key(new_secret(), "admin") != admin.key
    expected = "dsc1:node|client|readonly|admin:[<name>:]<key>"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        Token.parse("dsc1:root:" + admin.encode().split(":")[2])


async def handshake(server_secret: bytes, token: Token,
                    control: AdmissionControl) -> tuple[BaseException | str, Ticket]:
    """Run both sides; what the client got (the Welcome's role or the error) and the
    server's admission ticket."""
    a, b = trio.testing.memory_stream_pair()
    client = MessageChannel(End(a, "client-peer", "node-peer"),  # type: ignore[arg-type]
                            wire.Connection(wire.Role.CLIENT))
    server = MessageChannel(End(b, "node-peer", "client-peer"),  # type: ignore[arg-type]
                            wire.Connection(wire.Role.SERVER))
    ticket = control.admit_unauthenticated("127.0.0.1")
    assert isinstance(ticket, Ticket)
    ticket.heard_from()

    def welcome(role: str) -> wire.Welcome:
        assert ticket.promote(role)
        return wire.Welcome(epoch=1, node_index=0, role=role)

    got: list[BaseException | str] = []

    async def run_client() -> None:
        try:
            got.append((await client_handshake(client, token)).role)
        except Unauthorized as e:
            got.append(e)
            await client.stream.aclose()

    async def run_server() -> None:
        try:
            await server_handshake(server, server_secret, welcome)
        except Exception:  # the client gave up: what matters is what the client saw
            pass

    with trio.fail_after(5):
        async with trio.open_nursery() as n:
            n.start_soon(run_client)
            n.start_soon(run_server)
    return got[0], ticket


@pytest.mark.parametrize("role", ROLES)
async def test_every_role_passes_the_handshake_and_only_node_counts_as_a_member(role):
    secret = new_secret()
    control = AdmissionControl(ConnectionLimits(), name="test")
    got, _ = await handshake(secret, Token.for_role(secret, role), control)
    assert got == role
    assert (control.clients, control.members) == ((0, 1) if role == "node" else (1, 0))


@pytest.mark.parametrize("role", CLIENT_ROLES)
async def test_a_role_claimed_with_another_roles_key_fails(role):
    secret = new_secret()
    # a client key presented as admin (or any role with a key that is not its own)
    other = next(r for r in CLIENT_ROLES if r != role)
    forged = Token(role, role_key(secret, other))
    control = AdmissionControl(ConnectionLimits(), name="test")
    got, _ = await handshake(secret, forged, control)
    assert isinstance(got, Unauthorized)
    assert (control.clients, control.members) == (0, 0)


async def node() -> NodeServer:
    replica = await ReplicaStore.open(MemoryStore(), None, sync=False)
    return NodeServer(replica=replica, state=ClusterState(ClusterMap.initial(1)),
                      member_index=0, peer_id="self", secret=b"s" * 32, limits=Limits())


async def test_only_admin_and_node_callers_pass_the_admin_check():
    n = await node()
    for role in ("admin", "node"):
        n._admin(Caller("p", role))
    for role in ("client", "readonly"):
        with pytest.raises(Forbidden) as e:
            n._admin(Caller("p", role))
        assert str(e.value) == (
            "this request needs the admin token (admin.token, written by dscfg cluster); "
            f"this client holds a {role} token")


async def test_an_admin_caller_reads_and_writes_like_a_client():
    n = await node()
    admin = Caller("operator", "admin")
    ans = await n._answer(wire.WriteRecords(ops=[["/a", b"v", 1, "operator"]]), admin)
    assert isinstance(ans, wire.Written), ans
    rec = await n._answer(wire.ReadRecord(key="/a", value=True), admin)
    assert isinstance(rec, wire.Record) and rec.value == b"v"
    assert isinstance(await n._answer(wire.Sync(prefix="/"), admin), wire.Ok)


def test_dscfg_files_include_an_admin_token_and_it_makes_an_admin_client(tmp_path: Path):
    files = create_cluster(tmp_path / "srv01", 2)
    assert files.admin_token == tmp_path / "srv01" / "admin.token"
    assert files.admin_token.stat().st_mode & 0o777 == 0o600
    tok = token_from(files.admin_token, CLIENT_ROLES)
    assert tok.role == "admin"
    with pytest.raises(ConfigError, match="needs a node token, got an admin token"):
        token_from(files.admin_token, ("node",))
    cfg = create_client(tmp_path / "cli", bootstrapper=files.bootstrapper, token=tok)
    assert not cfg.read_only_client and cfg.token_file == "admin.token"
    assert Token.load(tmp_path / "cli" / "admin.token") == tok
    assert (tmp_path / "cli" / "admin.token").stat().st_mode & 0o777 == 0o600
