"""Connection caps and timeouts of the gateway: slow or idle clients can't take the node's
file descriptors, and normal requests get through once the idle ones are dropped.

The cap tests run the gateway in a process of its own, so that its descriptors can be
counted in /proc (the test's client sockets would be counted too in this process).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import urllib3

from .support import Gateway, gateway_settings, run_gateway, sign

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")]
T = TypeVar("T")

# a gateway over a MemoryStore or a flatfs store, optionally under a lower fd limit
CHILD = """
import json, resource, sys
import trio
settings, store, nofile = json.loads(sys.argv[1])
if nofile:
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, resource.getrlimit(
        resource.RLIMIT_NOFILE)[1]))
from dscluster.s3.server import serve_s3
from dscluster.s3.settings import S3Settings
from dscluster.store import open_store

async def main():
    ds = await open_store(*store)
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(serve_s3, ds, S3Settings.from_dict(settings))
        print(bound, flush=True)

trio.run(main)
"""


@contextmanager
def gateway_process(store: tuple[str, ...] = ("memory",), nofile: int | None = None,
                    **settings: Any) -> Iterator[tuple[str, int]]:
    """(URL, pid) of a gateway process with these settings."""
    cfg = gateway_settings(**settings).to_dict()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps([cfg, store, nofile])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        if not line:
            proc.kill()
            raise RuntimeError(f"the gateway did not start: {proc.communicate()[1].decode()}")
        yield f"http://{line}", proc.pid
    finally:
        proc.kill()
        proc.wait(10)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def idle_connections(url: str, n: int) -> list[socket.socket]:
    return [socket.create_connection(address(url), timeout=5) for _ in range(n)]


def request(url: str, method: str, path: str, body: bytes = b"") -> urllib3.BaseHTTPResponse:
    pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=30, read=30))
    return pool.request(method, url + path, body=body or None,
                        headers=sign(method, url + path, {}, body))


def while_counting(pid: int, call: Callable[[], T]) -> tuple[T, int]:
    """``call()``'s result, and the most descriptors ``pid`` had open meanwhile."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = call()
        except BaseException as e:
            out["error"] = e

    t = threading.Thread(target=run)
    t.start()
    peak = 0
    while t.is_alive():
        peak = max(peak, open_fds(pid))
        time.sleep(0.02)
    t.join()
    if "error" in out:
        raise out["error"]
    return out["result"], peak


def closed_by_server(s: socket.socket, timeout: float) -> bool:
    s.settimeout(timeout)
    try:
        while s.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def test_idle_connections_beyond_the_cap_wait_and_fds_stay_bounded() -> None:
    cap = 20
    with gateway_process(max_connections=cap, header_timeout=1) as (url, pid):
        time.sleep(0.2)
        base = open_fds(pid)
        idle = idle_connections(url, 3 * cap)
        try:
            # the normal request queues behind the idle ones, which go a slot-full a second
            r, peak = while_counting(pid, lambda: request(url, "GET", "/"))
            assert r.status == 200 and b"ListAllMyBucketsResult" in r.data
            assert peak - base <= cap + 1
            assert all(closed_by_server(s, 10) for s in idle)
            time.sleep(0.3)
            assert open_fds(pid) <= base + 1
        finally:
            for s in idle:
                s.close()


def test_the_default_cap_keeps_the_store_working_under_the_fd_limit(tmp_path: Path) -> None:
    """The incident: more slow connections than the process has descriptors starved the
    node's store; by default the gateway takes at most a quarter of them."""
    nofile = 128
    with gateway_process(("flatfs", str(tmp_path / "store")), nofile=nofile,
                         header_timeout=1) as (url, pid):
        assert request(url, "PUT", "/fd-test").status == 200
        base = open_fds(pid)
        idle = idle_connections(url, 100)
        try:
            r, peak = while_counting(pid, lambda: request(url, "PUT", "/fd-test/k", b"v" * 999))
            assert r.status == 200
            assert request(url, "GET", "/fd-test/k").data == b"v" * 999
            assert peak - base <= nofile // 4 + 1
        finally:
            for s in idle:
                s.close()


@pytest.fixture(scope="module")
def gw() -> Iterator[Gateway]:
    with run_gateway(gateway_settings(header_timeout=1, read_timeout=1)) as g:
        g.client().create_bucket(Bucket="limits")
        yield g


def signed_head(gw: Gateway, path: str) -> bytes:
    headers = sign("GET", gw.url + path, {})
    return (f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + f"Host: {address(gw.url)[0]}:{address(gw.url)[1]}\r\n\r\n").encode()


def read_response(s: socket.socket) -> bytes:
    """One response without a body (of a request whose answer has Content-Length 0 or a
    short XML body, read whole)."""
    s.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        body += s.recv(65536)
    return head


def dropped_after_the_timeout(s: socket.socket, start: float | None = None) -> bool:
    """Whether the gateway closes ``s`` about one second (its timeout in these tests)
    after ``start`` (now by default), rather than at once or much later."""
    start = time.monotonic() if start is None else start
    return closed_by_server(s, 20) and 0.8 < time.monotonic() - start < 4


def test_a_request_head_must_be_complete_within_the_header_timeout(gw: Gateway) -> None:
    s = socket.create_connection(address(gw.url), timeout=5)
    with s:
        s.sendall(b"GET /limits HTTP/1.1\r\nHost: x\r\n")
        assert dropped_after_the_timeout(s)


def test_a_trickled_request_head_is_dropped_too(gw: Gateway) -> None:
    s = socket.create_connection(address(gw.url), timeout=5)
    start = time.monotonic()
    with s:
        s.sendall(b"GET /limits HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(100):
                time.sleep(0.1)
                s.sendall(b"X-Slow: y\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert dropped_after_the_timeout(s, start)


def test_keep_alive_outlasts_the_header_timeout_but_not_for_a_slow_head(gw: Gateway) -> None:
    s = socket.create_connection(address(gw.url), timeout=5)
    with s:
        s.sendall(signed_head(gw, "/limits"))
        assert read_response(s).startswith(b"HTTP/1.1 200")
        time.sleep(2.5)  # idle between requests: fine for the keep-alive time
        s.sendall(signed_head(gw, "/limits"))
        assert read_response(s).startswith(b"HTTP/1.1 200")
        s.sendall(b"GET /limits HTTP/1.1\r\n")  # the next head begins, and stalls
        assert dropped_after_the_timeout(s)


def test_a_client_that_stalls_in_a_request_body_is_dropped(gw: Gateway) -> None:
    s = socket.create_connection(address(gw.url), timeout=5)
    with s:
        head = signed_head(gw, "/limits/stalled").replace(b"GET ", b"PUT ", 1)
        s.sendall(head.replace(b"\r\n\r\n", b"\r\nContent-Length: 1000\r\n"
                                             b"x-amz-content-sha256: UNSIGNED-PAYLOAD\r\n\r\n")
                  + b"x" * 10)
        assert dropped_after_the_timeout(s)


def test_a_client_that_stops_reading_a_response_is_dropped(gw: Gateway) -> None:
    size = 12 << 20
    gw.client().put_object(Bucket="limits", Key="big", Body=os.urandom(size))
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    with s:
        s.settimeout(5)
        s.connect(address(gw.url))
        s.sendall(signed_head(gw, "/limits/big"))
        time.sleep(3)  # read nothing for three times the read timeout
        got = 0
        s.settimeout(10)
        try:
            while piece := s.recv(1 << 20):
                got += len(piece)
        except ConnectionResetError:
            pass
        assert 0 < got < size
