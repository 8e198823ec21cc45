"""Rate-limited logging (dscluster/logs.py): floods of refusals and accept errors."""

from __future__ import annotations

import errno
import json
import logging
import re
from itertools import count

import pytest
import trio

from dscluster import logs
from dscluster.auth import Token, new_secret
from dscluster.cluster.replica import ReplicaStore
from dscluster.cluster.state import ClusterState
from dscluster.clustermap import ClusterMap
from dscluster.errors import Unauthorized
from dscluster.identity import Identity
from dscluster.limits import ConnectionLimits, Limits
from dscluster.logs import RateLimitedLog, ResourceErrorFilter, quiet_resource_errors
from dscluster.net import tls
from dscluster.net.pool import ChannelPool
from dscluster.net.transport import open_transport
from dscluster.node import server
from dscluster.store import open_store

pytestmark = pytest.mark.timeout(60)
HELD_BACK = re.compile(r"\((\d+) more in the last (\d+) s\)")


def ticking(step: float):
    """A clock that advances ``step`` seconds each time it is read."""
    ticks = count()
    return lambda: next(ticks) * step


def test_one_line_per_key_per_interval_with_the_count_held_back(caplog):
    log = RateLimitedLog(logging.getLogger("test.ratelimit"), clock=ticking(0.05))
    with caplog.at_level(logging.INFO, "test.ratelimit"):
        for i in range(1000):  # 50 s of events, 20 a second
            log.warning("refused", "refusing connection %d", i)
        log.info("other", "another kind of event has its own lines")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 6
    assert lines[0] == "refusing connection 0"
    counts = [int(m.group(1)) for m in map(HELD_BACK.search, lines[1:5])]
    assert counts == [199] * 4 and "(199 more in the last 10 s)" in lines[1]
    assert lines[5].startswith("another kind")


async def test_a_thousand_refused_lane_connections_log_a_handful_of_lines(caplog, monkeypatch):
    monkeypatch.setattr(tls, "_limited", RateLimitedLog(tls.log, clock=ticking(0.05)))
    limits = ConnectionLimits(unauthenticated=4, unauthenticated_per_source=1)
    async with open_transport(Identity.generate(), lane="/ip4/127.0.0.1/tcp/0/tls",
                              lane_connections=limits) as srv:
        port = int(srv.lane_listen.split("/")[4])
        # the one connection 127.0.0.1 may hold has spoken, so no newcomer can evict it
        holder = await trio.open_tcp_stream("127.0.0.1", port)
        await holder.send_all(b"\x16")
        await trio.sleep(0.2)
        with caplog.at_level(logging.INFO, "dscluster.net.tls"):
            for _ in range(1000):
                s = await trio.open_tcp_stream("127.0.0.1", port)
                with trio.fail_after(5):
                    assert await s.receive_some(1) == b""  # refused: closed at once
                await s.aclose()
        await holder.aclose()
    lines = [r for r in caplog.records if "refusing" in r.getMessage()]
    assert 3 <= len(lines) <= 7
    assert sum(1 + int(m.group(1)) for r in lines
               if (m := HELD_BACK.search(r.getMessage()))) + 1 >= 800
    assert all(r.exc_info is None for r in caplog.records)


class _OutOfDescriptors(trio.abc.Listener[trio.SocketStream]):
    """A listener whose accept fails like a process out of file descriptors."""

    def __init__(self, failures: int) -> None:
        self.left = failures
        self.done = trio.Event()

    async def accept(self) -> trio.SocketStream:
        await trio.lowlevel.checkpoint()
        if self.left:
            self.left -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        self.done.set()
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_emfile_in_the_accept_loop_logs_no_tracebacks(caplog, autojump_clock):
    logger = logging.getLogger("trio.serve_listeners")
    quiet = ResourceErrorFilter(clock=trio.current_time)  # the virtual clock of this test
    logger.addFilter(quiet)
    listener = _OutOfDescriptors(1000)  # trio sleeps 0.1 s after each: 100 s
    try:
        with caplog.at_level(logging.ERROR, "trio.serve_listeners"):
            async with trio.open_nursery() as n:
                n.start_soon(trio.serve_listeners, lambda s: s.aclose(), [listener])
                await listener.done.wait()
                n.cancel_scope.cancel()
    finally:
        logger.removeFilter(quiet)
    lines = [r.getMessage() for r in caplog.records]
    assert 9 <= len(lines) <= 12
    assert all("EMFILE" in m for m in lines)
    assert HELD_BACK.search(lines[1]) and "Traceback" not in caplog.text
    assert all(r.exc_info is None for r in caplog.records)


def test_other_errors_keep_their_tracebacks(caplog):
    logger = logging.getLogger("test.quiet")
    quiet_resource_errors(("test.quiet",))
    quiet_resource_errors(("test.quiet",))
    assert sum(isinstance(f, ResourceErrorFilter) for f in logger.filters) == 1
    with caplog.at_level(logging.ERROR, "test.quiet"):
        try:
            raise OSError(errno.ECONNRESET, "reset")
        except OSError:
            logger.error("accept failed", exc_info=True)
    assert caplog.records[0].exc_info is not None


async def test_refused_peers_log_a_handful_of_lines(caplog, monkeypatch):
    monkeypatch.setattr(server, "_limited", RateLimitedLog(server.log, clock=ticking(0.5)))
    ident = Identity.generate()
    replica = await ReplicaStore.open(await open_store("memory"), None, sync=False)
    node = server.NodeServer(replica=replica, state=ClusterState(ClusterMap.initial(1)),
                             member_index=0, peer_id=ident.peer_id, secret=new_secret(),
                             limits=Limits())
    async with open_transport(ident, lane="/ip4/127.0.0.1/tcp/0/tls") as srv, \
            open_transport(Identity.generate()) as client:
        srv.set_handler(node.handle_stream)
        stranger = ChannelPool(client, Token.for_role(new_secret(), "client"), Limits())
        with caplog.at_level(logging.INFO, "dscluster.node.server"):
            for _ in range(100):  # a stranger's token, 50 s of the ticking clock
                with pytest.raises(Unauthorized):
                    async with stranger.channel(srv.peer_id, srv.listen_addrs()):
                        pass
    await replica.close()
    lines = [r.getMessage() for r in caplog.records if "refused peer" in r.getMessage()]
    assert 5 <= len(lines) <= 7
    assert HELD_BACK.search(lines[-1]) and "(19 more in the last 10 s)" in lines[1]
    assert all(r.exc_info is None for r in caplog.records)


def _formatted(kind: str, record: logging.LogRecord) -> str:
    """``record`` as the handler use_format(kind) sets up writes it."""
    handler = logging.Handler()
    root = logging.getLogger()
    root.addHandler(handler)
    saved = logging.lastResort
    try:
        logs.use_format(kind)
        assert handler.filter(record)
        return handler.format(record)
    finally:
        root.removeHandler(handler)
        logging.lastResort = saved


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    return logging.getLogger("dscluster.test").makeRecord(
        "dscluster.test", logging.WARNING, __file__, 1, msg, args, None, extra=extra)


def test_json_format_is_one_object_a_line_with_the_extra_fields():
    token = logs.request_id.set("ABCDEF0123456789")
    try:
        lines = [_formatted("json", _record("put %s\nof %d bytes", "/k", 5, status=200,
                                            bucket=None, when=object()))
                 for _ in range(2)]
    finally:
        logs.request_id.reset(token)
    assert all("\n" not in line for line in lines)
    obj = json.loads(lines[0])
    assert obj["level"] == "WARNING" and obj["logger"] == "dscluster.test"
    assert obj["message"] == "put /k\nof 5 bytes"
    assert obj["status"] == 200 and obj["bucket"] is None and "when" in obj
    assert obj["request_id"] == "ABCDEF0123456789"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", obj["time"])
    assert "args" not in obj and "msg" not in obj  # the record's own attributes stay out


def test_text_format_names_the_request_only_while_one_is_served():
    assert _formatted("text", _record("plain")).endswith("WARNING dscluster.test: plain")
    token = logs.request_id.set("ABCDEF0123456789")
    try:
        line = _formatted("text", _record("inside"))
    finally:
        logs.request_id.reset(token)
    assert line.endswith("dscluster.test: inside request_id=ABCDEF0123456789")

