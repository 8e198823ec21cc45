"""`dscluster --metrics-listen --log-format json` as an operator runs it: scrape, do
some work through the cluster client and the S3 gateway, scrape again."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import boto3
import pytest
import trio
from botocore.config import Config
from botocore.exceptions import ClientError

from dscluster.client.connect import open_cluster
from dscluster.config import free_tcp_port
from dscluster.localcluster import Cluster

from ..unit.test_metrics import samples, value

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, str, str]]:
    """One node with metrics, S3 and json logs: (cluster, metrics URL, S3 URL)."""
    mport, sport = free_tcp_port(), free_tcp_port()
    c = Cluster(tmp_path_factory.mktemp("metrics"), nodes=1,
                node0_args=[f"--metrics-listen=127.0.0.1:{mport}",
                            f"--s3-listen=127.0.0.1:{sport}", "--log-format=json"])
    c.start()
    try:
        yield c, f"http://127.0.0.1:{mport}", f"http://127.0.0.1:{sport}"
    finally:
        c.stop()


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def scrape(url: str) -> dict:
    status, body = get(url + "/metrics")
    assert status == 200
    return samples(body)


def s3_client(c: Cluster, endpoint: str):
    cred = json.loads((c.nodes[0].conf / "config.json").read_text())["s3"]["credentials"][0]
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=cred["access_key"],
                        aws_secret_access_key=cred["secret_key"],
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1}))


def test_health_and_ready(node):
    _, murl, _ = node
    assert get(murl + "/healthz") == (200, b"ok\n")
    assert get(murl + "/readyz") == (200, b"ready\n")


def test_counters_move_by_the_work_done(node):
    c, murl, surl = node
    before = scrape(murl)

    async def work() -> None:
        async with open_cluster(c.client()) as ds:
            for i in range(5):
                await ds.put(f"/metrics/{i}", b"v" * 1000)
            assert await ds.get("/metrics/3") == b"v" * 1000

    trio.run(work)
    s3 = s3_client(c, surl)
    s3.create_bucket(Bucket="observed")
    s3.put_object(Bucket="observed", Key="o", Body=b"0123456789")
    assert s3.get_object(Bucket="observed", Key="o")["Body"].read() == b"0123456789"
    after = scrape(murl)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # the client's five puts and one get; the gateway's own come on top (>=)
    assert moved("dscluster_requests_total", operation="WriteRecords", outcome="ok") >= 5 + 2
    assert moved("dscluster_requests_total", operation="ReadRecord", outcome="ok") >= 1
    assert moved("dscluster_received_bytes_total") >= 5000  # over the network only
    assert moved("dscluster_sent_bytes_total") > 0
    assert moved("dscluster_s3_requests_total", operation="CreateBucket", status="200") == 1
    assert moved("dscluster_s3_requests_total", operation="PutObject", status="200") == 1
    assert moved("dscluster_s3_requests_total", operation="GetObject", status="200") == 1
    assert moved("dscluster_s3_received_bytes_total") == 10
    assert value(after, "dscluster_store_keys") >= value(before, "dscluster_store_keys") + 5
    assert ("dscluster_connections_refused_total", (("transport", "lane"),)) in after
    assert {("dscluster_repair_slots", ()), ("dscluster_repair_pulled_keys_total", ()),
            ("dscluster_hints_pending", ())} <= after.keys()


def test_json_logs_and_one_access_line_per_request(node):
    c, _, surl = node
    s3 = s3_client(c, surl)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="no-such-bucket-here", Key="k")
    rid = e.value.response["ResponseMetadata"]["RequestId"]
    log = c.nodes[0].log

    def lines() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()
                if line.startswith("{")]

    deadline = time.monotonic() + 10  # the node writes the line after the response
    while time.monotonic() < deadline and not any(x.get("request_id") == rid
                                                  for x in lines()):
        time.sleep(0.05)
    every = lines()
    assert every and all({"time", "level", "logger", "message"} <= x.keys() for x in every)
    assert any(" ready: " in x["message"] for x in every)
    mine = [x for x in every if x.get("request_id") == rid]
    access = [x for x in mine if x["logger"] == "dscluster.s3.access"]
    assert len(access) == 1
    a = access[0]
    assert (a["operation"], a["bucket"], a["key"], a["status"]) == \
        ("GetObject", "no-such-bucket-here", "k", 404)
    assert re.fullmatch(r"[0-9A-Z]{16}", rid) and a["access_key"] and a["bytes_out"] > 0
    assert a["duration"] >= 0 and a["bytes_in"] == 0
