from __future__ import annotations

import copy
import json

import pytest

from dscluster.clustermap import JOINED, MAP_FORMAT_VERSION, ClusterMap, Member
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
    (lambda d: d.pop("version"), "no valid format version"),
    (lambda d: d.update(version=True), "no valid format version"),
    (lambda d: d.update(version=0), "no valid format version"),
    (lambda d: d.pop("replication"), "replication"),
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
    assert back.owns(0, 0) and back.owns(1, 0) and not back.owns(2, 0)


def test_the_current_format_always_writes_its_version_and_replication():
    d = ClusterMap.initial(1).to_dict()
    assert (d["version"], d["replication"], d["layout_epoch"]) == (MAP_FORMAT_VERSION, 1, 0) \
        == (3, 1, 0)


# what dscluster wrote before replication (MAP_FORMAT_VERSION 1): `dscfg cluster -n 2`,
# then node 0 joined
V1_MAP = {
    "version": 1,
    "epoch": 2,
    "replication": 1,
    "nodes": [
        {"index": 0, "id": "12D3KooWJ6nZRUTsMQR2BXrSfhgf3fM3YoqTVqA1RxJtsXo3pDn7",
         "swarm": ["/ip4/127.0.0.1/tcp/40531", "/ip4/127.0.0.1/tcp/35037/tls"],
         "state": "joined"},
        {"index": 1, "id": None, "swarm": [], "state": "pending"},
    ],
    "slots": [
        {"start": 0, "end": 8191, "owners": [0]},
        {"start": 8192, "end": 16383, "owners": [1]},
    ],
}


def test_a_version_1_map_loads_and_is_written_back_as_the_current_version(tmp_path):
    path = tmp_path / "clustermap.json"
    path.write_text(json.dumps(V1_MAP, indent=1) + "\n")
    m = ClusterMap.load(path)
    assert (m.epoch, m.replication) == (2, 1)
    assert m.members[0].state == JOINED and m.members[1].peer_id is None
    assert m.slot_ranges(0) == [(0, 8191)] and m.write_set(9000) == m.read_set(9000) == (1,)
    m.save(path)
    d = json.loads(path.read_text())
    assert d == {**V1_MAP, "version": 3, "layout_epoch": 0,
                 "nodes": [{**n, "weight": 1.0} for n in V1_MAP["nodes"]]}
    assert ClusterMap.load(path) == m


def test_a_version_1_map_without_replication_has_one_copy():
    d = copy.deepcopy(V1_MAP)
    del d["replication"]
    assert ClusterMap.from_dict(d).replication == 1
    d["slots"][0]["owners"] = [0, 1]
    with pytest.raises(ClusterError, match="slot 0 has 2 owners"):
        ClusterMap.from_dict(d)


def test_a_map_from_a_newer_format_is_refused_naming_the_file(tmp_path):
    d = {**ClusterMap.initial(2).to_dict(), "version": MAP_FORMAT_VERSION + 1,
         "placement": "something this release cannot know"}
    with pytest.raises(ConfigError, match=r"^cluster map format version 4 is newer than "
                       r"this dscluster reads \(1 to 3\); upgrade dscluster"):
        ClusterMap.from_dict(d)
    path = tmp_path / "clustermap.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ConfigError, match=f"^{path}: cluster map format version 4"):
        ClusterMap.load(path)


@pytest.mark.parametrize("owners", [(0,), (0, 1, 2)])
def test_owner_lists_must_have_replication_owners(owners):
    m = ClusterMap.initial(3, 2)
    with pytest.raises(ClusterError, match=rf"slot 7 has {len(owners)} owners .*; "
                       "the map's replication factor is 2"):
        ClusterMap(m.epoch, m.members, (*m.owners[:7], owners, *m.owners[8:]), 2)
    d = m.to_dict()
    d["slots"].insert(0, {"start": 0, "end": 0, "owners": list(owners)})
    d["slots"][1]["start"] = 1
    with pytest.raises(ClusterError, match="slot 0 has"):
        ClusterMap.from_dict(d)
