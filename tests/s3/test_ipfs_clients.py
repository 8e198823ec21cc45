"""The exact calls IPFS clients make, one behaviour per test.

go-ds-s3 (Kubo's S3 datastore, s3.go): one PutObject per block at ``<key>`` in the
bucket, GetObject where only the code NoSuchKey means "not found", HeadObject for
Has/GetSize (a 404 without body), idempotent DeleteObject, Query as a ListObjectsV2
whose first page has no delimiter and later pages use "/" with the continuation token,
batch deletes of up to 1000 keys. blockstore-s3 / datastore-s3 (Helia, js-stores):
``HEAD /bucket/`` on open, HEAD before PUT, ListObjectsV2 paged with StartAfter, and
datastore keys with a leading "/".
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from multiformats import CID

from dscluster.datastore import BatchOp
from dscluster.query import Query
from dscluster.s3.settings import S3Settings
from dscluster.store.memory import MemoryStore
from dscluster.unixfs import add_stream, block_key, read_file

from .support import Gateway, OpenDatastore, gateway_settings, raw, run_gateway

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def gw(open_ds: OpenDatastore) -> Iterator[Gateway]:
    """A gateway with the default value limit (4 MiB), above Kubo's largest block, as
    IPFS set-ups need: every block is then stored as exactly its bytes. It may adopt
    /blocks, which dsclient (and large objects of earlier tests) already wrote to."""
    with run_gateway(gateway_settings(max_value_size=S3Settings().max_value_size,
                                      adopt_prefixes=["blocks"]), open_ds) as g:
        yield g


@pytest.fixture(scope="module")
def blocks(gw: Gateway) -> str:
    """Kubo's bucket: `blocks`, so that its objects are the datastore's /blocks/<key>."""
    gw.client().create_bucket(Bucket="blocks")
    return "blocks"


def fake_block_key(i: int) -> str:
    return "CIQ" + hashlib.sha256(str(i).encode()).hexdigest().upper()[:52]


# --- go-ds-s3 -------------------------------------------------------------------------


def test_go_ds_s3_put_stores_the_block_at_kubos_key(gw: Gateway, blocks: str) -> None:
    block = os.urandom(1000)
    key = block_key(CID("base32", 1, "raw", ("sha2-256", hashlib.sha256(block).digest())))
    r = raw(gw, "PUT", f"/{blocks}/{key.removeprefix('/blocks/')}", body=block)
    assert r.status == 200
    assert gw.call(gw.ds.get, key) == block
    raw(gw, "DELETE", f"/{blocks}/{key.removeprefix('/blocks/')}")


def test_go_ds_s3_get_of_a_missing_key_is_nosuchkey_xml(gw: Gateway, blocks: str) -> None:
    r = raw(gw, "GET", f"/{blocks}/CIQMISSING")
    assert r.status == 404 and b"<Code>NoSuchKey</Code>" in r.body
    assert r.headers["content-type"] == "application/xml"


def test_go_ds_s3_head_is_has_and_getsize(gw: Gateway, blocks: str) -> None:
    r = raw(gw, "HEAD", f"/{blocks}/CIQMISSING")
    assert r.status == 404 and r.body == b""
    raw(gw, "PUT", f"/{blocks}/CIQSIZED", body=b"x" * 777)
    r = raw(gw, "HEAD", f"/{blocks}/CIQSIZED")
    assert r.status == 200 and r.headers["content-length"] == "777" and r.body == b""
    raw(gw, "DELETE", f"/{blocks}/CIQSIZED")


def test_go_ds_s3_delete_of_a_missing_key_succeeds(gw: Gateway, blocks: str) -> None:
    assert raw(gw, "DELETE", f"/{blocks}/CIQNEVERTHERE").status == 204


def test_go_ds_s3_query_pages(gw: Gateway) -> None:
    """First page without delimiter, then delimiter "/" with the continuation token."""
    s3 = gw.client()
    s3.create_bucket(Bucket="kubo-query")
    keys = sorted(fake_block_key(i) for i in range(1234))

    async def fill() -> None:  # straight to the datastore, as dsclient writes them
        # one batch: 1234 puts one after the other, each fsynced on its owners, took
        # over the test's time on a loaded machine
        await gw.ds.apply([BatchOp(f"/kubo-query/{k}", b"b" * (i % 7))
                           for i, k in enumerate(keys)])
    gw.call(fill)
    page = s3.list_objects_v2(Bucket="kubo-query", Prefix="", MaxKeys=1000)
    got = [(o["Key"], o["Size"]) for o in page["Contents"]]
    assert page["IsTruncated"] and len(got) == 1000
    while page["IsTruncated"]:
        page = s3.list_objects_v2(Bucket="kubo-query", Prefix="", Delimiter="/",
                                  MaxKeys=1000, ContinuationToken=page["NextContinuationToken"])
        assert "CommonPrefixes" not in page
        got += [(o["Key"], o["Size"]) for o in page["Contents"]]
    assert got == [(k, keys.index(k) % 7) for k in keys]


def test_go_ds_s3_batch_deletes_in_groups_of_1000(gw: Gateway) -> None:
    s3 = gw.client()
    s3.create_bucket(Bucket="kubo-batch")
    keys = [fake_block_key(i) for i in range(1000)]
    for k in keys[:10]:
        s3.put_object(Bucket="kubo-batch", Key=k, Body=b"x")
    out = s3.delete_objects(Bucket="kubo-batch",
                            Delete={"Objects": [{"Key": k} for k in keys]})
    assert len(out["Deleted"]) == 1000 and "Errors" not in out
    assert s3.list_objects_v2(Bucket="kubo-batch")["KeyCount"] == 0
    with pytest.raises(ClientError) as e:
        s3.delete_objects(Bucket="kubo-batch",
                          Delete={"Objects": [{"Key": k} for k in [*keys, "one-more"]]})
    assert e.value.response["Error"]["Code"] == "MalformedXML"


def test_kubo_reads_blocks_that_dsclient_added(gw: Gateway, blocks: str) -> None:
    data = random.Random(7).randbytes(600_000)

    async def dsclient_add() -> str:
        async def source() -> Any:
            yield data
        return (await add_stream(gw.ds, source())).cid
    cid = gw.call(dsclient_add)
    root = block_key(cid)
    assert root.startswith("/blocks/")
    r = raw(gw, "GET", f"/{blocks}/{root.removeprefix('/blocks/')}")
    assert r.status == 200
    digest = CID.decode(cid).raw_digest
    assert hashlib.sha256(r.body).digest() == digest  # the block Kubo verifies


def test_dsclient_reads_blocks_that_kubo_put(gw: Gateway, blocks: str) -> None:
    data = random.Random(8).randbytes(700_000)
    scratch = MemoryStore()

    async def kubo_add() -> tuple[str, list[tuple[str, bytes]]]:
        async def source() -> Any:
            yield data
        added = await add_stream(scratch, source())
        stored = [(e.key, e.value) async for e in scratch.query(Query(prefix="/blocks"))]
        return added.cid, stored
    cid, kubo_blocks = gw.call(kubo_add)
    for key, value in kubo_blocks:  # go-ds-s3: one PutObject per block
        assert value is not None
        assert raw(gw, "PUT", f"/{blocks}/{key.removeprefix('/blocks/')}", body=value).status == 200

    async def dsclient_cat() -> bytes:
        return b"".join([p async for p in read_file(gw.ds, cid)])
    assert gw.call(dsclient_cat) == data


# --- blockstore-s3 / datastore-s3 (Helia) ---------------------------------------------


def test_blockstore_s3_open_heads_the_bucket_with_an_empty_key(gw: Gateway,
                                                              blocks: str) -> None:
    r = raw(gw, "HEAD", f"/{blocks}/")
    assert r.status == 200 and r.body == b""
    r = raw(gw, "HEAD", "/no-such-helia-bucket/")
    assert r.status == 404 and r.body == b""


def test_blockstore_s3_heads_before_put(gw: Gateway, blocks: str) -> None:
    key = "DZ/CIQHEADFIRSTDZ.data"
    assert raw(gw, "HEAD", f"/{blocks}/{key}").status == 404
    assert raw(gw, "PUT", f"/{blocks}/{key}", body=b"block").status == 200
    assert raw(gw, "HEAD", f"/{blocks}/{key}").status == 200
    raw(gw, "DELETE", f"/{blocks}/{key}")


def test_blockstore_s3_get_of_a_missing_block_is_404(gw: Gateway, blocks: str) -> None:
    with pytest.raises(ClientError) as e:
        gw.client().get_object(Bucket=blocks, Key="AA/CIQNOTHERE.data")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_blockstore_s3_lists_with_start_after(gw: Gateway) -> None:
    """getAll(): ListObjectsV2 pages, each next one after the last key of the last."""
    s3 = gw.client()
    s3.create_bucket(Bucket="helia-blocks")
    keys = []
    for i in range(25):
        name = fake_block_key(i)
        keys.append(f"{name[-3:-1]}/{name}.data")  # blockstore-s3's NextToLast sharding
        s3.put_object(Bucket="helia-blocks", Key=keys[-1], Body=str(i).encode())
    got: list[str] = []
    params: dict[str, str] = {}
    while True:
        data = s3.list_objects_v2(Bucket="helia-blocks", MaxKeys=4, **params)
        got += [o["Key"] for o in data["Contents"]]
        if not data["IsTruncated"]:
            break
        params["StartAfter"] = data["Contents"][-1]["Key"]
    assert got == sorted(keys)


def test_datastore_s3_keys_keep_their_leading_slash(gw: Gateway) -> None:
    """datastore-s3 sends a datastore key like /pins/abc as the S3 key itself."""
    s3 = gw.client()
    bucket = gw.bucket(s3)
    for key in ("/pins/abc", "/pins/abd", "/local/filesroot", "pins/abc"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    for key in ("/pins/abc", "/pins/abd", "/local/filesroot", "pins/abc"):
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="/pins")
    assert [o["Key"] for o in listed["Contents"]] == ["/pins/abc", "/pins/abd"]
    assert raw(gw, "HEAD", f"/{bucket}//pins/abc").status == 200
