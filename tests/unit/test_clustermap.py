from __future__ import annotations

import pytest

from dscluster.clustermap import JOINED, ClusterMap, Member
from dscluster.errors import ClusterError, ConfigError
from dscluster.keys import SLOT_COUNT


def test_initial_split_is_even_and_contiguous():
    m = ClusterMap.initial(3)
    assert [m.slot_ranges(i) for i in range(3)] == [[(0, 5460)], [(5461, 10921)],
                                                    [(10922, 16383)]]
    m7 = ClusterMap.initial(7)
    sizes = [b - a + 1 for i in range(7) for a, b in m7.slot_ranges(i)]
    assert sum(sizes) == SLOT_COUNT and max(sizes) - min(sizes) <= 1
    with pytest.raises(ConfigError):
        ClusterMap.initial(0)


def test_round_trip_and_run_length_encoding():
    m = ClusterMap.initial(3).with_member(Member(1, "peer", ("/ip4/1.2.3.4/tcp/1",), JOINED))
    d = m.to_dict()
    assert len(d["slots"]) == 3 and d["epoch"] == 2
    assert ClusterMap.from_dict(d) == m


def test_every_change_advances_the_epoch():
    m = ClusterMap.initial(2)
    m2 = m.with_member(Member(0, "p", ("/ip4/127.0.0.1/tcp/1",), JOINED))
    assert (m.epoch, m2.epoch) == (1, 2)
    assert m.members[0].peer_id is None  # the old map is untouched


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d.update(version=99), "version"),
    (lambda d: d["slots"].pop(), "slot 8192 has an invalid owner list"),
    (lambda d: d["slots"][0].update(owners=[5]), "invalid owner list"),
    (lambda d: d["slots"][0].update(end=99999), "invalid slot range"),
    (lambda d: d["nodes"][0].update(state="bogus"), "state"),
])
def test_invalid_maps_are_refused(mutate, words):
    d = ClusterMap.initial(2).to_dict()
    mutate(d)
    with pytest.raises(ClusterError, match=words):
        ClusterMap.from_dict(d)


def test_replica_lists_survive_the_format():
    m = ClusterMap.initial(3)
    owners = tuple((o[0], (o[0] + 1) % 3) for o in m.owners)
    r = ClusterMap(m.epoch, m.members, owners, replication=2)
    back = ClusterMap.from_dict(r.to_dict())
    assert back.owners[0] == (0, 1) and back.replication == 2
    assert back.owns(0, 0) and not back.owns(1, 0)  # replicas do not answer yet
