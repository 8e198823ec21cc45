"""A node's Prometheus metrics: one ``NodeMetrics`` per node, on a registry of its own.

Theory of operation: what changes per request (node requests, bytes, S3 requests) is
counted as it happens, through label children cached per label value so that the hot
path does no more than prometheus-client's own increments. Everything else is read at
scrape time from what the node keeps anyway: connections and replication state by a
collector (the admission controllers' counters, AntiEntropy.progress,
ReplicaStore.hint_count); the store's count and disk usage by ``render`` before it
collects, since they are async and prometheus-client's collectors are not.

A per-node ``CollectorRegistry`` rather than the global one keeps several nodes in one
process (the tests') apart. health.py serves ``render`` at /metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from . import wire

if TYPE_CHECKING:
    from .cluster.repair import AntiEntropy
    from .cluster.replica import ReplicaStore
    from .net.admission import AdmissionControl
    from .net.base import ByteStream
    from .store.base import Store

CONTENT_TYPE = CONTENT_TYPE_LATEST
OK = "ok"
# node requests are mostly sub-millisecond; S3 requests carry whole objects
NODE_BUCKETS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)
S3_BUCKETS = (.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60)


class _Children:
    """A metric's label children, created once per label values."""

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self._requests = _Children(Counter(
            "dscluster_requests", "Node requests answered, by wire message type and outcome "
            "(ok or the error code).", ["operation", "outcome"], registry=r))
        self._duration = _Children(Histogram(
            "dscluster_request_duration_seconds", "Time to answer a node request.",
            ["operation"], buckets=NODE_BUCKETS, registry=r))
        self._peer_errors = _Children(Counter(
            "dscluster_peer_errors", "Error answers to node requests, by the member that "
            "asked (its peer id; clients by their role).", ["peer", "code"], registry=r))
        self.bytes_received = Counter(
            "dscluster_received_bytes", "Bytes received on inbound node streams.",
            registry=r)
        self.bytes_sent = Counter(
            "dscluster_sent_bytes", "Bytes sent on inbound node streams.", registry=r)
        self._store_keys = Gauge("dscluster_store_keys", "Keys in the node's store.",
                                 registry=r)
        self._store_bytes = Gauge("dscluster_store_bytes",
                                  "The store's disk usage, as the store reports it.",
                                  registry=r)
        r.register(_StateCollector(self))
        self._s3_requests = _Children(Counter(
            "dscluster_s3_requests", "S3 gateway requests, by S3 operation and HTTP status.",
            ["operation", "status"], registry=r))
        self._s3_duration = _Children(Histogram(
            "dscluster_s3_request_duration_seconds",
            "Time from an S3 request's arrival to the end of its response.", ["operation"],
            buckets=S3_BUCKETS, registry=r))
        self.s3_received = Counter("dscluster_s3_received_bytes",
                                   "Request body bytes received by the S3 gateway.",
                                   registry=r)
        self.s3_sent = Counter("dscluster_s3_sent_bytes",
                               "Response body bytes sent by the S3 gateway.", registry=r)
        # scrape-time sources, set by the daemon once it has them
        self.store: Store | None = None
        self.replica: ReplicaStore | None = None
        self.anti_entropy: AntiEntropy | None = None
        self.admissions: Mapping[str, AdmissionControl] = {}

    # -- the hot path -------------------------------------------------------------------
    def answered(self, operation: str, reply: wire.Message, seconds: float,
                 peer: str) -> None:
        """A node request of type ``operation`` got ``reply``; errors count for ``peer``."""
        if isinstance(reply, wire.Error):
            self._requests(operation, reply.code).inc()
            self._peer_errors(peer, reply.code).inc()
        else:
            self._requests(operation, OK).inc()
        self._duration(operation).observe(seconds)

    def s3_request(self, operation: str, status: int, seconds: float,
                   received: int, sent: int) -> None:
        self._s3_requests(operation, str(status)).inc()
        self._s3_duration(operation).observe(seconds)
        self.s3_received.inc(received)
        self.s3_sent.inc(sent)

    def counted(self, stream: ByteStream) -> ByteStream:
        return _CountedStream(stream, self.bytes_received.inc, self.bytes_sent.inc)

    # -- scrape time --------------------------------------------------------------------
    async def refresh(self) -> None:
        if self.store is not None:
            self._store_keys.set(await self.store.count())
            self._store_bytes.set(await self.store.disk_usage())

    async def render(self) -> bytes:
        await self.refresh()
        return generate_latest(self.registry)


class _StateCollector(Collector):
    """Connections and replication state, read from their owners at each scrape."""

    def __init__(self, m: NodeMetrics) -> None:
        self._m = m

    def describe(self) -> list[Metric]:
        return []  # the families depend on what the node has; nothing to check ahead

    def collect(self) -> Iterator[Metric]:
        m = self._m
        conns = GaugeMetricFamily(
            "dscluster_connections", "Inbound connections held, by transport and state "
            "(unauthenticated, client, member).", labels=["transport", "state"])
        refused = CounterMetricFamily(
            "dscluster_connections_refused", "Inbound connections refused since start, by "
            "transport.", labels=["transport"])
        evicted = CounterMetricFamily(
            "dscluster_connections_evicted", "Unauthenticated connections closed to make "
            "room for newer ones since start, by transport.", labels=["transport"])
        for transport, adm in m.admissions.items():
            conns.add_metric([transport, "unauthenticated"], adm.unauthenticated)
            conns.add_metric([transport, "client"], adm.clients)
            conns.add_metric([transport, "member"], adm.members)
            refused.add_metric([transport], adm.refused)
            evicted.add_metric([transport], adm.evicted)
        yield from (conns, refused, evicted)
        if m.replica is not None:
            yield GaugeMetricFamily(
                "dscluster_hints_pending", "Hinted writes this node keeps for owners that "
                "were down.", value=m.replica.hint_count())
        if m.anti_entropy is None:
            return
        p = m.anti_entropy.progress()
        yield GaugeMetricFamily("dscluster_repair_running",
                                "1 while an anti-entropy pass runs.", value=p["running"])
        yield GaugeMetricFamily("dscluster_repair_slots_done", "Slots compared by the "
                                "running (else the last) passes.", value=p["slots_done"])
        yield GaugeMetricFamily("dscluster_repair_slots", "Slots of the running (else "
                                "the last) passes.", value=p["slots_total"])
        yield CounterMetricFamily("dscluster_repair_pulled_keys", "Keys copied from other "
                                  "owners by anti-entropy since start.", value=p["pulled"])
        yield CounterMetricFamily("dscluster_repair_pulled_bytes", "Bytes of values copied "
                                  "from other owners by anti-entropy since start.",
                                  value=p["bytes"])
        yield GaugeMetricFamily("dscluster_repair_last_full_pass_timestamp_seconds",
                                "When the last periodic full pass ended (unix time; 0 "
                                "before the first).", value=p["last_pass_finished"] or 0)


class _CountedStream:
    """A node stream that counts its bytes; everything else is the stream's own."""

    __slots__ = ("_received", "_s", "_sent")

    def __init__(self, stream: ByteStream, received: Callable[[int], None],
                 sent: Callable[[int], None]) -> None:
        self._s = stream
        self._received = received
        self._sent = sent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s, name)

    async def send_all(self, data: bytes) -> None:
        await self._s.send_all(data)
        self._sent(len(data))

    async def receive_some(self, max_bytes: int) -> bytes:
        data = await self._s.receive_some(max_bytes)
        self._received(len(data))
        return data

