"""The file importer: a byte stream in, a UnixFS file DAG out, as `ipfs add` builds it.

Theory of operation: the source is re-cut into fixed-size chunks; each chunk becomes a
leaf block, written through a bounded window of concurrent puts; ``_Layout`` folds the
leaves into Kubo's balanced tree (at most 174 links per node) as they arrive, so only
the open node of each tree level is held in memory — a few KiB of links per level,
whatever the file size. Nothing is read twice and nothing waits for the end of the
stream except the nodes on the right edge of the tree.

The balanced layout (boxo's importer/balanced): fill a node with 174 leaves; when more
data comes, that node becomes the first child of a new root one level up, which is
filled with complete subtrees of the level below, and so on. The last subtree of each
level is as deep as its siblings even when it holds a single leaf, and a file of one
chunk is that chunk's leaf alone.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Sequence
from contextlib import aclosing, asynccontextmanager

from ..datastore import BatchOp, Datastore
from ..errors import InvalidArgument
from ._chunker import content_chunks, parse_chunker
from ._cid import BlockCid, CidPrefix
from ._concurrency import Window, open_prefetch, open_window
from ._fetch import fetch_node
from ._node import Block, Child, file_leaf, file_parent
from ._types import MAX_LINKS, AddedFile, AddOptions, Progress

# boxo's trickle layout: each level repeats subtrees of each smaller depth this often
_TRICKLE_REPEAT = 4


# A batch of blocks goes to the datastore in one apply, so that each node gets its share
# of several blocks in one request: one record write and one round trip for them all
# instead of one per block (Kubo's PutMany does the same for its blockstore). Cut at
# _BATCH_BLOCKS blocks or _BATCH_BYTES, whichever comes first; the window then counts
# batches, so at most ``window`` blocks are in flight as before.
_BATCH_BLOCKS = 16
_BATCH_BYTES = 4 << 20


class BlockWriter:
    """Stores blocks in batches through a window of concurrent applies; stores nothing
    for only_hash."""

    def __init__(self, ds: Datastore, window: Window | None, batch_blocks: int) -> None:
        self._ds = ds
        self._window = window
        self._batch_blocks = batch_blocks
        self._pending: list[BatchOp] = []
        self._pending_bytes = 0

    async def put(self, block: Block) -> None:
        if self._window is None:
            return
        self._pending.append(BatchOp(block.cid.key, block.data))
        self._pending_bytes += len(block.data)
        if len(self._pending) >= self._batch_blocks or self._pending_bytes >= _BATCH_BYTES:
            await self.flush()

    async def flush(self) -> None:
        """Start writing the blocks put since the last flush."""
        if self._window is not None and self._pending:
            batch, self._pending, self._pending_bytes = self._pending, [], 0
            await self._window.start(self._ds.apply, batch)


@asynccontextmanager
async def open_writer(ds: Datastore, options: AddOptions) -> AsyncIterator[BlockWriter]:
    """A writer whose every block is stored when the block exits (or it raises)."""
    if options.only_hash:
        yield BlockWriter(ds, None, 1)
        return
    batch = min(_BATCH_BLOCKS, options.window)
    async with open_window(-(-options.window // batch)) as window:
        writer = BlockWriter(ds, window, batch)
        yield writer
        await writer.flush()


async def rechunk(source: AsyncIterable[bytes], size: int) -> AsyncGenerator[bytes, None]:
    """Chunks of exactly ``size`` bytes (the last may be shorter) from pieces of any size."""
    buf = bytearray()
    async for piece in source:
        if not buf and len(piece) == size:
            yield bytes(piece)  # the common case of a file read chunk by chunk: one copy
            continue
        buf += piece
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]  # bytearray drops a prefix in O(1)
    if buf:
        yield bytes(buf)


class _Layout:
    """Kubo's balanced tree, built bottom-up as children arrive.

    ``_levels[k]`` holds the closed children of the open node at height k+1. For k >= 1
    that node also has the open node of height k as its last (implicit) child, so a level
    is full when it holds MAX_LINKS - 1 closed children.
    """

    def __init__(self, writer: BlockWriter, prefix: CidPrefix) -> None:
        self._writer = writer
        self._prefix = prefix
        self._levels: list[list[Child]] = [[]]

    async def _close(self, children: list[Child]) -> Child:
        block, child = file_parent(children, prefix=self._prefix)
        await self._writer.put(block)
        return child

    async def add(self, child: Child) -> None:
        levels = self._levels
        if len(levels[0]) < MAX_LINKS:
            levels[0].append(child)
            return
        closed = await self._close(levels[0])
        levels[0] = [child]
        k = 1
        while True:
            if k == len(levels):
                levels.append([closed])  # the tree grows a new root above
                return
            levels[k].append(closed)
            if len(levels[k]) < MAX_LINKS:
                return
            closed = await self._close(levels[k])
            levels[k] = []
            k += 1

    async def finish(self) -> Child:
        levels = self._levels
        if len(levels) == 1 and len(levels[0]) == 1:
            return levels[0][0]
        for k in range(len(levels) - 1):
            levels[k + 1].append(await self._close(levels[k]))
        return await self._close(levels[-1])


def chunks(source: AsyncIterable[bytes], options: AddOptions) -> AsyncGenerator[bytes, None]:
    """The chunks of ``source`` as ``options`` cut them."""
    if options.chunker is None:
        return rechunk(source, options.chunk_size)
    chunker = parse_chunker(options.chunker)
    if chunker.kind == "size":
        return rechunk(source, chunker.max)
    return content_chunks(source, chunker)


class _Leaves:
    """The leaf blocks of a stream, stored as they are made, with one chunk of look-ahead
    (the trickle layout asks whether more data comes before taking it)."""

    def __init__(self, writer: BlockWriter, chunks: AsyncIterator[bytes],
                 options: AddOptions, progress: Progress | None, *, trickle: bool) -> None:
        self._writer = writer
        self._chunks = chunks
        self._raw = options.leaves_raw
        self._prefix = options.prefix
        self._progress = progress
        self._trickle = trickle  # boxo's trickle leaves are UnixFS Raw, balanced ones File
        self._next: bytes | None = None
        self.started = False

    async def more(self) -> bool:
        if self._next is None:
            self._next = await anext(self._chunks, None)
        return self._next is not None

    async def take(self) -> Child:
        """The next leaf (after ``more()`` said there is one); for an empty stream, the
        leaf Kubo makes of no data."""
        chunk = self._next if self._next is not None else b""
        self._next = None
        self.started = True
        block, child = file_leaf(chunk, raw=self._raw, prefix=self._prefix,
                                 unixfs_raw=self._trickle)
        await self._writer.put(block)
        if self._progress is not None and chunk:
            self._progress(len(chunk))
        return child


async def _balanced(writer: BlockWriter, leaves: _Leaves, prefix: CidPrefix) -> Child:
    layout = _Layout(writer, prefix)
    while await leaves.more():
        await layout.add(await leaves.take())
    if not leaves.started:  # Kubo's empty file: one leaf without data
        await layout.add(await leaves.take())
    return await layout.finish()


async def _trickle(writer: BlockWriter, leaves: _Leaves, prefix: CidPrefix,
                   max_depth: int | None = None) -> Child:
    """boxo's trickle layout: a node holds up to MAX_LINKS leaves, then, for each depth
    d from 1 (below ``max_depth``, unbounded at the root), up to _TRICKLE_REPEAT subtrees
    of depth d, as long as data remains. Even a one-chunk file gets a root above it."""
    children: list[Child] = []
    while len(children) < MAX_LINKS and await leaves.more():
        children.append(await leaves.take())
    depth = 1
    while (max_depth is None or depth < max_depth) and await leaves.more():
        for _ in range(_TRICKLE_REPEAT):
            if not await leaves.more():
                break
            children.append(await _trickle(writer, leaves, prefix, depth))
        depth += 1
    block, child = file_parent(children, prefix=prefix)
    await writer.put(block)
    return child


async def import_file(
    writer: BlockWriter,
    source: AsyncIterable[bytes],
    options: AddOptions,
    progress: Progress | None,
) -> Child:
    async with aclosing(chunks(source, options)) as stream:
        leaves = _Leaves(writer, stream, options, progress, trickle=options.trickle)
        if options.trickle:
            return await _trickle(writer, leaves, options.prefix)
        return await _balanced(writer, leaves, options.prefix)


async def add_stream(
    ds: Datastore,
    source: AsyncIterable[bytes],
    *,
    options: AddOptions = AddOptions(),
    progress: Progress | None = None,
) -> AddedFile:
    """Import a byte stream (pieces of any size) as one UnixFS file.

    Returns once every block is stored; ``progress`` is called with each chunk's size.
    """
    async with open_writer(ds, options) as writer:
        root = await import_file(writer, source, options, progress)
    return AddedFile(str(root.cid), root.size)


async def _no_bytes() -> AsyncIterator[bytes]:
    return
    yield  # an async generator that yields nothing


async def concat(
    ds: Datastore, parts: Sequence[AddedFile], *, options: AddOptions = AddOptions()
) -> AddedFile:
    """One UnixFS file whose content is the parts' contents in order.

    Only each part's root block is read (verified, and its size checked against
    ``part.size``); the new nodes above them follow the balanced layout. The result is a
    valid UnixFS file, but not the DAG `ipfs add` would make of the joined bytes.
    """
    for p in parts:
        if p.size < 0:
            raise InvalidArgument(f"part {p.cid} has a negative size")
    nonempty = [p for p in parts if p.size]
    if not nonempty:
        return await add_stream(ds, _no_bytes(), options=options)

    async def root_of(part: AddedFile) -> Child:
        node = await fetch_node(ds, BlockCid.parse(part.cid))
        if node.kind not in ("file", "raw"):
            raise InvalidArgument(f"part {part.cid} is a {node.kind}, not a file")
        if node.content_size != part.size:
            raise InvalidArgument(
                f"part {part.cid} holds {node.content_size} bytes, not {part.size}"
            )
        return Child(node.cid, node.content_size, node.cumulative_size)

    async with open_prefetch(nonempty, root_of, options.window) as roots:
        children = [c async for _, c in roots]
    if len(children) == 1:
        return AddedFile(str(children[0].cid), children[0].size)
    async with open_writer(ds, options) as writer:
        layout = _Layout(writer, options.prefix)
        for c in children:
            await layout.add(c)
        root = await layout.finish()
    return AddedFile(str(root.cid), root.size)
