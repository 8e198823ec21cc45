"""`dsclient rebalance` and `dsclient remove-node`: plan, start, watch and abort moves.

The moves run in the cluster (the bootstrapper coordinates them, cluster/rebalance.py);
this command only asks and watches, so Ctrl-C while watching leaves the move running
and running the command again watches it again.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click
from tqdm import tqdm

from dscluster.client.datastore import ClusterDatastore
from dscluster.client.rebalance import ask_coordinator
from dscluster.cliutil import EXIT_INTERRUPTED

from .progress import human_bytes

POLL = 0.5
MB = 1_000_000


def _rate(rate_mb: float | None) -> int:
    return 0 if rate_mb is None else max(1, int(rate_mb * MB))


def _weights(pairs: tuple[str, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for pair in pairs:
        node, sep, weight = pair.partition("=")
        try:
            if not sep:
                raise ValueError
            out[str(int(node))] = float(weight)
        except ValueError:
            raise click.BadParameter(f"{pair!r} is not NODE=WEIGHT (e.g. 3=2.0)",
                                     param_hint="--weight") from None
    return out


def describe(job: dict[str, Any]) -> str:
    """One line for a job's status (also used by `dsclient status`)."""
    what = job.get("action") or "rebalance"
    if job.get("node") is not None:
        what += f" of node {job['node']}"
    state = job.get("state", "idle")
    if state == "idle":
        return "no moves yet"
    done, total = job.get("slots_done", 0), job.get("slots_total", 0)
    line = (f"{what} {state}: {done}/{total} slots moved, {job.get('slots_moving', 0)} "
            f"pending, {human_bytes(job.get('bytes', 0))} copied")
    if state == "moving":
        line += f" at {human_bytes(job.get('bytes_per_second', 0))}/s"
        eta = job.get("eta_seconds")
        if eta is not None:
            line += f", ETA {eta:.0f}s"
        if job.get("last_error"):
            line += f" (waiting: {job['last_error']})"
    return line


def _print_plan(plan: dict[str, Any], what: str) -> None:
    click.echo(f"{what}: {plan['slots']} slots move ({plan['replicas']} replica copies, "
               f"about {human_bytes(plan['estimated_bytes'])})")
    for m in plan["members"]:
        click.echo(f"  node {m['index']} (weight {m['weight']:g}): {m['slots_before']} -> "
                   f"{m['slots_after']} slots (+{m['gains']} -{m['loses']})")


def _watch(app: Any, first: dict[str, Any]) -> dict[str, Any]:
    job = first
    show = sys.stderr.isatty()
    try:
        with tqdm(total=job.get("slots_total") or 0, initial=job.get("slots_done", 0),
                  unit="slot", file=sys.stderr, dynamic_ncols=True,
                  disable=not show) as bar:
            while job.get("state") == "moving":
                time.sleep(POLL)
                job = app.run(lambda ds: ask_coordinator(ds.caller, "status"))
                bar.total = job.get("slots_total") or bar.total
                bar.update(job.get("slots_done", 0) - bar.n)
                eta = job.get("eta_seconds")
                bar.set_postfix_str(
                    f"{human_bytes(job.get('bytes', 0))} at "
                    f"{human_bytes(job.get('bytes_per_second', 0))}/s"
                    + (f", ETA {eta:.0f}s" if eta is not None else ""))
    except KeyboardInterrupt:
        click.echo("the move goes on in the cluster; watch it again with "
                   "`dsclient rebalance --wait`", err=True)
        sys.exit(EXIT_INTERRUPTED)
    return job


def _finish(app: Any, job: dict[str, Any], wait: bool) -> None:
    if wait:
        job = _watch(app, job)
    click.echo(describe(job))
    if job.get("state") == "aborted":
        sys.exit(1)


@click.command()
@click.option("--dry-run", is_flag=True, help="Show which slots would move where; move nothing.")
@click.option("--wait", is_flag=True,
              help="Watch the moves with a progress bar until they finish (Ctrl-C stops "
                   "watching, not the moves).")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), metavar="MB/S",
              help="Copy at most this many MB (10^6 bytes) a second (default: no limit).")
@click.option("--abort", is_flag=True,
              help="Stop the moves: slots not moved yet stay with their old owners.")
@click.option("--weight", "weights", multiple=True, metavar="NODE=WEIGHT",
              help="Set a member's relative capacity first (default 1; repeatable): a "
                   "member of weight 2 holds twice the slots of one of weight 1.")
@click.pass_obj
def rebalance(app: Any, dry_run: bool, wait: bool, rate: float | None, abort: bool,
              weights: tuple[str, ...]) -> None:
    """Spread the slots over the members by weight (after nodes joined), moving as few
    as possible. Needs the admin token. Running it while moves go on shows them."""
    wanted = _weights(weights)
    if abort:
        job = app.run(lambda ds: ask_coordinator(ds.caller, "abort"))
        click.echo(describe(job))
        return
    if dry_run:
        _print_plan(app.run(lambda ds: ask_coordinator(ds.caller, "plan", weights=wanted)),
                    "plan")
        return

    async def go(ds: ClusterDatastore) -> dict[str, Any]:
        job = await ask_coordinator(ds.caller, "status")
        if job.get("state") == "moving":
            return job  # already running: watch it
        return await ask_coordinator(ds.caller, "start", rate=_rate(rate), weights=wanted)

    _finish(app, app.run(go), wait)


@click.command("remove-node")
@click.argument("node", type=click.IntRange(min=0))
@click.option("--dry-run", is_flag=True, help="Show which slots would move where.")
@click.option("--wait", is_flag=True, help="Watch the drain until the node is removed.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), metavar="MB/S",
              help="Copy at most this many MB a second (default: no limit).")
@click.pass_obj
def remove_node(app: Any, node: int, dry_run: bool, wait: bool, rate: float | None) -> None:
    """Drain NODE (its slots and replicas move to the others), then retire it. Needs the
    admin token. Refused below the replication factor's number of members and while
    NODE is the last live owner of a slot."""
    if dry_run:
        _print_plan(app.run(lambda ds: ask_coordinator(ds.caller, "plan", node=node)),
                    f"removing node {node}")
        return
    _finish(app, app.run(lambda ds: ask_coordinator(ds.caller, "remove", rate=_rate(rate),
                                                    node=node)), wait)


def register(group: click.Group) -> None:
    group.add_command(rebalance)
    group.add_command(remove_node)
