"""Running the S3 gateway for tests that talk to it with blocking clients.

boto3 and the aws cli block, so the gateway runs in a thread with its own ``trio.run``
over a datastore that only that thread touches; tests reach the datastore through
``Gateway.call``, which runs a coroutine in the gateway's loop. ``raw`` sends exactly
the HTTP request a test describes, signed the way botocore signs, for the request
shapes IPFS clients produce.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote

import boto3
import pytest
import trio
import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from dscluster.cluster.credentials import CredentialBook
from dscluster.datastore import Datastore
from dscluster.s3.server import serve_s3
from dscluster.s3.settings import S3Credential, S3Settings
from dscluster.store.memory import MemoryStore

ACCESS_KEY = "AKTESTGATEWAY0000001"
SECRET_KEY = "secret/key+for+tests"
# a second credential, which owns nothing the first one creates
OTHER_ACCESS_KEY = "AKTESTGATEWAY0000002"
OTHER_SECRET_KEY = "another/secret+for+tests"
REGION = "us-east-1"
T = TypeVar("T")
# opens, in the gateway's trio loop, the datastore a test gateway serves
OpenDatastore = Callable[[], AbstractAsyncContextManager[Datastore]]
_names = itertools.count()


def gateway_settings(**overrides: Any) -> S3Settings:
    base: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "credentials": [S3Credential(ACCESS_KEY, SECRET_KEY),
                        S3Credential(OTHER_ACCESS_KEY, OTHER_SECRET_KEY)],
        # small limits keep the large-object and multipart paths fast to test
        "max_value_size": 64 << 10,
        "min_part_size": 256 << 10,
    }
    return S3Settings(**{**base, **overrides})


@dataclass
class Gateway:
    url: str
    settings: S3Settings
    ds: Datastore
    token: trio.lowlevel.TrioToken

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` in the gateway's trio loop."""
        return trio.from_thread.run(fn, *args, trio_token=self.token)

    def client(self, *, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY,
               **config: Any) -> Any:
        cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                     connect_timeout=5, read_timeout=30, **config)
        return boto3.client("s3", endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                            config=cfg, verify=False)

    def bucket(self, s3: Any = None) -> str:
        """A new, empty bucket."""
        name = f"test-bucket-{next(_names)}"
        (s3 or self.client()).create_bucket(Bucket=name)
        return name


@asynccontextmanager
async def open_memory_store() -> AsyncIterator[Datastore]:
    yield MemoryStore()


@contextmanager
def run_gateway(
    settings: S3Settings,
    open_ds: OpenDatastore = open_memory_store,
    scheme: str = "http",
    credentials: Callable[[Datastore], CredentialBook] | None = None,
) -> Iterator[Gateway]:
    """The gateway over the datastore ``open_ds`` opens (a MemoryStore by default; the
    cluster tests pass ``lambda: open_cluster(...)``), in a thread of its own; with
    ``credentials``, also the cluster keys of the book it makes over that datastore."""
    started = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        async with open_ds() as ds, trio.open_nursery() as nursery:
            state["ds"] = ds
            state["scope"] = nursery.cancel_scope
            state["token"] = trio.lowlevel.current_trio_token()
            state["address"] = await nursery.start(partial(
                serve_s3, ds, settings,
                credentials=credentials(ds) if credentials is not None else None))
            started.set()

    def thread_main() -> None:
        try:
            trio.run(main)
        except BaseException as e:  # surfaced to the test below
            state["error"] = e
            started.set()

    thread = threading.Thread(target=thread_main, name="s3-gateway", daemon=True)
    thread.start()
    if not started.wait(20) or "error" in state:
        raise RuntimeError(f"the gateway did not start: {state.get('error')!r}")
    try:
        yield Gateway(f"{scheme}://{state['address']}", settings, state["ds"], state["token"])
    finally:
        trio.from_thread.run_sync(state["scope"].cancel, trio_token=state["token"])
        thread.join(20)
        assert not thread.is_alive(), "the gateway did not stop"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def sign(method: str, url: str, headers: dict[str, str], body: bytes = b"", *,
         secret_key: str = SECRET_KEY, access_key: str = ACCESS_KEY) -> dict[str, str]:
    """``headers`` plus a SigV4 Authorization, as botocore computes it."""
    req = AWSRequest(method=method, url=url, data=body, headers=headers)
    S3SigV4Auth(Credentials(access_key, secret_key), "s3", REGION).add_auth(req)
    return dict(req.headers.items())


_pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=30))


def raw(gw: Gateway, method: str, path: str, *, body: bytes = b"",
        headers: dict[str, str] | None = None, signed: bool = True,
        query: str = "") -> Reply:
    """One HTTP request with exactly this path (already percent-encoded) and query."""
    url = gw.url + path + (f"?{query}" if query else "")
    hdrs = dict(headers or {})
    if signed:
        hdrs = sign(method, url, hdrs, body)
    r = _pool.request(method, url, body=body or None, headers=hdrs, redirect=False,
                      preload_content=True)
    return Reply(r.status, {k.lower(): v for k, v in r.headers.items()}, r.data)


def key_path(bucket: str, key: str) -> str:
    """The path-style request path of an object, encoded like the AWS SDKs do."""
    return f"/{bucket}/{quote(key, safe='/~')}"


def code_of(e: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    """(S3 error code, HTTP status) of a boto3 error."""
    err = e.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def etag_of(data: bytes) -> str:
    """S3's ETag of an object stored by one PUT: the quoted MD5 of its bytes."""
    return f'"{hashlib.md5(data).hexdigest()}"'
