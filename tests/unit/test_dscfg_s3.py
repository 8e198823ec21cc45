"""`dscfg ipfs` and `dscfg s3-key`."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import click
from click.testing import CliRunner

from dscfg.s3 import datastore_spec, register
from dscluster.config import write_config
from dscluster.s3.settings import S3Settings


def cli() -> click.Group:
    @click.group()
    def main() -> None:
        pass
    register(main)
    return main


NODE = {"version": 1, "identity": {"peer_id": "x"}, "bootstrap_node": True,
        "addresses": {"swarm": ["/ip4/127.0.0.1/tcp/4001"]}}


def node_dir(tmp_path: Path, s3: dict | None = None) -> Path:
    write_config(tmp_path / "config.json", {**NODE, "s3": s3} if s3 is not None else NODE)
    return tmp_path


def test_s3_key_add_and_list(tmp_path: Path) -> None:
    conf = node_dir(tmp_path)
    r1 = CliRunner().invoke(cli(), ["s3-key", "add", "--conf", str(conf)])
    r2 = CliRunner().invoke(cli(), ["s3-key", "add", "--conf", str(conf)])
    assert r1.exit_code == r2.exit_code == 0
    data = json.loads((conf / "config.json").read_text())
    settings = S3Settings.from_dict(data["s3"])
    assert len(settings.credentials) == 2 and data["identity"] == NODE["identity"]
    assert f"secret_key: {settings.credentials[0].secret_key}" in r1.output
    assert stat.S_IMODE((conf / "config.json").stat().st_mode) == 0o600
    listed = CliRunner().invoke(cli(), ["s3-key", "list", "--conf", str(conf)])
    assert listed.output.split() == [c.access_key for c in settings.credentials]
    assert settings.credentials[0].secret_key not in listed.output


def test_ipfs_from_a_node_config(tmp_path: Path) -> None:
    conf = node_dir(tmp_path, {"region": "eu-1", "credentials": [
        {"access_key": "AK", "secret_key": "SK"}]})
    r = CliRunner().invoke(cli(), ["ipfs", "--s3", "http://127.0.0.1:9000/", "--bucket",
                                   "blocks", "--conf", str(conf)])
    assert r.exit_code == 0, r.output
    start = r.output.index("{\n")
    spec = json.loads(r.output[start:r.output.index("\n}\n", start) + 2])
    child = spec["mounts"][0]["child"]
    assert child == {"type": "s3ds", "region": "eu-1", "bucket": "blocks", "rootDirectory": "",
                     "regionEndpoint": "http://127.0.0.1:9000", "accessKey": "AK",
                     "secretKey": "SK"}
    assert spec["mounts"][0]["mountpoint"] == "/blocks"
    assert spec["mounts"][1]["child"]["type"] == "levelds"
    assert datastore_spec("blocks", "eu-1") in r.output
    assert "forcePathStyle: true" in r.output and "new S3Blockstore(s3, \"blocks\"" in r.output


def test_ipfs_with_keys_and_errors(tmp_path: Path) -> None:
    ok = CliRunner().invoke(cli(), ["ipfs", "--s3", "http://h:1", "--bucket", "blocks",
                                    "--access-key", "A", "--secret-key", "S"])
    assert ok.exit_code == 0 and '"region": "us-east-1"' in ok.output
    for args in (["--bucket", "blocks"],
                 ["--s3", "ftp://x", "--bucket", "blocks", "--access-key", "A",
                  "--secret-key", "S"],
                 ["--s3", "http://h:1", "--bucket", "No", "--access-key", "A",
                  "--secret-key", "S"],
                 ["--s3", "http://h:1", "--bucket", "blocks", "--access-key", "A"],
                 ["--s3", "http://h:1", "--bucket", "blocks", "--conf", str(node_dir(tmp_path))]):
        r = CliRunner().invoke(cli(), ["ipfs", *args])
        assert r.exit_code != 0, args


def test_datastore_spec_is_what_kubo_writes() -> None:
    assert datastore_spec("blocks", "us-east-1") == (
        '{"mounts":[{"bucket":"blocks","mountpoint":"/blocks","region":"us-east-1",'
        '"rootDirectory":""},{"mountpoint":"/","path":"datastore","type":"levelds"}],'
        '"type":"mount"}')


def test_s3_key_refuses_a_client_directory_and_a_readable_node_config(tmp_path: Path) -> None:
    client = tmp_path / "cli"
    write_config(client / "config.json", {"version": 1, "identity": {"peer_id": "x"},
                                          "bootstrap_address": "/ip4/1.2.3.4/tcp/1/p2p/x",
                                          "read_only_client": False})
    readable = node_dir(tmp_path / "node")
    (readable / "config.json").chmod(0o644)
    for conf, words in ((client, "is a client's directory"), (readable, "chmod 600")):
        before = (conf / "config.json").read_text()
        for command in ("add", "list"):
            r = CliRunner().invoke(cli(), ["s3-key", command, "--conf", str(conf)])
            assert r.exit_code != 0 and words in str(r.exception), (command, r.output)
        assert (conf / "config.json").read_text() == before
