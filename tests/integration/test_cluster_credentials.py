"""Cluster-wide credentials on a real 3-node cluster, each node with its own gateway:
S3 keys from `dsclient s3-key` work on every gateway without a restart, rotate and
remove take effect everywhere within a bound; a named token works until revoked, then
every node refuses it, open streams included."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import trio
from botocore.config import Config
from botocore.exceptions import ClientError

from dscluster import wire
from dscluster.client.connect import open_cluster
from dscluster.cluster.credentials import RELOAD_INTERVAL
from dscluster.config import free_tcp_port
from dscluster.errors import Unauthorized
from dscluster.localcluster import Cluster

pytestmark = pytest.mark.timeout(240)
# a removal or revocation reaches a node at its next reload; slack for a loaded machine
BOUND = RELOAD_INTERVAL + 5


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, list[str]]]:
    ports = [free_tcp_port() for _ in range(3)]
    listen = [[f"--s3-listen=127.0.0.1:{p}"] for p in ports]
    c = Cluster(tmp_path_factory.mktemp("creds"), node0_args=listen[0], node_args=listen[1:],
                replication=3).start()
    try:
        yield c, [f"http://127.0.0.1:{p}" for p in ports]
    finally:
        c.stop()


def _s3(endpoint: str, access_key: str, secret_key: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1}))


def _ok(c: Cluster, *args: str, conf: Path | None = None) -> str:
    p = c.dsclient(*args, conf=conf or c.admin())
    assert p.returncode == 0, p.stderr.decode() + c.logs()
    return p.stdout.decode()


def _credential(out: str) -> tuple[str, str]:
    fields = dict(line.split(": ", 1) for line in out.splitlines())
    return fields["access_key"], fields["secret_key"]


def _refused_code(endpoint: str, ak: str, sk: str) -> str | None:
    try:
        _s3(endpoint, ak, sk).list_buckets()
    except ClientError as e:
        return e.response["Error"]["Code"]
    return None


def _until(what: Callable[[], bool], bound: float) -> float:
    """Seconds until ``what()`` holds; fails past ``bound``."""
    start = time.monotonic()
    while not what():
        assert time.monotonic() - start < bound, f"not within {bound:g}s"
        time.sleep(0.2)
    return time.monotonic() - start


def test_s3_keys_from_dsclient_work_on_every_gateway_at_once(gateways):
    c, endpoints = gateways
    ak, sk = _credential(_ok(c, "s3-key", "add"))
    # no restart: every gateway accepts it at once (an unknown key is looked up)
    for e in endpoints:
        assert _s3(e, ak, sk).list_buckets()["Buckets"] is not None
    _s3(endpoints[1], ak, sk).create_bucket(Bucket="shared")
    _s3(endpoints[1], ak, sk).put_object(Bucket="shared", Key="k", Body=b"through node 1")
    got = _s3(endpoints[2], ak, sk).get_object(Bucket="shared", Key="k")["Body"].read()
    assert got == b"through node 1"

    # list: access key, creation, last use (written within a reload), never a secret
    def used() -> bool:
        out = _ok(c, "s3-key", "list")
        assert sk not in out
        row = next(line for line in out.splitlines() if line.startswith(ak))
        return not row.endswith("never")
    _until(used, BOUND)

    # an ordinary client may not manage keys
    p = c.dsclient("s3-key", "add")
    assert p.returncode != 0 and b"admin token" in p.stderr and len(p.stderr.splitlines()) == 1

    new_ak, new_sk = _credential(_ok(c, "s3-key", "rotate", ak))
    assert new_ak == ak and new_sk != sk
    took = max(_until(lambda e=e: _refused_code(e, ak, sk) == "SignatureDoesNotMatch", BOUND)
               for e in endpoints)
    print(f"old secret refused by every gateway {took:.1f}s after the rotation")
    for e in endpoints:
        assert _refused_code(e, ak, new_sk) is None

    _ok(c, "s3-key", "remove", ak)
    took = max(_until(lambda e=e: _refused_code(e, ak, new_sk) == "InvalidAccessKeyId", BOUND)
               for e in endpoints)
    print(f"removed key refused by every gateway {took:.1f}s after the removal")
    assert ak not in _ok(c, "s3-key", "list")
    p = c.dsclient("s3-key", "remove", ak, conf=c.admin())
    assert p.returncode != 0 and len(p.stderr.splitlines()) == 1


def test_a_named_token_is_refused_by_every_node_after_revocation(gateways, tmp_path: Path):
    c, _ = gateways
    token_file = tmp_path / "ci.token"
    _ok(c, "admin", "tokens", "issue", "ci", "--role=client", f"--out={token_file}")
    assert (token_file.stat().st_mode & 0o777) == 0o600
    ci = c.client("ci-client", token_file)
    p = c.dsclient("put", "/named/k", conf=ci, input=b"v")
    assert p.returncode == 0, p.stderr
    assert "ci " in _ok(c, "admin", "tokens", "list")
    # the stored tokens are unreachable for the client it authorises
    p = c.dsclient("get-key", "/.dscluster/tokens/ci", conf=ci)
    assert p.returncode != 0 and b"/.dscluster" in p.stderr

    async def main() -> list[float]:
        async with open_cluster(ci) as ds:
            members = ds.state.map.serving_members()
            for i in members:  # one open, authenticated stream to every node
                assert isinstance(await ds.caller.ask(i, wire.Stats()), wire.StatsData)
            await trio.to_thread.run_sync(_ok, c, "admin", "tokens", "revoke", "ci")
            start = trio.current_time()
            refused: list[float] = []
            for i in members:
                with trio.fail_after(BOUND):
                    while True:
                        try:
                            await ds.caller.ask(i, wire.Stats())
                        except Unauthorized:
                            break
                        await trio.sleep(0.2)
                refused.append(trio.current_time() - start)
            return refused

    refused = trio.run(main)
    print(f"revoked token refused by every node within {max(refused):.1f}s")
    p = c.dsclient("get-key", "/named/k", conf=ci)
    assert p.returncode != 0 and b"revoked" in p.stderr
    assert "ci " not in _ok(c, "admin", "tokens", "list")
