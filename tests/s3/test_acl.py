"""Bucket ownership and the canned ACLs: what the owner, another credential and an
unsigned caller may do (dscluster/s3/grants.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from dscluster.auth import new_secret
from dscluster.cluster.credentials import CredentialBook, new_s3_pair
from dscluster.datastore import Datastore
from dscluster.s3 import keymap
from dscluster.s3.grants import ALL_USERS, owner_id

from .support import (
    ACCESS_KEY,
    OTHER_ACCESS_KEY,
    OTHER_SECRET_KEY,
    Gateway,
    code_of,
    gateway_settings,
    key_path,
    raw,
    run_gateway,
)

pytestmark = pytest.mark.timeout(60)
CANONICAL = "CanonicalUser"
PRIVATE_GRANTS = [{"Grantee": {"Type": CANONICAL, "ID": owner_id(ACCESS_KEY),
                               "DisplayName": ACCESS_KEY}, "Permission": "FULL_CONTROL"}]
PUBLIC_GRANTS = [*PRIVATE_GRANTS,
                 {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"}]


@pytest.fixture(scope="module")
def other(gw: Gateway) -> Any:
    """A client of the second credential."""
    return gw.client(access_key=OTHER_ACCESS_KEY, secret_key=OTHER_SECRET_KEY)


def refused(call: Callable[..., Any], code: str = "AccessDenied", status: int = 403,
            **kw: Any) -> None:
    with pytest.raises(ClientError) as e:
        call(**kw)
    assert code_of(e) == (code, status)


def test_a_bucket_belongs_to_its_creator(s3: Any, other: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"mine")
    mine = s3.list_buckets()
    assert bucket in [b["Name"] for b in mine["Buckets"]]
    assert mine["Owner"] == {"ID": owner_id(ACCESS_KEY), "DisplayName": ACCESS_KEY}
    theirs = other.list_buckets()
    assert bucket not in [b["Name"] for b in theirs["Buckets"]]
    assert theirs["Owner"]["ID"] == owner_id(OTHER_ACCESS_KEY)
    for call, kw in [
        (other.head_bucket, {}), (other.list_objects_v2, {}), (other.list_objects, {}),
        (other.list_object_versions, {}), (other.list_multipart_uploads, {}),
        (other.get_bucket_location, {}), (other.get_bucket_acl, {}),
        (other.put_bucket_acl, {"ACL": "public-read"}), (other.delete_bucket, {}),
        (other.get_object, {"Key": "k"}), (other.head_object, {"Key": "k"}),
        (other.get_object_acl, {"Key": "k"}), (other.delete_object, {"Key": "k"}),
        (other.put_object, {"Key": "new", "Body": b"x"}),
        (other.put_object, {"Key": "k", "Body": b"overwrite"}),
        (other.delete_objects, {"Delete": {"Objects": [{"Key": "k"}]}}),
        (other.get_object, {"Key": "missing"}),
    ]:
        with pytest.raises(ClientError) as e:
            call(Bucket=bucket, **kw)
        # HeadBucket and HeadObject answer without a body: botocore names the status
        assert code_of(e) in (("AccessDenied", 403), ("403", 403)), call
    refused(other.create_bucket, "BucketAlreadyExists", 409, Bucket=bucket)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"mine"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["k"]
    # a repeated CreateBucket of one's own bucket succeeds (us-east-1)
    s3.create_bucket(Bucket=bucket)


def test_copy_needs_read_access_to_the_source(gw: Gateway, s3: Any, other: Any,
                                              bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="secret", Body=b"private bytes")
    s3.put_object(Bucket=bucket, Key="shared", Body=b"public bytes", ACL="public-read")
    theirs = gw.bucket(other)
    refused(other.copy_object, Bucket=theirs, Key="c", CopySource=f"{bucket}/secret")
    # a missing key is not told apart from a private one to who may not list the bucket
    refused(other.copy_object, Bucket=theirs, Key="c", CopySource=f"{bucket}/nothing")
    upload_id = other.create_multipart_upload(Bucket=theirs, Key="mp")["UploadId"]
    refused(other.upload_part_copy, Bucket=theirs, Key="mp", UploadId=upload_id,
            PartNumber=1, CopySource=f"{bucket}/secret")
    # into a bucket one does not own: refused whatever the source
    refused(other.copy_object, Bucket=bucket, Key="c", CopySource=f"{theirs}/mp")
    # a public-read object may be copied into a bucket of one's own, and the copy is the
    # copier's, private unless the copy asks otherwise
    other.copy_object(Bucket=theirs, Key="c", CopySource=f"{bucket}/shared")
    assert other.get_object(Bucket=theirs, Key="c")["Body"].read() == b"public bytes"
    assert len(other.get_object_acl(Bucket=theirs, Key="c")["Grants"]) == 1
    other.abort_multipart_upload(Bucket=theirs, Key="mp", UploadId=upload_id)


def test_multipart_uploads_of_another_credential(s3: Any, other: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    where = {"Bucket": bucket, "Key": "mp", "UploadId": upload_id}
    refused(other.create_multipart_upload, Bucket=bucket, Key="mp2")
    refused(other.upload_part, PartNumber=1, Body=b"x", **where)
    refused(other.list_parts, **where)
    refused(other.complete_multipart_upload, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": '"00"'}]}, **where)
    refused(other.abort_multipart_upload, **where)
    refused(other.list_multipart_uploads, Bucket=bucket)
    etag = s3.upload_part(PartNumber=1, Body=b"part", **where)["ETag"]
    listed = s3.list_parts(**where)
    assert listed["Owner"]["ID"] == listed["Initiator"]["ID"] == owner_id(ACCESS_KEY)
    s3.complete_multipart_upload(MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": etag}]}, **where)
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"part"


def test_bucket_acl_round_trip(s3: Any, bucket: str) -> None:
    got = s3.get_bucket_acl(Bucket=bucket)
    assert got["Owner"] == {"ID": owner_id(ACCESS_KEY), "DisplayName": ACCESS_KEY}
    assert got["Grants"] == PRIVATE_GRANTS
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert s3.get_bucket_acl(Bucket=bucket)["Grants"] == PUBLIC_GRANTS
    # an AccessControlPolicy granting exactly what a canned ACL grants is that ACL
    owner = {"ID": owner_id(ACCESS_KEY)}
    s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy={"Owner": owner, "Grants": [
        {"Grantee": {"Type": CANONICAL, "ID": owner_id(ACCESS_KEY)},
         "Permission": "FULL_CONTROL"}]})
    assert s3.get_bucket_acl(Bucket=bucket)["Grants"] == PRIVATE_GRANTS
    s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy={"Owner": owner, "Grants": [
        {"Grantee": {"Type": CANONICAL, "ID": owner_id(ACCESS_KEY)},
         "Permission": "FULL_CONTROL"},
        {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"}]})
    assert s3.get_bucket_acl(Bucket=bucket)["Grants"] == PUBLIC_GRANTS
    for grants in ([{"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "WRITE"}],
                   [{"Grantee": {"Type": CANONICAL, "ID": owner_id(OTHER_ACCESS_KEY)},
                     "Permission": "READ"}]):
        refused(s3.put_bucket_acl, "NotImplemented", 501, Bucket=bucket,
                AccessControlPolicy={"Owner": owner, "Grants": grants})
    refused(s3.put_bucket_acl, "NotImplemented", 501, Bucket=bucket, ACL="public-read-write")
    refused(s3.put_bucket_acl, "NotImplemented", 501, Bucket=bucket, GrantRead="uri=x")
    refused(s3.put_bucket_acl, "InvalidArgument", 400, Bucket=bucket, ACL="everyone")
    # the refused requests changed nothing
    assert s3.get_bucket_acl(Bucket=bucket)["Grants"] == PUBLIC_GRANTS


def test_create_bucket_with_an_acl(gw: Gateway, s3: Any, anon: Any) -> None:
    name = f"public-{gw.bucket(s3)}"
    s3.create_bucket(Bucket=name, ACL="public-read")
    assert s3.get_bucket_acl(Bucket=name)["Grants"] == PUBLIC_GRANTS
    assert anon.list_objects_v2(Bucket=name)["KeyCount"] == 0


def test_object_acl_round_trip(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="public-read")
    assert s3.get_object_acl(Bucket=bucket, Key="k")["Grants"] == PUBLIC_GRANTS
    s3.put_object_acl(Bucket=bucket, Key="k", ACL="private")
    assert s3.get_object_acl(Bucket=bucket, Key="k")["Grants"] == PRIVATE_GRANTS
    # the ACL is a property of the object's record: the bytes and metadata stay
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    s3.put_object_acl(Bucket=bucket, Key="k", ACL="public-read", VersionId="null")
    assert s3.get_object_acl(Bucket=bucket, Key="k")["Grants"] == PUBLIC_GRANTS
    # a new PUT replaces the object, ACL included; so does a copy (the source's ACL
    # does not travel)
    s3.copy_object(Bucket=bucket, Key="copy", CopySource=f"{bucket}/k")
    assert s3.get_object_acl(Bucket=bucket, Key="copy")["Grants"] == PRIVATE_GRANTS
    s3.put_object(Bucket=bucket, Key="k", Body=b"y")
    assert s3.get_object_acl(Bucket=bucket, Key="k")["Grants"] == PRIVATE_GRANTS
    # bucket-owner-full-control grants nothing more here: the writer owns the bucket
    s3.put_object(Bucket=bucket, Key="b", Body=b"z", ACL="bucket-owner-full-control")
    assert s3.get_object_acl(Bucket=bucket, Key="b")["Grants"] == PRIVATE_GRANTS
    refused(s3.get_object_acl, "NoSuchKey", 404, Bucket=bucket, Key="missing")
    refused(s3.put_object, "NotImplemented", 501, Bucket=bucket, Key="n", Body=b"",
            ACL="authenticated-read")


def test_multipart_object_takes_the_uploads_acl(s3: Any, anon: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp",
                                           ACL="public-read")["UploadId"]
    where = {"Bucket": bucket, "Key": "mp", "UploadId": upload_id}
    etag = s3.upload_part(PartNumber=1, Body=b"parted", **where)["ETag"]
    s3.complete_multipart_upload(MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": etag}]}, **where)
    assert s3.get_object_acl(Bucket=bucket, Key="mp")["Grants"] == PUBLIC_GRANTS
    assert anon.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"parted"


def test_anonymous_reads_only_what_is_public(gw: Gateway, s3: Any, anon: Any, other: Any,
                                             bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="open", Body=b"for all", ACL="public-read")
    s3.put_object(Bucket=bucket, Key="closed", Body=b"mine")
    # a public-read object in a private bucket: GET and HEAD of it, nothing else
    assert anon.get_object(Bucket=bucket, Key="open")["Body"].read() == b"for all"
    assert anon.head_object(Bucket=bucket, Key="open")["ContentLength"] == 7
    assert other.get_object(Bucket=bucket, Key="open")["Body"].read() == b"for all"
    r = raw(gw, "GET", key_path(bucket, "open"), signed=False, headers={"range": "bytes=4-"})
    assert r.status == 206 and r.body == b"all"
    for key in ("closed", "missing"):  # a missing key is as hidden as a private one
        r = raw(gw, "GET", key_path(bucket, key), signed=False)
        assert r.status == 403 and b"<Code>AccessDenied</Code>" in r.body, key
        assert raw(gw, "HEAD", key_path(bucket, key), signed=False).status == 403
    refused(anon.list_objects_v2, Bucket=bucket)
    refused(anon.get_object_acl, Bucket=bucket, Key="open")
    refused(anon.put_object_acl, Bucket=bucket, Key="open", ACL="private")
    refused(anon.put_object, Bucket=bucket, Key="open", Body=b"vandal")
    refused(anon.delete_object, Bucket=bucket, Key="open")
    refused(anon.list_buckets)
    refused(anon.create_bucket, Bucket=f"anon-{bucket}")
    # a public-read bucket may be listed, and then a missing key is NoSuchKey
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    listed = anon.list_objects(Bucket=bucket)
    assert [o["Key"] for o in listed["Contents"]] == ["closed", "open"]
    # the owner's ID is shown, its access key id (the display name) is not
    assert listed["Contents"][0]["Owner"] == {"ID": owner_id(ACCESS_KEY)}
    assert anon.list_objects_v2(Bucket=bucket)["KeyCount"] == 2
    assert anon.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    r = raw(gw, "GET", key_path(bucket, "missing"), signed=False)
    assert r.status == 404 and b"<Code>NoSuchKey</Code>" in r.body
    refused(anon.get_object, Bucket=bucket, Key="closed")
    refused(anon.get_bucket_acl, Bucket=bucket)
    refused(anon.delete_objects, Bucket=bucket, Delete={"Objects": [{"Key": "open"}]})
    refused(anon.delete_bucket, Bucket=bucket)
    assert s3.get_object(Bucket=bucket, Key="open")["Body"].read() == b"for all"


def test_anonymous_on_a_missing_bucket(gw: Gateway, anon: Any) -> None:
    # a bucket that does not exist is NoSuchBucket to everyone, as on AWS
    refused(anon.get_object, "NoSuchBucket", 404, Bucket="no-such-bucket-here", Key="k")
    refused(anon.list_objects_v2, "NoSuchBucket", 404, Bucket="no-such-bucket-here")


def test_bucket_from_before_owners_is_everyones(gw: Gateway, s3: Any, other: Any,
                                                anon: Any) -> None:
    name = f"legacy-{gw.bucket(s3)}"
    gw.call(gw.ds.put, keymap.bucket_key(name), b'{"v":1,"created_ms":1}')
    assert name in [b["Name"] for b in other.list_buckets()["Buckets"]]
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    other.put_object(Bucket=name, Key="k", Body=b"shared")
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"shared"
    assert s3.get_bucket_acl(Bucket=name)["Owner"]["ID"] == "dscluster"
    refused(anon.get_object, Bucket=name, Key="k")
    s3.delete_object(Bucket=name, Key="k")
    other.delete_bucket(Bucket=name)


def test_a_rotated_cluster_key_keeps_its_buckets() -> None:
    """Ownership follows the access key id, which `dsclient s3-key rotate` keeps; a
    removed key's buckets stay, owned by nobody who can sign."""
    books: list[CredentialBook] = []

    def book(ds: Datastore) -> CredentialBook:
        books.append(CredentialBook(ds, new_secret()))
        return books[0]

    with run_gateway(gateway_settings(), credentials=book) as g:
        access_key, secret_key = new_s3_pair()
        g.call(books[0].put_s3_key, access_key, secret_key)
        first = g.client(access_key=access_key, secret_key=secret_key)
        first.create_bucket(Bucket="kept")
        first.put_object(Bucket="kept", Key="k", Body=b"x")
        rotated = new_s3_pair()[1]
        g.call(books[0].put_s3_key, access_key, rotated)  # what the admin's rotate does
        again = g.client(access_key=access_key, secret_key=rotated)
        assert again.get_object(Bucket="kept", Key="k")["Body"].read() == b"x"
        assert [b["Name"] for b in again.list_buckets()["Buckets"]] == ["kept"]
        refused(g.client().get_object, Bucket="kept", Key="k")
        g.call(books[0].remove_s3_key, access_key)
        refused(again.get_object, "InvalidAccessKeyId", 403, Bucket="kept", Key="k")
        refused(g.client().list_objects_v2, Bucket="kept")
