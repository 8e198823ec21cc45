"""Node and client configuration: schema, validation, load and save.

A node or client is a directory (``--conf=DIR``) holding ``config.json`` plus the files
it names: the identity key, the token, the cached cluster map and (for nodes) the data.
Field names follow go-ds-cluster where the meaning is the same (identity,
addresses.swarm, bootstrap_node, disable_delete, read_only_client). Every file carries
``version``; older versions are migrated forward when read (there is only version 1
so far).
"""

from __future__ import annotations

import json
import os
import random
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .identity import fsync_directory, read_private_file, write_private_file
from .limits import ConnectionLimits, Limits
from .logs import LOG_FORMATS
from .net.addrs import check_announce_host

# the one list of store backends (dscluster.store opens them)
STORE_KINDS = ("flatfs", "leveldb", "mongo", "memory")
CONFIG_VERSION = 1
CONFIG_FILE = "config.json"
IDENTITY_FILE = "identity.key"
MAP_FILE = "clustermap.json"
LOG_LEVELS = ("debug", "info", "warning", "error")


# where free_tcp_port looks first: registered ports, below the kernel's ephemeral range
_FIXED_PORTS = (10000, 32768)
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (dscfg fixes ports at generation time).

    Picked at random below the kernel's ephemeral range rather than by binding port 0:
    the kernel hands out ephemeral ports to every outgoing connection too, so a port it
    chose can be some connection's source port (or another new node's pick) by the time
    the node binds it, while a random port below that range stays free unless someone
    picks the very same one."""
    low, high = _FIXED_PORTS
    try:
        first = int(_EPHEMERAL_RANGE.read_text().split()[0])
        high = min(high, first)
    except (OSError, ValueError, IndexError):
        pass
    rnd = random.SystemRandom()
    for _ in range(64):
        port = rnd.randrange(low, high) if high > low else 0
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class StoreConfig:
    type: str = "flatfs"
    path: str = "data"
    sync: bool = True
    mongodb_uri: str | None = None
    mongodb_database: str | None = None  # None: the URI's database, else "dscluster"

    def __post_init__(self) -> None:
        if self.type not in STORE_KINDS:
            raise ConfigError(
                f"store.type {self.type!r} is not one of {', '.join(STORE_KINDS)}"
            )
        if self.type == "mongo" and not self.mongodb_uri:
            raise ConfigError("store.type mongo needs store.mongodb_uri (or --mongodb URI)")


@dataclass
class Timeouts:
    connect: float = 5.0
    request: float = 30.0

    def __post_init__(self) -> None:
        if self.connect <= 0 or self.request <= 0:
            raise ConfigError("timeouts must be positive numbers of seconds")


def _section(cls: type, d: Any, name: str) -> Any:
    if d is None:
        return cls()
    if not isinstance(d, dict):
        raise ConfigError(f"{name} must be an object")
    try:
        return cls(**d)
    except TypeError as e:
        raise ConfigError(f"invalid {name} section: {e}") from None


@dataclass
class NodeConfig:
    peer_id: str
    swarm: list[str]
    lane: str | None = None
    # what peers are told to dial instead of the listen addresses' host (bind 0.0.0.0)
    announce_host: str | None = None
    bootstrap_node: bool = False
    bootstrapper: str | None = None
    # None: a new member whose index the bootstrapper has yet to assign (it is recorded
    # here once it has), so that a restart after a failed join joins again
    member_index: int | None = 0
    # joining in the place of dead member ``member_index``; cleared once it has
    replacing: bool = False
    store: StoreConfig = field(default_factory=StoreConfig)
    limits: Limits = field(default_factory=Limits)
    timeouts: Timeouts = field(default_factory=Timeouts)
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    disable_delete: bool = False
    log_level: str = "info"
    log_format: str = "text"
    # HOST:PORT of /metrics, /healthz and /readyz (health.py); None: not served
    metrics_listen: str | None = None
    s3: dict[str, Any] | None = None
    key_file: str = IDENTITY_FILE
    token_file: str = "node.token"
    map_file: str = MAP_FILE

    def __post_init__(self) -> None:
        if not self.swarm:
            raise ConfigError("addresses.swarm must list at least one multiaddr")
        if not self.bootstrap_node and not self.bootstrapper:
            raise ConfigError("a node that is not the bootstrapper needs bootstrap_address")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"log_format must be one of {', '.join(LOG_FORMATS)}")
        if self.member_index is None:
            if self.bootstrap_node:
                raise ConfigError("the bootstrapper is member 0: identity.index must be 0")
        elif self.member_index < 0:
            raise ConfigError("identity.index must not be negative")
        if self.replacing and self.member_index is None:
            raise ConfigError("identity.replace needs the index of the node to replace")
        if self.replacing and self.bootstrap_node:
            raise ConfigError("the bootstrapper replaces no other node (identity.replace)")
        check_announce_host(self.announce_host)

    @property
    def placed(self) -> bool:
        """Whether the node has its place in the map: not a new member still waiting
        for its index, nor a replacement not yet accepted."""
        return self.member_index is not None and not self.replacing

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "version": CONFIG_VERSION,
            "identity": {"peer_id": self.peer_id, "key_file": self.key_file,
                         "index": self.member_index,
                         **({"replace": True} if self.replacing else {})},
            "addresses": {"swarm": self.swarm, "lane": self.lane,
                          **({"announce_host": self.announce_host}
                             if self.announce_host else {})},
            "bootstrap_node": self.bootstrap_node,
            "bootstrap_address": self.bootstrapper,
            "token_file": self.token_file,
            "cluster_map_file": self.map_file,
            "store": vars(self.store),
            "limits": self.limits.to_dict(),
            "timeouts": vars(self.timeouts),
            "connections": self.connections.to_dict(),
            "disable_delete": self.disable_delete,
            "log_level": self.log_level,
            "log_format": self.log_format,
        }
        if self.metrics_listen is not None:
            d["metrics_listen"] = self.metrics_listen
        if self.s3 is not None:
            d["s3"] = self.s3
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NodeConfig:
        _check_version(d, "node")
        try:
            ident = d["identity"]
            return cls(
                peer_id=str(ident["peer_id"]),
                key_file=str(ident.get("key_file", IDENTITY_FILE)),
                member_index=None if (i := ident.get("index", 0)) is None else int(i),
                replacing=bool(ident.get("replace", False)),
                swarm=[str(a) for a in d["addresses"]["swarm"]],
                lane=d["addresses"].get("lane"),
                announce_host=d["addresses"].get("announce_host"),
                bootstrap_node=bool(d.get("bootstrap_node", False)),
                bootstrapper=d.get("bootstrap_address"),
                token_file=str(d.get("token_file", "node.token")),
                map_file=str(d.get("cluster_map_file", MAP_FILE)),
                store=_section(StoreConfig, d.get("store"), "store"),
                limits=Limits.from_dict(d.get("limits")),
                timeouts=_section(Timeouts, d.get("timeouts"), "timeouts"),
                connections=ConnectionLimits.from_dict(d.get("connections")),
                disable_delete=bool(d.get("disable_delete", False)),
                log_level=str(d.get("log_level", "info")),
                log_format=str(d.get("log_format", "text")),
                metrics_listen=d.get("metrics_listen"),
                s3=d.get("s3"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"invalid node config: missing or bad field {e}") from None


@dataclass
class ClientConfig:
    peer_id: str
    bootstrapper: str
    read_only_client: bool = False
    data_lane: bool = True
    limits: Limits = field(default_factory=Limits)
    timeouts: Timeouts = field(default_factory=Timeouts)
    key_file: str = IDENTITY_FILE
    token_file: str = "client.token"
    map_file: str = MAP_FILE

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": CONFIG_VERSION,
            "identity": {"peer_id": self.peer_id, "key_file": self.key_file},
            "bootstrap_address": self.bootstrapper,
            "read_only_client": self.read_only_client,
            "data_lane": self.data_lane,
            "token_file": self.token_file,
            "cluster_map_file": self.map_file,
            "limits": self.limits.to_dict(),
            "timeouts": vars(self.timeouts),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClientConfig:
        _check_version(d, "client")
        try:
            return cls(
                peer_id=str(d["identity"]["peer_id"]),
                key_file=str(d["identity"].get("key_file", IDENTITY_FILE)),
                bootstrapper=str(d["bootstrap_address"]),
                read_only_client=bool(d.get("read_only_client", False)),
                data_lane=bool(d.get("data_lane", True)),
                token_file=str(d.get("token_file", "client.token")),
                map_file=str(d.get("cluster_map_file", MAP_FILE)),
                limits=Limits.from_dict(d.get("limits")),
                timeouts=_section(Timeouts, d.get("timeouts"), "timeouts"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"invalid client config: missing or bad field {e}") from None


def _check_version(d: Any, what: str) -> None:
    if not isinstance(d, dict):
        raise ConfigError(f"{what} config must be a JSON object")
    v = d.get("version")
    if v != CONFIG_VERSION:
        raise ConfigError(
            f"{what} config version {v!r} is not supported (this dscluster reads "
            f"version {CONFIG_VERSION})"
        )


def read_json(path: Path, *, private: bool = False) -> dict[str, Any]:
    """A JSON object from ``path``; ``private``: refused if other users may access it."""
    try:
        raw = read_private_file(path, "config") if private else path.read_bytes()
        data = json.loads(raw)
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON text: {e}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return data


def write_config(path: Path, data: dict[str, Any]) -> None:
    """Config files may hold S3 secrets, so they are private files too."""
    write_private_file(path, (json.dumps(data, indent=2) + "\n").encode())


def load_node_config(conf_dir: Path) -> NodeConfig:
    # a node's config may hold S3 secrets, so it is held to the rule of the token files
    data = read_json(conf_dir / CONFIG_FILE, private=True)
    if "addresses" not in data and "read_only_client" in data:
        raise ConfigError(f"{conf_dir} is a client's directory; give a node's directory")
    return NodeConfig.from_dict(data)


def load_client_config(conf_dir: Path) -> ClientConfig:
    # a client's config names its key and token files but holds no secret itself
    data = read_json(conf_dir / CONFIG_FILE)
    if "addresses" in data:
        raise ConfigError(f"{conf_dir} is a node's directory; give a client's directory")
    return ClientConfig.from_dict(data)


def save_node_config(conf_dir: Path, cfg: NodeConfig) -> None:
    write_config(conf_dir / CONFIG_FILE, cfg.to_dict())


def record_member_index(conf_dir: Path, index: int) -> None:
    """Write the member index a node joined as into its config.json (and drop the
    ``replace`` mark). The file's other fields stay as they are on disk: the running
    config also holds the command line's overrides, which must not become permanent."""
    path = conf_dir / CONFIG_FILE
    data = read_json(path, private=True)
    ident = data.get("identity")
    if not isinstance(ident, dict):
        raise ConfigError(f"{path} has no identity section")
    ident["index"] = index
    ident.pop("replace", None)
    write_config(path, data)
    # the rename must survive a power cut too: a node that lost its index could only
    # start once the bootstrapper answers its join again (with the same index)
    fsync_directory(conf_dir)


def resolve(conf_dir: Path, name: str) -> Path:
    p = Path(os.path.expanduser(name))
    return p if p.is_absolute() else conf_dir / p
