"""The README walkthrough through the real command-line programs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from dscluster.client.connect import open_cluster
from dscluster.datastore import BatchOp
from dscluster.keys import Key, slot_of
from dscluster.localcluster import Cluster, tool


def ok(p: subprocess.CompletedProcess[bytes]) -> bytes:
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout


def one_line_error(p: subprocess.CompletedProcess[bytes]) -> str:
    assert p.returncode != 0
    err = p.stderr.decode().strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_put_get_ls_rm_has(cluster: Cluster, tmp_path):
    f = tmp_path / "file"
    f.write_bytes(b"\x00binary\xffvalue")
    ok(cluster.dsclient("put", "/cli/foo/bar", str(f)))
    assert ok(cluster.dsclient("get-key", "/cli/foo/bar")) == b"\x00binary\xffvalue"
    ok(cluster.dsclient("put", "/cli/foo/baz", input=b"from stdin"))
    ok(cluster.dsclient("put", "/cli/foobar", input=b"not under /cli/foo"))
    assert ok(cluster.dsclient("ls", "/cli/foo")).decode().split() == [
        "/cli/foo/bar", "/cli/foo/baz"]
    listing = ok(cluster.dsclient("ls", "-l", "/cli/foo")).decode().splitlines()
    assert [ln.split() for ln in listing] == [["13", "/cli/foo/bar"], ["10", "/cli/foo/baz"]]
    assert ok(cluster.dsclient("has", "/cli/foo/bar")).strip() == b"yes"
    ok(cluster.dsclient("rm", "/cli/foo/bar", "/cli/never-existed"))
    p = cluster.dsclient("has", "/cli/foo/bar")
    assert p.returncode == 1 and p.stdout.strip() == b"no"
    assert "key not found: /cli/foo/bar" in one_line_error(
        cluster.dsclient("get-key", "/cli/foo/bar"))


def test_hashslot_matches_the_library_and_cleans_keys(cluster: Cluster):
    assert int(ok(cluster.dsclient("hashslot", "/foo/bar"))) == slot_of("/foo/bar")
    assert int(ok(cluster.dsclient("hashslot", "foo//bar/"))) == slot_of(Key("/foo/bar"))


async def test_status_shows_every_node_with_slots_and_counts(cluster: Cluster):
    # written in one batch through the library (what `put` does is tested above): one
    # `dsclient put` each would be 30 process start-ups
    async with open_cluster(cluster.client()) as ds:
        await ds.apply([BatchOp(f"/status/{i}", b"x" * 10) for i in range(30)])
    rows = json.loads(ok(cluster.dsclient("status", "--json")))["nodes"]
    assert [r["slots"] for r in rows] == ["0-5460", "5461-10921", "10922-16383"]
    assert all(r["reachable"] and r["store"] == "flatfs" for r in rows)
    assert all(r["keys"] > 0 and r["disk_usage"] > 0 for r in rows)
    text = ok(cluster.dsclient("status")).decode()
    assert text.count(" up ") == 3 and cluster.bootstrapper.split("/p2p/")[1] in text


def test_errors_are_one_line_with_nonzero_exit(cluster: Cluster, tmp_path):
    assert "No such file" in one_line_error(cluster.dsclient("put", "/k", str(tmp_path / "no")))
    assert "exceeds" in one_line_error(cluster.dsclient("put", "/big", input=b"x" * (5 << 20)))
    assert "longer than" in one_line_error(cluster.dsclient("get-key", "/" + "k" * 3000))
    missing = subprocess.run([tool("dsclient"), f"--conf={tmp_path / 'nope'}", "ls"],
                             capture_output=True, timeout=60)
    assert "init" in one_line_error(missing)
    bad = subprocess.run([tool("dscluster"), f"--conf={tmp_path / 'nothing'}"],
                         capture_output=True, timeout=60)
    assert "--bootstrapper" in one_line_error(bad)
    bad_addr = subprocess.run(
        [tool("dsclient"), f"--conf={tmp_path / 'c2'}", "init", "--bootstrapper=/ip4/nope",
         f"--token-file={cluster.client_token}"], capture_output=True, timeout=60)
    assert "multiaddr" in one_line_error(bad_addr)


def test_dscfg_writes_private_files_and_refuses_to_overwrite(tmp_path):
    d = tmp_path / "c"
    p = subprocess.run([tool("dscfg"), "cluster", "--cluster-node-number=2", str(d)],
                       capture_output=True, timeout=60, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("/ip4/127.0.0.1/tcp/") and "/p2p/12D3Koo" in p.stdout
    for name in ("identity.key", "node.token", "client.token", "readonly.token", "config.json"):
        assert (d / name).stat().st_mode & 0o077 == 0, name
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["bootstrap_node"] is True and cfg["addresses"]["swarm"]
    again = subprocess.run([tool("dscfg"), "cluster", "--cluster-node-number=2", str(d)],
                           capture_output=True, timeout=60)
    assert "already holds" in one_line_error(again)
    cmap = json.loads((d / "clustermap.json").read_text())
    assert [(s["start"], s["end"]) for s in cmap["slots"]] == [(0, 8191), (8192, 16383)]


def test_init_with_a_wrong_token_leaves_nothing_and_can_be_retried(cluster: Cluster, tmp_path):
    other = tmp_path / "other"
    ok(subprocess.run([tool("dscfg"), "cluster", "--cluster-node-number=1", str(other)],
                      capture_output=True, timeout=60))
    conf = tmp_path / "cli"

    def init(token: Path) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [tool("dsclient"), f"--conf={conf}", "init", f"--bootstrapper={cluster.bootstrapper}",
             f"--token-file={token}"], capture_output=True, timeout=60)

    assert "credential" in one_line_error(init(other / "client.token"))
    assert not conf.exists()
    assert b"initialised" in ok(init(cluster.client_token))


def test_conf_after_the_command_and_from_the_environment(cluster: Cluster):
    conf = cluster.client()
    ok(cluster.dsclient("put", "/cli/conf", input=b"where"))
    after = subprocess.run([tool("dsclient"), "get-key", f"--conf={conf}", "/cli/conf"],
                           capture_output=True, timeout=60)
    assert ok(after) == b"where"
    env = subprocess.run([tool("dsclient"), "get-key", "/cli/conf"], capture_output=True,
                         timeout=60, env={**os.environ, "DSCLIENT_CONF": str(conf)})
    assert ok(env) == b"where"


def test_status_rows_line_up(cluster: Cluster):
    rows = [line for line in ok(cluster.dsclient("status")).decode().splitlines()
            if line.startswith("node ")]
    assert len(rows) == 3
    for column in ("12D3KooW", "/ip4/", "slots ", " up ", "disk="):
        assert len({row.index(column) for row in rows}) == 1, (column, rows)


def test_only_hash_needs_no_cluster_and_no_client_directory(tmp_path):
    work = tmp_path / "anywhere"
    work.mkdir()
    (work / "hello.txt").write_bytes(b"hello world")
    p = subprocess.run([tool("dsclient"), "add", "--only-hash", "hello.txt"], cwd=work,
                       capture_output=True, timeout=60,
                       env={k: v for k, v in os.environ.items() if k != "DSCLIENT_CONF"})
    # the CID `ipfs add -n hello.txt` prints
    assert ok(p) == b"added Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD hello.txt\n"
    assert sorted(os.listdir(work)) == ["hello.txt"]  # nothing written
