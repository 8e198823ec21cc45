from __future__ import annotations

import os

import pytest

from dscluster.auth import Token, check, client_proof, new_secret, role_key, server_proof
from dscluster.errors import ConfigError, Unauthorized
from dscluster.identity import new_identity, peer_id_of, read_private_file, save_identity


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
    kp = new_identity()
    path = tmp_path / "identity.key"
    save_identity(path, kp)
    assert path.stat().st_mode & 0o777 == 0o600
    Token.for_role(new_secret(), "client").save(tmp_path / "t")
    assert (tmp_path / "t").stat().st_mode & 0o777 == 0o600
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_private_file(path, "identity key")
    assert peer_id_of(kp).startswith("12D3KooW")
