from __future__ import annotations

import hashlib
import hmac
import os

import pytest

from dscluster.auth import (
    Token,
    check,
    client_proof,
    new_nonce,
    new_secret,
    role_key,
    server_proof,
)
from dscluster.errors import ConfigError, Unauthorized
from dscluster.identity import Identity, read_private_file
from dscluster.wire import NONCE_BYTES


def test_tokens_round_trip_and_derive_one_way():
    secret = new_secret()
    node, client, ro = (Token.for_role(secret, r) for r in ("node", "client", "readonly"))
    assert node.key == secret and client.key != secret and ro.key not in (secret, client.key)
    for t in (node, client, ro):
        assert Token.parse(t.encode()) == t
    assert role_key(secret, "client") == client.key


@pytest.mark.parametrize("text", ["", "dsc1:client", "dsc2:client:AAAA", "dsc1:admin:AAAA",
                                  "dsc1:client:!!!", "dsc1:client:AAAA"])
def test_bad_tokens_are_config_errors(text):
    with pytest.raises(ConfigError):
        Token.parse(text)


def test_proofs_bind_side_role_nonces_and_peers():
    k = new_secret()
    base = ("client", b"c" * 32, b"s" * 32, "peerA", "peerB")
    p = client_proof(k, *base)
    check(client_proof(k, *base), p, "x")
    assert server_proof(k, *base) != p  # a server proof is not a client proof
    for i, other in enumerate(("readonly", b"x" * 32, b"y" * 32, "peerC", "peerD")):
        changed = list(base)
        changed[i] = other
        with pytest.raises(Unauthorized):
            check(client_proof(k, *changed), p, "x")
    with pytest.raises(Unauthorized):
        check(client_proof(new_secret(), *base), p, "x")


def test_private_files_are_0600_and_refused_when_open(tmp_path):
    ident = Identity.generate()
    path = tmp_path / "identity.key"
    ident.save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    Token.for_role(new_secret(), "client").save(tmp_path / "t")
    assert (tmp_path / "t").stat().st_mode & 0o777 == 0o600
    (tmp_path / "t2").write_bytes(path.read_bytes())
    os.chmod(tmp_path / "t2", 0o600)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_private_file(path, "identity key")
    assert Identity.load(tmp_path / "t2").peer_id == ident.peer_id


def test_identities_use_libp2ps_formats():
    """Key files and peer ids must stay exactly libp2p's: Kubo-style tools read them."""
    from libp2p.crypto.serialization import deserialize_private_key
    from libp2p.peer.id import ID

    ident = Identity.generate()
    kp = ident.libp2p_keypair()
    assert ID.from_pubkey(kp.public_key).to_base58() == ident.peer_id
    assert ident.peer_id.startswith("12D3KooW")
    sk = deserialize_private_key(kp.private_key.serialize())
    assert sk.get_public_key().to_bytes() == ident.public


def test_a_garbled_key_file_is_a_config_error(tmp_path):
    p = tmp_path / "k"
    p.write_bytes(b"bm90IGEga2V5\n")
    os.chmod(p, 0o600)
    with pytest.raises(ConfigError, match="not a libp2p Ed25519 private key"):
        Identity.load(p)


@pytest.mark.parametrize(("a", "b"), [
    # bytes move between neighbouring fields; joined with zero bytes these were equal
    (("client", b"n\x00", b"s", "peerA", "peerB"), ("client", b"n", b"\x00s", "peerA", "peerB")),
    (("client", b"n", b"s", "peer\x00A", "B"), ("client", b"n", b"s", "peer", "A\x00B")),
    (("client", b"n", b"s\x00peerA", "B", ""), ("client", b"n", b"s", "peerA\x00B", "")),
    (("client\x00", b"n", b"s", "A", "B"), ("client", b"\x00n", b"s", "A", "B")),
])
def test_proofs_of_different_fields_differ(a, b):
    def old_encoding(fields: tuple) -> bytes:
        role, cn, sn, cp, sp = fields
        return b"\x00".join((b"client", role.encode(), cn, sn, cp.encode(), sp.encode()))

    assert old_encoding(a) == old_encoding(b)  # the collision the length prefixes remove
    k = new_secret()
    assert client_proof(k, *a) != client_proof(k, *b)
    assert server_proof(k, *a) != server_proof(k, *b)


def test_proofs_are_labelled_v2():
    k, fields = b"k" * 32, ("node", b"c" * 32, b"s" * 32, "peerA", "peerB")
    msg = b"".join(len(f).to_bytes(4, "big") + f for f in (
        b"dscluster-auth-v2", b"client", b"node", b"c" * 32, b"s" * 32, b"peerA", b"peerB"))
    assert client_proof(k, *fields) == hmac.new(k, msg, hashlib.sha256).digest()
    assert len(new_nonce()) == NONCE_BYTES == 32
