from __future__ import annotations

import json
import stat

import pytest

from dscluster.auth import Token, new_secret
from dscluster.clustermap import JOINED, ClusterMap
from dscluster.config import load_client_config, load_node_config
from dscluster.errors import ConfigError
from dscluster.limits import Limits
from dscluster.provision import create_client, create_cluster, create_joining_node


def test_cluster_directory_round_trips(tmp_path):
    files = create_cluster(tmp_path / "srv01", 3)
    cfg = load_node_config(tmp_path / "srv01")
    assert cfg.bootstrap_node and cfg.member_index == 0
    assert files.bootstrapper == f"{cfg.swarm[0]}/p2p/{cfg.peer_id}"
    assert cfg.lane and cfg.lane.endswith("/tls")
    assert Token.load(files.node_token).role == "node"
    assert Token.load(files.readonly_token).role == "readonly"


def test_joining_node_and_client(tmp_path):
    files = create_cluster(tmp_path / "srv01", 2)
    node_tok = Token.load(files.node_token)
    cfg = create_joining_node(tmp_path / "srv02", bootstrapper=files.bootstrapper, index=1,
                              token=node_tok)
    assert load_node_config(tmp_path / "srv02").member_index == 1
    assert cfg.swarm[0].startswith("/ip4/127.0.0.1/tcp/")
    with pytest.raises(ConfigError, match="already holds"):
        create_joining_node(tmp_path / "srv02", bootstrapper=files.bootstrapper, index=1,
                            token=node_tok)
    with pytest.raises(ConfigError, match="--listen"):
        create_joining_node(tmp_path / "srv03", index=1, token=node_tok,
                            bootstrapper="/ip4/10.1.2.3/tcp/4001/p2p/" + cfg.peer_id)
    ro = create_client(tmp_path / "cli", bootstrapper=files.bootstrapper,
                       token=Token.load(files.readonly_token))
    assert ro.read_only_client and load_client_config(tmp_path / "cli").read_only_client


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d.update(version=2), "version"),
    (lambda d: d.update(log_level="loud"), "log_level"),
    (lambda d: d["store"].update(type="sqlite"), "store.type"),
    (lambda d: d["limits"].update(max_value_bytes=0), "positive"),
    (lambda d: d["limits"].update(max_key_bytes=99999), "at most"),
    (lambda d: d["limits"].update(bogus=1), "unknown limits"),
    (lambda d: d.pop("identity"), "identity"),
])
def test_invalid_node_configs_are_one_clear_error(tmp_path, mutate, words):
    create_cluster(tmp_path / "n", 1)
    path = tmp_path / "n" / "config.json"
    d = json.loads(path.read_text())
    mutate(d)
    path.write_text(json.dumps(d))
    with pytest.raises(ConfigError, match=words):
        load_node_config(tmp_path / "n")


def test_frame_limit_covers_a_full_page_and_batch():
    lim = Limits()
    assert lim.max_frame_bytes > 2 * lim.max_value_bytes + lim.max_page_entries * lim.max_key_bytes


def test_a_client_needs_a_client_token(tmp_path):
    from dscluster.provision import token_from

    p = tmp_path / "t"
    Token.for_role(new_secret(), "node").save(p)
    with pytest.raises(ConfigError, match="client or readonly"):
        token_from(p, ("client", "readonly"))


def test_a_node_config_others_can_read_is_refused(tmp_path):
    create_cluster(tmp_path / "n", 1)
    path = tmp_path / "n" / "config.json"
    path.chmod(0o640)
    with pytest.raises(ConfigError, match=rf"\(mode 0640\); run: chmod 600 {path}$"):
        load_node_config(tmp_path / "n")


def test_config_files_are_written_private_and_a_client_config_need_not_be(tmp_path):
    files = create_cluster(tmp_path / "srv01", 2)
    create_joining_node(tmp_path / "srv02", bootstrapper=files.bootstrapper, index=1,
                        token=Token.load(files.node_token))
    create_client(tmp_path / "cli", bootstrapper=files.bootstrapper,
                  token=Token.load(files.client_token))
    for d in ("srv01", "srv02", "cli"):
        assert stat.S_IMODE((tmp_path / d / "config.json").stat().st_mode) == 0o600, d
    # a client's config names its key and token files but holds no secret itself
    (tmp_path / "cli" / "config.json").chmod(0o644)
    assert load_client_config(tmp_path / "cli").bootstrapper == files.bootstrapper


def test_node_and_client_directories_are_not_taken_for_each_other(tmp_path):
    files = create_cluster(tmp_path / "srv01", 1)
    create_client(tmp_path / "cli", bootstrapper=files.bootstrapper,
                  token=Token.load(files.client_token))
    with pytest.raises(ConfigError, match="is a client's directory; give a node's"):
        load_node_config(tmp_path / "cli")
    with pytest.raises(ConfigError, match="is a node's directory; give a client's"):
        load_client_config(tmp_path / "srv01")


@pytest.mark.parametrize(("nodes", "replication", "expect"), [
    (1, None, 1), (2, None, 2), (5, None, 3), (5, 1, 1), (4, 4, 4),
])
def test_the_first_map_keeps_replication_copies(tmp_path, nodes, replication, expect):
    files = create_cluster(tmp_path / "srv01", nodes, replication=replication)
    cmap = ClusterMap.load(tmp_path / "srv01" / "clustermap.json")
    assert cmap.replication == expect and all(len(o) == expect for o in cmap.owners)
    # node 0's claim was recorded without losing the replicas
    assert cmap.epoch == 1 and cmap.members[0].state == JOINED
    assert files.bootstrapper.endswith(f"/p2p/{cmap.members[0].peer_id}")


@pytest.mark.parametrize("replication", [0, 4])
def test_a_refused_replication_factor_writes_nothing(tmp_path, replication):
    with pytest.raises(ConfigError, match="replication factor"):
        create_cluster(tmp_path / "srv01", 3, replication=replication)
    assert not (tmp_path / "srv01").exists()
