"""The UnixFS API for code that does not run trio itself.

Each call runs the async function under ``trio.run`` through a *runner*: a callable
``run(async_fn, *args)`` that opens a Datastore ``ds``, awaits ``async_fn(ds, *args)``
and returns its result (the same contract as the dsclient CLI's ``ctx.obj.run``).
``runner`` builds one from anything that opens a datastore as an async context manager:

    from dscluster.client.connect import open_cluster

    files = BlockingUnixFS(runner(lambda: open_cluster(conf_dir)))
    added = files.add_bytes(b"hello")
    assert files.cat(added.cid) == b"hello"
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, BinaryIO

import trio

from ..datastore import Datastore
from ._exporter import get_to_path, ls, stat, stream_file
from ._importer import add_stream, concat
from ._tree import add_path
from ._types import DEFAULT_WINDOW, AddedFile, AddOptions, DirEntry, NodeStat, Progress

Runner = Callable[..., Any]


def runner(open_datastore: Callable[[], AbstractAsyncContextManager[Datastore]]) -> Runner:
    """A runner that opens a fresh datastore for each call."""

    def run(fn: Callable[..., Any], *args: Any) -> Any:
        async def main() -> Any:
            async with open_datastore() as ds:
                return await fn(ds, *args)

        return trio.run(main)

    return run


class BlockingUnixFS:
    """The async API's operations as blocking methods; one ``trio.run`` per call."""

    def __init__(self, run: Runner) -> None:
        self._run = run

    def add_bytes(self, data: bytes, *, options: AddOptions = AddOptions()) -> AddedFile:
        async def source() -> AsyncIterator[bytes]:
            yield data

        return self._run(_call(add_stream, source(), options=options))

    def add_path(
        self,
        path: Path,
        *,
        recursive: bool = False,
        options: AddOptions = AddOptions(),
        progress: Progress | None = None,
        on_added: Callable[[str, str], None] | None = None,
    ) -> list[tuple[str, str]]:
        """(cid, name) of everything added, root last; ``on_added`` sees each as it is."""

        async def add(ds: Datastore) -> list[tuple[str, str]]:
            added = []
            async for cid, name in add_path(
                ds, path, recursive=recursive, options=options, progress=progress
            ):
                if on_added is not None:
                    on_added(cid, name)
                added.append((cid, name))
            return added

        return self._run(add)

    def read_into(
        self,
        cid: str,
        out: BinaryIO,
        *,
        offset: int = 0,
        length: int | None = None,
        window: int = DEFAULT_WINDOW,
    ) -> int:
        """Write a file's bytes (or a range) to ``out``; returns how many were written."""

        async def read(ds: Datastore) -> int:
            written = 0

            async def sink(chunk: bytes) -> None:
                nonlocal written
                await trio.to_thread.run_sync(out.write, chunk)
                written += len(chunk)

            await stream_file(ds, cid, sink, offset=offset, length=length, window=window)
            return written

        return self._run(read)

    def cat(
        self,
        cid: str,
        *,
        offset: int = 0,
        length: int | None = None,
        window: int = DEFAULT_WINDOW,
    ) -> bytes:
        """A file's bytes (or a range) in memory: for small files."""
        buf = io.BytesIO()
        self.read_into(cid, buf, offset=offset, length=length, window=window)
        return buf.getvalue()

    def get_to_path(
        self,
        cid: str,
        out: Path,
        *,
        window: int = DEFAULT_WINDOW,
        progress: Progress | None = None,
    ) -> None:
        self._run(_call(get_to_path, cid, out, window=window, progress=progress))

    def stat(self, cid: str) -> NodeStat:
        return self._run(stat, cid)

    def ls(self, cid: str) -> list[DirEntry]:
        return self._run(ls, cid)

    def concat(
        self, parts: Sequence[AddedFile], *, options: AddOptions = AddOptions()
    ) -> AddedFile:
        return self._run(_call(concat, parts, options=options))


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[Datastore], Any]:
    """``fn(ds, *args, **kwargs)`` as a function of ``ds`` alone (runners pass no kwargs)."""

    async def call(ds: Datastore) -> Any:
        return await fn(ds, *args, **kwargs)

    return call
