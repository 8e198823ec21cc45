"""dsclient's file commands: add, get, cat, ls and stat of IPFS UnixFS data.

They mirror Kubo's `ipfs add/get/cat/ls/files stat` (options, output lines, CIDs) over
the cluster datastore, through dscluster.unixfs. ``register`` adds them to the dsclient
group, whose ``ctx.obj.run(async_fn, *args)`` runs ``async_fn(ds, *args)`` under trio
with an open Datastore; each command makes one such call. Errors are DSClusterErrors or
click exceptions, which the group prints as one line.

Progress bars (tqdm, on stderr, see progress.py) are shown by default only when stderr
is a terminal.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import click
import trio
from tqdm import tqdm

from dscluster.datastore import Datastore
from dscluster.errors import DSClusterError
from dscluster.gc.claims import open_claims
from dscluster.gc.pins import add_pin
from dscluster.store.memory import MemoryStore
from dscluster.unixfs import (
    DEFAULT_INLINE_LIMIT,
    DEFAULT_WINDOW,
    AddOptions,
    BlockCid,
    NamedStream,
    add_all,
    check_addable,
    check_cid_base,
    get_to_path,
    hash_functions,
    ls,
    parse_chunker,
    split_path,
    stat,
    stream_file,
    tree_size,
)

from .progress import byte_progress, short_name

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


class _KuboCommand(click.Command):
    """A command that also takes Kubo's spelling of boolean flags, ``--flag=false``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        flags = {
            opt: param
            for param in self.params
            if isinstance(param, click.Option) and param.is_flag
            for opt in param.opts
        }
        rewritten: list[str] = []
        for i, arg in enumerate(args):
            if arg == "--":
                rewritten.extend(args[i:])
                break
            name, eq, value = arg.partition("=")
            param = flags.get(name) if eq else None
            if param is None or value.lower() not in _TRUE + _FALSE:
                rewritten.append(arg)
            elif value.lower() in _TRUE:
                rewritten.append(name)
            elif param.secondary_opts:
                rewritten.append(param.secondary_opts[0])
        return super().parse_args(ctx, rewritten)


class Chunking(NamedTuple):
    """A checked --chunker: fixed ``size``, or a content-defined ``spec`` (else None)."""

    size: int
    spec: str | None


def _chunker(ctx: click.Context, param: click.Parameter, value: str) -> Chunking:
    """Kubo's --chunker values, checked before anything is read."""
    try:
        chunker = parse_chunker(value)
    except DSClusterError as e:
        raise click.BadParameter(str(e)) from None
    return Chunking(chunker.max, None if chunker.kind == "size" else value)


chunker_option = click.option(
    "-s", "--chunker", default="size-262144", show_default=True, callback=_chunker,
    help="Chunking: size-N (fixed chunks of N bytes), rabin[-AVG | -MIN-AVG-MAX], buzhash.",
)


def _cid_arg(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Check the CID (or CID/path) before any datastore is opened, and normalise it."""
    return parse_cid(value)


def _cid_base(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_cid_base(value)
    except DSClusterError as e:
        raise click.BadParameter(str(e)) from None


def wants_bar(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


def printer(bar: tqdm | None) -> Callable[[str], None]:
    """Print a line to stdout without tearing the progress bar on stderr: above the bar
    while bytes are still to come, below its final state once they are all in (so that
    a file's "added" line never appears above a bar that then jumps to 100%)."""
    if bar is None:
        return click.echo

    def echo(line: str) -> None:
        if bar.total is not None and bar.n >= bar.total:
            bar.close()
            sys.stderr.flush()  # tqdm ends the bar's line without flushing it
        if bar.disable:  # closed
            click.echo(line)
            return
        with tqdm.external_write_mode(file=sys.stdout):
            click.echo(line)

    return echo


window_option = click.option(
    "-w", "--window", type=click.IntRange(min=1), default=DEFAULT_WINDOW, show_default=True,
    help="Block requests in flight at once.",
)
progress_option = click.option(
    "--progress/--no-progress", default=None,
    help="Show a progress bar on stderr (default: when stderr is a terminal).",
)


@click.command(cls=_KuboCommand)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path, allow_dash=True))
@click.option("-r", "--recursive", is_flag=True, help="Add directories recursively.")
@click.option("-H", "--hidden", is_flag=True, help="Include files whose names start with '.'.")
@click.option("-q", "--quiet", is_flag=True, help="Print only CIDs, one per line.")
@click.option("-Q", "--quieter", is_flag=True, help="Print only the root CID of each PATH.")
@click.option("-n", "--only-hash", is_flag=True,
              help="Compute CIDs; write nothing (needs no cluster or client directory).")
@chunker_option
@click.option("-t", "--trickle", is_flag=True, help="Use the trickle DAG layout.")
@click.option(
    "--cid-version", type=click.IntRange(0, 1), default=None,
    help="CID version (default 0, or 1 with a --hash other than sha2-256); 1 implies "
    "--raw-leaves unless --raw-leaves=false.",
)
@click.option(
    "--hash", "hash_name", type=click.Choice(hash_functions()), default="sha2-256",
    show_default=True, help="Hash function; other than sha2-256 implies --cid-version=1.",
)
@click.option(
    "--raw-leaves/--no-raw-leaves", default=None,
    help="Store file chunks as raw blocks (default: with --cid-version=1).",
)
@click.option("--inline", is_flag=True, help="Inline small blocks into their CIDs.")
@click.option(
    "--inline-limit", type=click.IntRange(0), default=DEFAULT_INLINE_LIMIT,
    show_default=True, help="Largest block --inline inlines, in bytes (at most 128).",
)
@click.option("-w", "--wrap-with-directory", "wrap", is_flag=True,
              help="Wrap everything added in a directory.")
@click.option("--stdin-name", help="The name of the file read from standard input.")
@click.option("--cid-base", callback=_cid_base,
              help="Multibase of the CIDs printed (CIDv0 are printed as CIDv1 then).")
@click.option("--pin/--no-pin", default=True, show_default=True,
              help="Pin each PATH's root, so that `dsclient gc` keeps it (--pin=false).")
@click.option(
    "--window", type=click.IntRange(min=1), default=DEFAULT_WINDOW, show_default=True,
    help="Block requests in flight at once.",
)
@progress_option
@click.pass_obj
def add(
    obj: Any,
    paths: tuple[Path, ...],
    recursive: bool,
    hidden: bool,
    quiet: bool,
    quieter: bool,
    only_hash: bool,
    chunker: Chunking,
    trickle: bool,
    cid_version: int | None,
    hash_name: str,
    raw_leaves: bool | None,
    inline: bool,
    inline_limit: int,
    wrap: bool,
    stdin_name: str | None,
    cid_base: str | None,
    pin: bool,
    window: int,
    progress: bool | None,
) -> None:
    """Add files or directory trees as UnixFS DAGs, with the CIDs `ipfs add` gives.

    A PATH of "-", or no PATH, reads standard input. Prints "added <cid> <name>" for
    each file and directory, the root last.
    """
    try:
        options = AddOptions(
            chunk_size=chunker.size, chunker=chunker.spec, cid_version=cid_version,
            raw_leaves=raw_leaves, only_hash=only_hash, window=window, hidden=hidden,
            hash=hash_name, inline_limit=inline_limit if inline else None, trickle=trickle,
        )
    except DSClusterError as e:
        raise click.UsageError(str(e)) from None
    paths = paths or (Path("-"),)
    files = [p for p in paths if str(p) != "-"]
    for path in files:  # every path is checked before anything is added
        check_addable(path, recursive=recursive)
    items = [NamedStream(_stdin(), stdin_name) if str(p) == "-" else p for p in paths]
    show = wants_bar(progress)
    total = None
    if show and len(files) == len(paths):
        total = sum(
            trio.run(partial(tree_size, p, recursive=recursive, hidden=hidden)) for p in files
        )
    with byte_progress(show, paths[0].name or str(paths[0]), total) as bar:
        out = printer(bar)

        def report(cid: str, name: str) -> None:
            if quieter:
                return
            if cid_base is not None:
                cid = BlockCid.parse(cid).encode(cid_base)
            out(cid if quiet else f"added {cid} {name}")

        if only_hash:
            # hashing needs no cluster (and no client directory): nothing is stored, the
            # empty memory store only stands where the cluster would
            roots = trio.run(_add_paths, MemoryStore(), items, recursive, wrap, options, bar,
                             report)
        else:
            roots = obj.run(_add_claimed, items, recursive, wrap, options, bar, report, pin)
    if quieter:
        for cid in roots:
            click.echo(cid if cid_base is None else BlockCid.parse(cid).encode(cid_base))


async def _stdin() -> AsyncIterator[bytes]:
    stdin = trio.wrap_file(sys.stdin.buffer)
    while chunk := await stdin.read(1 << 20):
        yield chunk


async def _add_claimed(
    ds: Datastore,
    paths: Sequence[Path | NamedStream],
    recursive: bool,
    wrap: bool,
    options: AddOptions,
    bar: tqdm | None,
    report: Callable[[str, str], None],
    pin: bool,
) -> list[str]:
    """Add under a garbage-collection lease (dscluster/gc/claims.py), then pin."""
    async with open_claims(ds, f"dsclient add {paths[0]}") as claiming:
        roots = await _add_paths(claiming, paths, recursive, wrap, options, bar, report)
        if pin:
            for cid in roots:
                await add_pin(ds, cid, verify=False)
    return roots


async def _add_paths(
    ds: Datastore,
    items: Sequence[Path | NamedStream],
    recursive: bool,
    wrap: bool,
    options: AddOptions,
    bar: tqdm | None,
    report: Callable[[str, str], None],
) -> list[str]:
    """Add the items; their root CIDs (with ``wrap``, the wrapping directory's alone)."""
    roots: list[str] = []
    on_chunk = bar.update if bar is not None else None
    async for cid, name in add_all(ds, items, recursive=recursive, wrap=wrap, options=options,
                                   progress=on_chunk, on_root=roots.append):
        if bar is not None:
            bar.set_description_str(short_name(name.rsplit("/", 1)[-1]), refresh=False)
        report(cid, name)
    return roots


@click.command()
@click.argument("cid", callback=_cid_arg)
@click.argument("out", required=False, type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", type=click.Path(path_type=Path),
    help="Where to write (default: ./CID).",
)
@window_option
@progress_option
@click.pass_obj
def get(
    obj: Any,
    cid: str,
    out: Path | None,
    output: Path | None,
    window: int,
    progress: bool | None,
) -> None:
    """Write the file or directory tree CID to OUT (or -o OUT).

    Nothing appears at OUT unless the whole download succeeds.
    """
    if out is not None and output is not None and out != output:
        raise click.UsageError("give OUT or -o/--output, not both")
    target = out or output or Path(cid.rsplit("/", 1)[-1])
    with byte_progress(wants_bar(progress), target.name or str(target)) as bar:
        obj.run(_get, cid, target, window, bar)


async def _get(ds: Datastore, cid: str, target: Path, window: int, bar: tqdm | None) -> None:
    if bar is not None:
        info = await stat(ds, cid)
        bar.reset(total=info.size if info.type in ("file", "raw") else None)
    await get_to_path(
        ds, cid, target, window=window, progress=bar.update if bar is not None else None
    )


@click.command()
@click.argument("cid", callback=_cid_arg)
@click.option("-o", "--offset", type=click.IntRange(min=0), default=0, help="Byte to start at.")
@click.option("-l", "--length", type=click.IntRange(min=0), help="Bytes to write at most.")
@window_option
@click.pass_obj
def cat(obj: Any, cid: str, offset: int, length: int | None, window: int) -> None:
    """Write the bytes of file CID (or a range of them) to stdout."""
    obj.run(_cat, cid, offset, length, window, sys.stdout.buffer)


async def _cat(
    ds: Datastore, cid: str, offset: int, length: int | None, window: int, stdout: Any
) -> None:
    out = trio.wrap_file(stdout)

    async def write(chunk: bytes) -> None:
        await out.write(chunk)

    await stream_file(ds, cid, write, offset=offset, length=length, window=window)
    await out.flush()


def parse_cid(value: str) -> str:
    """Check a CID, or CID/path, given on the command line (a usage error if it is not
    one we read)."""
    try:
        cid, names = split_path(value)
        return "/".join([str(cid.require_supported()), *names])
    except DSClusterError as e:
        raise click.BadParameter(str(e)) from None


def print_directory(obj: Any, cid: str) -> None:
    """`dsclient ls CID`: "<cid> <size> <name>", directories as "<cid> - <name>/"."""
    for entry in obj.run(ls, cid):
        if entry.type in ("directory", "hamt-shard"):
            click.echo(f"{entry.cid} - {entry.name}/")
        else:
            click.echo(f"{entry.cid} {entry.size} {entry.name}")


@click.command(name="stat")
@click.argument("cid", callback=_cid_arg)
@click.pass_obj
def stat_cmd(obj: Any, cid: str) -> None:
    """Type and sizes of CID, as `ipfs files stat` prints them."""
    info = obj.run(stat, cid)
    click.echo(info.cid)
    click.echo(f"Size: {info.size}")
    click.echo(f"CumulativeSize: {info.cumulative_size}")
    click.echo(f"ChildBlocks: {info.num_links}")
    click.echo(f"Type: {info.type}")
    click.echo(f"BlockSize: {info.block_size}")


# `ls` is shared with raw keys and lives in cli.py; it calls print_directory for CIDs
COMMANDS: tuple[click.Command, ...] = (add, get, cat, stat_cmd)


def register(group: click.Group) -> None:
    """Add the file commands to the dsclient group."""
    for command in COMMANDS:
        group.add_command(command)
