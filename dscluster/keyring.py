"""The cluster secrets a node holds: the current one and, after a rotation, the one before.

A rotation (cluster/rotation.py) gives the cluster a new secret, numbered one generation
higher, and a grace period: until its deadline a node accepts proofs under either
secret, for every role, so that clients and nodes still holding the old tokens keep
working while the new ones are handed out. From the deadline on, the old secret's role
tokens are refused, and a stream opened with one is closed at its next request. One
exception remains: a member of the map (identified by its peer id, which libp2p's Noise
handshake proves) that proves the old node secret may still ask for the new one, and
nothing else, so that a node that was down during the whole grace catches up by itself.

Which secret a role token was derived from is named in the Hello by a key id (a hash
of the token's key), since the node proves itself first and must pick the key before
the client has proven anything.

Nodes dial each other with the old node secret until the rotation's switch time (half
way through the grace, when every node has had time to fetch the new one) and with the
new one from then on, so no node is refused by a peer that has not fetched it yet, and
no pooled stream is still on the old secret at the deadline.

On disk: node.token always holds the current secret; ``keyring.json`` beside it holds
the generation, the previous secret and the rotation's times. A new secret is written
keyring first, node.token second, each atomically and durably, so a node killed between
the two restarts on the old secret and fetches the new one again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from .auth import Token, role_key
from .errors import ConfigError
from .identity import read_private_file, write_private_file
from .wire import KEY_ID_BYTES

log = logging.getLogger(__name__)
KEYRING_FILE = "keyring.json"


def key_id(key: bytes) -> bytes:
    """Names a key without revealing it (a token's key is 32 random-looking bytes)."""
    return hashlib.sha256(b"dscluster key id " + key).digest()[:KEY_ID_BYTES]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class RoleKey:
    """The key a role token must prove, and the generation of the secret it derives from."""

    key: bytes
    generation: int
    expired: bool  # the previous secret's, past the grace


class Keyring:
    def __init__(self, secret: bytes, *, generation: int = 0, previous: bytes | None = None,
                 switch_ms: int = 0, deadline_ms: int = 0,
                 token_path: Path | None = None) -> None:
        self.secret = secret
        self.generation = generation
        self.previous = previous
        self.switch_ms = switch_ms
        self.deadline_ms = deadline_ms
        # None: kept in memory only (tests, in-process clusters)
        self._token_path = token_path

    @classmethod
    def load(cls, token_path: Path) -> Keyring:
        token = Token.load(token_path)
        path = token_path.with_name(KEYRING_FILE)
        if not path.exists():
            return cls(token.key, token_path=token_path)
        try:
            d = json.loads(read_private_file(path, "keyring"))
            generation = int(d["generation"])
            current = bytes.fromhex(d["current"])
            previous = base64.b64decode(d["previous"], validate=True) or None
            switch_ms, deadline_ms = int(d["switch_ms"]), int(d["deadline_ms"])
        except (ValueError, KeyError, TypeError, binascii.Error) as e:
            raise ConfigError(f"{path} is not a dscluster keyring ({e}); remove it to keep "
                              f"{token_path.name} as the only secret") from None
        if key_id(token.key) == current:
            return cls(token.key, generation=generation, previous=previous,
                       switch_ms=switch_ms, deadline_ms=deadline_ms, token_path=token_path)
        if token.key == previous:
            log.warning("the new cluster secret (generation %d) was not yet in %s when the "
                        "node stopped; fetching it again", generation, token_path)
            return cls(token.key, generation=generation - 1, token_path=token_path)
        # node.token was replaced by hand (copied from a current node): the first fetch
        # from a member tells its generation (adopt relabels an equal secret)
        log.warning("%s holds a secret the keyring does not know: using it", token_path)
        return cls(token.key, generation=generation, token_path=token_path)

    # -- proving and checking -----------------------------------------------------------
    def in_grace(self, now: int | None = None) -> bool:
        return self.previous is not None and (now_ms() if now is None else now) < self.deadline_ms

    def role_key(self, role: str, kid: bytes = b"", now: int | None = None) -> RoleKey | None:
        """The key a ``role`` token with key id ``kid`` proves (b"": the current
        secret's), or None if it is neither secret's."""
        key = role_key(self.secret, role)
        if not kid or kid == key_id(key):
            return RoleKey(key, self.generation, False)
        if self.previous is not None:
            key = role_key(self.previous, role)
            if kid == key_id(key):
                return RoleKey(key, self.generation - 1, not self.in_grace(now))
        return None

    def expired(self, generation: int, now: int | None = None) -> bool:
        """Whether a proof under ``generation`` no longer counts (past a grace)."""
        return generation < self.generation and not self.in_grace(now)

    def node_token(self) -> Token:
        """The node token to dial with now."""
        if self.previous is not None and now_ms() < self.switch_ms:
            return Token("node", self.previous)
        return Token("node", self.secret)

    def secrets(self) -> list[bytes]:
        """Every secret held, the current first (sealing.py opens with any)."""
        return [self.secret] + ([self.previous] if self.previous is not None else [])

    # -- changing -----------------------------------------------------------------------
    def adopt(self, generation: int, secret: bytes, switch_ms: int, deadline_ms: int) -> bool:
        """Take ``secret`` as generation ``generation`` if that is newer; durable before
        it returns. Returns whether the secret changed."""
        if secret == self.secret:
            if generation > self.generation:  # node.token was copied by hand
                self.generation = generation
                self._save()
            return False
        if generation <= self.generation:
            return False
        self.previous, self.secret = self.secret, secret
        self.generation, self.switch_ms, self.deadline_ms = generation, switch_ms, deadline_ms
        self._save()
        if self._token_path is not None:
            write_private_file(self._token_path, Token("node", secret).encode().encode() + b"\n",
                               sync_dir=True)
        return True

    def _save(self) -> None:
        if self._token_path is None:
            return
        d = {"generation": self.generation, "current": key_id(self.secret).hex(),
             "previous": base64.b64encode(self.previous or b"").decode(),
             "switch_ms": self.switch_ms, "deadline_ms": self.deadline_ms}
        write_private_file(self._token_path.with_name(KEYRING_FILE),
                           json.dumps(d, indent=1).encode() + b"\n", sync_dir=True)
