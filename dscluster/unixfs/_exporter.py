"""The exporter: file bytes, directory trees, listings and stats out of UnixFS DAGs.

Theory of operation: ``Reader.emit`` walks a file's DAG depth-first and hands the
content of [start, end) to an async sink in order. At each inner node it computes from
the blocksizes which children overlap the range (skipped children are never read),
prefetches those children through a window, and descends into each in turn; so the
leaves of the node being read are fetched ``window`` ahead of the sink, and memory is
bounded by the window at each level (a few levels of small inner nodes plus ``window``
leaves). Every block passes through ``fetch_node``: verified against its CID, decoded,
and its size checked against what its parent says.

``read_file`` must be an async iterator, and an async generator may not keep tasks
running while it is suspended at ``yield`` (PEP 789: their errors and cancellation would
land in the consumer's frame). So it reads ``window`` chunks' worth of the range at a time
(one chunk the first time) with ``emit`` and yields them once that read is complete;
inner nodes are cached between these steps. ``get_to_path`` and ``stream_file`` (the
CLI's ``cat``) use ``emit`` directly and stream without such steps.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import NamedTuple

import trio

from ..datastore import Datastore
from ..errors import InvalidArgument
from ._cid import RAW, BlockCid
from ._concurrency import open_prefetch
from ._errors import (
    LocalFileError,
    MalformedBlock,
    NotAFile,
    PathNotFound,
    UnsupportedNode,
    local_error,
)
from ._fetch import fetch_node
from ._hamt import shard_entry_name, shard_links, shard_lookup
from ._node import Node
from ._types import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_WINDOW,
    DirEntry,
    NodeStat,
    Progress,
    check_window,
)

Sink = Callable[[bytes], Awaitable[None]]

# inner file nodes kept by a Reader between the steps of read_file (a few KiB each)
_INNER_CACHE = 64
# bytes of a file written in one hand-off to its thread (see Reader._write_file)
_WRITE_RUN = 4 << 20


class _Span(NamedTuple):
    """The part [start, end) of child ``cid``'s content (``size`` bytes) to read."""

    cid: BlockCid
    start: int
    end: int
    size: int


def _spans(node: Node, start: int, end: int) -> list[_Span]:
    """The children of ``node`` that hold bytes of [start, end) of its content."""
    spans = []
    pos = len(node.data)
    for i, size in enumerate(node.blocksizes):
        lo, hi = pos, pos + size
        if lo >= end:
            break
        if hi > start:
            spans.append(_Span(node.link_cid(i), max(start - lo, 0), min(end, hi) - lo, size))
        pos = hi
    return spans


class Reader:
    """Verified reads of one DAG with a prefetch window."""

    def __init__(self, ds: Datastore, window: int = DEFAULT_WINDOW) -> None:
        check_window(window)
        self._ds = ds
        self._window = window
        self._inner: dict[BlockCid, Node] = {}

    async def node(self, cid: BlockCid) -> Node:
        cached = self._inner.get(cid)
        if cached is not None:
            return cached
        node = await fetch_node(self._ds, cid)
        if node.kind == "file" and node.links:
            self._inner[cid] = node
            if len(self._inner) > _INNER_CACHE:
                del self._inner[next(iter(self._inner))]
        return node

    async def root(self, path: str | BlockCid) -> Node:
        """The node at ``path``: a CID, or a CID followed by /-separated names (an
        ``/ipfs/`` in front is allowed), resolved through plain and sharded directories."""
        if isinstance(path, BlockCid):
            return await self.node(path)
        cid, names = split_path(path)
        node = await self.node(cid)
        for name in names:
            node = await self.node(await self.lookup(node, name))
        return node

    async def lookup(self, node: Node, name: str) -> BlockCid:
        """The CID of entry ``name`` of directory ``node``."""
        if node.kind == "hamt-shard":
            return await shard_lookup(node, os.fsencode(name), self.node)
        if node.kind != "directory":
            raise PathNotFound(f"cannot look up {name!r} in {node.cid}: it is a {node.kind}")
        raw = os.fsencode(name)
        for i, link in enumerate(node.links):
            if link.name == raw:
                return node.link_cid(i)
        raise PathNotFound(f"no entry {name!r} in directory {node.cid}")

    async def entries(self, node: Node) -> list[tuple[str, BlockCid]]:
        """A plain or sharded directory's entries (name, CID), names checked safe and
        unique; a shard's in its slot order, as Kubo lists them."""
        if node.kind == "hamt-shard":
            entries = [(shard_entry_name(n, i), n.link_cid(i))
                       async for n, i in shard_links(node, self.node)]
        else:
            entries = [(node.entry_name(i), node.link_cid(i)) for i in range(len(node.links))]
        if len({name for name, _ in entries}) != len(entries):
            raise MalformedBlock(f"directory {node.cid} has duplicate entry names")
        return entries

    async def file_root(self, cid: str | BlockCid) -> Node:
        node = await self.root(cid)
        if node.kind not in ("file", "raw"):
            raise NotAFile(f"{node.cid} is a {node.kind}, not a file")
        return node

    async def emit(self, node: Node, start: int, end: int, sink: Sink) -> None:
        """Send bytes [start, end) of file ``node``'s content to ``sink``, in order."""
        own = node.data
        if start < len(own):
            await sink(own[start : min(end, len(own))])
        spans = _spans(node, start, end)
        if not spans:
            return
        async with open_prefetch(spans, self._child, self._window) as children:
            async for span, child in children:
                if child.kind not in ("file", "raw") or child.content_size != span.size:
                    raise MalformedBlock(
                        f"file {node.cid} links to {child.cid} as {span.size} bytes of "
                        f"content, but that is a {child.kind} of {child.content_size} bytes"
                    )
                await self.emit(child, span.start, span.end, sink)

    async def _child(self, span: _Span) -> Node:
        return await self.node(span.cid)

    async def materialize(self, node: Node, path: Path, progress: Progress | None) -> None:
        """Write ``node`` (file, symlink or directory tree) at ``path``, which must not exist."""
        if node.kind in ("file", "raw"):
            await self._write_file(node, path, progress)
        elif node.kind == "symlink":
            try:
                await trio.to_thread.run_sync(os.symlink, os.fsdecode(node.data), path)
            except OSError as e:
                raise local_error("create symlink", path, e) from None
        elif node.kind in ("directory", "hamt-shard"):
            await self._write_directory(node, path, progress)
        else:
            raise _unsupported(node)

    async def _write_file(self, node: Node, path: Path, progress: Progress | None) -> None:
        try:
            f = await trio.open_file(path, "xb")
        except OSError as e:
            raise local_error("write", path, e) from None
        # chunks are handed to the file's thread in runs of _WRITE_RUN bytes: a thread
        # hop costs more than writing a 256 KiB chunk into the page cache
        run: list[bytes] = []
        run_bytes = 0

        async def flush() -> None:
            nonlocal run, run_bytes
            try:
                await f.writelines(run)
            except OSError as e:
                raise local_error("write", path, e) from None
            if progress is not None:
                progress(run_bytes)
            run, run_bytes = [], 0

        async def write(chunk: bytes) -> None:
            nonlocal run_bytes
            run.append(chunk)
            run_bytes += len(chunk)
            if run_bytes >= _WRITE_RUN:
                await flush()

        async with f:
            await self.emit(node, 0, node.content_size, write)
            await flush()

    async def _write_directory(self, node: Node, path: Path, progress: Progress | None) -> None:
        entries = await self.entries(node)
        try:
            await trio.to_thread.run_sync(os.mkdir, path)
        except OSError as e:
            raise local_error("create directory", path, e) from None
        async with open_prefetch(entries, self.entry_node, self._window) as children:
            async for (name, _), child in children:
                await self.materialize(child, path / name, progress)

    async def entry_node(self, entry: tuple[str, BlockCid]) -> Node:
        return await self.node(entry[1])


def split_path(path: str) -> tuple[BlockCid, list[str]]:
    """``CID[/name...]`` or ``/ipfs/CID[/name...]``: the CID and the names after it."""
    text = path.strip()
    if text.startswith("/ipfs/"):
        text = text[len("/ipfs/"):]
    cid, *names = text.split("/")
    names = [n for n in names if n]  # Kubo ignores empty segments ("a//b", a trailing /)
    for name in names:
        if name in (".", ".."):
            raise InvalidArgument(f"path {path!r}: {name!r} is not an entry name")
    return BlockCid.parse(cid), names


def _unsupported(node: Node) -> UnsupportedNode:
    return UnsupportedNode(f"{node.cid} is a UnixFS {node.kind} node, which is not supported")


async def _open_range(
    ds: Datastore, cid: str, offset: int, length: int | None, window: int
) -> tuple[Reader, Node, int]:
    """A reader, the file's root node and the end of the range asked for."""
    if offset < 0:
        raise InvalidArgument(f"offset must not be negative, not {offset}")
    if length is not None and length < 0:
        raise InvalidArgument(f"length must not be negative, not {length}")
    reader = Reader(ds, window)
    root = await reader.file_root(cid)
    end = root.content_size if length is None else min(root.content_size, offset + length)
    return reader, root, end


async def stream_file(
    ds: Datastore,
    cid: str,
    sink: Sink,
    *,
    offset: int = 0,
    length: int | None = None,
    window: int = DEFAULT_WINDOW,
) -> None:
    """Send the verified bytes of a file (or raw block), or a range of them, to ``sink``."""
    reader, root, end = await _open_range(ds, cid, offset, length, window)
    await reader.emit(root, offset, end, sink)


async def read_file(
    ds: Datastore,
    cid: str,
    *,
    offset: int = 0,
    length: int | None = None,
    window: int = DEFAULT_WINDOW,
) -> AsyncIterator[bytes]:
    """The verified bytes of a UnixFS file (or raw block) from ``offset``, at most
    ``length`` of them; blocks outside the range are not read."""
    reader, root, end = await _open_range(ds, cid, offset, length, window)
    # The first step is one chunk, so that the first bytes (and any error of the first
    # blocks) come after one block read, not a window's worth: the S3 gateway waits for
    # them before it answers.
    step = DEFAULT_CHUNK_SIZE
    pos = offset
    while pos < end:
        stop = min(end, pos + step)
        pieces: list[bytes] = []

        async def collect(chunk: bytes, pieces: list[bytes] = pieces) -> None:
            pieces.append(chunk)

        await reader.emit(root, pos, stop, collect)
        for piece in pieces:
            yield piece
        pos = stop
        step = window * DEFAULT_CHUNK_SIZE


async def stat(ds: Datastore, cid: str) -> NodeStat:
    node = await Reader(ds).root(cid)
    if node.kind in ("file", "raw"):
        size = node.content_size
    elif node.kind == "symlink":
        size = len(node.data)
    else:
        size = 0
    return NodeStat(
        cid=str(node.cid),
        type=node.kind,
        size=size,
        cumulative_size=node.cumulative_size,
        num_links=len(node.links),
        block_size=node.block_size,
    )


async def ls(ds: Datastore, cid: str, *, window: int = DEFAULT_WINDOW) -> list[DirEntry]:
    """A directory's entries (each child's root block is read for its type and size), or
    a file node's chunks (from its blocksizes, without reading them)."""
    reader = Reader(ds, window)
    node = await reader.root(cid)
    if node.kind == "file":
        chunks = [node.link_cid(i) for i in range(len(node.links))]
        return [
            DirEntry("", str(c), size, "raw" if c.codec == RAW else "file")
            for c, size in zip(chunks, node.blocksizes, strict=True)
        ]
    if node.kind not in ("directory", "hamt-shard"):
        if node.kind == "metadata":
            raise _unsupported(node)
        return []
    entries = await reader.entries(node)
    listing = []
    async with open_prefetch(entries, reader.entry_node, window) as children:
        async for (name, _), child in children:
            size = (child.content_size if child.kind in ("file", "raw")
                    else len(child.data) if child.kind == "symlink" else 0)
            listing.append(DirEntry(name, str(child.cid), size, child.kind))
    return listing


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


async def get_to_path(
    ds: Datastore,
    cid: str,
    out: Path,
    *,
    window: int = DEFAULT_WINDOW,
    progress: Progress | None = None,
) -> None:
    """Write a file, symlink or directory tree to ``out``.

    Everything is written under a temporary name next to ``out`` and renamed into place
    once complete; on any failure the temporary is removed, so ``out`` is either the whole
    result or untouched. An existing file ``out`` is replaced by a file; an existing
    directory is never replaced.
    """
    out = Path(out)
    reader = Reader(ds, window)
    root = await reader.root(cid)
    if root.kind not in ("file", "raw", "symlink", "directory", "hamt-shard"):
        raise _unsupported(root)
    if not out.name:
        raise LocalFileError(f"cannot write to {out}: not a file name")
    if not await trio.to_thread.run_sync(out.parent.is_dir):
        raise LocalFileError(f"cannot write {out}: {out.parent} is not a directory")
    exists = await trio.to_thread.run_sync(os.path.lexists, out)
    if exists and (root.kind in ("directory", "hamt-shard")
                   or await trio.to_thread.run_sync(out.is_dir)):
        raise LocalFileError(f"cannot write {root.kind} {root.cid} to {out}: it already exists")
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.dscluster-part")
    try:
        await reader.materialize(root, tmp, progress)
        try:
            await trio.to_thread.run_sync(os.replace, tmp, out)
        except OSError as e:
            raise local_error("rename into", out, e) from None
    except BaseException:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_remove, tmp)
        raise
