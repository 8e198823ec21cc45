"""Staged layouts in the cluster map (format version 3): moving slots, layout epochs,
members that join, drain and retire."""

from __future__ import annotations

from collections import Counter

import pytest

from dscluster.clustermap import JOINED, RETIRED, ClusterMap, Member
from dscluster.errors import ClusterError, ConfigError
from dscluster.keys import SLOT_COUNT


def joined(n: int, r: int) -> ClusterMap:
    m = ClusterMap.initial(n, r)
    for i in range(n):
        m = m.with_member(Member(i, f"peer{i}", (f"/ip4/127.0.0.1/tcp/{4000 + i}",), JOINED))
    return m


def test_a_new_member_owns_nothing_until_a_rebalance():
    m = joined(3, 2).add_member("peer3", ("/ip4/127.0.0.1/tcp/4003",), weight=2.0)
    assert m.members[3] == Member(3, "peer3", ("/ip4/127.0.0.1/tcp/4003",), JOINED, 2.0)
    assert m.slots_of(3) == 0 and 3 not in m.serving_members()
    assert m.active_members() == [0, 1, 2, 3]


def test_a_moving_slot_is_written_to_both_lists_and_read_from_the_old_first():
    m = joined(3, 2).add_member("peer3", ("/x",))
    staged = m.stage(m.plan())
    assert staged.epoch == m.epoch + 1 and staged.layout_epoch == staged.epoch
    s = staged.moving_slots()[0]
    old, new = staged.old_set(s), staged.new_set(s)
    assert set(old) != set(new) and 3 in new
    ws = staged.write_set(s)
    assert ws[:len(old)] == old and set(ws) == set(old) | set(new)
    assert staged.read_set(s) == ws
    assert staged.owns(3, s) and staged.incoming(3, s) and not staged.incoming(old[0], s)
    assert 3 in staged.serving_members()
    # an untouched slot is not moving and not incoming anywhere
    still = next(t for t in range(SLOT_COUNT) if t not in staged.moving)
    assert staged.write_set(still) == staged.owners[still] and not staged.incoming(3, still)


def test_finish_and_abort_change_owners_but_not_the_staged_layout():
    m = joined(3, 1).add_member("peer3", ("/x",))
    staged = m.stage(m.plan())
    half = staged.moving_slots()[: len(staged.moving) // 2]
    done = staged.finish(half)
    # a writer that knew the targets still writes where it must: no refusal needed
    assert done.epoch == staged.epoch + 1 and done.layout_epoch == staged.layout_epoch
    assert all(done.owners[s] == staged.moving[s] and s not in done.moving for s in half)
    assert len(done.moving) == len(staged.moving) - len(half)
    back = done.abort()
    assert not back.moving and back.owners == done.owners
    assert back.layout_epoch == staged.layout_epoch
    with pytest.raises(ClusterError, match="not moving"):
        done.finish(half[:1])
    with pytest.raises(ClusterError, match="still moving"):
        done.stage(done.plan())


def test_moves_survive_the_format():
    m = joined(3, 2).add_member("peer3", ("/x",))
    staged = m.stage(m.plan())
    back = ClusterMap.from_dict(staged.to_dict())
    assert back == staged and back.moving == staged.moving
    assert back.layout_epoch == staged.layout_epoch


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d["slots"][0].__setitem__("target", d["slots"][0]["owners"]),
     "moves to the owners it has"),
    (lambda d: d["slots"][0].__setitem__("target", [0]), "1 targets"),
    (lambda d: d.__setitem__("layout_epoch", 99), "layout epoch 99"),
    (lambda d: d["nodes"][1].__setitem__("weight", -1), "weight"),
    (lambda d: d["nodes"][1].__setitem__("state", RETIRED), "retired member 1"),
])
def test_broken_staged_maps_are_refused(mutate, words):
    d = joined(3, 2).to_dict()
    mutate(d)
    with pytest.raises(ClusterError, match=words):
        ClusterMap.from_dict(d)


def _shares(owners):
    return Counter(o for ol in owners for o in ol), Counter(ol[0] for ol in owners)


@pytest.mark.parametrize("n, r", [(1, 1), (3, 1), (3, 2), (3, 3), (4, 3), (5, 2), (7, 3)])
def test_a_plan_for_a_new_member_moves_only_its_share_and_balances_within_one_percent(n, r):
    m = joined(n, r).add_member("new", ("/x",))
    new = m.plan()
    assert all(len(set(ol)) == r == len(ol) for ol in new)
    changed = sum(len(set(new[s]) - set(m.owners[s])) for s in range(SLOT_COUNT))
    fair = SLOT_COUNT * r / (n + 1)
    # the fewest replicas a balanced layout can move: the newcomer's share
    assert changed == round(fair) or abs(changed - fair) <= 1
    slots, primaries = _shares(new)
    assert all(abs(c - fair) <= max(1, fair / 100) for c in slots.values())
    pfair = SLOT_COUNT / (n + 1)
    assert all(abs(c - pfair) <= max(1, pfair / 100) for c in primaries.values())
    assert len(primaries) == n + 1


def test_a_plan_follows_weights():
    m = joined(3, 2).add_member("big", ("/x",), weight=3.0)
    slots, _ = _shares(m.plan())
    # 2 * 16384 replicas in shares 1:1:1:3, none above one copy of every slot
    assert slots[3] == SLOT_COUNT
    assert all(abs(slots[i] - SLOT_COUNT // 3) <= 1 for i in range(3))


def test_a_drained_member_gets_nothing_and_the_rest_stay_balanced():
    m = joined(4, 3)
    drained = m.with_member(Member(1, "peer1", m.members[1].addrs, JOINED, 0.0))
    assert drained.active_members() == [0, 2, 3]
    new = drained.plan()
    slots, _ = _shares(new)
    assert 1 not in slots and set(slots.values()) == {SLOT_COUNT}
    # only member 1's replicas moved
    staged = drained.stage(new)
    assert set(staged.moving) == {s for s in range(SLOT_COUNT) if 1 in m.owners[s]}


def test_a_plan_needs_r_active_members():
    m = joined(3, 3)
    drained = m.with_member(Member(0, "peer0", (), JOINED, 0.0))
    with pytest.raises(ConfigError, match="needs at least 3 members"):
        drained.plan()


def test_a_balanced_map_plans_no_move():
    m = joined(4, 2)
    assert not m.stage(m.plan()).moving


@pytest.mark.parametrize(("n", "r"), [(1, 1), (3, 1), (3, 3), (4, 2), (5, 3), (7, 3)])
def test_a_fresh_cluster_plans_no_move(n, r):
    # the odd slots of an uneven split stay where dscfg put them
    cmap = ClusterMap.initial(n, r)
    assert cmap.plan() == cmap.owners or all(
        set(a) == set(b) for a, b in zip(cmap.plan(), cmap.owners, strict=True))
    assert not cmap.stage(cmap.plan()).moving
