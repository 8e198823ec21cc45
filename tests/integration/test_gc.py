"""`dsclient pin` and `dsclient gc` on real processes: an interrupted add is freed;
pinned files, S3 objects (small, large, multipart), an upload in progress and a block
Kubo-style clients wrote through the gateway survive byte-identical."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from dscluster.config import free_tcp_port
from dscluster.localcluster import Cluster, tool
from dscluster.unixfs import BlockCid, block_key
from tests.integration.test_s3_node import client

pytestmark = pytest.mark.timeout(300)
MiB = 1 << 20


def ok(p: subprocess.CompletedProcess[bytes]) -> str:
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout.decode()


def would_free(c: Cluster, *args: str) -> int:
    out = ok(c.dsclient("gc", "--dry-run", "--no-progress", *args))
    print(out)
    m = re.search(r"would free (\d+) blocks", out)
    assert m, out
    return int(m.group(1))


def owned(c: Cluster) -> set[str]:
    return set(ok(c.dsclient("ls", "/.ipfs/owned")).split())


def test_gc_frees_what_nothing_uses_and_keeps_the_rest(tmp_path: Path) -> None:
    port = free_tcp_port()
    c = Cluster(tmp_path / "c", node0_args=[f"--s3-listen=127.0.0.1:{port}"],
                replication=3).start()
    try:
        run(c, f"http://127.0.0.1:{port}", tmp_path)
    finally:
        c.stop()


def run(c: Cluster, endpoint: str, tmp: Path) -> None:
    s3 = client(c, endpoint)
    # Kubo's go-ds-s3 and Helia write blocks as objects of bucket "blocks"
    s3.create_bucket(Bucket="blocks")
    kubo_block = os.urandom(2000)
    kubo_cid = BlockCid.for_block(kubo_block, version=1, codec=0x55)
    kubo_name = kubo_cid.key.rsplit("/", 1)[1]
    s3.put_object(Bucket="blocks", Key=kubo_name, Body=kubo_block)

    s3.create_bucket(Bucket="data")
    objects = {"small": os.urandom(1000), "large": os.urandom(4 * MiB + 5)}
    for key, body in objects.items():
        s3.put_object(Bucket="data", Key=key, Body=body)
    # overwritten: the first large DAG is garbage
    s3.put_object(Bucket="data", Key="over", Body=os.urandom(4 * MiB + 7))
    objects["over"] = os.urandom(4 * MiB + 9)
    s3.put_object(Bucket="data", Key="over", Body=objects["over"])
    parts = [os.urandom(5 * MiB), os.urandom(300_000)]
    up = s3.create_multipart_upload(Bucket="data", Key="multi")["UploadId"]
    etags = [s3.upload_part(Bucket="data", Key="multi", UploadId=up, PartNumber=i + 1,
                            Body=p)["ETag"] for i, p in enumerate(parts)]
    s3.complete_multipart_upload(Bucket="data", Key="multi", UploadId=up, MultipartUpload={
        "Parts": [{"ETag": e, "PartNumber": i + 1} for i, e in enumerate(etags)]})
    objects["multi"] = b"".join(parts)
    pending_part = os.urandom(400_000)
    pending = s3.create_multipart_upload(Bucket="data", Key="pending")["UploadId"]
    pending_etag = s3.upload_part(Bucket="data", Key="pending", UploadId=pending,
                                  PartNumber=1, Body=pending_part)["ETag"]
    aborted = s3.create_multipart_upload(Bucket="data", Key="aborted")["UploadId"]
    s3.upload_part(Bucket="data", Key="aborted", UploadId=aborted, PartNumber=1,
                   Body=os.urandom(300_000))
    s3.abort_multipart_upload(Bucket="data", Key="aborted", UploadId=aborted)

    pinned = tmp / "pinned.bin"
    pinned.write_bytes(os.urandom(3 * MiB))
    pinned_cid = ok(c.dsclient("add", "-Q", "--no-progress", str(pinned))).strip()
    unpinned = tmp / "unpinned.bin"
    unpinned.write_bytes(os.urandom(MiB))
    unpinned_cid = ok(c.dsclient("add", "-Q", "--pin=false", "--no-progress",
                                 str(unpinned))).strip()
    assert ok(c.dsclient("pin", "ls")).split() == [pinned_cid, "recursive"]

    # an add killed half-way (kill -9: no chance to clean up)
    big = tmp / "big.bin"
    big.write_bytes(os.urandom(48 * MiB))
    before = owned(c)
    proc = subprocess.Popen([tool("dsclient"), f"--conf={c.client()}", "add", "--no-progress",
                             str(big)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(owned(c) - before) < 10:
        assert proc.poll() is None, "the add finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL, "the add ended before it was killed"
    interrupted = owned(c) - before
    stored = set(ok(c.dsclient("ls", "/blocks")).split())
    # its blocks that made it (a marker is written before its block)
    left = {"/blocks/" + k.rsplit("/", 1)[1] for k in interrupted} & stored
    assert len(left) >= len(interrupted) - 32  # at most a window of puts in flight

    # everything was claimed just now: the default grace period keeps it all
    assert would_free(c) == 0
    garbage = would_free(c, "--grace=0")
    # the interrupted add's blocks, the unpinned file (4 leaves and a root), the first
    # DAG of "over" (17 leaves and a root) and the aborted part (2 leaves and a root)
    assert garbage == len(left) + 5 + 18 + 3
    out = ok(c.dsclient("gc", "--grace=0", "--no-progress"))
    assert f"freed {garbage} blocks" in out, out
    assert would_free(c, "--grace=0") == 0
    assert not owned(c) & {"/.ipfs/owned/" + k.rsplit("/", 1)[1] for k in
                           [block_key(unpinned_cid)]}
    assert c.dsclient("has", block_key(unpinned_cid)).returncode == 1
    assert not (interrupted & owned(c))
    assert not (left & set(ok(c.dsclient("ls", "/blocks")).split()))

    # what is used survives byte-identical
    copy = tmp / "copy.bin"
    ok(c.dsclient("get", pinned_cid, "-o", str(copy)))
    assert copy.read_bytes() == pinned.read_bytes()
    for key, body in objects.items():
        got = s3.get_object(Bucket="data", Key=key)["Body"].read()
        assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest(), key
    assert s3.get_object(Bucket="blocks", Key=kubo_name)["Body"].read() == kubo_block
    s3.complete_multipart_upload(Bucket="data", Key="pending", UploadId=pending,
                                 MultipartUpload={"Parts": [{"ETag": pending_etag,
                                                             "PartNumber": 1}]})
    assert s3.get_object(Bucket="data", Key="pending")["Body"].read() == pending_part

    # unpinned, the file goes at the next collection; the S3 objects stay
    assert ok(c.dsclient("pin", "rm", pinned_cid)).strip() == f"unpinned {pinned_cid}"
    assert would_free(c, "--grace=0") == 13  # 12 leaves and the root
    ok(c.dsclient("gc", "--grace=0", "--no-progress"))
    assert c.dsclient("has", block_key(pinned_cid)).returncode == 1
    assert s3.get_object(Bucket="data", Key="large")["Body"].read() == objects["large"]
