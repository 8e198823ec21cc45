"""Opening a cluster from a client directory (``dsclient --conf=DIR``).

A client starts from its cached map when it has one — so it keeps working while the
bootstrapper is down — and fetches the map from the bootstrapper when it has none.
Redirects and unreachable nodes refresh the map on demand (see datastore.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from ..auth import Token
from ..cluster.caller import MemberCaller
from ..cluster.state import ClusterState
from ..clustermap import ClusterMap
from ..config import CONFIG_FILE, ClientConfig, load_client_config, resolve
from ..errors import ConfigError
from ..identity import Identity
from ..net.addrs import split_p2p_maddr
from ..net.pool import ChannelPool
from ..net.transport import open_transport
from .datastore import ClusterDatastore


def _placeholder_map() -> ClusterMap:
    # epoch 0 sorts below every real map, so the first fetched map always replaces it
    m = ClusterMap.initial(1)
    return ClusterMap(0, m.members, m.owners)


@asynccontextmanager
async def open_cluster(conf_dir: Path) -> AsyncIterator[ClusterDatastore]:
    if not (conf_dir / CONFIG_FILE).exists():
        raise ConfigError(
            f"{conf_dir} is not a client directory (no {CONFIG_FILE}); create it with: "
            f"dsclient --conf={conf_dir} init --bootstrapper=MADDR --token-file=FILE"
        )
    cfg: ClientConfig = load_client_config(conf_dir)
    ident = Identity.load(resolve(conf_dir, cfg.key_file))
    if ident.peer_id != cfg.peer_id:
        raise ConfigError(f"{conf_dir}: identity key does not match identity.peer_id")
    token = Token.load(resolve(conf_dir, cfg.token_file))
    if token.role == "node":
        raise ConfigError("a client must use a client, readonly or admin token, not the node "
                          "token")
    boot_addr, boot_peer = split_p2p_maddr(cfg.bootstrapper)
    map_path = resolve(conf_dir, cfg.map_file)
    cached = ClusterMap.load(map_path) if map_path.exists() else None
    state = ClusterState(cached or _placeholder_map(), map_path)
    async with open_transport(ident, use_lane=cfg.data_lane,
                              connect_timeout=cfg.timeouts.connect) as transport:
        pool = ChannelPool(transport, token, cfg.limits)
        caller = MemberCaller(pool, state, bootstrapper=(boot_peer, [boot_addr]),
                              request_timeout=cfg.timeouts.request)
        ds = ClusterDatastore(caller, limits=cfg.limits)
        try:
            if cached is None:
                await ds.refresh_map()
            yield ds
        finally:
            with trio.CancelScope(shield=True):
                await ds.close()
