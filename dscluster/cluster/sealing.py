"""Sealing secrets that the cluster keeps in its own datastore.

S3 secret keys and the keys of named tokens are replicated like any other value, so a
copy of a node's store (a backup, a flatfs directory, a LevelDB) holds them. They are
stored sealed: AES-256-GCM under a key derived from the cluster secret with HKDF, which
only nodes hold. The record's datastore key is the associated data, so a sealed value
copied under another key does not open.

After a rotation of the cluster secret (keyring.py) a node holds two secrets: it seals
with the new one and opens with either, and the credential book seals again what only
the old one opens (credentials.py), so the records outlive the old secret.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import ClusterError

NONCE_BYTES = 12  # AES-GCM's standard nonce, random per seal
_INFO = b"dscluster sealed records v1"


def _aead(secret: bytes) -> AESGCM:
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                       info=_INFO).derive(secret))


class Sealer:
    def __init__(self, secret: bytes, *older: bytes) -> None:
        """Seals with ``secret``; opens with it or any of ``older``."""
        self._aeads = [_aead(s) for s in (secret, *older)]

    def seal(self, plain: bytes, key: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aeads[0].encrypt(nonce, plain, key.encode())

    def open(self, sealed: bytes, key: str) -> tuple[bytes, bool]:
        """The plain value, and whether it was sealed with the current secret."""
        for i, aead in enumerate(self._aeads):
            try:
                return aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:],
                                    key.encode()), i == 0
            except (InvalidTag, ValueError):
                continue
        raise ClusterError(f"the sealed value of {key} does not open with this "
                           "cluster's secret")
