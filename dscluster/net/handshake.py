"""The mutual challenge-response that opens every stream (see auth.py for the proofs).

Message flow: client Hello(role, nonce) -> server Challenge(nonce, server proof) ->
client Auth(client proof) -> server Welcome(epoch, node index, role). A failed proof on
either side ends the stream; the server never says which part was wrong. Nonces and
proofs of any length but 32 bytes never get here: the messages refuse them. The role is
any of ``auth.ROLES``; what a role may ask is the request handlers' business
(node/server.py), not the handshake's.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import wire
from ..auth import ROLES, Token, check, client_proof, new_nonce, role_key, server_proof
from ..errors import RemoteProtocolError, Unauthorized, Unavailable, error_from_wire
from .channel import MessageChannel


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
    await chan.send(wire.Hello(role=token.role, nonce=cn))
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
    secret: bytes,
    welcome: Callable[[str], wire.Welcome],
) -> str | None:
    """Authenticate the peer; returns its role, or None if it left before saying Hello."""
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
    key = role_key(secret, hello.role)
    sn = new_nonce()
    peer, our_peer = chan.remote_peer, chan.stream.local_peer
    await chan.send(wire.Challenge(
        nonce=sn, proof=server_proof(key, hello.role, hello.nonce, sn, peer, our_peer)))
    auth = await _expect(chan, wire.Auth)
    assert isinstance(auth, wire.Auth)
    check(client_proof(key, hello.role, hello.nonce, sn, peer, our_peer), auth.proof,
          f"peer {peer}")
    await chan.send(welcome(hello.role))
    return hello.role
