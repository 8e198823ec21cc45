"""Rotating the cluster secret on a real 3-node cluster (R=3): during the grace old and
new tokens both work on every node; after it the old client token is refused by every
node, open streams included, while the cluster keeps replicating; a node that was down
during the whole grace fetches the new secret when it starts, and a node killed after
the rotation restarts on the new secret."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio

from dscluster import wire
from dscluster.auth import Token
from dscluster.client.connect import open_cluster
from dscluster.errors import DSClusterError, Unauthorized
from dscluster.keyring import KEYRING_FILE
from dscluster.localcluster import Cluster

pytestmark = pytest.mark.timeout(120)
GRACE = 8.0
# a node reads the rotation record every RELOAD_INTERVAL, then fetches; slack for load
BOUND = 15.0


def _generations(conf: Path) -> dict[int, int | str]:
    """Each member's secret generation as this client sees it, or why it refused."""
    async def main() -> dict[int, int | str]:
        got: dict[int, int | str] = {}
        async with open_cluster(conf) as ds:
            for i in range(len(ds.state.map.members)):
                try:
                    ans = await ds.caller.try_member(i, wire.Stats(), dial_down=True)
                except DSClusterError as e:
                    got[i] = f"{type(e).__name__}: {e}"
                    continue
                assert isinstance(ans, wire.StatsData)
                got[i] = ans.stats["secret_generation"]
        return got
    return trio.run(main)


def _held_by(conf: Path, index: int, key: str) -> bool:
    async def main() -> bool:
        async with open_cluster(conf) as ds:
            ans = await ds.caller.try_member(index, wire.ReadRecord(key=key), dial_down=True)
            return isinstance(ans, wire.Record) and ans.state == 1
    return trio.run(main)


def _until_generation(conf: Path, want: int) -> dict[int, int | str]:
    start = time.monotonic()
    while True:
        got = _generations(conf)
        if all(g == want for g in got.values()):
            return got
        assert time.monotonic() - start < BOUND, got
        time.sleep(0.3)


def test_rotation_with_a_grace_then_old_tokens_refused_everywhere(tmp_path: Path):
    c = Cluster(tmp_path / "c", replication=3).start()
    try:
        admin, old_client = c.admin(), c.client()
        old_node_secret = Token.load(c.node_token).key
        assert c.dsclient("put", "/rot/before", input=b"v0").returncode == 0
        # node 2 misses the whole rotation
        c.kill9(2)
        out = tmp_path / "new-tokens"
        rotated = time.monotonic()
        p = c.dsclient("admin", "secret", "rotate", f"--grace={GRACE:g}s", f"--out={out}",
                       conf=admin)
        assert p.returncode == 0, p.stderr.decode() + c.logs()
        assert b"generation 1" in p.stdout and b"node 2" in p.stderr  # it is pending
        for role in ("client", "readonly", "admin"):
            assert (out / f"{role}.token").stat().st_mode & 0o777 == 0o600
        assert Token.load(out / "client.token").key != Token.load(c.client_token).key
        assert b"new admin token" in p.stdout  # the admin client's own file was replaced

        async def during_and_after() -> list[str]:
            async with open_cluster(old_client) as old_ds, open_cluster(admin) as new_ds:
                for i in (0, 1):  # during the grace: a stream on each token per node
                    for ds in (old_ds, new_ds):
                        ans = await ds.caller.ask(i, wire.Stats())
                        assert isinstance(ans, wire.StatsData)
                        assert ans.stats["secret_generation"] == 1
                await old_ds.put("/rot/during", b"v1")
                assert time.monotonic() - rotated < GRACE, "the grace ran out too early"
                refused = []
                for i in (0, 1):  # the same streams, past the grace
                    with trio.fail_at(trio.current_time() + GRACE + 5
                                      - (time.monotonic() - rotated)):
                        while True:
                            try:
                                await old_ds.caller.ask(i, wire.Stats())
                            except Unauthorized as e:
                                refused.append(str(e))
                                break
                            await trio.sleep(0.2)
                assert time.monotonic() - rotated >= GRACE
                return refused

        assert all("rotated" in r for r in trio.run(during_and_after))
        new_client = c.client("new", out / "client.token")
        for i in (0, 1):  # and new streams: refused in the handshake
            assert isinstance(_generations(old_client)[i], str)
        p = c.dsclient("get-key", "/rot/before", conf=old_client)
        assert p.returncode != 0 and b"new token" in p.stderr

        # after the grace: the new token, and the admin client's own (replaced) one
        got = _generations(new_client)
        assert got[0] == got[1] == 1, got
        p = c.dsclient("put", "/rot/after", conf=new_client, input=b"v2")
        assert p.returncode == 0, p.stderr.decode()
        assert c.dsclient("admin", "tokens", "list", conf=admin).returncode == 0

        # node 2 comes back after the grace with only the old secret: it fetches the new
        # one from a member, then serves and takes its copies (R=3) again
        c.restart(2)
        _until_generation(new_client, 1)
        assert Token.load(c.nodes[2].conf / "node.token").key != old_node_secret
        p = c.dsclient("put", "/rot/back", conf=new_client, input=b"v3")
        assert p.returncode == 0, p.stderr.decode()
        # what was written while it was down reaches it from the others (repair between
        # nodes, on the new secret)
        start = time.monotonic()
        while not _held_by(new_client, 2, "/rot/after"):
            assert time.monotonic() - start < BOUND, c.logs()
            time.sleep(0.5)

        # a node killed after the rotation restarts on the new secret (node.token and the
        # keyring were written durably), and every key is readable with the new token
        c.kill9(1)
        assert (c.nodes[1].conf / KEYRING_FILE).exists()
        c.restart(1)
        _until_generation(new_client, 1)
        for key, value in (("/rot/before", b"v0"), ("/rot/during", b"v1"),
                           ("/rot/after", b"v2"), ("/rot/back", b"v3")):
            p = c.dsclient("get-key", key, conf=new_client)
            assert p.returncode == 0 and p.stdout == value, (key, p.stderr.decode())
        print(f"rotation to old tokens refused everywhere: {GRACE:g}s grace; test took "
              f"{time.monotonic() - rotated:.1f}s after the rotation")
    finally:
        c.stop()
