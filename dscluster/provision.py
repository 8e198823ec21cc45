"""Creating node, cluster and client directories (used by dscfg, dscluster, dsclient).

Each directory gets its own fresh Ed25519 identity, written 0600 where it will be used;
tokens are copied into the directory that needs them, 0600 as well.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from .auth import Token, new_secret
from .cluster.placement import default_replication
from .clustermap import JOINED, ClusterMap, Member
from .config import (
    CONFIG_FILE,
    ClientConfig,
    NodeConfig,
    StoreConfig,
    free_tcp_port,
    resolve,
    save_node_config,
    write_config,
)
from .errors import ConfigError
from .identity import Identity
from .net.addrs import announced, parse_maddr, split_p2p_maddr

TOKEN_ENV = "DSCLUSTER_TOKEN"
TOKEN_FILE_ENV = "DSCLUSTER_TOKEN_FILE"


@dataclass(frozen=True)
class ClusterFiles:
    bootstrapper: str  # full multiaddr with /p2p/<id>
    node_token: Path
    client_token: Path
    readonly_token: Path
    admin_token: Path


def _fresh_dir(d: Path) -> None:
    if (d / CONFIG_FILE).exists():
        raise ConfigError(f"{d} already holds a configuration; choose an empty directory")
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)


def _listen_addr(host: str, port: int | None) -> str:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"--host must be an IP address, got {host!r}") from None
    proto = "ip4" if ip.version == 4 else "ip6"
    return f"/{proto}/{host}/tcp/{port or free_tcp_port(host)}"


def _lane_addr(swarm: str) -> str:
    """A data lane on the swarm address's host, on a free port."""
    proto, host = swarm.strip("/").split("/")[:2]
    return f"/{proto}/{host}/tcp/{free_tcp_port(host)}/tls"


def create_cluster(d: Path, node_count: int, *, replication: int | None = None,
                   host: str = "127.0.0.1", port: int | None = None,
                   announce_host: str | None = None,
                   store: StoreConfig | None = None, s3: dict | None = None) -> ClusterFiles:
    """The bootstrapper's directory: its identity, the secret's tokens, the first map
    (``replication`` copies of every slot; None: ``default_replication``)."""
    if replication is None:
        replication = default_replication(node_count)
    # before anything is written: a refused factor leaves no half-made directory
    cmap = ClusterMap.initial(node_count, replication)
    swarm = _listen_addr(host, port)
    (public,) = announced([swarm], announce_host)  # what the others dial
    _fresh_dir(d)
    ident = Identity.generate()
    peer = ident.peer_id
    lane = _lane_addr(swarm)
    secret = new_secret()
    files = ClusterFiles(f"{public}/p2p/{peer}", d / "node.token", d / "client.token",
                         d / "readonly.token", d / "admin.token")
    ident.save(d / "identity.key")
    for role, path in (("node", files.node_token), ("client", files.client_token),
                       ("readonly", files.readonly_token), ("admin", files.admin_token)):
        Token.for_role(secret, role).save(path)
    cmap = ClusterMap(cmap.epoch, (Member(0, peer, (public,), JOINED), *cmap.members[1:]),
                      cmap.owners, cmap.replication)
    cmap.save(d / "clustermap.json")
    save_node_config(d, NodeConfig(peer_id=peer, swarm=[swarm], lane=lane,
                                   announce_host=announce_host, bootstrap_node=True,
                                   member_index=0, store=store or StoreConfig(), s3=s3))
    return files


def token_from(token_file: Path | None, expect: tuple[str, ...]) -> Token:
    """The token given by flag, or DSCLUSTER_TOKEN, or DSCLUSTER_TOKEN_FILE."""
    if token_file is not None:
        tok = Token.load(token_file)
    elif os.environ.get(TOKEN_ENV):
        tok = Token.parse(os.environ[TOKEN_ENV])
    elif os.environ.get(TOKEN_FILE_ENV):
        tok = Token.load(Path(os.environ[TOKEN_FILE_ENV]))
    else:
        raise ConfigError(
            f"a {' or '.join(expect)} token is needed: pass --token-file FILE or set "
            f"{TOKEN_ENV} / {TOKEN_FILE_ENV} (dscfg cluster wrote the tokens next to "
            "the bootstrapper's config)"
        )
    if tok.role not in expect:
        got = "an admin" if tok.role == "admin" else f"a {tok.role}"
        raise ConfigError(f"this needs a {' or '.join(expect)} token, got {got} token")
    return tok


def create_joining_node(d: Path, *, bootstrapper: str, index: int | None, token: Token,
                        replace: bool = False, listen: str | None = None,
                        announce_host: str | None = None,
                        store: StoreConfig | None = None) -> NodeConfig:
    """A node directory that joins through ``bootstrapper`` (any live member's multiaddr)
    at its first start: as member ``index``; as a new member when ``index`` is None (the
    bootstrapper assigns the index, which the node then records); with ``replace``, in
    the place of dead member ``index``."""
    split_p2p_maddr(bootstrapper)  # validate before writing anything
    if replace and index is None:
        raise ConfigError("replacing a node needs the index of the node it replaces")
    if listen is None:
        host = parse_maddr(bootstrapper).value_for_protocol("ip4")
        if host is None or not ipaddress.ip_address(host).is_loopback:
            raise ConfigError(
                "the member given by --bootstrapper is not on this machine's loopback; "
                "give --listen /ip4/<this host's address>/tcp/<port> so other nodes can "
                "reach this one"
            )
        listen = _listen_addr(host, None)
    parse_maddr(listen)
    announced([listen], announce_host)
    _fresh_dir(d)
    ident = Identity.generate()
    ident.save(d / "identity.key")
    token.save(d / "node.token")
    cfg = NodeConfig(peer_id=ident.peer_id, swarm=[listen], lane=_lane_addr(listen),
                     announce_host=announce_host, bootstrapper=bootstrapper,
                     member_index=index, replacing=replace, store=store or StoreConfig())
    save_node_config(d, cfg)
    return cfg


def create_client(path: Path, *, bootstrapper: str, token: Token) -> ClientConfig:
    """A client directory; ``path`` is the directory or its config.json."""
    d = path.parent if path.suffix == ".json" else path
    split_p2p_maddr(bootstrapper)
    _fresh_dir(d)
    ident = Identity.generate()
    ident.save(d / "identity.key")
    token_name = f"{token.role}.token"
    token.save(d / token_name)
    cfg = ClientConfig(peer_id=ident.peer_id, bootstrapper=bootstrapper,
                       read_only_client=token.role == "readonly", token_file=token_name)
    write_config(resolve(d, CONFIG_FILE), cfg.to_dict())
    return cfg
