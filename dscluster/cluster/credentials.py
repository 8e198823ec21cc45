"""Credentials the whole cluster shares: S3 keys and named client tokens.

They are records in the cluster's own datastore, replicated like any key, under a
reserved prefix that only nodes may read or write (node/server.py refuses it to every
client role, and S3 buckets cannot reach it)::

    /.dscluster/s3keys/<access key>    created_ms, the secret key (sealed)
    /.dscluster/s3used/<access key>    used_ms: when a gateway last saw the key
    /.dscluster/tokens/<name>          role, created_ms, the token's key (sealed)

Secrets are sealed with a key derived from the cluster secret (sealing.py), so a dump of
a store does not reveal them. After a rotation of the secret (rotation.py) a reload seals
again, under the new secret, each record that only the old one opens.

Every node keeps a ``CredentialBook``: a copy of these records in memory, reloaded every
``RELOAD_INTERVAL`` seconds (that bounds how long a removed key or a revoked token still
works), and looked up in the cluster at once when a gateway or a handshake meets a name
it does not know (a key just added on another node), at most ``LOOKUPS_PER_SECOND``
times a second, so that made-up names cannot turn into a flood of reads.

Last use is approximate on purpose: a gateway notes uses in memory and writes a key's
``s3used`` record at most once per ``USE_WRITE_INTERVAL``, never one record per request.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import msgpack
import trio

from ..auth import valid_token_name
from ..datastore import Datastore
from ..errors import DSClusterError, InvalidArgument, NotFound
from ..keyring import Keyring
from ..query import Query
from .sealing import Sealer

log = logging.getLogger(__name__)

PREFIX = "/.dscluster"
S3_KEYS = f"{PREFIX}/s3keys"
S3_USED = f"{PREFIX}/s3used"
TOKENS = f"{PREFIX}/tokens"
RELOAD_INTERVAL = 2.0
USE_WRITE_INTERVAL = 60.0
LOOKUPS_PER_SECOND = 10
TOKEN_KEY_BYTES = 32
_ACCESS_KEY = re.compile(r"[A-Z0-9]{4,64}")
# AWS access key ids are 20 upper-case characters; ours start with a recognisable tag
_ACCESS_KEY_PREFIX = "DSCK"
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_FORMAT = 1


def internal(key: str) -> bool:
    """Whether ``key`` is in the reserved space that only nodes may touch."""
    return key == PREFIX or key.startswith(PREFIX + "/")


def new_s3_pair() -> tuple[str, str]:
    """A random S3 credential: 20-character access key id, 40-character secret."""
    tail = "".join(secrets.choice(_BASE32) for _ in range(20 - len(_ACCESS_KEY_PREFIX)))
    return _ACCESS_KEY_PREFIX + tail, secrets.token_urlsafe(30)


def check_access_key(access_key: str) -> str:
    if not _ACCESS_KEY.fullmatch(access_key):
        raise InvalidArgument(f"{access_key!r} is not a cluster S3 access key (4-64 "
                              "characters A-Z 0-9)")
    return access_key


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _pack(**fields: Any) -> bytes:
    return msgpack.packb({"v": _FORMAT, **fields})


def _unpack(raw: bytes) -> dict[str, Any] | None:
    try:
        d = msgpack.unpackb(raw)
    except (ValueError, msgpack.UnpackException):
        return None
    return d if isinstance(d, dict) and d.get("v") == _FORMAT else None


@dataclass(frozen=True, slots=True)
class S3Key:
    access_key: str
    secret_key: str
    created_ms: int
    used_ms: int | None = None


@dataclass(frozen=True, slots=True)
class NamedToken:
    name: str
    role: str
    key: bytes
    created_ms: int


class CredentialBook:
    def __init__(self, ds: Datastore, secret: bytes | Keyring) -> None:
        self.ds = ds
        self.keyring = secret if isinstance(secret, Keyring) else Keyring(secret)
        self._sealer = Sealer(*self.keyring.secrets())
        # records only the previous secret opens, sealed again at the end of a reload
        self._reseal: dict[str, bytes] = {}
        self._s3: dict[str, S3Key] = {}
        self._tokens: dict[str, NamedToken] = {}
        self._lookup_lock = trio.Lock()
        self._last_lookup = -float("inf")
        self._used: dict[str, int] = {}  # access key -> last use, noted in memory
        self._written: dict[str, float] = {}  # access key -> when its use was written

    # -- what gateways and handshakes ask -----------------------------------------------
    def s3_secret(self, access_key: str) -> str | None:
        found = self._s3.get(access_key)
        return None if found is None else found.secret_key

    def token_key(self, name: str, role: str) -> bytes | None:
        found = self._tokens.get(name)
        return found.key if found is not None and found.role == role else None

    def still_valid(self, name: str, role: str, key: bytes) -> bool:
        """Whether a token proven earlier on a stream is still the one on record."""
        current = self.token_key(name, role)
        return current is not None and hmac.compare_digest(current, key)

    def used(self, access_key: str) -> None:
        if access_key in self._s3:
            self._used[access_key] = _now_ms()

    async def look_up_s3(self, access_key: str) -> str | None:
        """The secret of a key this node does not know yet, read from the cluster."""
        if _ACCESS_KEY.fullmatch(access_key) and await self._look_up(S3_KEYS, access_key):
            return self.s3_secret(access_key)
        return None

    async def look_up_token(self, name: str, role: str) -> bytes | None:
        if valid_token_name(name) and await self._look_up(TOKENS, name):
            return self.token_key(name, role)
        return None

    async def _look_up(self, space: str, name: str) -> bool:
        key = f"{space}/{name}"
        async with self._lookup_lock:
            await trio.sleep_until(self._last_lookup + 1 / LOOKUPS_PER_SECOND)
            self._last_lookup = trio.current_time()
            try:
                raw = await self.ds.get(key)
            except NotFound:
                # removed since the last reload
                (self._s3 if space == S3_KEYS else self._tokens).pop(name, None)
                return False
        self._take(key, raw, {})
        return True

    # -- keeping the copy current --------------------------------------------------------
    async def reload(self) -> None:
        s3: dict[str, S3Key] = {}
        used: dict[str, int] = {}
        tokens: dict[str, NamedToken] = {}
        self._sealer = Sealer(*self.keyring.secrets())
        async with contextlib.aclosing(self.ds.query(Query(prefix=PREFIX))) as entries:
            async for e in entries:
                if e.value is not None:
                    self._take(e.key, e.value, used, s3, tokens)
        self._s3 = {k: S3Key(c.access_key, c.secret_key, c.created_ms, used.get(k))
                    for k, c in s3.items()}
        self._tokens = tokens
        while self._reseal:
            key, raw = self._reseal.popitem()
            await self.ds.put(key, raw)
            log.info("sealed %s again under the cluster's new secret", key)

    def _take(self, key: str, raw: bytes, used: dict[str, int],
              s3: dict[str, S3Key] | None = None,
              tokens: dict[str, NamedToken] | None = None) -> None:
        """Parse one record into ``s3``/``tokens`` (by default the live copy)."""
        s3 = self._s3 if s3 is None else s3
        tokens = self._tokens if tokens is None else tokens
        space, _, name = key.rpartition("/")
        d = _unpack(raw)
        try:
            if d is None:
                raise DSClusterError("not a credential record")
            if space == S3_USED:
                used[name] = int(d["used_ms"])
            elif space == S3_KEYS:
                secret = self._open(d, "secret", key).decode()
                s3[name] = S3Key(name, secret, int(d["created_ms"]))
            elif space == TOKENS:
                tokens[name] = NamedToken(name, str(d["role"]), self._open(d, "key", key),
                                          int(d["created_ms"]))
        except (DSClusterError, KeyError, TypeError, ValueError) as e:
            log.warning("ignoring the credential record %s: %s", key, e)
            # sealed under a new secret this node has not fetched yet: keep what it knew
            if space == S3_KEYS and name in self._s3:
                s3[name] = self._s3[name]
            elif space == TOKENS and name in self._tokens:
                tokens[name] = self._tokens[name]

    def _open(self, record: dict[str, Any], field: str, key: str) -> bytes:
        plain, current = self._sealer.open(record[field], key)
        if not current:
            fields = {k: v for k, v in record.items() if k != "v"}
            self._reseal[key] = _pack(**{**fields, field: self._sealer.seal(plain, key)})
        return plain

    async def follow(self) -> None:
        """Reload every RELOAD_INTERVAL and write the uses noted since (runs forever)."""
        while True:
            try:
                await self.reload()
                await self._write_uses()
            except DSClusterError as e:
                log.warning("could not reload the cluster's credentials: %s", e)
            await trio.sleep(RELOAD_INTERVAL)

    async def _write_uses(self) -> None:
        now = trio.current_time()
        due = [k for k in self._used
               if now - self._written.get(k, -float("inf")) >= USE_WRITE_INTERVAL]
        for k in due:
            if k in self._s3:
                await self.ds.put(f"{S3_USED}/{k}", _pack(used_ms=self._used[k]))
                self._written[k] = now
            del self._used[k]

    # -- what an operator asks (cluster/admin.py) ---------------------------------------
    def s3_keys(self) -> list[S3Key]:
        return sorted(self._s3.values(), key=lambda c: c.access_key)

    def tokens(self) -> list[NamedToken]:
        return sorted(self._tokens.values(), key=lambda t: t.name)

    async def put_s3_key(self, access_key: str, secret_key: str) -> None:
        key = f"{S3_KEYS}/{access_key}"
        await self.ds.put(key, _pack(created_ms=_now_ms(),
                                     secret=self._sealer.seal(secret_key.encode(), key)))
        await self.reload()

    async def remove_s3_key(self, access_key: str) -> None:
        await self._known(S3_KEYS, access_key, "S3 access key")
        await self.ds.delete(f"{S3_KEYS}/{access_key}")
        await self.ds.delete(f"{S3_USED}/{access_key}")
        await self.reload()

    async def issue_token(self, name: str, role: str) -> bytes:
        key = f"{TOKENS}/{name}"
        if await self.ds.has(key):
            raise InvalidArgument(f"a token named {name!r} exists; revoke it first or "
                                  "choose another name")
        token_key = os.urandom(TOKEN_KEY_BYTES)
        await self.ds.put(key, _pack(role=role, created_ms=_now_ms(),
                                     key=self._sealer.seal(token_key, key)))
        await self.reload()
        return token_key

    async def revoke_token(self, name: str) -> None:
        await self._known(TOKENS, name, "token")
        await self.ds.delete(f"{TOKENS}/{name}")
        await self.reload()

    async def _known(self, space: str, name: str, what: str) -> None:
        if not await self.ds.has(f"{space}/{name}"):
            raise NotFound(f"no {what} {name!r} in this cluster")
