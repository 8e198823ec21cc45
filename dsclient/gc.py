"""`dsclient pin add|ls|rm` and `dsclient gc`: Kubo's pins and `repo gc` for the blocks
dscluster wrote (the library is dscluster.gc; doc/operations.md, "Garbage collection").
"""

from __future__ import annotations

import sys
from typing import Any

import click
from tqdm import tqdm

from dscluster.client.datastore import ClusterDatastore
from dscluster.gc.collect import DEFAULT_GRACE, Freed, Plan, plan_collection, sweep
from dscluster.gc.pins import add_pin, list_pins, remove_pin

from .durations import describe_duration, parse_duration
from .files import parse_cid, progress_option, wants_bar, window_option
from .progress import byte_progress, human_bytes


@click.group()
def pin() -> None:
    """Pin DAGs so that `dsclient gc` keeps them (recursive pins, as Kubo's)."""


@pin.command("add")
@click.argument("cids", nargs=-1, required=True)
@click.option("--name", default="", help="A name to keep with the pin.")
@click.pass_obj
def pin_add(obj: Any, cids: tuple[str, ...], name: str) -> None:
    """Pin CIDS recursively, once their whole DAG is in the cluster."""
    wanted = [parse_cid(c) for c in cids]

    async def go(ds: ClusterDatastore) -> None:
        for cid in wanted:
            await add_pin(ds, cid, name=name)
            click.echo(f"pinned {cid} recursively")

    obj.run(go)


@pin.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Print only the CIDs.")
@click.pass_obj
def pin_ls(obj: Any, quiet: bool) -> None:
    """List the pins: "<cid> recursive [name]"."""
    for p in obj.run(list_pins):
        click.echo(p.cid if quiet else f"{p.cid} recursive{f' {p.name}' if p.name else ''}")


@pin.command("rm")
@click.argument("cids", nargs=-1, required=True)
@click.pass_obj
def pin_rm(obj: Any, cids: tuple[str, ...]) -> None:
    """Remove the pins of CIDS (their blocks stay until `dsclient gc`)."""
    wanted = [parse_cid(c) for c in cids]

    async def go(ds: ClusterDatastore) -> None:
        for cid in wanted:
            await remove_pin(ds, cid)
            click.echo(f"unpinned {cid}")

    obj.run(go)


def summary(plan: Plan, grace: float) -> list[str]:
    roots = ", ".join(f"{n} {kind}" for kind, n in plan.roots.items()) or "no roots"
    lines = [f"claimed blocks: {plan.claimed}; reached from {roots}: {plan.reached} blocks",
             f"kept: {plan.s3_blocks} written through S3 too, {plan.young} claimed within "
             f"the grace period ({describe_duration(grace)}) or during a live add "
             f"({plan.live_leases} running)"]
    if plan.missing:
        lines.append(f"warning: {len(plan.missing)} reached block(s) are missing, e.g. "
                     f"{plan.missing[0]}")
    return lines


@click.command()
@click.option("-n", "--dry-run", is_flag=True, help="Say what would be freed; free nothing.")
@click.option("--grace", default=describe_duration(DEFAULT_GRACE), show_default=True,
              callback=parse_duration,
              help="Keep blocks claimed this recently (90s, 15m, 2h); at least 2m "
                   "while adds may run.")
@window_option
@progress_option
@click.pass_obj
def gc(obj: Any, dry_run: bool, grace: float, window: int, progress: bool | None) -> None:
    """Free the blocks dscluster wrote that no pin, S3 object or upload in progress uses.

    Blocks that Kubo or Helia wrote through the S3 gateway, and blocks written around
    dscluster's importer, are never freed."""
    show = wants_bar(progress)

    async def go(ds: ClusterDatastore) -> tuple[Plan, Freed | None]:
        with tqdm(desc="marking", unit=" blocks", file=sys.stderr, dynamic_ncols=True,
                  disable=not show) as bar:
            plan = await plan_collection(ds, grace=grace, window=window,
                                         on_block=lambda: bar.update())
        for line in summary(plan, grace):
            click.echo(line)
        if dry_run:
            return plan, None
        with byte_progress(show, "freeing", plan.garbage_bytes) as fbar:
            freed = await sweep(ds, plan, window=window,
                                on_bytes=fbar.update if fbar is not None else None)
        return plan, freed

    plan, freed = obj.run(go)
    if freed is None:
        click.echo(f"would free {len(plan.garbage)} blocks "
                   f"({human_bytes(plan.garbage_bytes)})")
        return
    back = f"; {freed.restored} put back (used again meanwhile)" if freed.restored else ""
    click.echo(f"freed {freed.blocks} blocks ({human_bytes(freed.bytes)}){back}")


def register(group: click.Group) -> None:
    group.add_command(pin)
    group.add_command(gc)
