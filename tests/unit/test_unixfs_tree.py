"""Adding directory trees: Kubo's CIDs and output order, hidden files, symlinks, errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from dscluster.store.memory import MemoryStore
from dscluster.unixfs import (
    AddOptions,
    LocalFileError,
    add_path,
    block_key,
    check_addable,
    get_to_path,
    ls,
    stat,
    tree_size,
)
from dscluster.unixfs import _tree as tree_module
from tests.unit.unixfs_support import CountingStore, make_tree

# make_tree(hidden=True) added by Kubo v0.22 with `ipfs add -r --hidden`: every line
# `ipfs add` prints, in its order (files as they are added, then directories, children
# before parents). The root CID is Kubo's; so are the others, since they are under it.
KUBO_TREE_HIDDEN = [
    ("QmQkULokKUDoB3ZSjGZusr1JLr1T8QLkV9m7joD86Vavvs", "tree/.hidden"),
    ("QmULKig5Fxrs2sC4qt9nNduucXfb92AFYQ6Hi3YRqDmrYC", "tree/.hiddendir/x.txt"),
    ("QmW277BY69pDKWBmsXJDTpdyCgL4YMfgfJz7hvU8ys3bsD", "tree/B.bin"),
    ("QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN", "tree/a.txt"),
    ("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH", "tree/empty.bin"),
    ("QmfFYBFhu2C8fWNSS3XQcfnp1ZuuXTWpK5jrHfdVS7ssnH", "tree/exact.bin"),
    ("QmS9U51FvTAqDDVLJ5okMzeLjsEeg8JEG1rPmSq2oPahF6", "tree/link"),
    ("QmetGxZTgo8tYAKQH1KLsY13MxqeVHbxYVmvzBzJAKU6Z7", "tree/sub/deeper/c.txt"),
    ("QmeKP7rhE6bJnRUPqpRaDsk7K4mREkA9kAoBDK59ApegtF", "tree/sub/z.txt"),
    ("QmQKkkA1UoPMs13TcEVXfrrfpmMDNJK6LEmvR1Sn4TzUmj", "tree/\u00fcn\u00efcode-\u540d\u524d.txt"),
    ("Qmeqy6XuU5dJHjKT13c7TPasuZEoVFbyFAnguEUCYHvjB3", "tree/.hiddendir"),
    ("QmZnx1Y5tnX7qXsVFTqSdcFjVtuequWFmsSR8HkoT8nYEM", "tree/sub/deeper"),
    ("QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn", "tree/sub/emptydir"),
    ("QmYfNDG3xppGVS2ZGFWRg4u3nse1EYoz67Uwv7WzDzwMW2", "tree/sub"),
    ("QmeFQ89ZqpoSUCtiQRjwv2P4WhGMmUremqp7Vc2BWoVg7f", "tree"),
]
# Kubo's root CID for make_tree(hidden=False): what `ipfs add -r` (no --hidden) gives for
# the tree with hidden entries, since it skips them.
KUBO_TREE_ROOT = "QmRGHXnMCHQwhgs2SuvA7Lpa2vRuTaL9MRG18JFPMjva2Z"
# A directory of 907 empty files with 255-byte names (estimated block 907 * (255 + 34) =
# 262123 bytes) is Kubo's largest basic directory of such names; 908 make a HAMT shard.
KUBO_907_ENTRIES = "QmTAt3cJmsXKgKjY58a18BTkrdZQqbDoGJf5WMDWwVm14Q"


async def added(ds: Any, path: Path, **kw: Any) -> list[tuple[str, str]]:
    return [x async for x in add_path(ds, path, recursive=True, **kw)]


def long_names(root: Path, count: int) -> Path:
    root.mkdir()
    for i in range(count):
        (root / (f"{i:05d}" + "x" * 250)).write_bytes(b"")
    return root


async def test_tree_matches_kubo(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree", hidden=True)
    assert await added(MemoryStore(), root, options=AddOptions(hidden=True)) == KUBO_TREE_HIDDEN
    lines = await added(MemoryStore(), root)
    assert lines[-1] == (KUBO_TREE_ROOT, "tree")
    assert not any("/." in name for _, name in lines)


async def test_tree_round_trip(tmp_path: Path) -> None:
    ds = MemoryStore()
    root = make_tree(tmp_path / "tree", hidden=True)
    cid, _ = (await added(ds, root, options=AddOptions(hidden=True)))[-1]
    out = tmp_path / "copy"
    await get_to_path(ds, cid, out)
    originals = sorted(p.relative_to(root) for p in root.rglob("*"))
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == originals
    for rel in originals:
        src, dst = root / rel, out / rel
        if src.is_symlink():
            assert os.readlink(dst) == os.readlink(src)
        elif src.is_file():
            assert dst.read_bytes() == src.read_bytes()
        else:
            assert dst.is_dir()
    assert await tree_size(root, recursive=True, hidden=True) == sum(
        p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


async def test_single_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = MemoryStore()
    root = make_tree(tmp_path / "tree", hidden=False)
    assert [x async for x in add_path(ds, root / "a.txt")] == [
        ("QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN", "a.txt")]
    # a symlink given as the path is added as the symlink itself, as Kubo does
    assert [x async for x in add_path(ds, root / "link")] == [
        ("QmS9U51FvTAqDDVLJ5okMzeLjsEeg8JEG1rPmSq2oPahF6", "link")]
    monkeypatch.chdir(root)
    assert (await added(ds, Path(".")))[-1] == (KUBO_TREE_ROOT, "tree")


async def test_bad_paths(tmp_path: Path) -> None:
    ds = MemoryStore()
    with pytest.raises(LocalFileError, match=r"missing.*No such file"):
        check_addable(tmp_path / "missing")
    with pytest.raises(LocalFileError, match=r"is a directory.*-r"):
        check_addable(tmp_path)
    with pytest.raises(LocalFileError, match="is a directory"):
        [x async for x in add_path(ds, tmp_path)]
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(LocalFileError, match="fifo: not a regular file"):
        await added(ds, tmp_path)
    assert await ds.count() == 0


async def test_directory_sharded_past_one_block(tmp_path: Path) -> None:
    ds = MemoryStore()
    assert (await added(ds, long_names(tmp_path / "d907", 907)))[-1][0] == KUBO_907_ENTRIES
    assert (await stat(ds, KUBO_907_ENTRIES)).type == "directory"
    # 908 entries, or 907 with CIDv1 links (36 bytes): past the threshold, a HAMT shard
    # (its CIDs against Kubo's are in test_unixfs_kubo_add)
    for path, options in ((long_names(tmp_path / "d908", 908), AddOptions()),
                          (tmp_path / "d907", AddOptions(cid_version=1))):
        root = (await added(ds, path, options=options))[-1][0]
        assert (await stat(ds, root)).type == "hamt-shard"
        assert sorted(e.name for e in await ls(ds, root)) == sorted(os.listdir(path))


async def test_results_only_after_their_blocks_are_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tree_module, "_BATCH_ENTRIES", 3)
    ds = CountingStore(delay=0.001)
    root = tmp_path / "many"
    (root / "sub").mkdir(parents=True)
    for i in range(10):
        (root / f"f{i}").write_bytes(b"x" * i * 1000)
        (root / "sub" / f"g{i}").write_bytes(b"y" * i)
    names = []
    async for cid, name in add_path(ds, root, recursive=True, options=AddOptions(chunk_size=512)):
        assert await ds.has(block_key(cid)), name
        names.append(name)
    files = [f"many/f{i}" for i in range(10)] + [f"many/sub/g{i}" for i in range(10)]
    assert names == [*files, "many/sub", "many"]
