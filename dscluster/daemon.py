"""Running one data node, the composition root: config -> identity, store, transport,
request server (node/), member caller and membership (cluster/), S3 gateway (s3/).

It sits above every layer, so node/ keeps only the request server and no layer imports
one above it.

Everything runs in one nursery owned by ``run_node``; SIGINT/SIGTERM cancel it, and the
store is closed (shielded) on the way out so that it is marked cleanly shut down.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import trio

from .auth import Token
from .client.datastore import ClusterDatastore
from .cluster.bootstrapper import Bootstrapper
from .cluster.caller import MemberCaller
from .cluster.credentials import CredentialBook
from .cluster.handoff import follow_handoffs
from .cluster.liveness import Liveness
from .cluster.membership import Membership
from .cluster.rebalance import JOB_FILE, Coordinator
from .cluster.repair import AntiEntropy
from .cluster.replica import ReplicaStore
from .cluster.rotation import SecretRotation
from .cluster.state import ClusterState
from .clustermap import JOINED, ClusterMap
from .config import NodeConfig, record_member_index, resolve
from .errors import ConfigError
from .health import serve_health
from .identity import Identity
from .keyring import Keyring
from .keys import SLOT_COUNT
from .limits import fd_budget, fd_share
from .logs import quiet_resource_errors
from .metrics import NodeMetrics
from .net.addrs import announced, split_p2p_maddr
from .net.pool import ChannelPool
from .net.transport import open_transport
from .node.server import NodeServer
from .store import open_store

log = logging.getLogger("dscluster.node")
JOIN_DEADLINE = 30.0
# how long a restarted node waits to re-announce itself before it serves from its cached
# map: long enough for a reachable bootstrapper to refuse a node that was replaced
# meanwhile, short enough that a bootstrapper that is down barely delays the restart
REJOIN_AT_START = 2.0
RECORDS_DIR = "records"


async def run_node(conf_dir: Path, cfg: NodeConfig) -> None:
    ident = Identity.load(resolve(conf_dir, cfg.key_file))
    peer_id = ident.peer_id
    if peer_id != cfg.peer_id:
        raise ConfigError(f"{conf_dir}: identity key does not match identity.peer_id")
    token_path = resolve(conf_dir, cfg.token_file)
    token = Token.load(token_path)
    if token.role != "node":
        raise ConfigError(
            f"a node needs the node token; {cfg.token_file} holds a {token.role} token")
    # the secret and, after a rotation, the previous one (keyring.py)
    keyring = Keyring.load(token_path)
    map_path = resolve(conf_dir, cfg.map_file)
    cached = ClusterMap.load(map_path) if map_path.exists() else None
    if cfg.bootstrap_node and cached is None:
        raise ConfigError(f"the bootstrapper needs its cluster map at {map_path}")

    # before binding anything: a node that would announce 0.0.0.0 cannot serve anyone
    announced([*cfg.swarm, *([cfg.lane] if cfg.lane else [])], cfg.announce_host)
    quiet_resource_errors()
    signals: list[int] = []  # the signal that stopped the node, once one did
    # every connection cap is sized below the descriptor limit (limits.fd_budget)
    fds = fd_budget()
    lane_caps = cfg.connections.within(fd_share("lane", fds))
    p2p_caps = cfg.connections.within(fd_share("libp2p", fds))
    log.info("%d file descriptors; connections admitted: data lane %d unauthenticated "
             "(%d per address) + %d authenticated, libp2p %d (%d) + %d", fds,
             lane_caps.unauthenticated, lane_caps.unauthenticated_per_source,
             lane_caps.authenticated, p2p_caps.unauthenticated,
             p2p_caps.unauthenticated_per_source, p2p_caps.authenticated)

    store = await open_store(cfg.store.type, resolve(conf_dir, cfg.store.path), sync=cfg.store.sync,
                       mongodb_uri=cfg.store.mongodb_uri,
                       mongodb_database=cfg.store.mongodb_database)
    try:
        # versions and tombstones, beside the store whatever its kind (a memory store's
        # records live and die with it)
        records = None if cfg.store.type == "memory" else resolve(conf_dir, RECORDS_DIR)
        restarted = records is not None and records.exists()
        replica = await ReplicaStore.open(store, records, sync=cfg.store.sync)
    except BaseException:
        with trio.CancelScope(shield=True):
            await store.close()
        raise
    try:
        async with open_transport(ident, listen=cfg.swarm, lane=cfg.lane,
                                  connect_timeout=cfg.timeouts.connect,
                                  lane_connections=lane_caps,
                                  libp2p_connections=p2p_caps) as transport:
            addrs = announced(transport.listen_addrs(), cfg.announce_host)
            pool = ChannelPool(transport, keyring.node_token, cfg.limits)
            membership: Membership | None = None
            rejoin = False
            on_join = None
            boot: Bootstrapper | None = None
            if cfg.bootstrap_node:
                assert cached is not None and cfg.member_index is not None
                state = ClusterState(cached, map_path)
                boot = Bootstrapper(state, cfg.member_index)
                boot.claim(cfg.member_index, peer_id, tuple(addrs))
                on_join = boot.on_join
                boot_contact: tuple[str, Sequence[str]] = (peer_id, addrs)
            else:
                assert cfg.bootstrapper is not None
                # any live member: Membership finds the bootstrapper through it
                baddr, bpeer = split_p2p_maddr(cfg.bootstrapper)
                boot_contact = (bpeer, [baddr])
                # a pool of its own, dialling libp2p addresses only: joins are refused
                # over the data lane, which the caller's pooled channels may use
                membership = Membership(ChannelPool(transport, keyring.node_token, cfg.limits),
                                        boot_contact, peer_id, cfg.member_index, addrs,
                                        cfg.timeouts.request, replace=cfg.replacing)
                if cfg.placed and _listed(cached, cfg.member_index, peer_id, addrs):
                    assert cached is not None
                    state = ClusterState(cached, map_path)
                    rejoin = not await membership.rejoin_soon(state, REJOIN_AT_START)
                else:
                    state = ClusterState(await membership.join(JOIN_DEADLINE), map_path)
                    state.map.save(map_path)
                    assert membership.index is not None
                    if not cfg.placed:
                        record_member_index(conf_dir, membership.index)
                        log.info("joined as node %d%s", membership.index,
                                 " in the place of a dead node" if cfg.replacing else "")
                        cfg.member_index, cfg.replacing = membership.index, False

            liveness = Liveness()
            metrics = NodeMetrics()
            metrics.store, metrics.replica = store, replica
            metrics.admissions = {"lane": transport.lane.admission,
                                  "libp2p": (await transport.libp2p()).admission}
            server = NodeServer(replica=replica, state=state, member_index=cfg.member_index,
                                peer_id=peer_id, secret=keyring, limits=cfg.limits,
                                disable_delete=cfg.disable_delete, on_join=on_join,
                                liveness=liveness, metrics=metrics)
            transport.set_handler(server.handle_stream)
            caller = MemberCaller(pool, state, bootstrapper=boot_contact,
                                  request_timeout=cfg.timeouts.request,
                                  local=(cfg.member_index, server.answer_local),
                                  liveness=liveness)
            if boot is not None:
                boot.caller = caller  # to check that a node to be replaced is dead
            server.anti_entropy = anti_entropy = AntiEntropy(replica, caller, cfg.member_index,
                                                              limits=cfg.limits,
                                                              restarted=restarted)
            metrics.anti_entropy = anti_entropy
            ds = ClusterDatastore(caller, limits=cfg.limits, writer=peer_id)
            server.credentials = credentials = CredentialBook(ds, keyring)
            # its own pool: it dials libp2p addresses only (rotation.py)
            server.rotation = rotation = SecretRotation(
                keyring, ds, caller, ChannelPool(transport, keyring.node_token, cfg.limits),
                cfg.member_index, credentials.reload)
            coordinator = (Coordinator(state, caller, cfg.member_index,
                                       map_path.with_name(JOB_FILE))
                           if cfg.bootstrap_node else None)
            if coordinator is not None:
                server.on_rebalance = coordinator.handle
            async with trio.open_nursery() as nursery:
                nursery.start_soon(caller.watch)
                nursery.start_soon(anti_entropy.run)
                nursery.start_soon(credentials.follow)
                nursery.start_soon(rotation.follow)
                nursery.start_soon(follow_handoffs, replica, state, cfg.member_index)
                if coordinator is not None:
                    nursery.start_soon(coordinator.run)
                if membership is not None:
                    # after a restart from the cache, announce ourselves again if that
                    # could not be done before serving
                    nursery.start_soon(lambda: membership.follow(state, rejoin=rejoin))
                    nursery.start_soon(membership.guard, state)
                if cfg.metrics_listen:
                    bound = await nursery.start(
                        serve_health, cfg.metrics_listen, metrics,
                        lambda: _unready(state, cfg.member_index, anti_entropy))
                    log.info("metrics and health on http://%s", bound)
                if cfg.s3 and cfg.s3.get("listen"):
                    await _start_s3(nursery, ds, credentials, cfg, metrics)
                nursery.start_soon(_stop_on_signal, nursery.cancel_scope, signals)
                log.info(
                    "node %d ready: %s/p2p/%s, slots %s, store %s, map epoch %d",
                    cfg.member_index, addrs[0], peer_id,
                    state.map.describe_ranges(cfg.member_index), store.kind, state.epoch,
                )
    finally:
        with trio.CancelScope(shield=True):
            await replica.close()
        # %s: a new member that failed to join has no index yet
        log.info("node %s stopped", "(new)" if cfg.member_index is None else cfg.member_index)
    if signal.SIGINT in signals:
        # stopped cleanly, but by Ctrl-C: the shell expects 130 (cliutil.run_cli)
        raise KeyboardInterrupt


def _unready(state: ClusterState, index: int, anti_entropy: AntiEntropy) -> str | None:
    """Why the node cannot serve its slots yet (/readyz), or None."""
    cmap = state.map
    if not any(cmap.owns(index, s) for s in range(SLOT_COUNT)):  # stops at the first
        return f"node {index} owns no slots in map epoch {cmap.epoch}"
    # catching_up only ever holds slots this node owns
    behind = anti_entropy.catching_up(range(SLOT_COUNT))
    if behind is not None:
        return f"catching up: slot {behind} not yet compared with its other owners"
    return None


async def _start_s3(nursery: trio.Nursery, ds: ClusterDatastore, credentials: CredentialBook,
                    cfg: NodeConfig, metrics: NodeMetrics) -> None:
    # imported here so a node without a gateway does not load the HTTP stack
    from .s3.server import serve_s3
    from .s3.settings import S3Settings

    settings = S3Settings.from_dict(cfg.s3)
    # an object stored as one value must fit in one value of this cluster
    settings.max_value_size = min(settings.max_value_size, cfg.limits.max_value_bytes)
    bound = await nursery.start(partial(serve_s3, ds, settings, metrics=metrics,
                                        credentials=credentials))
    log.info("S3 gateway listening on http://%s", bound)


async def _stop_on_signal(scope: trio.CancelScope, received: list[int]) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for sig in signals:
            log.info("received %s, shutting down", signal.Signals(sig).name)
            received.append(sig)
            scope.cancel()
            return


def _listed(cmap: ClusterMap | None, index: int | None, peer_id: str,
            addrs: Sequence[str]) -> bool:
    """Whether ``cmap`` lists this node as joined member ``index`` at ``addrs``: then it
    can serve from the map at once (the weight is the operator's and may differ)."""
    if cmap is None or index is None or index >= len(cmap.members):
        return False
    m = cmap.members[index]
    return (m.peer_id, m.addrs, m.state) == (peer_id, tuple(addrs), JOINED)
