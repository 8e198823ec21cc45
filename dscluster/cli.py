"""`dscluster`: run a data node.

    dscluster --conf=./srv01                                   # the bootstrapper
    dscluster --conf=./srv02 --bootstrapper=MADDR --identity=1 --token-file=./srv01/node.token
    dscluster --conf=./srv04 --bootstrapper=MADDR --token-file=./srv01/node.token  # new member
    dscluster --conf=./srv05 --bootstrapper=MADDR --replace=2 --token-file=./srv01/node.token
"""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import click
import trio

from .allocator import bound_malloc_arenas
from .cliutil import run_cli, setup_logging
from .config import (
    CONFIG_FILE,
    LOG_LEVELS,
    STORE_KINDS,
    NodeConfig,
    StoreConfig,
    load_node_config,
)
from .daemon import run_node
from .errors import ConfigError
from .logs import LOG_FORMATS, use_format
from .net.addrs import check_announce_host
from .provision import create_joining_node, token_from

CONF_ENV = "DSCLUSTER_CONF"


def _host_port(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    # here rather than when the gateway starts, after the node has joined the cluster
    if value is not None:
        from .s3.settings import parse_listen

        try:
            parse_listen(value)
        except ConfigError:
            raise click.BadParameter(
                f"{value!r} is not HOST:PORT or [IPv6]:PORT with a port 0-65535") from None
    return value


def _check_s3_listen(listen: str) -> None:
    """Bind the gateway's address once, as the gateway will (hypercorn reports a busy
    port without naming it, and only after the node has joined)."""
    from .s3.settings import parse_listen

    host, port = parse_listen(listen)
    if port == 0:
        return
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            # as hypercorn does: a port left in TIME_WAIT by a node that just stopped is free
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise ConfigError(f"the S3 gateway cannot listen on {listen}: {e.strerror or e}") \
            from None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--conf", "conf_dir", required=True, type=click.Path(path_type=Path),
              envvar=CONF_ENV, show_envvar=True,
              help="Node directory (config.json, identity, data).")
@click.option("--bootstrapper", metavar="MADDR",
              help="To join a cluster: the multiaddr (with /p2p/<peer id>) of the "
                   "bootstrapper or of any live member.")
@click.option("--identity", "index", type=click.IntRange(min=0), metavar="N",
              help="Join as member N of the map dscfg made (with --bootstrapper). "
                   "Without it (and without --replace) the node joins as a new member.")
@click.option("--replace", type=click.IntRange(min=0), metavar="N",
              help="Join in the place of member N, which died for good (its process is "
                   "stopped and its data lost); the new node is refilled from the other "
                   "owners.")
@click.option("--token-file", type=click.Path(path_type=Path, dir_okay=False),
              help="The node token (or set DSCLUSTER_TOKEN / DSCLUSTER_TOKEN_FILE).")
@click.option("--listen", help="Swarm multiaddr for a new node (default: a free loopback port).")
@click.option("--announce-host", metavar="IP",
              help="The address other nodes and clients reach this node at, when it "
                   "differs from the listen addresses' (e.g. --listen /ip4/0.0.0.0/…). "
                   "A new node keeps it in config.json (addresses.announce_host).")
@click.option("--store", type=click.Choice([k for k in STORE_KINDS if k != "memory"]),
              help="Store backend for a new node (default flatfs).")
@click.option("--mongodb", "mongodb_uri", help="MongoDB URI for --store mongo.")
@click.option("--s3-listen", callback=_host_port, metavar="HOST:PORT",
              help="Serve the S3 gateway on HOST:PORT ([IPv6]:PORT).")
@click.option("--log-level", type=click.Choice(LOG_LEVELS), help="Default: from config (info).")
@click.option("--log-format", type=click.Choice(LOG_FORMATS),
              help="text, or json: one object per line. Default: from config (text).")
@click.option("--metrics-listen", callback=_host_port, metavar="HOST:PORT",
              help="Serve /metrics (Prometheus), /healthz and /readyz on HOST:PORT.")
def main(conf_dir: Path, bootstrapper: str | None, index: int | None, replace: int | None,
         token_file: Path | None, listen: str | None, announce_host: str | None,
         store: str | None, mongodb_uri: str | None, s3_listen: str | None,
         log_level: str | None, log_format: str | None, metrics_listen: str | None) -> None:
    """Run a dscluster data node.

    \b
    The bootstrapper, in the directory dscfg cluster made:
      dscluster --conf=./srv01
    A new node joins with a new directory, the node token and --bootstrapper, the
    multiaddr of the bootstrapper or of any live member (a member's multiaddr is in
    its "ready:" log line):
      dscluster --conf=./srv02 --bootstrapper=MADDR --token-file=./srv01/node.token \\
                --identity=1     # member 1 of the map dscfg made
      dscluster --conf=./srv04 --bootstrapper=MADDR --token-file=./srv01/node.token
                                 # a new member, owning no slots until a rebalance
      dscluster --conf=./srv05 --bootstrapper=MADDR --token-file=./srv01/node.token \\
                --replace=2      # in the place of member 2, which died for good
    Afterwards `dscluster --conf=DIR` alone restarts it (and retries a join that failed).
    """
    if index is not None and replace is not None:
        raise click.UsageError("give --identity or --replace, not both")
    if not (conf_dir / CONFIG_FILE).exists():
        if bootstrapper is None:
            raise ConfigError(
                f"{conf_dir} has no {CONFIG_FILE}: create a cluster with 'dscfg cluster', or "
                "join one with --bootstrapper=MADDR (plus --identity=N or --replace=N)"
            )
        store_cfg = StoreConfig(type=store or "flatfs", mongodb_uri=mongodb_uri)
        create_joining_node(conf_dir, bootstrapper=bootstrapper,
                            index=replace if replace is not None else index,
                            replace=replace is not None,
                            token=token_from(token_file, ("node",)), listen=listen,
                            announce_host=announce_host, store=store_cfg)
    cfg = load_node_config(conf_dir)
    _check_place(conf_dir, cfg, index, replace)
    if store is not None and store != cfg.store.type:
        raise ConfigError(f"{conf_dir} uses the {cfg.store.type} store; it cannot switch to "
                          f"{store} (its data would be left behind)")
    if mongodb_uri is not None:
        cfg.store = dataclasses.replace(cfg.store, mongodb_uri=mongodb_uri)
    if bootstrapper is not None and not cfg.bootstrap_node:
        cfg.bootstrapper = bootstrapper
    if announce_host is not None:
        check_announce_host(announce_host)
        cfg.announce_host = announce_host
    if s3_listen is not None:
        cfg.s3 = {**(cfg.s3 or {}), "listen": s3_listen}
    if cfg.s3 and cfg.s3.get("listen"):
        _check_s3_listen(cfg.s3["listen"])
        if s3_listen is not None and not cfg.s3.get("credentials") \
                and not cfg.s3.get("allow_anonymous"):
            # a gateway nobody can sign requests for would refuse everything
            from .s3.settings import add_node_credential

            cred = add_node_credential(conf_dir)
            cfg.s3["credentials"] = [cred.to_dict()]
            # `dscfg s3-key list` shows access keys only: say where the secret is
            click.echo(f"dscluster: created S3 access key {cred.access_key}; its secret_key "
                       f"is in {conf_dir / CONFIG_FILE} (s3.credentials)", err=True)
    if metrics_listen is not None:
        cfg.metrics_listen = metrics_listen
    setup_logging(log_level or cfg.log_level)
    use_format(log_format or cfg.log_format)
    bound_malloc_arenas()  # before trio starts any worker thread
    trio.run(run_node, conf_dir, cfg)


def _check_place(conf_dir: Path, cfg: NodeConfig, index: int | None,
                 replace: int | None) -> None:
    """An existing directory keeps the place it was made for: the flags may repeat it,
    not change it."""
    if cfg.member_index is None:
        if index is not None or replace is not None:
            raise ConfigError(f"{conf_dir} joins as a new member (the bootstrapper picks its "
                              "index); start it without --identity and --replace")
        return
    if index is not None and (index != cfg.member_index or cfg.replacing):
        raise ConfigError(f"{conf_dir} is {_place(cfg)}, not identity {index}")
    if replace is not None and replace != cfg.member_index:
        raise ConfigError(f"{conf_dir} is {_place(cfg)}, not a replacement of node {replace}")


def _place(cfg: NodeConfig) -> str:
    if cfg.replacing:
        return f"the replacement of node {cfg.member_index} (not joined yet)"
    return f"identity {cfg.member_index}"


def entry() -> None:
    run_cli(main, "dscluster")
