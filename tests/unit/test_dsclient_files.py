"""dsclient add/get/cat/ls/stat, run as the real program runs them (dscluster.cliutil's
run_cli, which turns errors into one line and an exit code) over a MemoryStore."""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from click.testing import CliRunner

from dsclient.cli import main
from dscluster.cliutil import run_cli
from dscluster.store.memory import MemoryStore
from dscluster.unixfs import BlockCid
from tests.unit.test_unixfs_tree import KUBO_TREE_HIDDEN, KUBO_TREE_ROOT
from tests.unit.unixfs_support import VECTORS, make_tree, vector_data

pytestmark = pytest.mark.timeout(60)


class FakeApp:
    """The ``ctx.obj`` contract: run(fn, *args) awaits fn(ds, *args) under trio.run."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.runs = 0

    def run(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        self.runs += 1

        async def main() -> Any:
            return await fn(self.store, *args)

        return trio.run(main)


@dataclass
class Outcome:
    code: int
    out: bytes
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.decode().splitlines()

    @property
    def text(self) -> str:
        return self.out.decode()


def dsclient(app: Any, *args: str) -> Outcome:
    """The real dsclient command group, with ``app`` (e.g. a MemoryStore-backed one) as
    its ctx.obj."""
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        argv = sys.argv
        sys.argv = ["dsclient", *args]
        try:
            run_cli(main, "dsclient", obj=app)
        except SystemExit as e:
            code = int(e.code or 0)
        finally:
            sys.argv = argv
        return Outcome(code, out.getvalue(), err.getvalue().decode())


@pytest.fixture
def app() -> FakeApp:
    return FakeApp(MemoryStore())


def vector_file(tmp_path: Path, name: str) -> tuple[Path, str]:
    v = next(v for v in VECTORS["files"] if v["name"] == name)
    path = tmp_path / name
    path.write_bytes(vector_data(v))
    return path, v["cid"]


def one_line_error(r: Outcome, code: int = 1) -> str:
    assert r.code == code, r
    assert r.out == b""
    [line] = r.err.strip().splitlines()
    assert line.startswith("dsclient: error:") and "Traceback" not in r.err
    return line


def test_add_file(app: FakeApp, tmp_path: Path) -> None:
    path, cid = vector_file(tmp_path, "rand1m1.bin")
    r = dsclient(app, "add", str(path))
    assert (r.code, r.lines) == (0, [f"added {cid} rand1m1.bin"])
    assert r.err == ""  # no bar when stderr is not a terminal
    assert app.runs == 1
    assert dsclient(app, "add", "-q", str(path)).lines == [cid]
    assert dsclient(app, "add", "-Q", str(path)).lines == [cid]
    assert dsclient(app, "cat", cid).out == path.read_bytes()


def test_add_options(app: FakeApp, tmp_path: Path) -> None:
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello world")
    only = dsclient(app, "add", "--only-hash", "-Q", str(path))
    assert only.lines == ["Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD"]
    assert trio.run(app.store.count) == 0
    raw = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    assert dsclient(app, "add", "-Q", "--cid-version", "1", str(path)).lines == [raw]
    assert dsclient(app, "add", "-Q", "--raw-leaves", str(path)).lines == [raw]
    for no_raw in ("--raw-leaves=false", "--no-raw-leaves"):
        [pb] = dsclient(app, "add", "-Q", "--cid-version=1", no_raw, str(path)).lines
        assert pb.startswith("bafybei")
    big, cid = vector_file(tmp_path, "rand1m1.bin")
    assert dsclient(app, "add", "-Q", "--chunker=size-262144", str(big)).lines == [cid]
    [other] = dsclient(app, "add", "-Q", "-s", "size-1000", str(big)).lines
    assert other != cid
    assert dsclient(app, "cat", other).out == big.read_bytes()


@pytest.mark.parametrize("chunker", ["size-0", "size-x", "rabin-15-20-30", "rabin-x",
                                     "rabin-16-64-32", "rabin-10000000", "buzhash-1",
                                     "fixed"])
def test_bad_chunker(app: FakeApp, tmp_path: Path, chunker: str) -> None:
    r = dsclient(app, "add", "--chunker", chunker, str(tmp_path))
    assert r.code == 2 and "chunker" in r.err and "Traceback" not in r.err


def test_add_tree(app: FakeApp, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", hidden=True)
    r = dsclient(app, "add", "-r", str(tree))
    visible = [(c, n) for c, n in KUBO_TREE_HIDDEN if "/." not in n][:-1]
    assert r.lines == [f"added {c} {n}" for c, n in visible] + [f"added {KUBO_TREE_ROOT} tree"]
    with_hidden = dsclient(app, "add", "-r", "--hidden", str(tree))
    assert with_hidden.lines == [f"added {c} {n}" for c, n in KUBO_TREE_HIDDEN]
    assert dsclient(app, "add", "-rQ", str(tree)).lines == [KUBO_TREE_ROOT]


def test_add_refuses_bad_paths_before_adding_anything(app: FakeApp, tmp_path: Path) -> None:
    good, _ = vector_file(tmp_path, "one.bin")
    line = one_line_error(dsclient(app, "add", str(good), str(tmp_path / "nope")))
    assert "nope" in line and "No such file" in line
    line = one_line_error(dsclient(app, "add", str(good), str(tmp_path)))
    assert "is a directory" in line and "-r" in line
    assert trio.run(app.store.count) == 0


def test_get_file(app: FakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, cid = vector_file(tmp_path, "rand10m.bin")
    dsclient(app, "add", str(path))
    assert dsclient(app, "get", cid, "-o", str(tmp_path / "a")).code == 0
    assert dsclient(app, "get", cid, str(tmp_path / "b")).code == 0
    monkeypatch.chdir(tmp_path)
    assert dsclient(app, "get", cid).code == 0
    for name in ("a", "b", cid):
        assert (tmp_path / name).read_bytes() == path.read_bytes()
    r = dsclient(app, "get", cid, "x", "-o", "y")
    assert r.code == 2 and "not both" in r.err


def test_get_tree_and_failures(app: FakeApp, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", hidden=False)
    dsclient(app, "add", "-r", str(tree))
    out = tmp_path / "copy"
    assert dsclient(app, "get", KUBO_TREE_ROOT, "-o", str(out)).code == 0
    assert (out / "sub" / "deeper" / "c.txt").read_bytes() == b"c\n"
    assert os.readlink(out / "link") == "a.txt"
    assert (out / "sub" / "emptydir").is_dir()

    line = one_line_error(dsclient(app, "get", KUBO_TREE_ROOT, "-o", str(out)))
    assert "already exists" in line
    # a corrupt block deep in the tree: one line naming it, and nothing at the target
    c_txt = next(c for c, n in KUBO_TREE_HIDDEN if n == "tree/sub/deeper/c.txt")
    trio.run(app.store.put, BlockCid.parse(c_txt).key, b"garbage")
    before = sorted(os.listdir(tmp_path))
    line = one_line_error(dsclient(app, "get", KUBO_TREE_ROOT, "-o", str(tmp_path / "bad")))
    assert c_txt in line and "corrupt" in line
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize(
    ("cid", "why"),
    [("not-a-cid", "invalid CID"),
     ("bafyreibnoelefnzgwbcacyt4vh52ymxvzbjq7mmqhtcnwarfq4lzegsiqe", "dag-cbor")],
)
@pytest.mark.parametrize("command", ["get", "cat", "ls", "stat"])
def test_bad_cid_is_a_usage_error(app: FakeApp, command: str, cid: str, why: str) -> None:
    r = dsclient(app, command, cid)
    assert r.code == 2 and why in r.err and "Traceback" not in r.err
    assert app.runs == 0  # refused before any datastore is opened


def test_missing_block(app: FakeApp) -> None:
    line = one_line_error(dsclient(app, "cat", "QmfDmsHTywy6L9Ne5RXsj5YumDedfBLMvCvmaxjBoe6w4d"))
    assert "QmfDmsHTywy6L9Ne5RXsj5YumDedfBLMvCvmaxjBoe6w4d not found" in line


def test_cat_ranges(app: FakeApp, tmp_path: Path) -> None:
    path = tmp_path / "data"
    data = random.Random(3).randbytes(700_000)
    path.write_bytes(data)
    [cid] = dsclient(app, "add", "-Q", str(path)).lines
    assert dsclient(app, "cat", cid, "--offset", "262140", "--length", "10").out == (
        data[262140:262150])
    assert dsclient(app, "cat", cid, "-o", "699990").out == data[699990:]
    assert dsclient(app, "cat", cid, "-l", "0").out == b""
    tree = make_tree(tmp_path / "tree", hidden=False)
    dsclient(app, "add", "-r", str(tree))
    assert "is a directory" in one_line_error(dsclient(app, "cat", KUBO_TREE_ROOT))


def test_ls_and_stat(app: FakeApp, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", hidden=False)
    cids = {n: c for c, n in KUBO_TREE_HIDDEN}
    dsclient(app, "add", "-r", str(tree))
    lines = dsclient(app, "ls", KUBO_TREE_ROOT).lines
    assert lines[0] == f"{cids['tree/B.bin']} 300000 B.bin"
    assert f"{cids['tree/sub']} - sub/" in lines
    assert f"{cids['tree/link']} 5 link" in lines
    assert len(lines) == 7
    r = dsclient(app, "stat", cids["tree/B.bin"])
    assert r.lines[0] == cids["tree/B.bin"]
    chunks = [line.split()[0] for line in dsclient(app, "ls", cids["tree/B.bin"]).lines]
    root, *leaves = [len(trio.run(app.store.get, BlockCid.parse(c).key))
                     for c in [cids["tree/B.bin"], *chunks]]
    assert r.lines[1:] == ["Size: 300000", f"CumulativeSize: {root + sum(leaves)}",
                           "ChildBlocks: 2", "Type: file", f"BlockSize: {root}"]


def test_progress_bar_goes_to_stderr(app: FakeApp, tmp_path: Path) -> None:
    path, cid = vector_file(tmp_path, "rand1m1.bin")
    r = dsclient(app, "add", "--progress", str(path))
    assert r.lines == [f"added {cid} rand1m1.bin"]
    assert "1.00M" in r.err  # tqdm's total, in binary units
    g = dsclient(app, "get", "--progress", cid, "-o", str(tmp_path / "copy"))
    assert g.code == 0 and g.out == b"" and "100%" in g.err
