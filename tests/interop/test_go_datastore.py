"""go-datastore's own test suite (github.com/ipfs/go-datastore/test) through the S3
gateway of a real dscluster node, from tests/go/dstest-s3.

go-ds-s3 itself is not served by the Go module proxy this project builds from, so the
suite runs through tests/go/dstest-s3/s3ds.go: a go-datastore over S3 with aws-sdk-go v1
(go-ds-s3's SDK) making go-ds-s3's requests (path-style, region us-east-1, the bucket
created beforehand). Each dstest subtest is one pytest test on a fresh bucket.
"""

from __future__ import annotations

import re
from itertools import count

import pytest

from dscluster.localcluster import Cluster

from .conftest import REGION, harness, run, s3_client, s3_credential

pytestmark = pytest.mark.timeout(600)

# dstest.BasicSubtests then dstest.BatchSubtests (go-datastore v0.9.2), in its order
SUBTESTS = [
    "SubtestBasicPutGet", "SubtestNotFounds", "SubtestPrefix", "SubtestOrder",
    "SubtestLimit", "SubtestFilter", "SubtestManyKeysAndQuery", "SubtestReturnSizes",
    "SubtestBasicSync", "SubtestCombinations",
    "RunBatchTest", "RunBatchDeleteTest", "RunBatchPutAndDeleteTest",
]
# go-datastore's smallest element count (what it uses under the race detector): its
# query subtests write 4 x this many keys per case; 100 (its default) takes 5x as long.
ELEM_COUNT = "20"
# The gateway costs a few ms a request, and the query-shape subtests run many cases of
# the same requests (put, get, list a prefix, delete) whose query logic (filters,
# orders, offset, limit) runs in the client (s3ds.go applies it naively to the listing).
# So `make test` runs these subtests on one case each, or a sample for
# SubtestCombinations (16 of its 1151 query shapes: prefix /prefix, key < "/2", order by
# key, every offset and limit, over 1 key per prefix); the soak run (`pytest -m soak`)
# runs every case of every subtest on a 3-node cluster with replication 3 (about 40
# minutes on 2 cores, 32 of them SubtestCombinations).
QUICK = {
    "SubtestFilter": ("/^query\\.FilterKeyCompare$", 1),
    "SubtestOrder": ("/^query\\.OrderByKeyDescending$", 1),
    "SubtestLimit": ("/^Slice$/^2$/^4$", 1),
    "SubtestCombinations": ('/^1$/^\\{SELECT·keys,vals·FROM·"$/^prefix"·FILTER·\\[KEY·<·"$'
                            "/·ORDER·\\[KEY\\]", 16),
}
_buckets = count()


def go_test(binary, endpoint: str, cred: dict[str, str], bucket: str, pattern: str,
            *, timeout: float = 540, **extra: str):
    env = {"DSTEST_S3_ENDPOINT": endpoint, "DSTEST_S3_REGION": REGION,
           "DSTEST_S3_BUCKET": bucket, "DSTEST_S3_ACCESS_KEY": cred["access_key"],
           "DSTEST_S3_SECRET_KEY": cred["secret_key"], "DSTEST_ELEM_COUNT": ELEM_COUNT,
           **extra}
    p = run([binary, "-test.v", "-test.count=1", f"-test.timeout={int(timeout)}s",
             "-test.run", pattern], env=env, timeout=timeout + 30)
    assert re.search(r"^--- PASS: ", p.stdout, re.M), p.stdout[-3000:]  # something ran
    return p


def new_bucket(c: Cluster, endpoint: str) -> str:
    """A new bucket: the suite's subtests expect an empty datastore. Created here: the
    harness never calls CreateBucket (go-ds-s3 does not either)."""
    name = f"dstest-{next(_buckets)}"
    s3_client(c, endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def bucket(gateway_node: tuple[Cluster, str]) -> str:
    return new_bucket(*gateway_node)


@pytest.fixture
def cluster_bucket(gateway_cluster: tuple[Cluster, str]) -> str:
    return new_bucket(*gateway_cluster)


def test_every_dstest_subtest_is_run():
    p = run([harness("dstest-s3"), "-test.run", "^TestNames$"], timeout=60)
    assert re.findall(r"^subtest (\w+)$", p.stdout, re.M) == SUBTESTS


@pytest.mark.parametrize("name", SUBTESTS)
def test_go_datastore_suite(name: str, gateway_node: tuple[Cluster, str], bucket: str):
    c, endpoint = gateway_node
    cases, n = QUICK.get(name, ("", 0))
    p = go_test(harness("dstest-s3"), endpoint, s3_credential(c), bucket,
                f"^TestSuite$/^{name}${cases}")
    assert f"--- PASS: TestSuite/{name} " in p.stdout, p.stdout[-3000:]
    if n:
        ran = re.findall(rf"^\s+--- PASS: TestSuite/{name}/", p.stdout, re.M)
        assert len(ran) == n, f"{len(ran)} cases of {name} ran, not {n}:\n{p.stdout[-3000:]}"


@pytest.mark.soak
@pytest.mark.timeout(2400)
@pytest.mark.parametrize("name", SUBTESTS)
def test_go_datastore_suite_whole(name: str, gateway_cluster: tuple[Cluster, str],
                                  cluster_bucket: str):
    """Every case of every subtest, through a 3-node cluster with replication 3."""
    c, endpoint = gateway_cluster
    p = go_test(harness("dstest-s3"), endpoint, s3_credential(c), cluster_bucket,
                f"^TestSuite$/^{name}$", timeout=2300)
    assert f"--- PASS: TestSuite/{name} " in p.stdout, p.stdout[-3000:]


def test_listing_pages_and_batch_delete(gateway_node: tuple[Cluster, str], bucket: str):
    """1100 keys: ListObjectsV2 in pages of 1000 and of 97 with continuation tokens,
    DeleteObjects of 1000 + 100 keys."""
    c, endpoint = gateway_node
    go_test(harness("dstest-s3"), endpoint, s3_credential(c), bucket, "^TestPaging$")
