"""The deployment files in deploy/ and the three-machine steps of doc/deploy.md.

The machines are played by 127.0.0.1, 127.0.0.2 and 127.0.0.3 (all loopback), each node
listening and announcing its own address as the guide has them do with 10.0.0.x.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from dscluster.config import free_tcp_port
from dscluster.localcluster import Cluster, tool

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def test_the_systemd_unit_verifies_clean(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    # an instance of the template, running this checkout's dscluster (verify checks that
    # the command exists)
    unit = tmp_path / "dscluster@srv01.service"
    text = (DEPLOY / "dscluster@.service").read_text()
    assert "ExecStart=/opt/dscluster/bin/dscluster " in text
    unit.write_text(text.replace("/opt/dscluster/bin/dscluster", tool("dscluster")))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    # verify exits 0 on mere warnings (an unknown key, a bad value): none may appear
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    for needed in ("LimitNOFILE=65536", "NoNewPrivileges=yes", "ProtectSystem=strict",
                   "ReadWritePaths=/var/lib/dscluster/%i", "KillSignal=SIGTERM"):
        assert needed in text


def test_the_compose_file_announces_each_node_at_its_fixed_address():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    subnet = compose["networks"]["cluster"]["ipam"]["config"][0]["subnet"]
    assert subnet == "172.28.0.0/24"
    setup = "\n".join(services["setup"]["command"])
    assert "--announce-host 172.28.0.10" in setup and "--host 0.0.0.0" in setup
    assert services["node0"]["networks"]["cluster"]["ipv4_address"] == "172.28.0.10"
    assert "0.0.0.0:9000" in services["node0"]["command"]
    for i in (1, 2):
        svc = services[f"node{i}"]
        ip = svc["networks"]["cluster"]["ipv4_address"]
        command = " ".join(svc["command"])
        assert f"--announce-host={ip}" in command, command
        assert f"--identity={i}" in command and "--listen=/ip4/0.0.0.0/tcp/4001" in command
        assert svc["ulimits"]["nofile"] == 65536


def test_the_compose_file_is_valid_for_docker_compose():
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True,
                                        timeout=30).returncode != 0:
        pytest.skip("the docker compose plugin is not installed here; the file's structure "
                    "is checked by the test above")
    done = subprocess.run([docker, "compose", "-f", str(DEPLOY / "docker-compose.yml"),
                           "config", "--quiet"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_kubo_examples_are_what_dscfg_ipfs_prints():
    out = subprocess.run(
        [tool("dscfg"), "ipfs", "--s3", "http://10.0.0.1:9000", "--bucket", "blocks",
         "--access-key", "REPLACE-WITH-ACCESS-KEY", "--secret-key", "REPLACE-WITH-SECRET-KEY"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    spec_start = out.index("{\n")
    spec, end = json.JSONDecoder().raw_decode(out[spec_start:])
    assert json.loads((DEPLOY / "kubo" / "datastore-spec.json").read_text()) == spec
    line = next(ln for ln in out[spec_start + end:].splitlines() if ln.startswith('{"mounts"'))
    assert (DEPLOY / "kubo" / "datastore_spec").read_text().strip() == line


class Machines(Cluster):
    """Node i on 127.0.0.(i+1), as doc/deploy.md's 10.0.0.(i+1)."""

    def host(self, i: int) -> str:
        return f"127.0.0.{i + 1}"

    def dscfg_command(self, boot: Path) -> list[str]:
        cmd = super().dscfg_command(boot)
        return [*cmd[:-1], "--host", self.host(0), "--port", str(free_tcp_port(self.host(0))),
                "--announce-host", self.host(0), cmd[-1]]

    def join_args(self, index: int) -> list[str]:
        h = self.host(index)
        return [*super().join_args(index), f"--listen=/ip4/{h}/tcp/{free_tcp_port(h)}",
                f"--announce-host={h}"]


def _map_once_all_joined(path: Path, timeout: float = 15.0) -> list[dict]:
    """The members in the map a node saved, once every member shows as joined there.

    Nodes 1 and 2 join at once: whichever joins first is handed a map in which the other
    is still pending, and learns of the other's join from the map it polls and pings for
    (every 1-2 s), so the saved map converges a moment after both are ready."""
    deadline = time.monotonic() + timeout
    while True:
        members = json.loads(path.read_text())["nodes"]
        if all(m["state"] == "joined" for m in members) or time.monotonic() > deadline:
            return members
        time.sleep(0.1)


def test_three_machines_set_up_as_the_guide_says(tmp_path):
    c = Machines(tmp_path, nodes=3, replication=3).start()
    try:
        members = _map_once_all_joined(c.nodes[2].conf / "clustermap.json")
        for i, m in enumerate(members):
            # swarm and data lane both announced at the node's own machine
            assert m["swarm"] and all(a.startswith(f"/ip4/{c.host(i)}/tcp/")
                                      for a in m["swarm"]), m
        cfg = json.loads((c.nodes[1].conf / "config.json").read_text())
        assert cfg["addresses"]["announce_host"] == "127.0.0.2"
        src = tmp_path / "hello.txt"
        src.write_bytes(b"deployed\n")
        put = c.dsclient("put", "/deploy/hello", str(src))
        assert put.returncode == 0, put.stderr
        got = c.dsclient("get-key", "/deploy/hello")
        assert got.returncode == 0 and got.stdout == b"deployed\n", got.stderr
        status = c.dsclient("status")
        assert status.returncode == 0 and status.stdout.count(b" up ") == 3, status.stdout
    finally:
        c.stop()
