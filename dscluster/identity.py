"""Ed25519 identities, peer ids and files that hold secrets.

A private key never leaves the machine that generated it: nodes and clients create
their own on first start. Files holding keys or secrets are created 0600 from the start
(never chmod-ed afterwards, which would leave a window) and refused when others can
read them, as ssh does.
"""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.serialization import deserialize_private_key
from libp2p.peer.id import ID

from .errors import ConfigError


def new_identity() -> KeyPair:
    return create_new_key_pair()


def peer_id_of(kp: KeyPair) -> str:
    return ID.from_pubkey(kp.public_key).to_base58()


def write_private_file(path: Path, data: bytes) -> None:
    """Atomically write a 0600 file: temp file created 0600, fsync, rename."""
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


def save_identity(path: Path, kp: KeyPair) -> None:
    write_private_file(path, base64.b64encode(kp.private_key.serialize()) + b"\n")


def load_identity(path: Path) -> KeyPair:
    raw = read_private_file(path, "identity key")
    try:
        sk = deserialize_private_key(base64.b64decode(raw.strip(), validate=True))
    except Exception as e:  # any decoding failure means the same thing to the user
        raise ConfigError(
            f"identity key file {path} is not a valid libp2p private key: {e}"
        ) from None
    return KeyPair(sk, sk.get_public_key())
