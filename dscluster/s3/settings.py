"""Settings of the S3 gateway: the ``s3`` section of a node's JSON config.

The lead embeds ``S3Settings.to_dict()`` in the node config and reads it back with
``S3Settings.from_dict``; every field has a default, so ``{}`` is a valid section (a
gateway that refuses every request until a credential is added with
``dscfg s3-key add``).
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..cluster.credentials import new_s3_pair
from ..config import CONFIG_FILE, read_json, write_config
from ..errors import ConfigError
from ..limits import fd_limit, fd_share
from . import keymap

# at most this many connections by default, whatever the descriptor limit (a limit may
# be "unlimited")
MAX_DEFAULT_CONNECTIONS = 1024
# how stale a bucket's record may be: a deleted bucket must be refused within a minute
MAX_BUCKET_CACHE_SECONDS = 60
_HOST_NAME = re.compile(r"[A-Za-z0-9.-]+")  # or an IPv4 address


@dataclass(frozen=True, slots=True)
class S3Credential:
    access_key: str
    secret_key: str

    def __post_init__(self) -> None:
        if not self.access_key or not self.secret_key:
            raise ConfigError("s3 credentials need a non-empty access_key and secret_key")
        if any(c in self.access_key for c in "/, =\t\n"):
            # the access key is embedded in "Credential=AK/date/region/s3/aws4_request"
            raise ConfigError(f"s3 access_key {self.access_key!r} has a forbidden character")

    def to_dict(self) -> dict[str, str]:
        return {"access_key": self.access_key, "secret_key": self.secret_key}

    @classmethod
    def from_dict(cls, d: Any) -> S3Credential:
        if not isinstance(d, dict) or set(d) != {"access_key", "secret_key"}:
            raise ConfigError("each s3.credentials entry must be {access_key, secret_key}")
        return cls(str(d["access_key"]), str(d["secret_key"]))


def new_credential() -> S3Credential:
    """A random credential: 20-character access key id, 40-character secret."""
    return S3Credential(*new_s3_pair())


def _positive_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v > 0


def parse_listen(listen: str) -> tuple[str, int]:
    """"host:port" or "[v6]:port" -> (host, port); port 0 picks a free port."""
    host, sep, port = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            valid_host = isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
        except ValueError:
            valid_host = False
    else:
        valid_host = _HOST_NAME.fullmatch(host) is not None
    if not (sep and valid_host and port.isascii() and port.isdigit()
            and len(port) <= 5 and int(port) <= 65535):
        raise ConfigError(f"s3.listen must be HOST:PORT or [IPv6]:PORT with a port "
                          f"0-65535, got {listen!r}")
    return host, int(port)


@dataclass
class S3Settings:
    listen: str = "127.0.0.1:9000"
    region: str = "us-east-1"
    credentials: list[S3Credential] = field(default_factory=list)
    allow_anonymous: bool = False
    # objects up to this size from a single PUT are stored as exactly their bytes at
    # /<bucket>/<key>; it must not exceed the cluster's limits.max_value_bytes
    max_value_size: int = 4 << 20
    max_object_size: int = 5 << 40
    # S3's minimum size of every multipart part but the last
    min_part_size: int = 5 << 20
    # serve HTTPS when both are set (PEM files)
    tls_cert: str | None = None
    tls_key: str | None = None
    # bucket names CreateBucket may create over datastore keys written around the gateway
    # (e.g. "blocks", where dsclient and Kubo keep IPFS blocks); see doc/s3.md
    adopt_prefixes: list[str] = field(default_factory=list)
    # concurrent gateway connections; None: the gateway's share of the descriptor limit
    max_connections: int | None = None
    # seconds a connection has to send a complete request head (its first one, and each
    # later one from its first byte)
    header_timeout: float = 10.0
    # seconds a request may go without the client sending or accepting a byte
    read_timeout: float = 120.0
    # seconds a bucket's record (existence, owner, ACL) is used without reading it again;
    # a bucket deleted or re-ACLed through another node is seen within this (0: always read)
    bucket_cache_seconds: float = 1.0

    def __post_init__(self) -> None:
        parse_listen(self.listen)
        if not self.region:
            raise ConfigError("s3.region must not be empty")
        for name in ("max_value_size", "max_object_size", "min_part_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"s3.{name} must be a positive integer, got {v!r}")
        if self.max_value_size > self.max_object_size:
            raise ConfigError("s3.max_value_size must not exceed s3.max_object_size")
        if self.max_connections is not None and not (
                isinstance(self.max_connections, int) and _positive_number(self.max_connections)):
            raise ConfigError(f"s3.max_connections must be a positive integer or null, got "
                              f"{self.max_connections!r}")
        for name in ("header_timeout", "read_timeout"):
            if not _positive_number(getattr(self, name)):
                raise ConfigError(f"s3.{name} must be a positive number of seconds, got "
                                  f"{getattr(self, name)!r}")
        if not (isinstance(self.bucket_cache_seconds, int | float)
                and not isinstance(self.bucket_cache_seconds, bool)
                and 0 <= self.bucket_cache_seconds <= MAX_BUCKET_CACHE_SECONDS):
            raise ConfigError(f"s3.bucket_cache_seconds must be a number of seconds from 0 to "
                              f"{MAX_BUCKET_CACHE_SECONDS}, got {self.bucket_cache_seconds!r}")
        if not isinstance(self.adopt_prefixes, list):
            raise ConfigError("s3.adopt_prefixes must be a list of bucket names")
        for name in self.adopt_prefixes:
            if not isinstance(name, str) or not keymap.valid_bucket_name(name):
                raise ConfigError(f"s3.adopt_prefixes: {name!r} is not a bucket name (a "
                                  "top-level datastore prefix such as \"blocks\", no slash)")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("s3.tls_cert and s3.tls_key must be set together")
        seen: set[str] = set()
        for c in self.credentials:
            if c.access_key in seen:
                raise ConfigError(f"s3 access key {c.access_key} is listed twice")
            seen.add(c.access_key)

    def connection_limit(self) -> int:
        """max_connections, or the default derived from the file-descriptor limit."""
        if self.max_connections is not None:
            return self.max_connections
        return max(1, min(MAX_DEFAULT_CONNECTIONS, fd_share("gateway", fd_limit())))

    def secret_for(self, access_key: str) -> str | None:
        for c in self.credentials:
            if secrets.compare_digest(c.access_key.encode(), access_key.encode()):
                return c.secret_key
        return None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        d["credentials"] = [c.to_dict() for c in self.credentials]
        d["adopt_prefixes"] = list(self.adopt_prefixes)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> S3Settings:
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise ConfigError("the s3 config section must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown s3 field(s): {', '.join(sorted(unknown))}")
        kw = dict(d)
        creds = kw.get("credentials", [])
        if not isinstance(creds, list):
            raise ConfigError("s3.credentials must be a list")
        kw["credentials"] = [S3Credential.from_dict(c) for c in creds]
        if not isinstance(kw.get("allow_anonymous", False), bool):
            raise ConfigError("s3.allow_anonymous must be true or false")
        for name in ("listen", "region"):
            if name in kw and not isinstance(kw[name], str):
                raise ConfigError(f"s3.{name} must be a string")
        return cls(**kw)


def add_node_credential(conf_dir: Path) -> S3Credential:
    """Add a new random credential to the s3 section of a node's config.json (0600)."""
    path = conf_dir / CONFIG_FILE
    data = read_json(path)
    section = dict(data.get("s3") or {})
    cred = new_credential()
    section["credentials"] = [*section.get("credentials", []), cred.to_dict()]
    S3Settings.from_dict(section)  # refuse to write a section the node would reject
    data["s3"] = section
    write_config(path, data)
    return cred
