"""The mutual challenge-response that opens every stream (see auth.py for the proofs).

Message flow: client Hello(role, nonce, token name) -> server Challenge(nonce, server
proof) -> client Auth(client proof) -> server Welcome(epoch, node index, role). A failed proof on
either side ends the stream; the server never says which part was wrong. Nonces and
proofs of any length but 32 bytes never get here: the messages refuse them. The role is
any of ``auth.ROLES``; the key proven is derived from the secret for that role, or is a
named token's own key when the Hello names one. During a rotation of the cluster secret
the Hello's key id says which secret's key a role token is (keyring.py); a key of the old
secret is refused past the grace, except the node secret, whose streams may then only
fetch the new one. What a role may ask is the request handlers' business (node/server.py),
not the handshake's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .. import wire
from ..auth import ROLES, Token, check, client_proof, new_nonce, server_proof
from ..errors import RemoteProtocolError, Unauthorized, Unavailable, error_from_wire
from ..keyring import Keyring, key_id
from .channel import MessageChannel

# a named token's key, or None if it is unknown or revoked (cluster/credentials.py)
NamedKeys = Callable[[str, str], Awaitable[bytes | None]]


@dataclass(frozen=True, slots=True)
class Proven:
    """What the peer proved: its role and, for a named token, the name and its key (a
    stream of a token revoked later is closed on its next request); for a role token, the
    generation of the secret it derives from (None for a named token)."""

    role: str
    token: str = ""
    key: bytes = b""
    generation: int | None = None


async def _expect(chan: MessageChannel, cls: type[wire.Message]) -> wire.Message:
    msg = await chan.receive()
    if msg is None:
        raise Unavailable(f"{chan.remote_peer} closed the stream during the handshake")
    if isinstance(msg, wire.Error):
        raise error_from_wire(msg.code, msg.message, msg.detail)
    if not isinstance(msg, cls):
        raise RemoteProtocolError(f"expected {cls.__name__}, got {type(msg).__name__}")
    return msg


async def client_handshake(chan: MessageChannel, token: Token) -> wire.Welcome:
    cn = new_nonce()
    our_peer = chan.stream.local_peer
    await chan.send(wire.Hello(role=token.role, nonce=cn, token=token.name,
                               key_id=b"" if token.name else key_id(token.key)))
    ch = await _expect(chan, wire.Challenge)
    assert isinstance(ch, wire.Challenge)
    peer = chan.remote_peer
    check(server_proof(token.key, token.role, cn, ch.nonce, our_peer, peer), ch.proof,
          f"node {peer}")
    await chan.send(
        wire.Auth(proof=client_proof(token.key, token.role, cn, ch.nonce, our_peer, peer))
    )
    welcome = await _expect(chan, wire.Welcome)
    assert isinstance(welcome, wire.Welcome)
    return welcome


async def server_handshake(
    chan: MessageChannel,
    secret: bytes | Keyring,
    welcome: Callable[[str], wire.Welcome],
    named: NamedKeys | None = None,
) -> Proven | None:
    """Authenticate the peer; returns what it proved, or None if it left before saying
    Hello. ``named`` finds the key of a named token; without it only role tokens pass."""
    keyring = secret if isinstance(secret, Keyring) else Keyring(secret)
    hello = await chan.receive()
    if hello is None:
        return None
    if not isinstance(hello, wire.Hello):
        raise RemoteProtocolError("a stream must start with Hello")
    if not wire.MIN_PROTOCOL_VERSION <= hello.version <= wire.PROTOCOL_VERSION:
        # a range, so that a rolling upgrade can keep the version before for a while
        raise RemoteProtocolError(
            f"protocol version {hello.version} is not supported (this node speaks "
            f"{wire.MIN_PROTOCOL_VERSION}..{wire.PROTOCOL_VERSION})"
        )
    if hello.role not in ROLES:
        raise Unauthorized(f"unknown role {hello.role!r}")
    generation = None
    if not hello.token:
        # a key id neither secret's: the current key, whose proof then fails as any
        # wrong key's does
        found_role = (keyring.role_key(hello.role, hello.key_id)
                      or keyring.role_key(hello.role))
        assert found_role is not None
        if found_role.expired and hello.role != "node":
            raise Unauthorized(f"this {hello.role} token is of a cluster secret that was "
                               "rotated; ask the operator for the new token")
        key, generation = found_role.key, found_role.generation
    elif hello.role == "node" or named is None:
        raise Unauthorized(f"this node accepts no named {hello.role} token")
    else:
        found = await named(hello.token, hello.role)
        if found is None:
            raise Unauthorized(f"{hello.role} token {hello.token[:64]!r} is unknown or "
                               "revoked")
        key = found
    sn = new_nonce()
    peer, our_peer = chan.remote_peer, chan.stream.local_peer
    await chan.send(wire.Challenge(
        nonce=sn, proof=server_proof(key, hello.role, hello.nonce, sn, peer, our_peer)))
    auth = await _expect(chan, wire.Auth)
    assert isinstance(auth, wire.Auth)
    check(client_proof(key, hello.role, hello.nonce, sn, peer, our_peer), auth.proof,
          f"peer {peer}")
    await chan.send(welcome(hello.role))
    return Proven(hello.role, hello.token, key if hello.token else b"", generation)
