"""`dscfg`: generate cluster, node and client configuration."""

from __future__ import annotations

from pathlib import Path

import click

from dscluster.auth import CLIENT_ROLES
from dscluster.cliutil import run_cli
from dscluster.cluster.placement import check_replication, default_replication
from dscluster.config import STORE_KINDS, StoreConfig
from dscluster.errors import ConfigError
from dscluster.provision import create_client, create_cluster, token_from
from dscluster.s3.settings import new_credential

from .s3 import register as register_s3_commands


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Generate dscluster configuration."""


@main.command()
@click.option("--cluster-node-number", "-n", "node_count", type=click.IntRange(1, 16384),
              required=True, help="How many data nodes the cluster has.")
@click.option("--replication-factor", "--replicas", "replication", type=int,
              help="Copies of every key, each on another node (1 to N). Default: min(3, N).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="IP address the bootstrapper listens on (and announces, unless "
                   "--announce-host).")
@click.option("--port", type=click.IntRange(1, 65535), help="Default: a free port.")
@click.option("--announce-host", metavar="IP",
              help="The address the other nodes and clients reach the bootstrapper at, "
                   "when it differs from --host (e.g. --host 0.0.0.0).")
@click.option("--store", type=click.Choice([k for k in STORE_KINDS if k != "memory"]),
              default="flatfs", show_default=True)
@click.option("--mongodb", "mongodb_uri", help="MongoDB URI for --store mongo.")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.pass_context
def cluster(ctx: click.Context, node_count: int, replication: int | None, host: str,
            port: int | None, announce_host: str | None, store: str,
            mongodb_uri: str | None, directory: Path) -> None:
    """Create a new cluster: the bootstrapper's DIRECTORY and the join tokens."""
    if replication is None:
        replication = default_replication(node_count)
    try:
        check_replication(node_count, replication)
    except ConfigError as e:
        # the valid range depends on -n, which click's IntRange cannot express
        raise click.BadParameter(str(e), ctx, param_hint="'--replication-factor'") from None
    # one S3 credential, so the bootstrapper's gateway works as soon as it is switched on
    s3 = {"credentials": [new_credential().to_dict()]}
    files = create_cluster(directory, node_count, replication=replication, host=host,
                           port=port, announce_host=announce_host,
                           store=StoreConfig(type=store, mongodb_uri=mongodb_uri),
                           s3=s3)
    # stdout stays the bootstrapper's address alone: scripts read it
    click.echo(files.bootstrapper)
    copies = "one copy" if replication == 1 else f"{replication} copies"
    click.echo(f"""
A {node_count}-node cluster, {copies} of every key: {directory} is node 0 and the bootstrapper.
Tokens (keep them private; mode 0600):
  {files.node_token}      for data nodes that join
  {files.client_token}    for read-write clients
  {files.readonly_token}  for read-only clients
  {files.admin_token}     for operators: a client that may also rebalance and remove nodes
Start it:
  dscluster --conf={directory}
  dscluster --conf=./srv02 --bootstrapper={files.bootstrapper} --identity=1 \\
            --token-file={files.node_token}
  (a node added later joins the same way without --identity, through any live member)
  dsclient --conf=./cli init --bootstrapper={files.bootstrapper} \\
           --token-file={files.client_token}""", err=True)


@main.command()
@click.option("--bootstrapper", required=True, help="Bootstrapper multiaddr.")
@click.option("--token-file", type=click.Path(path_type=Path, dir_okay=False),
              help="Client, read-only or admin token (or DSCLUSTER_TOKEN / "
                   "DSCLUSTER_TOKEN_FILE).")
@click.argument("path", type=click.Path(path_type=Path))
def client(bootstrapper: str, token_file: Path | None, path: Path) -> None:
    """Create a client configuration at PATH (a directory, or DIR/config.json)."""
    token = token_from(token_file, CLIENT_ROLES)
    cfg = create_client(path, bootstrapper=bootstrapper, token=token)
    kind = {"readonly": "read-only", "admin": "admin"}.get(token.role, "read-write")
    click.echo(f"{kind} client {cfg.peer_id} written to {path}")


register_s3_commands(main)


def entry() -> None:
    run_cli(main, "dscfg")
