from __future__ import annotations

import os

import pytest

from dscluster.auth import Token, check, client_proof, new_secret, role_key, server_proof
from dscluster.errors import ConfigError, Unauthorized
from dscluster.identity import Identity, read_private_file


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
