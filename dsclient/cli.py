"""`dsclient`: the client CLI — raw keys, files, cluster status and repair."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import trio
from tqdm import tqdm

from dscluster.auth import CLIENT_ROLES
from dscluster.client.connect import open_cluster
from dscluster.client.datastore import ClusterDatastore
from dscluster.client.rebalance import ask_coordinator
from dscluster.client.repair import disagreeing_slots, repair_slots, slot_health
from dscluster.cliutil import run_cli, setup_logging, terminal_width, undone_on_failure
from dscluster.clustermap import RETIRED, ClusterMap
from dscluster.config import LOG_LEVELS
from dscluster.errors import DSClusterError
from dscluster.keys import SLOT_COUNT, Key, slot_of, slot_ranges
from dscluster.provision import create_client, token_from
from dscluster.query import Query

from .admin import register as register_admin_commands
from .dataset import import_dataset_command
from .files import parse_cid, print_directory
from .files import register as register_file_commands
from .gc import register as register_gc_commands
from .progress import human_bytes
from .rebalance import describe as describe_moves
from .rebalance import register as register_rebalance_commands
from .status import cluster_epoch, status_lines

T = TypeVar("T")
CONF_ENV = "DSCLIENT_CONF"


class ClientApp:
    """What every command gets as ``ctx.obj``: runs an async function with the cluster."""

    def __init__(self, conf_dir: Path) -> None:
        self.conf_dir = conf_dir

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        async def main() -> T:
            async with open_cluster(self.conf_dir) as ds:
                return await fn(ds, *args)

        return trio.run(main)


_CONF_TYPE = click.Path(path_type=Path, file_okay=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--conf", "conf_dir", type=_CONF_TYPE, default=Path("."), show_default=True,
              envvar=CONF_ENV, show_envvar=True,
              help="Client directory (also accepted after the command).")
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="warning",
              show_default=True, help="Logging on stderr.")
@click.pass_context
def main(ctx: click.Context, conf_dir: Path, log_level: str) -> None:
    """Use a dscluster cluster."""
    setup_logging(log_level)
    if ctx.obj is None:  # tests hand in an app of their own
        ctx.obj = ClientApp(conf_dir)


@main.command()
@click.option("--bootstrapper", required=True, help="Bootstrapper multiaddr.")
@click.option("--token-file", type=click.Path(path_type=Path, dir_okay=False),
              help="Client, read-only or admin token (or DSCLUSTER_TOKEN / "
                   "DSCLUSTER_TOKEN_FILE). An admin client may also change the cluster's "
                   "layout.")
@click.pass_obj
def init(app: ClientApp, bootstrapper: str, token_file: Path | None) -> None:
    """Create this client's directory and fetch the cluster map."""
    token = token_from(token_file, CLIENT_ROLES)

    async def fetch(ds: ClusterDatastore) -> int:
        return ds.state.epoch

    # a half-made directory would refuse the retry as taken
    with undone_on_failure(app.conf_dir):
        cfg = create_client(app.conf_dir, bootstrapper=bootstrapper, token=token)
        epoch = app.run(fetch)
    kind = {"readonly": "read-only", "admin": "admin"}.get(token.role, "read-write")
    click.echo(f"{kind} client {cfg.peer_id} initialised; cluster map epoch {epoch}")


@main.command()
@click.argument("key")
@click.argument("file", type=click.File("rb"), default="-")
@click.pass_obj
def put(app: ClientApp, key: str, file: Any) -> None:
    """Store FILE (default: stdin) as the value of KEY."""
    data = file.read()

    async def go(ds: ClusterDatastore) -> None:
        await ds.put(Key(key), data)

    app.run(go)


@main.command("get-key")
@click.argument("key")
@click.pass_obj
def get_key(app: ClientApp, key: str) -> None:
    """Write the value of KEY to stdout."""
    value = app.run(lambda ds: ds.get(Key(key)))
    sys.stdout.buffer.write(value)
    sys.stdout.buffer.flush()


@main.command()
@click.argument("key")
@click.pass_obj
def has(app: ClientApp, key: str) -> None:
    """Print whether KEY exists (exit code 0 if it does, 1 if not)."""
    found = app.run(lambda ds: ds.has(Key(key)))
    click.echo("yes" if found else "no")
    if not found:
        sys.exit(1)


@main.command()
@click.argument("keys", nargs=-1, required=True)
@click.pass_obj
def rm(app: ClientApp, keys: tuple[str, ...]) -> None:
    """Delete KEYS (deleting a missing key is not an error)."""
    async def go(ds: ClusterDatastore) -> None:
        for k in keys:
            await ds.delete(Key(k))

    app.run(go)


@main.command()
@click.argument("target", default="/")
@click.option("-l", "--long", "long_", is_flag=True, help="Show value sizes too.")
@click.option("--limit", type=click.IntRange(min=0), default=0, help="At most N keys.")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip N keys.")
@click.pass_obj
def ls(app: ClientApp, target: str, long_: bool, limit: int, offset: int) -> None:
    """List keys or a directory.

    A TARGET starting with "/" is a key prefix: the keys under it (whole path segments),
    in key order. Anything else is the CID of a UnixFS directory: its entries, as
    `ipfs ls` shows them."""
    if not target.startswith("/"):
        print_directory(app, parse_cid(target))
        return
    q = Query(prefix=target, keys_only=True, returns_sizes=long_, limit=limit, offset=offset)

    async def go(ds: ClusterDatastore) -> None:
        async for e in ds.query(q):
            click.echo(f"{e.size:>10} {e.key}" if long_ else e.key)

    app.run(go)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(app: ClientApp, as_json: bool) -> None:
    """Nodes, addresses, slot ranges, reachability, key counts, disk usage and repair."""
    async def go(ds: ClusterDatastore) -> tuple[ClusterMap, list[dict[str, Any]], set[int],
                                               dict[str, Any] | None]:
        try:
            # the members and slots as the cluster has them now, not as cached at init
            await ds.caller.refresh_map()
        except DSClusterError:
            pass  # every member down: the cached map is all there is, and rows say so
        rows = await ds.status()
        try:
            moves: dict[str, Any] | None = await ask_coordinator(ds.caller, "status")
        except DSClusterError:
            moves = None  # the coordinator is down: the map still says what moves
        return ds.state.map, rows, await disagreeing_slots(ds.caller), moves

    cmap, rows, disagreeing, moves = app.run(go)
    slots = slot_health(cmap, {r["index"] for r in rows if r.get("reachable")}, disagreeing)
    if as_json:
        click.echo(json.dumps({"epoch": cluster_epoch(rows, cmap.epoch),
                               "client_epoch": cmap.epoch, "nodes": rows, "slots": slots,
                               "disagreeing_slots": slot_ranges(sorted(disagreeing)),
                               "slots_moving": len(cmap.moving), "moves": moves},
                              indent=2))
    else:
        for line in status_lines(cmap.epoch, rows, slots, terminal_width()):
            click.echo(line)
        if moves is not None:
            click.echo(f"moves: {describe_moves(moves)}")
        elif cmap.moving:
            click.echo(f"moves: {len(cmap.moving)} slots moving (the coordinator, node 0, "
                       "did not answer)")
    if not all(r.get("reachable") for r in rows if r.get("state") != RETIRED):
        sys.exit(1)


@main.command()
@click.option("--slot", "slots", type=click.IntRange(0, SLOT_COUNT - 1), multiple=True,
              help="Repair slot N only (repeatable; default: every slot).")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar on stderr (default: when stderr is a terminal).")
@click.pass_obj
def repair(app: ClientApp, slots: tuple[int, ...], progress: bool | None) -> None:
    """Make the owners of every slot compare their replicas now and copy what is newer.

    Nodes do this on their own every 30 s and when a member comes back; this runs a
    pass at once and waits for it. Exits 1 if a member could not be reached."""
    wanted = sorted(set(slots)) if slots else list(range(SLOT_COUNT))
    show = sys.stderr.isatty() if progress is None else progress
    with tqdm(total=len(wanted), unit="slot", file=sys.stderr, dynamic_ncols=True,
              disable=not show) as bar:
        report = app.run(lambda ds: repair_slots(ds.caller, wanted, bar.update))
    gone: dict[int, str] = report["unreachable"]
    missed = f"; unreachable: {', '.join(f'node {i}' for i in gone)}" if gone else ""
    click.echo(f"repaired {report['slots']} slots: {report['differing']} differed, "
               f"{report['pulled']} keys ({human_bytes(report['bytes'])}) copied{missed}")
    for i, why in gone.items():
        click.echo(f"  node {i}: {why}")
    if gone:
        sys.exit(1)


@main.command()
@click.argument("key")
def hashslot(key: str) -> None:
    """Print the hash slot of KEY (after cleaning it like the datastore does)."""
    click.echo(slot_of(Key(key)))


def _conf_after_command(ctx: click.Context, param: click.Parameter,
                        value: Path | None) -> None:
    # `dsclient get-key --conf=DIR KEY` as well as `dsclient --conf=DIR get-key KEY`;
    # the group made the app before this command's options were parsed
    if value is not None:
        app = ctx.find_object(ClientApp)
        if app is not None:
            app.conf_dir = value


def _accept_conf_after_commands(group: click.Group) -> None:
    for command in group.commands.values():
        command.params.append(click.Option(
            ["--conf"], type=_CONF_TYPE, expose_value=False, is_eager=True,
            callback=_conf_after_command, help=f"Client directory (or {CONF_ENV}; default: .)."))


register_file_commands(main)
register_gc_commands(main)
register_rebalance_commands(main)
register_admin_commands(main)
main.add_command(import_dataset_command)
_accept_conf_after_commands(main)


def entry() -> None:
    run_cli(main, "dsclient")
