"""Adding local files, symlinks and directory trees, as `ipfs add [-r]` does.

Theory of operation: ``_walk`` lists the tree depth-first in name-byte order (the order
of os.ReadDir and of dag-pb directory links), skipping names that start with "." unless
``hidden``, and yields enter/leave steps for directories and one step per file or
symlink. ``_TreeImport`` turns the steps into blocks: files through the importer,
symlinks as UnixFS symlinks, each directory's node once its last entry is in.

Results are reported as Kubo reports them: each file and symlink when it is added, then
the directories after everything else, children before parents, the root last. A result
is only reported once all its blocks are stored, so that nothing claims success for data
a later failure would leave half-written. Block writes are therefore grouped in batches
(``_BATCH_BYTES`` of content or ``_BATCH_ENTRIES`` entries): within a batch the writes of
many small files overlap in one window; at the batch's end the window drains and the
batch's results are yielded (outside any nursery, which an async generator must not yield
from).
"""

from __future__ import annotations

import os
import stat as st
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import trio

from ..datastore import Datastore
from ._errors import LocalFileError, local_error
from ._hamt import directory
from ._importer import BlockWriter, import_file, open_writer
from ._node import Child, symlink
from ._types import AddOptions, Progress

_BATCH_BYTES = 64 << 20
_BATCH_ENTRIES = 1024
# bytes of a file read in one hand-off to a thread (see _file_chunks)
_READ_RUN = 4 << 20


@dataclass(frozen=True, slots=True)
class _Entry:
    kind: str  # "file", "dir" or "symlink"
    path: Path
    name: str  # the name Kubo prints: the root's base name, then "root/sub/file"
    link_name: bytes  # the name in the parent directory's link
    size: int  # a file's size in bytes (for progress totals)
    target: bytes  # a symlink's target


def _entry(path: Path, name: str, info: os.stat_result) -> _Entry:
    mode = info.st_mode
    if st.S_ISLNK(mode):
        try:
            target = os.fsencode(os.readlink(path))
        except OSError as e:
            raise local_error("read symlink", path, e) from None
        return _Entry("symlink", path, name, os.fsencode(path.name), 0, target)
    if st.S_ISDIR(mode):
        return _Entry("dir", path, name, os.fsencode(path.name), 0, b"")
    if st.S_ISREG(mode):
        return _Entry("file", path, name, os.fsencode(path.name), info.st_size, b"")
    raise LocalFileError(f"cannot add {path}: not a regular file, directory or symlink")


def _root_entry(path: Path) -> _Entry:
    try:
        info = os.lstat(path)
    except OSError as e:
        raise local_error("add", path, e) from None
    # Kubo names the root by its base name ("." is the working directory's name)
    return _entry(path, Path(os.path.abspath(path)).name or "/", info)


def _addable_root(path: Path, recursive: bool) -> _Entry:
    root = _root_entry(path)
    if root.kind == "dir" and not recursive:
        raise LocalFileError(f"{path} is a directory (add directories with -r)")
    return root


def check_addable(path: Path, *, recursive: bool = False) -> None:
    """Raise LocalFileError now if ``add_path`` would refuse ``path`` at once (missing,
    unreadable type, a directory without ``recursive``): to check every path before
    adding any."""
    _addable_root(Path(path), recursive)


def _scan(parent: _Entry, hidden: bool) -> list[_Entry]:
    """``parent``'s entries in link order."""
    entries = []
    try:
        with os.scandir(parent.path) as it:
            for e in it:
                if hidden or not e.name.startswith("."):
                    info = e.stat(follow_symlinks=False)
                    entries.append(_entry(Path(e.path), f"{parent.name}/{e.name}", info))
    except OSError as e:
        raise local_error("read directory", parent.path, e) from None
    entries.sort(key=lambda e: e.link_name)
    return entries


async def _walk(root: _Entry, hidden: bool) -> AsyncIterator[tuple[str, _Entry]]:
    """("enter", dir) ... ("leave", dir) around a directory's entries, ("file", e) and
    ("symlink", e) for the rest; depth-first, in name-byte order."""
    yield "enter", root
    stack = [(root, iter(await trio.to_thread.run_sync(_scan, root, hidden)))]
    while stack:
        parent, entries = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            yield "leave", parent
        elif entry.kind == "dir":
            yield "enter", entry
            stack.append((entry, iter(await trio.to_thread.run_sync(_scan, entry, hidden))))
        else:
            yield entry.kind, entry


def _read_run(f: BinaryIO, chunk_size: int, count: int) -> list[bytes]:
    """Up to ``count`` chunks; fewer only at the end of the file."""
    chunks = []
    for _ in range(count):
        chunk = f.read(chunk_size)
        if not chunk:
            break
        chunks.append(chunk)
    return chunks


async def _file_chunks(path: Path, chunk_size: int) -> AsyncIterator[bytes]:
    # chunks are read in runs of _READ_RUN bytes per hand-off to a thread: a thread hop
    # costs more than reading a 256 KiB chunk from the page cache
    count = max(1, _READ_RUN // chunk_size)
    try:
        f = await trio.to_thread.run_sync(open, path, "rb")
    except OSError as e:
        raise local_error("read", path, e) from None
    with f:
        while True:
            try:
                chunks = await trio.to_thread.run_sync(_read_run, f, chunk_size, count)
            except OSError as e:
                raise local_error("read", path, e) from None
            for chunk in chunks:
                yield chunk
            if len(chunks) < count:
                return


async def _add_entry(
    writer: BlockWriter, entry: _Entry, options: AddOptions, progress: Progress | None
) -> Child:
    """Import one file or symlink."""
    if entry.kind == "symlink":
        block, child = symlink(entry.target, prefix=options.prefix)
        await writer.put(block)
        return child
    source = _file_chunks(entry.path, options.read_size)
    async with aclosing(source):
        return await import_file(writer, source, options, progress)


class _TreeImport:
    def __init__(self, options: AddOptions, progress: Progress | None) -> None:
        self._options = options
        self._progress = progress
        self._open: list[list[tuple[bytes, Child]]] = []  # entries of each open directory
        self.directories: list[tuple[Child, str]] = []  # (node, name), children first

    async def batch(
        self,
        writer: BlockWriter,
        steps: AsyncIterator[tuple[str, _Entry]],
        added: list[tuple[Child, str]],
    ) -> bool:
        """Import steps until a batch is full; False if steps remain."""
        content = 0
        async for kind, entry in steps:
            if kind == "enter":
                self._open.append([])
                continue
            if kind == "leave":
                blocks, child = directory(
                    self._open.pop(), prefix=self._options.prefix, where=str(entry.path)
                )
                for block in blocks:
                    await writer.put(block)
                self.directories.append((child, entry.name))
            else:
                child = await _add_entry(writer, entry, self._options, self._progress)
                added.append((child, entry.name))
                content += entry.size
            if self._open:
                self._open[-1].append((entry.link_name, child))
            if content >= _BATCH_BYTES or len(added) >= _BATCH_ENTRIES:
                return False
        return True


async def add_path(
    ds: Datastore,
    path: Path,
    *,
    recursive: bool = False,
    options: AddOptions = AddOptions(),
    progress: Progress | None = None,
) -> AsyncIterator[tuple[str, str]]:
    """Add a file, symlink or (with ``recursive``) directory tree.

    Yields (cid, name) for each file, symlink and directory as `ipfs add -r` prints
    them, the root last; each only once its blocks are stored.
    """
    async for child, name, _ in _add_path(ds, Path(path), recursive, options, progress):
        yield str(child.cid), name


async def _add_path(
    ds: Datastore, path: Path, recursive: bool, options: AddOptions, progress: Progress | None
) -> AsyncIterator[tuple[Child, str, bool]]:
    """(node, name, whether it is a directory), in ``add_path``'s order."""
    root = await trio.to_thread.run_sync(_addable_root, path, recursive)
    if root.kind != "dir":
        async with open_writer(ds, options) as writer:
            child = await _add_entry(writer, root, options, progress)
        yield child, root.name, False
        return
    tree = _TreeImport(options, progress)
    steps = _walk(root, options.hidden)
    async with aclosing(steps):
        done = False
        while not done:
            added: list[tuple[Child, str]] = []
            async with open_writer(ds, options) as writer:
                done = await tree.batch(writer, steps, added)
            for child, name in added:
                yield child, name, False
    for child, name in tree.directories:
        yield child, name, True


@dataclass(frozen=True)
class NamedStream:
    """Bytes to add as one file, as `ipfs add` adds its standard input: ``name`` is
    Kubo's ``--stdin-name``; None names the file by its CID, as Kubo does."""

    source: AsyncIterable[bytes]
    name: str | None = None


async def add_all(
    ds: Datastore,
    items: Sequence[Path | NamedStream],
    *,
    recursive: bool = False,
    wrap: bool = False,
    options: AddOptions = AddOptions(),
    progress: Progress | None = None,
    on_root: Callable[[str], None] | None = None,
) -> AsyncIterator[tuple[str, str]]:
    """`ipfs add [-r] [-w] ITEM...`: ``add_path`` for each path, ``add_stream`` for each
    stream, then with ``wrap`` a directory holding every item by its base name (Kubo's
    ``-w``), yielded last with the empty name. As Kubo, the directories of all items come
    after all files. ``on_root`` is called with each item's root CID, or with ``wrap``
    the wrapping directory's alone."""
    if wrap:
        names = [os.path.basename(os.path.abspath(i)) if isinstance(i, Path) else i.name
                 for i in items]
        named = [n for n in names if n is not None]
        if len(set(named)) != len(named):
            raise LocalFileError("cannot wrap items of the same name in one directory")
    roots: list[tuple[bytes, Child]] = []
    directories: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, NamedStream):
            async with open_writer(ds, options) as writer:
                child = await import_file(writer, item.source, options, progress)
            name = str(child.cid) if item.name is None else item.name
            yield str(child.cid), name
        else:
            async for child, name, is_dir in _add_path(ds, item, recursive, options,
                                                       progress):
                if is_dir:
                    directories.append((str(child.cid), name))
                else:
                    yield str(child.cid), name
        roots.append((os.fsencode(name), child))
    for entry in directories:
        yield entry
    if wrap:
        blocks, child = directory(roots, prefix=options.prefix, where="the wrapping directory")
        async with open_writer(ds, options) as writer:
            for block in blocks:
                await writer.put(block)
        roots = [(b"", child)]
        yield str(child.cid), ""
    if on_root is not None:
        for _, child in roots:
            on_root(str(child.cid))


async def walk_files(root: Path, *, hidden: bool = False
                     ) -> AsyncIterator[tuple[Path, str, int]]:
    """Every regular file below directory ``root``, in the order ``add -r`` takes them:
    (path, its name below ``root`` with "/" separators, size). Directories of any size:
    no directory node is built from them."""
    top = _root_entry(Path(root))
    if top.kind != "dir":
        raise LocalFileError(f"{root} is not a directory")
    steps = _walk(top, hidden)
    async with aclosing(steps):
        async for kind, entry in steps:
            if kind == "file":
                yield entry.path, entry.name.split("/", 1)[1], entry.size


async def tree_size(path: Path, *, recursive: bool = False, hidden: bool = False) -> int:
    """Bytes of file content ``add_path`` would read (for progress bars)."""
    root = await trio.to_thread.run_sync(_root_entry, Path(path))
    if root.kind != "dir" or not recursive:
        return root.size
    total = 0
    steps = _walk(root, hidden)
    async with aclosing(steps):
        async for _, entry in steps:
            total += entry.size
    return total

