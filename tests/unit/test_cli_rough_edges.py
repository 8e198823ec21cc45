"""What a new user meets first in the three programs, run through cliutil.run_cli as the
installed entry points run them: help for a bare command, Ctrl-C, --conf wherever it is
given, progress bars, `dsclient status` and `dsclient repair` output, and the undoing
of a half-made directory."""

from __future__ import annotations

import errno
import json
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
import trio
from click.testing import CliRunner

import dsclient.cli
import dsclient.status
from dscfg.cli import main as dscfg_main
from dsclient.cli import main as dsclient_main
from dscluster.cli import main as dscluster_main
from dscluster.cliutil import EXIT_INTERRUPTED, run_cli, undone_on_failure
from dscluster.store.memory import MemoryStore
from dscluster.testing.memcluster import MemoryCluster
from tests.unit.test_dsclient_files import FakeApp, vector_file

pytestmark = pytest.mark.timeout(60)


@dataclass
class Outcome:
    code: int
    out: str
    err: str
    both: str  # stdout and stderr as a terminal shows them, interleaved


def run(group: click.Command, prog: str, *args: str, app: Any = None) -> Outcome:
    runner = CliRunner()
    with runner.isolation() as (out, err, both):
        argv = sys.argv
        sys.argv = [prog, *args]
        try:
            run_cli(group, prog, obj=app)
        except SystemExit as e:
            code = int(e.code or 0)
        finally:
            sys.argv = argv
        return Outcome(code, out.getvalue().decode(), err.getvalue().decode(),
                       both.getvalue().decode())


class InterruptedApp:
    """A ctx.obj whose cluster work is interrupted by Ctrl-C, inside trio."""

    def run(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        async def main() -> None:
            raise KeyboardInterrupt

        return trio.run(main)


class MemoryClusterApp:
    """A ctx.obj over a 3-node in-memory cluster; ``prepare`` runs on it first."""

    def __init__(self, prepare: Callable[[MemoryCluster], None] = lambda c: None) -> None:
        self.prepare = prepare

    def run(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        async def main() -> Any:
            cluster = await MemoryCluster.start(3, 3)
            self.prepare(cluster)
            return await fn(cluster.client(), *args)

        return trio.run(main)


# -- bare commands ----------------------------------------------------------------------


@pytest.mark.parametrize(("group", "prog"), [(dsclient_main, "dsclient"),
                                             (dscfg_main, "dscfg")])
def test_a_bare_command_prints_its_help_and_succeeds(group: click.Group, prog: str) -> None:
    r = run(group, prog)
    assert r.code == 0, r.err
    assert r.out.startswith(f"Usage: {prog} [OPTIONS] COMMAND") and "Commands:" in r.out
    assert r.err == ""


# -- Ctrl-C -----------------------------------------------------------------------------


def test_ctrl_c_in_dsclient_exits_130_with_one_line() -> None:
    r = run(dsclient_main, "dsclient", "get-key", "/k", app=InterruptedApp())
    assert r.code == EXIT_INTERRUPTED == 130
    # click ends the terminal's "^C" with a newline first
    assert r.err.strip() == "dsclient: interrupted" and r.out == ""


def test_ctrl_c_in_dscfg_exits_130(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("dscfg.cli.create_cluster", interrupted)
    r = run(dscfg_main, "dscfg", "cluster", "-n", "1", str(tmp_path / "srv01"))
    assert (r.code, r.err.strip()) == (130, "dscfg: interrupted")


def test_ctrl_c_in_dscluster_exits_130(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    run(dscfg_main, "dscfg", "cluster", "-n", "1", str(tmp_path / "srv01"))

    async def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("dscluster.cli.run_node", interrupted)
    # a node's logging set-up is process-wide; this process goes on running tests
    monkeypatch.setattr("dscluster.cli.setup_logging", lambda level: None)
    r = run(dscluster_main, "dscluster", f"--conf={tmp_path / 'srv01'}")
    assert (r.code, r.err.strip()) == (130, "dscluster: interrupted")


# -- OS errors --------------------------------------------------------------------------


class FailingApp:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def run(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        raise self.error


@pytest.mark.parametrize(("error", "line"), [
    (OSError(errno.EADDRINUSE, "Address already in use"),
     "dsclient: error: Address already in use"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/x"),
     "dsclient: error: /x: No such file or directory"),
])
def test_an_os_error_is_one_line_with_one_colon(error: OSError, line: str) -> None:
    r = run(dsclient_main, "dsclient", "get-key", "/k", app=FailingApp(error))
    assert (r.code, r.err) == (1, line + "\n")


# -- --conf ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["before", "after"])
def test_dsclient_conf_goes_before_or_after_the_command(tmp_path: Path, where: str) -> None:
    conf = f"--conf={tmp_path / 'nowhere'}"
    args = [conf, "get-key", "/k"] if where == "before" else ["get-key", conf, "/k"]
    r = run(dsclient_main, "dsclient", *args)
    assert r.code == 1
    assert r.err.startswith(f"dsclient: error: {tmp_path / 'nowhere'} is not a client directory")


def test_dsclient_conf_after_the_command_wins_over_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSCLIENT_CONF", str(tmp_path / "from-env"))
    r = run(dsclient_main, "dsclient", "ls")
    assert f"{tmp_path / 'from-env'} is not a client directory" in r.err
    r = run(dsclient_main, "dsclient", "ls", f"--conf={tmp_path / 'given'}")
    assert f"{tmp_path / 'given'} is not a client directory" in r.err


def test_dscluster_conf_from_the_environment(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSCLUSTER_CONF", str(tmp_path / "node"))
    r = run(dscluster_main, "dscluster")
    assert r.code == 1
    assert r.err.startswith(f"dscluster: error: {tmp_path / 'node'} has no config.json")


# -- progress bars -----------------------------------------------------------------------


def test_the_add_bar_names_the_file_in_binary_units_and_ends_before_added(
        tmp_path: Path) -> None:
    app = FakeApp(MemoryStore())
    path, cid = vector_file(tmp_path, "rand1m1.bin")
    r = run(dsclient_main, "dsclient", "add", "--progress", str(path), app=app)
    assert r.code == 0 and r.out == f"added {cid} rand1m1.bin\n"
    renders = [s for s in re.split(r"[\r\n]", r.err) if s.strip()]
    assert renders and all(s.startswith("rand1m1.bin:") for s in renders), renders
    assert "1.00MiB/1.00MiB" in renders[-1] and "100%" in renders[-1]
    speeds = re.findall(r", ([^,\]]+)\]", r.err)
    assert speeds and all(re.fullmatch(r"\?B/s|\d+B/s|[\d.]+[KMGT]iB/s", s) for s in speeds)
    assert not re.search(r"\d[kKMGT]B", r.err)  # never a decimal-looking unit
    # the bar's last state, then the line: not the line, then the bar jumping to 100%
    assert r.both.rindex("100%") < r.both.index("added ") and "]\nadded " in r.both
    second = tmp_path / "second.bin"
    second.write_bytes(b"x" * 5000)
    r = run(dsclient_main, "dsclient", "add", "--progress", str(path), str(second), app=app)
    assert r.code == 0 and "second.bin: 100%" in r.err and ": :" not in r.err
    g = run(dsclient_main, "dsclient", "get", "--progress", cid, "-o",
            str(tmp_path / "copy.bin"), app=app)
    assert g.code == 0 and "copy.bin: 100%" in g.err and "MiB" in g.err


# -- dsclient status ---------------------------------------------------------------------


def _rows(error: str = "") -> list[dict[str, Any]]:
    up = {"reachable": True, "keys": 7, "disk_usage": 3 << 20, "epoch": 4, "seen_down_by": []}
    return [
        {"index": 0, "peer_id": "12D3KooW" + "a" * 44, "addrs": ["/ip4/127.0.0.1/tcp/4001"],
         "slots": "0-5460", **up},
        {"index": 1, "peer_id": "12D3KooW" + "b" * 44, "addrs": ["/ip4/127.0.0.1/tcp/40002"],
         "slots": "5461-10921", **up, "keys": 12345, "epoch": 3},
        {"index": 2, "peer_id": "12D3KooW" + "c" * 44, "addrs": ["/ip4/127.0.0.1/tcp/40003"],
         "slots": "10922-16383", "reachable": False, "seen_down_by": [0, 1], "error": error},
    ]


SLOTS = {"ok": 0, "under_replicated": 16384, "unavailable": 0, "disagreeing": 0}
LONG_ERROR = ("node 2 (12D3KooW" + "c" * 44 + ") serving slots 10922-16383 is unreachable: "
              "cannot connect to /ip4/127.0.0.1/tcp/40003: connection refused " * 3)


def test_status_columns_line_up() -> None:
    lines = dsclient.status.status_lines(4, _rows(), SLOTS, None)
    rows = [line for line in lines if line.startswith("node ")]
    assert len(rows) == 3
    for column in ("12D3KooW", "/ip4/", "slots "):
        assert len({row.index(column) for row in rows}) == 1, (column, rows)
    ups = [row for row in rows if " up " in row]
    assert len({row.index("disk=") for row in ups}) == 1, ups
    assert "DOWN (seen down by node 0, 1)" in rows[2]


def test_status_wraps_a_long_down_row_within_the_terminal() -> None:
    width = 80
    lines = dsclient.status.status_lines(4, _rows(LONG_ERROR), SLOTS, width)
    assert all(len(line) <= width for line in lines), "\n".join(lines)
    down = next(i for i, line in enumerate(lines) if line.startswith("node 2 "))
    after = lines[down + 1:-1]
    # every continuation is indented under the row; the whole error is there
    assert after and all(line.startswith("        ") for line in after), lines
    assert " ".join(" ".join(lines[down:-1]).split()).count("connection refused") == 3
    # not a terminal: one line per member, for scripts
    flat = dsclient.status.status_lines(4, _rows(LONG_ERROR), SLOTS, None)
    assert [line.startswith("node ") for line in flat[1:4]] == [True, True, True]


def test_status_header_has_the_epoch_the_members_report() -> None:
    assert dsclient.status.status_lines(4, _rows(), SLOTS, None)[0] == (
        "cluster map epoch 4 (node 1 still at epoch 3), 3 nodes")
    assert dsclient.status.status_lines(3, _rows(), SLOTS, None)[0] == (
        "cluster map epoch 4 (node 1 still at epoch 3; this client's copy is at epoch 3), "
        "3 nodes")


def test_dsclient_status_shows_the_members_epoch_not_only_its_cached_one() -> None:
    def newer_map(cluster: MemoryCluster) -> None:
        # two members moved on to the next map; node 2 and the client hold the old one
        assert cluster.map is not None
        newer = cluster.map.evolve()
        for node in cluster.nodes[:2]:
            assert node.server.state.offer(newer)

    r = run(dsclient_main, "dsclient", "status", app=MemoryClusterApp(newer_map))
    assert r.code == 0, r.err
    header = r.out.splitlines()[0]
    # status fetches the cluster's map first, so its own copy is current
    assert re.fullmatch(r"cluster map epoch (\d+) \(node 2 still at epoch (\d+)\), 3 nodes",
                        header), header
    members, lagging = map(int, re.findall(r"epoch (\d+)", header))
    assert members == lagging + 1
    doc = json.loads(
        run(dsclient_main, "dsclient", "status", "--json", app=MemoryClusterApp(newer_map)).out)
    assert (doc["epoch"], doc["client_epoch"]) == (members, members)


def test_dsclient_status_wraps_to_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dsclient.cli, "terminal_width", lambda: 70)
    r = run(dsclient_main, "dsclient", "status", app=MemoryClusterApp(lambda c: c.kill(2)))
    assert r.code == 1
    lines = r.out.splitlines()
    assert all(len(line) <= 70 for line in lines), r.out
    assert any(line.startswith("node 2 ") for line in lines)


# -- dsclient repair ---------------------------------------------------------------------


def test_dsclient_repair_prints_why_each_member_was_unreachable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def report(caller: Any, slots: Any, on_progress: Any) -> dict[str, Any]:
        return {"slots": 16384, "differing": 0, "pulled": 0, "bytes": 0,
                "unreachable": {1: "unreachable from node 0: connection refused",
                                2: "node 2 did not answer in 5 s"}}

    monkeypatch.setattr(dsclient.cli, "repair_slots", report)
    r = run(dsclient_main, "dsclient", "repair", "--no-progress", app=MemoryClusterApp())
    assert r.code == 1
    assert r.out.splitlines() == [
        "repaired 16384 slots: 0 differed, 0 keys (0B) copied; unreachable: node 1, node 2",
        "  node 1: unreachable from node 0: connection refused",
        "  node 2: node 2 did not answer in 5 s",
    ]


def test_dsclient_repair_with_a_member_down_says_why() -> None:
    r = run(dsclient_main, "dsclient", "repair", "--no-progress",
            app=MemoryClusterApp(lambda c: c.kill(1)))
    assert r.code == 1
    summary, *reasons = r.out.splitlines()
    assert summary.endswith("; unreachable: node 1")
    assert len(reasons) == 1 and reasons[0].startswith("  node 1: ") and "unreachable" in reasons[0]


# -- undoing a half-made directory --------------------------------------------------------


def test_a_failed_step_removes_the_directories_it_created(tmp_path: Path) -> None:
    d = tmp_path / "a" / "b" / "cli"
    with pytest.raises(RuntimeError), undone_on_failure(d):
        d.mkdir(parents=True)
        (d / "config.json").write_text("{}")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_a_failed_step_keeps_what_was_there_before(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "old").mkdir()
    with pytest.raises(KeyboardInterrupt), undone_on_failure(tmp_path):
        (tmp_path / "identity.key").write_text("new")
        (tmp_path / "new").mkdir()
        (tmp_path / "new" / "x").write_text("new")
        (tmp_path / "old" / "y").write_text("inside what was there: left alone")
        raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "old"]
    assert (tmp_path / "old" / "y").exists()


def test_a_step_that_succeeds_keeps_everything(tmp_path: Path) -> None:
    with undone_on_failure(tmp_path / "cli"):
        (tmp_path / "cli").mkdir()
    assert (tmp_path / "cli").is_dir()
