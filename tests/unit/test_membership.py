"""Joining without sockets: the bootstrapper's three kinds of Join (a member of the
first map, a new member, a dead member's replacement), the joining node finding the
bootstrapper through any member, a replaced node stopping, and the `dscluster` flags
and config that carry a node's place across restarts."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace as dc_replace
from pathlib import Path

import pytest
import trio
import trio.testing
from click.testing import CliRunner

from dscluster import wire
from dscluster.auth import Token
from dscluster.cli import main as dscluster_main
from dscluster.cliutil import run_cli
from dscluster.cluster.bootstrapper import PROBE_TIMEOUT, Bootstrapper
from dscluster.cluster.caller import MemberCaller
from dscluster.cluster.membership import Membership
from dscluster.cluster.state import ClusterState
from dscluster.clustermap import JOINED, RETIRED, ClusterMap, Member
from dscluster.config import NodeConfig, load_node_config, record_member_index
from dscluster.errors import (
    ClusterError,
    ConfigError,
    Forbidden,
    InvalidArgument,
    Unavailable,
    error_from_wire,
)
from dscluster.keys import SLOT_COUNT
from dscluster.provision import create_cluster, create_joining_node

NEW = -1


def peer(i: int) -> str:
    return f"peer-{i}"


def addrs(i: int) -> tuple[str, ...]:
    # a libp2p address and a data lane, as a real member announces
    return (f"/ip4/127.0.0.1/tcp/{4000 + i}", f"/ip4/127.0.0.1/tcp/{5000 + i}/tls")


def first_map(n: int = 3, replication: int = 3) -> ClusterMap:
    cmap = ClusterMap.initial(n, replication)
    for i in range(n):
        cmap = cmap.with_member(Member(i, peer(i), addrs(i), JOINED))
    return cmap


class Probe:
    """A MemberCaller stand-in for the bootstrapper's liveness check."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour  # "answers", "dead" or "hangs"
        self.asked: list[int] = []

    async def try_member(self, index: int, msg: wire.Message, *,
                         dial_down: bool = False) -> wire.Message:
        assert dial_down  # a member marked down may have come back: it must be dialed
        self.asked.append(index)
        if self.behaviour == "dead":
            raise Unavailable(f"cannot reach peer {peer(index)}: connection refused")
        if self.behaviour == "hangs":
            await trio.sleep_forever()
        return wire.MapData(map=None)


def bootstrapper(cmap: ClusterMap | None = None, probe: str = "dead") -> Bootstrapper:
    return Bootstrapper(ClusterState(cmap or first_map()), 0,
                        caller=Probe(probe))  # type: ignore[arg-type]


def join(index: int, i: int, *, replace: bool = False) -> wire.Join:
    return wire.Join(index=index, addrs=list(addrs(i)), replace=replace)


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


# -- new members --------------------------------------------------------------------------


async def test_a_new_member_gets_the_next_index_owning_no_slots_and_a_retry_keeps_it():
    boot = bootstrapper()
    before = boot.state.map
    cmap = ClusterMap.from_dict(await boot.on_join(peer(10), join(NEW, 10)))
    assert cmap.epoch == before.epoch + 1 and len(cmap.members) == 4
    assert cmap.members[3] == Member(3, peer(10), addrs(10), JOINED)
    assert cmap.slots_of(3) == 0 and cmap.owners == before.owners
    # the answer was lost and the node asks again: the same place, no new epoch
    again = ClusterMap.from_dict(await boot.on_join(peer(10), join(NEW, 10)))
    assert again == cmap
    # ... from new addresses: the same index, at them
    moved = ClusterMap.from_dict(await boot.on_join(peer(10), join(NEW, 11)))
    assert len(moved.members) == 4 and moved.members[3].addrs == addrs(11)
    other = ClusterMap.from_dict(await boot.on_join(peer(12), join(NEW, 12)))
    assert [m.peer_id for m in other.members[3:]] == [peer(10), peer(12)]


async def test_a_full_cluster_refuses_a_new_member_in_one_line(monkeypatch):
    def full(self: ClusterMap, *a: object, **kw: object) -> ClusterMap:
        raise ClusterError(f"a cluster has at most {SLOT_COUNT} members")

    monkeypatch.setattr(ClusterMap, "add_member", full)
    boot = bootstrapper()
    with pytest.raises(Forbidden, match=f"^cannot add a member: a cluster has at most "
                                        f"{SLOT_COUNT} members$"):
        await boot.on_join(peer(10), join(NEW, 10))
    assert boot.state.map == first_map()


async def test_a_member_of_the_first_map_still_claims_its_index():
    cmap = ClusterMap.initial(3, 3).with_member(Member(0, peer(0), addrs(0), JOINED))
    boot = bootstrapper(cmap)
    got = ClusterMap.from_dict(await boot.on_join(peer(2), join(2, 2)))
    assert got.members[2] == Member(2, peer(2), addrs(2), JOINED)
    with pytest.raises(Forbidden, match="already held by node peer-2"):
        await boot.on_join(peer(9), join(2, 9))
    with pytest.raises(Forbidden, match="the bootstrapper itself"):
        await boot.on_join(peer(9), join(0, 9))


async def test_a_claim_keeps_the_members_weight():
    drained = first_map().with_member(Member(1, peer(1), addrs(1), JOINED, 0.0))
    boot = bootstrapper(drained)
    got = ClusterMap.from_dict(await boot.on_join(peer(1), join(1, 7)))  # new addresses
    assert got.members[1] == Member(1, peer(1), addrs(7), JOINED, 0.0)


async def test_a_retired_member_joins_no_more():
    grown = first_map().add_member(peer(3), addrs(3))
    retired = grown.with_member(dc_replace(grown.members[3], state=RETIRED))
    boot = bootstrapper(retired)
    for msg in (join(3, 3), join(NEW, 3)):
        with pytest.raises(Forbidden, match="identity 3 was removed from the cluster"):
            await boot.on_join(peer(3), msg)
    assert boot.state.map == retired


# -- replacing a dead member ----------------------------------------------------------------


async def test_a_dead_member_is_replaced_and_its_old_key_refused():
    cmap = first_map().with_member(Member(2, peer(2), addrs(2), JOINED, 2.5))
    boot = bootstrapper(cmap, "dead")
    got = ClusterMap.from_dict(await boot.on_join(peer(20), join(2, 20, replace=True)))
    assert boot.caller.asked == [2]  # type: ignore[union-attr]
    assert got.epoch == cmap.epoch + 1
    # the newcomer holds the place, weight and slots of the member it replaces
    assert got.members[2] == Member(2, peer(20), addrs(20), JOINED, 2.5)
    assert got.owners == cmap.owners and got.members[:2] == cmap.members[:2]
    # the old node comes back: its index is taken, by claim and by replacement alike
    with pytest.raises(Forbidden, match="identity 2 is already held by node peer-20"):
        await boot.on_join(peer(2), join(2, 2))
    # the replacement's answer was lost and it asks again: nothing changes
    again = ClusterMap.from_dict(await boot.on_join(peer(20), join(2, 20, replace=True)))
    assert again == got and boot.caller.asked == [2]  # type: ignore[union-attr]


@pytest.mark.parametrize(("index", "probe", "error", "message"), [
    (7, "dead", InvalidArgument, "node 7 does not exist: this cluster has nodes 0..2"),
    (0, "dead", Forbidden, "node 0 is the bootstrapper itself; it cannot be replaced"),
    (2, "answers", Forbidden, "node 2 is still answering; stop it first, or drain it with "
                              "`dsclient remove-node 2`"),
    (1, "answers", Forbidden, "node 1 is still answering; stop it first, or drain it with "
                              "`dsclient remove-node 1`"),
], ids=["out-of-range", "bootstrapper", "alive", "alive-1"])
async def test_a_replacement_is_refused_in_one_line(index, probe, error, message):
    boot = bootstrapper(probe=probe)
    with pytest.raises(error) as e:
        await boot.on_join(peer(20), join(index, 20, replace=True))
    assert str(e.value) == message
    assert boot.state.map == first_map()


async def test_a_retired_member_is_not_replaced():
    grown = first_map().add_member(peer(3), addrs(3))
    retired = grown.with_member(dc_replace(grown.members[3], state=RETIRED))
    boot = bootstrapper(retired, "dead")
    with pytest.raises(Forbidden, match=r"^node 3 was removed from the cluster; there is "
                                        r"nothing to replace"):
        await boot.on_join(peer(20), join(3, 20, replace=True))
    assert boot.state.map == retired


async def test_a_member_cannot_take_a_second_place():
    boot = bootstrapper(probe="dead")
    with pytest.raises(Forbidden, match="peer peer-1 already serves node 1"):
        await boot.on_join(peer(1), join(2, 1, replace=True))


async def test_a_member_that_does_not_answer_in_time_counts_as_dead(autojump_clock):
    boot = bootstrapper(probe="hangs")
    t0 = trio.current_time()
    got = ClusterMap.from_dict(await boot.on_join(peer(20), join(2, 20, replace=True)))
    assert trio.current_time() - t0 == pytest.approx(PROBE_TIMEOUT)
    assert got.members[2].peer_id == peer(20)


async def test_without_a_caller_a_replacement_is_asked_to_retry():
    boot = Bootstrapper(ClusterState(first_map()), 0)
    with pytest.raises(Unavailable, match="try again"):
        await boot.on_join(peer(20), join(2, 20, replace=True))


async def test_a_member_changed_during_the_probe_is_not_replaced():
    boot = bootstrapper(probe="dead")

    class Racing(Probe):
        async def try_member(self, index: int, msg: wire.Message, *,
                             dial_down: bool = False) -> wire.Message:
            # the old node comes back on new addresses while the bootstrapper asks
            boot.claim(2, peer(2), addrs(9))
            raise Unavailable("connection refused")

    boot.caller = Racing("dead")  # type: ignore[assignment]
    with pytest.raises(Unavailable, match="changed while the bootstrapper checked it"):
        await boot.on_join(peer(20), join(2, 20, replace=True))
    assert boot.state.map.members[2].peer_id == peer(2)


# -- the joining node -----------------------------------------------------------------------


class Network:
    """Members answering GetMap from their map and, the bootstrapper only, Join: what
    a joining node's pool reaches, with every request it sent."""

    def __init__(self, boot: Bootstrapper, maps: dict[str, ClusterState]) -> None:
        self.boot = boot
        self.maps = maps  # peer -> that member's view
        self.sent: list[tuple[str, tuple[str, ...], str]] = []
        self.down: set[str] = set()

    def pool(self, me: str) -> _Pool:
        return _Pool(self, me)


class _Pool:
    def __init__(self, net: Network, me: str) -> None:
        self.net, self.me = net, me

    @asynccontextmanager
    async def channel(self, to: str, addrs: Sequence[str]) -> AsyncIterator[_Chan]:
        await trio.lowlevel.checkpoint()
        if to in self.net.down:
            raise Unavailable(f"cannot reach peer {to}")
        yield _Chan(self, to, tuple(addrs))

    async def forget(self, peer_id: str) -> None:
        pass


class _Chan:
    def __init__(self, pool: _Pool, to: str, addrs: tuple[str, ...]) -> None:
        self.pool, self.to, self.addrs = pool, to, addrs

    async def request(self, msg: wire.Message) -> wire.Message:
        net = self.pool.net
        net.sent.append((self.to, self.addrs, type(msg).__name__))
        if isinstance(msg, wire.GetMap):
            return wire.MapData(map=net.maps[self.to].map.to_dict())
        assert isinstance(msg, wire.Join)
        if self.to != peer(0):
            e = Forbidden("this node is not the bootstrapper; join through the bootstrapper")
            raise error_from_wire(e.code, str(e), {})
        if any(a.endswith("/tls") for a in self.addrs):
            raise Forbidden("join over libp2p: the data lane does not identify the caller")
        return wire.MapData(map=await net.boot.on_join(self.pool.me, msg))


def network(probe: str = "dead") -> Network:
    boot = bootstrapper(probe=probe)
    # the other members follow the bootstrapper's map (the same object, always current)
    return Network(boot, {peer(i): boot.state for i in range(3)})


def membership(net: Network, me: int, index: int | None, *, contact: int = 1,
               replace: bool = False) -> Membership:
    return Membership(net.pool(peer(me)), (peer(contact), [addrs(contact)[0]]),  # type: ignore[arg-type]
                      peer(me), index, addrs(me), 5.0, replace=replace)


async def test_a_new_node_joins_through_a_member_that_is_not_the_bootstrapper():
    net = network()
    m = membership(net, 10, None, contact=1)
    cmap = await m.join(5)
    assert m.index == 3 and cmap.member_by_peer(peer(10)) == cmap.members[3]
    # the map from the contact, then the Join to member 0 at its libp2p address alone
    assert net.sent == [(peer(1), (addrs(1)[0],), "GetMap"),
                        (peer(0), (addrs(0)[0],), "Join")]


async def test_a_join_through_the_bootstrapper_itself_goes_straight_there():
    net = network()
    m = membership(net, 10, None, contact=0)
    await m.join(5)
    assert [(to, what) for to, _, what in net.sent] == [(peer(0), "GetMap"),
                                                        (peer(0), "Join")]


async def test_a_replacement_joins_through_any_member_and_then_only_reannounces():
    net = network("dead")
    m = membership(net, 20, 2, contact=1, replace=True)
    cmap = await m.join(5)
    assert m.index == 2 and not m.replace
    assert cmap.members[2].peer_id == peer(20)
    # a later join (after a restart) is a plain claim of the place it now holds
    await m.join_once()
    assert net.boot.caller.asked == [2]  # type: ignore[union-attr]


async def test_a_refusal_ends_the_join_at_once():
    net = network("answers")
    m = membership(net, 20, 2, contact=1, replace=True)
    with pytest.raises(Forbidden, match="node 2 is still answering"):
        await m.join(5)


async def test_a_restarted_node_the_bootstrapper_refuses_stops_before_serving():
    net = network("dead")
    replaced = ClusterMap.from_dict(
        await net.boot.on_join(peer(20), join(2, 20, replace=True)))
    old = membership(net, 2, 2, contact=1)
    state = ClusterState(first_map())  # the old node's cached map, from before
    with pytest.raises(Forbidden, match=r"^the bootstrapper refused this node: identity 2 "
                                        r"is already held by node peer-20"):
        await old.rejoin_soon(state, 2.0)
    assert net.boot.state.map == replaced


async def test_an_unreachable_bootstrapper_only_defers_the_rejoin(autojump_clock):
    net = network()
    net.down = {peer(0), peer(1)}
    m = membership(net, 2, 2, contact=0)
    state = ClusterState(first_map())
    assert not await m.rejoin_soon(state, 2.0)
    assert state.map == first_map()


async def test_a_node_whose_index_goes_to_another_peer_stops():
    state = ClusterState(first_map())
    m = membership(network(), 2, 2)

    async def changes() -> None:
        await trio.sleep(0.01)
        state.offer(state.map.evolve())  # a change that leaves node 2 alone: no stop
        await trio.sleep(0.01)
        state.offer(state.map.with_member(Member(2, peer(20), addrs(20), JOINED)))

    with trio.fail_after(5):
        async with trio.open_nursery() as n:
            n.start_soon(changes)
            with pytest.raises(Forbidden) as e:
                await m.guard(state)
    assert str(e.value) == (
        f"node 2 is now peer-20 in map epoch {first_map().epoch + 2}: this node (peer-2) "
        "was replaced and is no longer a member; to rejoin, start a new node in a fresh "
        "directory")


async def test_the_caller_forgets_a_replaced_members_failures():
    cmap = first_map()
    caller = MemberCaller(None, ClusterState(cmap), bootstrapper=None)  # type: ignore[arg-type]
    caller.liveness.unreachable(2, "connection refused")
    caller.liveness.unreachable(1, "connection refused")
    assert caller.adopt(cmap.with_member(Member(2, peer(20), addrs(20), JOINED)))
    assert caller.liveness.refusal(2) is None  # a new peer: not down as far as we know
    assert caller.liveness.refusal(1) is not None  # the same peer: still down


# -- config and flags -----------------------------------------------------------------------


def test_a_new_member_directory_is_recognisable_until_it_has_joined(tmp_path: Path):
    files = create_cluster(tmp_path / "srv01", 3)
    d = tmp_path / "srv04"
    create_joining_node(d, bootstrapper=files.bootstrapper, index=None,
                        token=Token.load(files.node_token))
    raw = json.loads((d / "config.json").read_text())
    assert raw["identity"]["index"] is None and "replace" not in raw["identity"]
    cfg = load_node_config(d)
    assert cfg.member_index is None and not cfg.placed
    record_member_index(d, 3)
    after = json.loads((d / "config.json").read_text())
    assert after["identity"]["index"] == 3
    assert {**after, "identity": raw["identity"]} == raw  # nothing else was touched
    assert (d / "config.json").stat().st_mode & 0o777 == 0o600
    assert load_node_config(d).placed and load_node_config(d).member_index == 3


def test_a_replacement_directory_is_marked_until_it_has_joined(tmp_path: Path):
    files = create_cluster(tmp_path / "srv01", 3)
    d = tmp_path / "srv05"
    create_joining_node(d, bootstrapper=files.bootstrapper, index=2, replace=True,
                        token=Token.load(files.node_token))
    assert json.loads((d / "config.json").read_text())["identity"]["replace"] is True
    cfg = load_node_config(d)
    assert (cfg.member_index, cfg.replacing, cfg.placed) == (2, True, False)
    record_member_index(d, 2)
    assert "replace" not in json.loads((d / "config.json").read_text())["identity"]
    assert load_node_config(d).placed
    with pytest.raises(ConfigError, match="needs the index"):
        create_joining_node(tmp_path / "x", bootstrapper=files.bootstrapper, index=None,
                            replace=True, token=Token.load(files.node_token))


def test_only_a_joining_node_may_lack_an_index():
    with pytest.raises(ConfigError, match="the bootstrapper is member 0"):
        NodeConfig(peer_id="p", swarm=["/ip4/127.0.0.1/tcp/1"], bootstrap_node=True,
                   member_index=None)
    with pytest.raises(ConfigError, match="replaces no other node"):
        NodeConfig(peer_id="p", swarm=["/ip4/127.0.0.1/tcp/1"], bootstrap_node=True,
                   member_index=0, replacing=True)


def dscluster(*args: str) -> tuple[int, str, str]:
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        argv, sys.argv = sys.argv, ["dscluster", *args]
        try:
            run_cli(dscluster_main, "dscluster")
        except SystemExit as e:
            code = int(e.code or 0)
        finally:
            sys.argv = argv
        return code, out.getvalue().decode(), err.getvalue().decode()


def test_identity_and_replace_together_are_a_usage_error(tmp_path: Path):
    code, _, err = dscluster(f"--conf={tmp_path / 'n'}", "--bootstrapper=/ip4/127.0.0.1/tcp/1",
                             "--identity=1", "--replace=2")
    assert code == 2 and "give --identity or --replace, not both" in err
    assert not (tmp_path / "n").exists()


def test_a_directory_keeps_the_place_it_was_made_for(tmp_path: Path):
    files = create_cluster(tmp_path / "srv01", 3)
    tok = Token.load(files.node_token)
    create_joining_node(tmp_path / "new", bootstrapper=files.bootstrapper, index=None,
                        token=tok)
    create_joining_node(tmp_path / "repl", bootstrapper=files.bootstrapper, index=2,
                        replace=True, token=tok)
    for d, flag, message in [
        ("new", "--identity=1", "joins as a new member (the bootstrapper picks its index); "
                                "start it without --identity and --replace"),
        ("repl", "--replace=1", "is the replacement of node 2 (not joined yet), not a "
                                "replacement of node 1"),
        ("repl", "--identity=2", "is the replacement of node 2 (not joined yet), not "
                                 "identity 2"),
    ]:
        code, _, err = dscluster(f"--conf={tmp_path / d}", flag)
        assert (code, err.strip()) == (1, f"dscluster: error: {tmp_path / d} {message}")


def test_dscluster_help_shows_every_way_to_join():
    code, out, _ = dscluster("--help")
    assert code == 0
    for words in ("--identity=1", "--replace=2", "a new member, owning no slots",
                  "or of any live member", "died for good"):
        assert words in " ".join(out.split()), words
