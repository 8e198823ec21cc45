"""The public surface of dscluster.unixfs (which the S3 gateway codes against) and the
blocking facade."""

from __future__ import annotations

import dataclasses
import inspect
import io
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import dscluster.unixfs as unixfs
from dscluster.store.memory import MemoryStore
from dscluster.unixfs import AddedFile, AddOptions
from dscluster.unixfs.blocking import BlockingUnixFS, runner
from tests.unit.unixfs_support import make_tree


def test_exports() -> None:
    """Everything public is re-exported from the package, and nothing else is."""
    public = {n for n in vars(unixfs) if not n.startswith("_") and n != "blocking"}
    assert public == set(unixfs.__all__)
    for name in unixfs.__all__:
        value = getattr(unixfs, name)
        assert isinstance(value, int) or value.__module__.startswith("dscluster.unixfs._")


def params(fn: Callable[..., Any]) -> list[tuple[str, Any]]:
    return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]


def test_api_signatures() -> None:
    empty = inspect.Parameter.empty
    assert [(f.name, f.default) for f in dataclasses.fields(AddOptions)] == [
        ("chunk_size", 262144), ("cid_version", None), ("raw_leaves", None),
        ("only_hash", False), ("window", 32), ("hidden", False), ("chunker", None),
        ("hash", "sha2-256"), ("inline_limit", None), ("trickle", False)]
    assert [f.name for f in dataclasses.fields(AddedFile)] == ["cid", "size"]
    assert params(unixfs.add_stream) == [
        ("ds", empty), ("source", empty), ("options", AddOptions()), ("progress", None)]
    assert params(unixfs.add_path) == [
        ("ds", empty), ("path", empty), ("recursive", False), ("options", AddOptions()),
        ("progress", None)]
    assert params(unixfs.read_file) == [
        ("ds", empty), ("cid", empty), ("offset", 0), ("length", None), ("window", 32)]
    assert params(unixfs.get_to_path) == [
        ("ds", empty), ("cid", empty), ("out", empty), ("window", 32), ("progress", None)]
    assert params(unixfs.concat) == [("ds", empty), ("parts", empty), ("options", AddOptions())]
    assert [n for n, _ in params(unixfs.stat)] == ["ds", "cid"]
    assert [n for n, _ in params(unixfs.ls)][:2] == ["ds", "cid"]
    assert params(unixfs.block_key) == [("cid", empty)]
    assert inspect.isasyncgenfunction(unixfs.read_file)
    assert inspect.isasyncgenfunction(unixfs.add_path)


def test_blocking_facade(tmp_path: Path) -> None:
    store = MemoryStore()

    @asynccontextmanager
    async def open_store() -> AsyncIterator[MemoryStore]:
        yield store

    files = BlockingUnixFS(runner(open_store))
    a = files.add_bytes(b"hello world")
    assert a == AddedFile("Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD", 11)
    assert files.cat(a.cid) == b"hello world"
    assert files.cat(a.cid, offset=6, length=3) == b"wor"
    buf = io.BytesIO()
    assert files.read_into(a.cid, buf) == 11 and buf.getvalue() == b"hello world"
    b = files.add_bytes(b"!", options=AddOptions(cid_version=1))
    joined = files.concat([a, b])
    assert files.cat(joined.cid) == b"hello world!"
    assert files.stat(joined.cid).size == 12

    seen: list[tuple[str, str]] = []
    tree = make_tree(tmp_path / "tree", hidden=False)
    entries = files.add_path(tree, recursive=True, on_added=lambda c, n: seen.append((c, n)))
    assert entries == seen and entries[-1][1] == "tree"
    assert [e.name for e in files.ls(entries[-1][0])][:2] == ["B.bin", "a.txt"]
    files.get_to_path(entries[-1][0], tmp_path / "copy")
    assert (tmp_path / "copy" / "sub" / "z.txt").read_bytes() == b"z"
