"""dsclient import-dataset: parallel adds recorded in a CSV, resumed after interruptions."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from dscluster.errors import Unavailable
from dscluster.store.memory import MemoryStore
from tests.unit.test_dsclient_files import FakeApp, dsclient, one_line_error

pytestmark = pytest.mark.timeout(60)


def dataset(root: Path, files: int = 30) -> dict[str, bytes]:
    """Files in nested directories, one hidden; relative path -> content."""
    contents = {}
    for i in range(files):
        rel = f"d{i % 3}/sub{i % 2}/f{i:03d}.bin"
        data = os.urandom(i * 997 % 70000)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        contents[rel] = data
    (root / ".hidden").write_bytes(b"not imported without -H")
    return contents


def rows(record: Path) -> list[list[str]]:
    with open(record, newline="") as f:
        return list(csv.reader(f))


def expected_cid(app: FakeApp, path: Path) -> str:
    r = dsclient(app, "add", "--only-hash", "-Q", str(path))
    assert r.code == 0, r.err
    return r.text.strip()


def test_every_file_is_added_and_recorded_with_the_cid_add_gives(tmp_path):
    root = tmp_path / "data"
    contents = dataset(root)
    app = FakeApp(MemoryStore())
    record = tmp_path / "rec.csv"
    r = dsclient(app, "import-dataset", "-j", "4", "--record", str(record), str(root))
    assert r.code == 0, r.err
    assert len(r.lines) == len(contents)
    table = rows(record)
    assert table[0] == ["path", "cid", "size"]
    got = {p: (cid, int(size)) for p, cid, size in table[1:]}
    assert set(got) == set(contents)  # no hidden file, no directories
    for rel, data in contents.items():
        assert got[rel] == (expected_cid(app, root / rel), len(data))
        assert f"added {got[rel][0]} {rel}" in r.lines
        assert dsclient(app, "cat", got[rel][0]).out == data
    assert f"imported {len(contents)} files" in r.err


def test_an_interrupted_import_resumes_with_only_what_is_missing(tmp_path):
    root = tmp_path / "data"
    contents = dataset(root)
    record = tmp_path / "rec.csv"
    store = MemoryStore()
    apply = store.apply
    written = 0

    async def failing_apply(ops):  # the cluster goes away mid-import
        nonlocal written
        written += len(ops)
        if written > 12:
            raise Unavailable("node 1 is unavailable: connection refused")
        await apply(ops)

    store.apply = failing_apply  # type: ignore[method-assign]
    first = dsclient(FakeApp(store), "import-dataset", "-j", "3", "--record", str(record),
                     str(root))
    assert first.code == 1 and first.err.splitlines() == [
        "dsclient: error: node 1 is unavailable: connection refused"]
    done = rows(record)[1:]
    assert 0 < len(done) < len(contents)
    assert len(first.lines) == len(done)  # what it said it added is what it recorded
    # a crash tore the last row
    with open(record, "a") as f:
        f.write("d0/sub0/f000.bin,Qm")
    store.apply = apply  # type: ignore[method-assign]
    app = FakeApp(store)
    again = dsclient(app, "import-dataset", "-j", "3", "--record", str(record), str(root))
    assert again.code == 0, again.err
    assert len(again.lines) == len(contents) - len(done)  # the recorded ones skipped
    assert f"{len(done)} already in the record" in again.err
    final = {p: cid for p, cid, _ in rows(record)[1:]}
    assert set(final) == set(contents)
    for rel in contents:
        assert final[rel] == expected_cid(app, root / rel)


def test_a_file_that_changed_size_since_it_was_recorded_is_added_again(tmp_path):
    root = tmp_path / "data"
    dataset(root, files=4)
    record = tmp_path / "rec.csv"
    app = FakeApp(MemoryStore())
    assert dsclient(app, "import-dataset", "--record", str(record), str(root)).code == 0
    changed = root / "d1/sub1/f001.bin"
    changed.write_bytes(b"new content")
    r = dsclient(app, "import-dataset", "--record", str(record), str(root))
    assert r.code == 0 and r.lines == [f"added {expected_cid(app, changed)} d1/sub1/f001.bin"]


def test_a_file_that_is_not_a_record_is_refused_in_one_line(tmp_path):
    root = tmp_path / "data"
    dataset(root, files=2)
    record = tmp_path / "notes.csv"
    record.write_text("my,own\nnotes,here\n")
    r = dsclient(FakeApp(MemoryStore()), "import-dataset", "--record", str(record), str(root))
    assert "is not an import record" in one_line_error(r)
    assert record.read_text() == "my,own\nnotes,here\n"  # left as it was


def test_a_directory_too_big_for_an_unsharded_node_imports_file_by_file(tmp_path):
    # `add -r` makes it a HAMT shard, as Kubo; the import builds no directory node at all
    root = tmp_path / "wide"
    root.mkdir()
    names = [f"{i:05d}-" + "x" * 100 for i in range(2600)]
    for n in names:
        (root / n).write_bytes(n.encode())
    app = FakeApp(MemoryStore())
    assert dsclient(app, "add", "-r", "-Q", str(root)).code == 0
    record = tmp_path / "rec.csv"
    r = dsclient(app, "import-dataset", "-q", "-j", "16", "--record", str(record), str(root))
    assert r.code == 0 and r.lines == [], r.err
    assert sorted(p for p, _, _ in rows(record)[1:]) == names
