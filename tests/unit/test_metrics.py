"""Metrics and health (dscluster/metrics.py, health.py, s3/observe.py), in process."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dscluster import wire
from dscluster.errors import NotFound
from dscluster.health import HealthApp
from dscluster.limits import ConnectionLimits
from dscluster.metrics import NodeMetrics
from dscluster.net.admission import AdmissionControl, Refused
from dscluster.s3.app import gateway_app
from dscluster.s3.settings import S3Settings
from dscluster.store.memory import MemoryStore
from dscluster.testing.memcluster import MemoryCluster

pytestmark = pytest.mark.timeout(60)


def samples(text: bytes | str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value of a Prometheus text page."""
    if isinstance(text, bytes):
        text = text.decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(page: dict, name: str, **labels: str) -> float:
    return page.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_node_requests_store_and_repair_are_counted():
    cluster = await MemoryCluster.start(1, 1)
    node = cluster.nodes[0]
    m = node.server.metrics
    m.store, m.replica, m.anti_entropy = node.server.store, node.server.replica, \
        node.anti_entropy
    ds = cluster.client()
    before = samples(await m.render())
    for i in range(3):
        await ds.put(f"/k/{i}", b"x" * 100)
    assert await ds.get("/k/1") == b"x" * 100
    with pytest.raises(NotFound):  # the node answers that it holds no record
        await ds.get("/missing")
    refused = await node.server.answer_local(wire.ReadRecord(key="not/clean", value=True))
    assert isinstance(refused, wire.Error)
    after = samples(await m.render())

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("dscluster_requests_total", operation="WriteRecords", outcome="ok") == 3
    assert moved("dscluster_requests_total", operation="ReadRecord", outcome="ok") == 2
    assert moved("dscluster_requests_total", operation="ReadRecord",
                 outcome="invalid_key") == 1
    assert moved("dscluster_request_duration_seconds_count", operation="WriteRecords") == 3
    # the node's own gateway asks as a member: labelled by its peer id
    assert moved("dscluster_peer_errors_total", peer=node.server.peer_id,
                 code="invalid_key") == 1
    assert value(after, "dscluster_store_keys") == 3
    assert value(after, "dscluster_store_bytes") == 300
    assert value(after, "dscluster_hints_pending") == 0
    assert ("dscluster_repair_pulled_keys_total", ()) in after


async def test_connections_and_refusals_are_read_at_scrape_time():
    m = NodeMetrics()
    adm = AdmissionControl(ConnectionLimits(unauthenticated_per_source=1), name="lane")
    m.admissions = {"lane": adm}
    first = adm.admit_unauthenticated("10.0.0.1")
    first.heard_from()  # spoken: a second one from the same address is refused
    assert isinstance(adm.admit_unauthenticated("10.0.0.1"), Refused)
    page = samples(await m.render())
    assert value(page, "dscluster_connections", transport="lane", state="unauthenticated") == 1
    assert value(page, "dscluster_connections_refused_total", transport="lane") == 1
    assert first.promote("node")
    page = samples(await m.render())
    assert value(page, "dscluster_connections", transport="lane", state="member") == 1
    assert value(page, "dscluster_connections", transport="lane", state="unauthenticated") == 0


def test_every_node_has_its_own_registry():
    a, b = NodeMetrics(), NodeMetrics()
    a.s3_request("GetObject", 200, 0.01, 0, 5)
    assert a.registry is not b.registry
    assert b.s3_sent._value.get() == 0


async def call(app: Any, method: str, path: str, body: bytes = b"") -> tuple[int, dict, bytes]:
    """One HTTP request through an ASGI app: (status, headers, body)."""
    sent: list[dict] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(msg: dict) -> None:
        sent.append(msg)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(b"host", b"localhost"),
                         (b"content-length", str(len(body)).encode())],
             "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1)}
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in sent
                                              if m["type"] == "http.response.body")


async def test_gateway_requests_metrics_and_one_access_line_each(caplog):
    m = NodeMetrics()
    app = gateway_app(MemoryStore(), S3Settings(listen="127.0.0.1:0", allow_anonymous=True), m)
    with caplog.at_level(logging.INFO, "dscluster.s3.access"):
        assert (await call(app, "PUT", "/bkt"))[0] == 200
        assert (await call(app, "PUT", "/bkt/k", b"hello"))[0] == 200
        status, headers, body = await call(app, "GET", "/bkt/nokey")
    assert status == 404
    page = samples(await m.render())
    assert value(page, "dscluster_s3_requests_total", operation="PutObject", status="200") == 1
    assert value(page, "dscluster_s3_requests_total", operation="CreateBucket",
                 status="200") == 1
    assert value(page, "dscluster_s3_requests_total", operation="GetObject", status="404") == 1
    assert value(page, "dscluster_s3_request_duration_seconds_count",
                 operation="GetObject") == 1
    assert value(page, "dscluster_s3_received_bytes_total") == 5
    assert value(page, "dscluster_s3_sent_bytes_total") == len(body) > 0

    lines = [r for r in caplog.records if r.name == "dscluster.s3.access"]
    assert len(lines) == 3
    put = lines[1]
    assert (put.operation, put.bucket, put.key, put.status, put.bytes_in) == \
        ("PutObject", "bkt", "k", 200, 5)
    assert put.access_key is None and put.duration >= 0
    # one id per request: header, error XML, access line
    rid = re.search(rb"<RequestId>(\w+)</RequestId>", body).group(1).decode()
    assert headers["x-amz-request-id"] == rid
    assert len({r.request_id for r in lines}) == 3
    assert lines[2].request_id == rid and lines[2].bytes_out == len(body)


async def test_healthz_and_readyz():
    reason: list[str] = ["catching up: slot 7 not yet compared with its other owners"]
    app = HealthApp(NodeMetrics(), lambda: reason[0] if reason else None)
    assert (await call(app, "GET", "/healthz"))[0] == 200
    status, _, body = await call(app, "GET", "/readyz")
    assert (status, body) == (503, reason[0].encode() + b"\n")
    reason.clear()
    assert (await call(app, "GET", "/readyz"))[:3:2] == (200, b"ready\n")
    status, headers, body = await call(app, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert "dscluster_s3_requests" in {f.name for f in
                                       text_string_to_metric_families(body.decode())}
    assert (await call(app, "GET", "/nope"))[0] == 404
