"""The MongoDB server the `mongo` store's tests run against.

``DSCLUSTER_TEST_MONGODB_URI`` names a real one (a mongod); without it the tests start
FerretDB v1 with its SQLite backend (the harness tests/go/ferretdb) on 127.0.0.1, its
databases in a temporary directory, and stop it at the end of the session. Where that
harness is not built, the tests that need a server are skipped with one line."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from .goharness import harness

MONGODB_URI_ENV = "DSCLUSTER_TEST_MONGODB_URI"
START_TIMEOUT = 30.0


@contextlib.contextmanager
def mongodb_server(data: Path) -> Iterator[str]:
    """The URI of a MongoDB server for the tests: the environment's, or a FerretDB of
    our own keeping its databases in ``data``."""
    uri = os.environ.get(MONGODB_URI_ENV)
    if uri:
        yield uri
        return
    with ferretdb(harness("ferretdb"), data) as uri:
        yield uri


@contextlib.contextmanager
def ferretdb(binary: Path, data: Path) -> Iterator[str]:
    """Run the FerretDB harness on ``data``; its URI, which it prints once listening on
    a port of the kernel's choosing."""
    log = data / "ferretdb.log"
    (data / "db").mkdir(exist_ok=True)
    with open(log, "wb") as err:
        proc = subprocess.Popen([str(binary), str(data / "db")], stdout=subprocess.PIPE,
                                stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        yield _first_line(proc, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _first_line(proc: subprocess.Popen[bytes], log: Path) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if sel.select(timeout=0.1):
                line = proc.stdout.readline().decode().strip()
                if line.startswith("mongodb://"):
                    return line
                break
            if proc.poll() is not None:
                break
    raise RuntimeError(f"FerretDB did not start (exit {proc.poll()}):\n"
                       + log.read_text(errors="replace")[-3000:])


def with_database(uri: str, database: str) -> str:
    """``uri`` naming ``database`` as its database (``mongodb://hosts/DATABASE?options``)."""
    base, _, options = uri.partition("?")
    scheme, _, rest = base.partition("://")
    hosts = rest.split("/", 1)[0]
    return f"{scheme}://{hosts}/{database}" + (f"?{options}" if options else "")
