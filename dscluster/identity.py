"""Ed25519 identities, peer ids and files that hold secrets.

A private key never leaves the machine that generated it: nodes and clients create
their own on first start. Files holding keys or secrets are created 0600 from the start
(never chmod-ed afterwards, which would leave a window) and refused when others can
read them, as ssh does.

Identities are handled with ``cryptography`` rather than py-libp2p's key classes,
because importing py-libp2p costs ~0.6 s and a client that talks to nodes over the data
lane never needs it; ``Identity.libp2p_keypair`` converts when libp2p is started. The
formats are libp2p's, written out here because they are four bytes of protobuf framing:
a key file is base64 of the protobuf ``PrivateKey{Type: Ed25519, Data: key}`` (Data is
the 32-byte seed, or go-libp2p's 64-byte seed+public key), and a peer id is base58btc
of the identity multihash of ``PublicKey{Type: Ed25519, Data: 32 bytes}``.
"""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from multiformats import multibase

from .errors import ConfigError

if TYPE_CHECKING:
    from libp2p.crypto.keys import KeyPair

_ED25519_FIELDS = bytes([0x08, 0x01, 0x12])  # field 1 (type) = 1 (Ed25519), field 2 (data)
_RAW = serialization.Encoding.Raw


def _pb_key(data: bytes) -> bytes:
    return _ED25519_FIELDS + bytes([len(data)]) + data


def peer_id_from_public(public: bytes) -> str:
    """The libp2p peer id of a raw 32-byte Ed25519 public key."""
    pb = _pb_key(public)
    return multibase.encode(bytes([0x00, len(pb)]) + pb, "base58btc")[1:]


class Identity:
    """A node's or client's Ed25519 key pair."""

    __slots__ = ("key", "peer_id", "public")

    def __init__(self, key: ed25519.Ed25519PrivateKey) -> None:
        self.key = key
        self.public = key.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
        self.peer_id = peer_id_from_public(self.public)

    @classmethod
    def generate(cls) -> Identity:
        return cls(ed25519.Ed25519PrivateKey.generate())

    @property
    def seed(self) -> bytes:
        return self.key.private_bytes(_RAW, serialization.PrivateFormat.Raw,
                                      serialization.NoEncryption())

    def libp2p_keypair(self) -> KeyPair:
        from libp2p.crypto.ed25519 import create_new_key_pair

        return create_new_key_pair(self.seed)

    def save(self, path: Path) -> None:
        write_private_file(path, base64.b64encode(_pb_key(self.seed)) + b"\n")

    @classmethod
    def load(cls, path: Path) -> Identity:
        raw = read_private_file(path, "identity key")
        try:
            pb = base64.b64decode(raw.strip(), validate=True)
        except ValueError:
            pb = b""
        if len(pb) not in (36, 68) or pb[:3] != _ED25519_FIELDS or pb[3] != len(pb) - 4:
            raise ConfigError(f"identity key file {path} is not a libp2p Ed25519 private key")
        return cls(ed25519.Ed25519PrivateKey.from_private_bytes(pb[4:36]))


def write_private_file(path: Path, data: bytes, *, sync_dir: bool = False) -> None:
    """Atomically write a 0600 file: temp file created 0600, fsync, rename; with
    ``sync_dir`` the rename is made durable too (fsync_directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT honours umask only for new files; be explicit
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if sync_dir:
        fsync_directory(path.parent)


def fsync_directory(d: Path) -> None:
    """Make the renames into ``d`` survive a power cut (a file's own fsync does not
    cover its directory entry)."""
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_private_file(path: Path, what: str) -> bytes:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{what} file {path} does not exist") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{what} file {path} is accessible by other users "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}"
        )
    return path.read_bytes()
