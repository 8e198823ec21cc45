"""The S3 gateway as a user runs it: `dscluster --s3-listen`, then boto3, the aws cli,
and dsclient on the same data."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest
import trio
from botocore.config import Config

from dscluster.localcluster import Cluster, tool
from dscluster.query import Entry, Query
from dscluster.store.memory import MemoryStore
from dscluster.unixfs import AddOptions, add_stream, block_key

pytestmark = pytest.mark.timeout(180)


def credential(c: Cluster) -> dict[str, str]:
    """The S3 credential dscfg created for the bootstrapper."""
    cfg = json.loads((c.nodes[0].conf / "config.json").read_text())
    return cfg["s3"]["credentials"][0]


def client(c: Cluster, endpoint: str) -> Any:
    cred = credential(c)
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=cred["access_key"],
                        aws_secret_access_key=cred["secret_key"],
                        config=Config(s3={"addressing_style": "path"}))


def ensure_blocks_bucket(c: Cluster, endpoint: str) -> None:
    s3 = client(c, endpoint)
    if "blocks" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket="blocks")


def ok(p: subprocess.CompletedProcess[bytes]) -> bytes:
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout


def test_node_serves_s3_and_dsclient_blocks_are_objects(s3_cluster, tmp_path: Path):
    c, endpoint = s3_cluster
    assert "S3 gateway listening" in c.nodes[0].log.read_text()
    s3 = client(c, endpoint)
    ensure_blocks_bucket(c, endpoint)
    f = tmp_path / "f.bin"
    f.write_bytes(os.urandom(600_000))
    cid = ok(c.dsclient("add", "-Q", "--no-progress", str(f))).decode().strip()
    root = block_key(cid)  # /blocks/CIQ…
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket="blocks")["Contents"]]
    assert root.removeprefix("/blocks/") in listed and len(listed) >= 4
    obj = s3.get_object(Bucket="blocks", Key=root.removeprefix("/blocks/"))["Body"].read()
    assert obj == ok(c.dsclient("get-key", root))


def test_blocks_written_over_s3_are_read_by_dsclient_get(s3_cluster, tmp_path: Path):
    """What Kubo with go-ds-s3 does: one PutObject per block into bucket `blocks`."""
    c, endpoint = s3_cluster
    s3 = client(c, endpoint)
    ensure_blocks_bucket(c, endpoint)
    data = os.urandom(700_000)
    local = MemoryStore()

    async def build() -> tuple[str, list[Entry]]:
        async def source():
            yield data
        cid = (await add_stream(local, source(), options=AddOptions())).cid
        return cid, [e async for e in local.query(Query(prefix="/blocks"))]

    cid, blocks = trio.run(build)
    assert len(blocks) == 4  # 3 leaves and a root
    for e in blocks:
        s3.put_object(Bucket="blocks", Key=e.key.removeprefix("/blocks/"), Body=e.value)
    out = tmp_path / "out.bin"
    ok(c.dsclient("get", cid, "-o", str(out)))
    assert out.read_bytes() == data


def test_aws_cli_copies_a_large_file_reachable_by_cid(s3_cluster, tmp_path: Path):
    c, endpoint = s3_cluster
    cred = credential(c)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": cred["access_key"],
           "AWS_SECRET_ACCESS_KEY": cred["secret_key"], "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    aws = [tool("aws"), "--endpoint-url", endpoint]

    def run(*args: str) -> bytes:
        p = subprocess.run([*aws, *args], env=env, capture_output=True, timeout=120)
        assert p.returncode == 0, p.stderr.decode()
        return p.stdout

    big = tmp_path / "big.iso"
    big.write_bytes(os.urandom(9 << 20))  # over the 4 MiB value limit: stored as a DAG
    run("s3", "mb", "s3://backups")
    run("s3", "cp", str(big), "s3://backups/big.iso")
    head = json.loads(run("s3api", "head-object", "--bucket", "backups", "--key", "big.iso"))
    assert head["ContentLength"] == 9 << 20
    # a multipart upload (the cli's threshold is 8 MB): its CID is in a header of its
    # own, which the cli does not print
    headers = client(c, endpoint).head_object(Bucket="backups", Key="big.iso")[
        "ResponseMetadata"]["HTTPHeaders"]
    cid = headers["x-ipfs-cid"]
    back = tmp_path / "back.iso"
    run("s3", "cp", "s3://backups/big.iso", str(back))
    assert back.read_bytes() == big.read_bytes()
    via_cid = tmp_path / "via-cid.iso"
    ok(c.dsclient("get", cid, "-o", str(via_cid)))
    assert via_cid.read_bytes() == big.read_bytes()
    assert b"big.iso" in run("s3", "ls", "s3://backups/")
