"""`dsclient import-dataset`: a directory's files added in parallel, each as its own
UnixFS file (the CID `ipfs add` gives it), recorded in a CSV that makes the import
resumable.

The record is the CSV itself (``path,cid,size``, paths relative to the directory): a row
is appended, flushed and fsynced once the file's blocks are all stored, so after an
interruption (Ctrl-C, kill -9, a lost connection) the same command skips every file it
lists with an unchanged size and adds the rest. A last row torn by a crash is dropped.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import click
import trio

from dscluster.datastore import Datastore
from dscluster.unixfs import AddOptions, LocalFileError, add_path, tree_size, walk_files

from .files import Chunking, chunker_option, printer, progress_option, wants_bar, window_option
from .progress import byte_progress, human_bytes

HEADER = ["path", "cid", "size"]
# files in flight at once by default; each has its own window of block requests
DEFAULT_PARALLEL = 8


def read_record(path: Path) -> dict[str, tuple[str, int]]:
    """What a record holds: relative path -> (cid, size), the last row of a path
    winning. A missing record is empty; a torn last row (no newline) is cut off."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    if data and not data.endswith(b"\n"):
        data = data[:data.rfind(b"\n") + 1]
        with open(path, "r+b") as f:
            f.truncate(len(data))
    rows = list(csv.reader(io.StringIO(data.decode("utf-8", "surrogateescape"))))
    if rows and rows[0] != HEADER:
        raise LocalFileError(f"{path} is not an import record (its first line is not "
                                   f"{','.join(HEADER)})")
    done: dict[str, tuple[str, int]] = {}
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != 3 or not row[2].isdigit():
            raise LocalFileError(f"{path}, line {n}: expected path,cid,size")
        done[row[0]] = (row[1], int(row[2]))
    return done


@contextmanager
def open_record(path: Path) -> Iterator[Callable[[str, str, int], None]]:
    """Appends to the CSV: a function that writes one row and makes it durable."""
    fresh = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="", encoding="utf-8", errors="surrogateescape") as f:
        out = csv.writer(f, lineterminator="\n")

        def row(*fields: object) -> None:
            out.writerow(fields)
            f.flush()
            os.fsync(f.fileno())

        if fresh:
            row(*HEADER)
        yield row


async def import_dataset(ds: Datastore, root: Path, record_path: Path, *, parallel: int,
                         options: AddOptions, hidden: bool,
                         on_file: Callable[[str, str, int, bool], None]) -> tuple[int, int]:
    """Add every file below ``root`` not yet in the record; ``on_file(name, cid, size,
    skipped)`` for each. Returns (files added now, files skipped as already recorded)."""
    done = read_record(record_path)
    added = skipped = 0
    limit = trio.CapacityLimiter(parallel)

    async def one(path: Path, name: str, size: int) -> None:
        nonlocal added
        try:
            root = ""
            async for cid, _ in add_path(ds, path, options=options):
                root = cid
            record(name, root, size)
            added += 1
            on_file(name, root, size, False)
        finally:
            limit.release_on_behalf_of(name)

    with open_record(record_path) as record:
        async with trio.open_nursery() as n:
            async for path, name, size in walk_files(root, hidden=hidden):
                if name in done and done[name][1] == size:
                    skipped += 1
                    on_file(name, done[name][0], size, True)
                    continue
                # admitted before its task starts: a huge tree never has more than
                # ``parallel`` tasks (the file's name is its unique borrower)
                await limit.acquire_on_behalf_of(name)
                n.start_soon(one, path, name, size)
    return added, skipped


@click.command("import-dataset")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--record", "record_path", type=click.Path(path_type=Path, dir_okay=False),
              help="The CSV of path,cid,size that makes the import resumable (default: "
                   "DIRECTORY's name + .import.csv, here).")
@click.option("-j", "--parallel", type=click.IntRange(1, 256), default=DEFAULT_PARALLEL,
              show_default=True, help="Files added at once.")
@click.option("-H", "--hidden", is_flag=True, help="Include files whose names start with '.'.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but the summary.")
@chunker_option
@click.option("--cid-version", type=click.IntRange(0, 1), default=0, show_default=True,
              help="CID version; 1 implies raw leaves.")
@window_option
@progress_option
@click.pass_obj
def import_dataset_command(obj: Any, directory: Path, record_path: Path | None,
                           parallel: int, hidden: bool, quiet: bool, chunker: Chunking,
                           cid_version: int, window: int, progress: bool | None) -> None:
    """Add every file below DIRECTORY, PARALLEL at a time, each as its own UnixFS file,
    recording path,cid,size in a CSV; run it again after an interruption to add only
    what is not recorded yet.

    Prints "added <cid> <path>" for each file added now.
    """
    record_path = record_path or Path(f"{directory.resolve().name}.import.csv")
    options = AddOptions(chunk_size=chunker.size, chunker=chunker.spec,
                         cid_version=cid_version, window=window, hidden=hidden)
    show = wants_bar(progress)
    total = trio.run(partial(tree_size, directory, recursive=True, hidden=hidden)) \
        if show else None
    with byte_progress(show, directory.resolve().name, total) as bar:
        out = printer(bar)
        nbytes = 0

        def on_file(name: str, cid: str, size: int, skipped: bool) -> None:
            nonlocal nbytes
            if bar is not None:
                bar.update(size)
            if not skipped:
                nbytes += size
                if not quiet:
                    out(f"added {cid} {name}")

        added, skipped = obj.run(partial(
            import_dataset, root=directory, record_path=record_path, parallel=parallel,
            options=options, hidden=hidden, on_file=on_file))
    already = f", {skipped} already in the record" if skipped else ""
    click.echo(f"imported {added} files ({human_bytes(nbytes)}){already}; record: "
               f"{record_path}", err=True)
