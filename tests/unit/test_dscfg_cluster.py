"""`dscfg cluster`: the replication factor of the first map, and its refusals.

Run through ``dscfg.cli.entry`` (argv in, exit code out), so that the errors are the
lines a user sees, formatted by cliutil.run_cli.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dscfg.cli import entry
from dscluster.clustermap import MAP_FORMAT_VERSION, ClusterMap
from dscluster.keys import SLOT_COUNT


def dscfg(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
          *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["dscfg", *args])
    with pytest.raises(SystemExit) as exit_:
        entry()
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err


def map_of(d: Path) -> ClusterMap:
    return ClusterMap.load(d / "clustermap.json")


@pytest.mark.parametrize(("nodes", "expect"), [(1, 1), (2, 2), (3, 3), (5, 3)])
def test_the_default_is_three_copies_or_one_per_node(tmp_path, monkeypatch, capsys, nodes,
                                                     expect):
    d = tmp_path / "srv01"
    code, out, err = dscfg(monkeypatch, capsys, "cluster", f"--cluster-node-number={nodes}",
                           str(d))
    assert code == 0, err
    cmap = map_of(d)
    assert cmap.replication == expect
    assert all(len(owners) == expect for owners in cmap.owners)
    # stdout is the bootstrapper's multiaddr alone: scripts capture it
    assert out.count("\n") == 1 and out.startswith("/ip4/127.0.0.1/tcp/")
    assert out.rstrip("\n").endswith(f"/p2p/{cmap.members[0].peer_id}")


@pytest.mark.parametrize("flag", ["--replication-factor", "--replicas"])
def test_the_factor_can_be_chosen(tmp_path, monkeypatch, capsys, flag):
    d = tmp_path / "srv01"
    code, _, err = dscfg(monkeypatch, capsys, "cluster", "-n", "4", f"{flag}=2", str(d))
    assert code == 0, err
    assert "cluster, 2 copies of every key:" in err
    cmap = map_of(d)
    assert cmap.replication == 2 and len(cmap.owners) == SLOT_COUNT
    assert all(len(set(owners)) == 2 for owners in cmap.owners)
    assert cmap.to_dict()["version"] == MAP_FORMAT_VERSION


@pytest.mark.parametrize(("factor", "why"), [
    ("0", "the replication factor must be at least 1, not 0"),
    ("-1", "the replication factor must be at least 1, not -1"),
    ("4", "a replication factor of 4 needs at least 4 nodes; this cluster has 3"),
])
def test_an_impossible_factor_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys,
                                                             factor, why):
    d = tmp_path / "srv01"
    code, out, err = dscfg(monkeypatch, capsys, "cluster", "-n", "3",
                           f"--replication-factor={factor}", str(d))
    assert (code, out) == (2, "")
    assert err == (f"dscfg: error: Invalid value for '--replication-factor': {why} "
                   "(see 'dscfg cluster --help')\n")
    assert not d.exists()


def test_a_factor_that_is_not_a_number_is_one_line(tmp_path, monkeypatch, capsys):
    code, out, err = dscfg(monkeypatch, capsys, "cluster", "-n", "3", "--replicas=two",
                           str(tmp_path / "srv01"))
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "'two' is not a valid integer" in err


def test_the_admin_token_is_written_private_and_named(tmp_path, monkeypatch, capsys):
    d = tmp_path / "srv01"
    code, _, err = dscfg(monkeypatch, capsys, "cluster", "-n", "3", str(d))
    assert code == 0, err
    for role in ("node", "client", "readonly", "admin"):
        path = d / f"{role}.token"
        assert path.stat().st_mode & 0o777 == 0o600, role
        assert path.read_text().startswith(f"dsc1:{role}:"), role
        assert str(path) in err, role  # told where each token is
    assert f"{d / 'admin.token'}     for operators" in err
    # dscfg client makes an admin client from it, as dsclient init does
    cli = tmp_path / "cli"
    code, out, err = dscfg(monkeypatch, capsys, "client",
                           f"--bootstrapper={out_of(d)}", f"--token-file={d / 'admin.token'}",
                           str(cli))
    assert code == 0, err
    assert out.startswith("admin client ") and (cli / "admin.token").exists()


def out_of(d: Path) -> str:
    cmap = map_of(d)
    boot = cmap.members[0]
    return f"{boot.addrs[0]}/p2p/{boot.peer_id}"
