from __future__ import annotations

from collections import Counter
from itertools import combinations

import pytest

from dscluster.cluster.placement import default_replication, initial_owners
from dscluster.clustermap import ClusterMap
from dscluster.errors import ClusterError, ConfigError
from dscluster.keys import SLOT_COUNT


def test_replication_one_gives_the_contiguous_maps_of_before():
    owners = initial_owners(3, 1)
    assert owners[0] == (0,) and owners[5460] == (0,) and owners[5461] == (1,)
    assert owners[16383] == (2,) and all(len(o) == 1 for o in owners)


@pytest.mark.parametrize(("n", "r"), [(2, 2), (3, 2), (3, 3), (4, 2), (5, 3), (7, 3)])
def test_every_slot_has_r_distinct_owners_and_survives_any_one_loss(n, r):
    owners = initial_owners(n, r)
    assert len(owners) == SLOT_COUNT
    assert all(len(o) == r == len(set(o)) for o in owners)
    for dead in range(n):
        assert all(len([x for x in o if x != dead]) >= r - 1 for o in owners)


@pytest.mark.parametrize(("n", "r"), [(3, 2), (4, 2), (5, 3), (7, 3)])
def test_a_dead_primarys_slots_fall_back_to_every_other_node(n, r):
    owners = initial_owners(n, r)
    for dead in range(n):
        heirs = Counter(o[1] for o in owners if o[0] == dead)
        assert set(heirs) == set(range(n)) - {dead}
        assert max(heirs.values()) - min(heirs.values()) <= 1


@pytest.mark.parametrize(("n", "r"), [(4, 2), (5, 3), (7, 3)])
def test_no_node_holds_all_replicas_of_another_nodes_range(n, r):
    owners = initial_owners(n, r)
    for a, b in combinations(range(n), 2):
        mine = [o for o in owners if o[0] == a]
        assert not all(b in o for o in mine)


@pytest.mark.parametrize(("n", "r"), [(3, 2), (5, 3), (7, 3)])
def test_load_is_even(n, r):
    held = Counter(x for o in initial_owners(n, r) for x in o)
    fair = SLOT_COUNT * r / n
    assert all(abs(v - fair) <= n for v in held.values())


def test_bad_replication_factors_are_refused_with_one_line():
    with pytest.raises(ConfigError, match="at least 1"):
        initial_owners(3, 0)
    with pytest.raises(ConfigError, match="needs at least 4 nodes; this cluster has 3"):
        initial_owners(3, 4)
    assert [default_replication(n) for n in (1, 2, 3, 5)] == [1, 2, 3, 3]


def test_a_map_rejects_duplicate_owners_and_too_few_nodes():
    m = ClusterMap.initial(3, 2)
    d = m.to_dict()
    d["slots"][0]["owners"] = [1, 1]
    with pytest.raises(ClusterError, match="invalid owner list"):
        ClusterMap.from_dict(d)
    d = m.to_dict()
    d["replication"] = 5
    with pytest.raises(ClusterError, match="needs at least 5 nodes"):
        ClusterMap.from_dict(d)


def test_a_replicated_map_round_trips():
    m = ClusterMap.initial(5, 3)
    assert ClusterMap.from_dict(m.to_dict()) == m
    assert m.replication == 3
