"""Bind and announce addresses: a node may listen on 0.0.0.0 and tell its peers another
address; what it would announce must be dialable."""

from __future__ import annotations

import json

import pytest

from dscluster.clustermap import ClusterMap
from dscluster.errors import ConfigError
from dscluster.net.addrs import announced
from tests.unit.test_dscfg_cluster import dscfg


def test_the_announced_host_replaces_the_bound_one_and_keeps_the_ports():
    listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/tcp/4002/tls"]
    assert announced(listen, "10.0.0.5") == ["/ip4/10.0.0.5/tcp/4001",
                                            "/ip4/10.0.0.5/tcp/4002/tls"]
    assert announced(["/ip4/0.0.0.0/tcp/4001"], "fd00::5") == ["/ip6/fd00::5/tcp/4001"]
    assert announced(["/ip4/127.0.0.2/tcp/1"], None) == ["/ip4/127.0.0.2/tcp/1"]


@pytest.mark.parametrize("listen", ["/ip4/0.0.0.0/tcp/4001", "/ip6/::/tcp/4001"])
def test_announcing_an_unspecified_address_is_refused_with_the_fix(listen):
    with pytest.raises(ConfigError, match=r"no peer can dial .*--announce-host"):
        announced([listen], None)


@pytest.mark.parametrize("host", ["0.0.0.0", "node1.example", "::"])
def test_an_announced_host_must_be_a_dialable_ip(host):
    with pytest.raises(ConfigError, match="announced host must be"):
        announced(["/ip4/0.0.0.0/tcp/4001"], host)


def test_dscfg_cluster_binding_every_interface_needs_an_announced_host(
        tmp_path, monkeypatch, capsys):
    d = tmp_path / "srv01"
    code, out, err = dscfg(monkeypatch, capsys, "cluster", "-n", "3", "--host", "0.0.0.0",
                           "--port", "4001", str(d))
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and "--announce-host" in err, err
    assert not d.exists()

    code, out, err = dscfg(monkeypatch, capsys, "cluster", "-n", "3", "--host", "0.0.0.0",
                           "--port", "4001", "--announce-host", "10.0.0.1", str(d))
    assert code == 0, err
    assert out.startswith("/ip4/10.0.0.1/tcp/4001/p2p/")
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["addresses"]["swarm"] == ["/ip4/0.0.0.0/tcp/4001"]
    assert cfg["addresses"]["announce_host"] == "10.0.0.1"
    assert ClusterMap.load(d / "clustermap.json").members[0].addrs == (
        "/ip4/10.0.0.1/tcp/4001",)
