"""Who may do what with a bucket or an object: ownership and the two canned ACLs.

A bucket belongs to the credential that created it: its record keeps that credential's
access key id, which names the same credential on every node (a cluster key, or a node
key configured on several nodes) and stays through `dsclient s3-key rotate` (a new
secret for the same id). The objects of a bucket belong to its owner, the only one who
may write them. S3 shows an owner by a canonical ID: ours is a digest of the access key
id, and the DisplayName (the access key id itself) is shown to the owner only.

What everyone else may do, other credentials and unsigned requests alike (the grantee
of a canned ACL is AWS's AllUsers group, which includes both):

- ``private``: nothing.
- ``public-read`` on a bucket: list it (ListObjects, ListObjectsV2, ListObjectVersions,
  ListMultipartUploads, HeadBucket: what S3's READ on a bucket grants).
- ``public-read`` on an object: GET and HEAD it, and so copy it into a bucket of one's
  own.

A missing key is NoSuchKey to a caller who may list the bucket and AccessDenied to any
other, as on AWS (a 404 would tell a caller what the bucket holds); a missing bucket is
NoSuchBucket to everyone.

Bucket records written before buckets had owners have none: every credential may use
such a bucket, and so may unsigned requests when ``allow_anonymous`` is set (their
buckets have no owner either).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .errors import S3Error
from .http import Request
from .meta import PRIVATE, PUBLIC_READ, BucketRecord, ObjectMeta
from .settings import S3Settings
from .sigv4 import Authorized
from .xml import Node, child_text, children, local, parse

# how S3 names the group of every caller, signed or not, and the type of a grantee
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
# the one owner shown for buckets from before owners were kept
NO_OWNER = "dscluster"
# canned ACLs that grant nothing beyond ``private`` here: the object's owner is always
# the bucket's owner, and AWS ignores both on a bucket
SAME_AS_PRIVATE = frozenset({"bucket-owner-read", "bucket-owner-full-control"})
# canned ACLs S3 has that would grant more than these two
OTHER_CANNED = frozenset({"public-read-write", "authenticated-read", "aws-exec-read",
                          "log-delivery-write"})
GRANT_HEADERS = ("x-amz-grant-full-control", "x-amz-grant-read", "x-amz-grant-read-acp",
                 "x-amz-grant-write", "x-amz-grant-write-acp")
SUPPORTED = "Only the canned ACLs private and public-read are supported."


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request, as far as access goes."""

    access_key: str | None  # None for an unsigned request
    # allow_anonymous: unsigned requests may create and use buckets that have no owner
    open_gateway: bool = False

    @classmethod
    def of(cls, auth: Authorized | None, settings: S3Settings) -> Caller:
        return cls(auth.access_key if auth is not None else None, settings.allow_anonymous)

    def may_own(self) -> bool:
        """Whether this caller may create buckets and list its own."""
        return self.access_key is not None or self.open_gateway

    def owns(self, bucket: BucketRecord) -> bool:
        if bucket.owner is None:
            return self.may_own()
        return self.access_key == bucket.owner

    def may_list(self, bucket: BucketRecord) -> bool:
        return self.owns(bucket) or bucket.acl == PUBLIC_READ

    def may_read(self, bucket: BucketRecord, meta: ObjectMeta) -> bool:
        return self.owns(bucket) or meta.acl == PUBLIC_READ


def owner_id(owner: str | None) -> str:
    """The canonical ID S3 shows for the owner with this access key id."""
    if owner is None:
        return NO_OWNER
    return hashlib.sha256(b"dscluster s3 owner\0" + owner.encode()).hexdigest()


def owner_nodes(owner: str | None, viewer: Caller) -> list[Node]:
    """The elements of an Owner (or Initiator, or Grantee) as ``viewer`` may see them."""
    if owner is None:
        return [("ID", NO_OWNER), ("DisplayName", NO_OWNER)]
    return [("ID", owner_id(owner)),
            ("DisplayName", owner if viewer.access_key == owner else None)]


def requested_acl(req: Request) -> str | None:
    """The canned ACL a request's x-amz-acl names; None when it names none."""
    grants = [h for h in GRANT_HEADERS if req.header(h) is not None]
    if grants:
        raise S3Error("NotImplemented", f"The {grants[0]} header is not supported. "
                      f"{SUPPORTED} Use x-amz-acl.")
    value = req.header("x-amz-acl")
    if value is None:
        return None
    value = value.strip()
    if value in (PRIVATE, PUBLIC_READ):
        return value
    if value in SAME_AS_PRIVATE:
        return PRIVATE
    if value in OTHER_CANNED:
        raise S3Error("NotImplemented", f"The canned ACL {value} is not supported. "
                      f"{SUPPORTED}")
    raise S3Error("InvalidArgument", ArgumentName="x-amz-acl", ArgumentValue=value)


def policy(owner: str | None, acl: str, viewer: Caller) -> list[Node]:
    """The AccessControlPolicy of a bucket or object: FULL_CONTROL to its owner, and
    READ to AllUsers when it is public-read."""
    me = owner_nodes(owner, viewer)
    grants: list[Node] = [("Grant", [
        ("Grantee", me, {"xmlns:xsi": XSI_NS, "xsi:type": "CanonicalUser"}),
        ("Permission", "FULL_CONTROL")])]
    if acl == PUBLIC_READ:
        grants.append(("Grant", [
            ("Grantee", [("URI", ALL_USERS)], {"xmlns:xsi": XSI_NS, "xsi:type": "Group"}),
            ("Permission", "READ")]))
    return [("Owner", me), ("AccessControlList", grants)]


def acl_of_policy(body: bytes, owner: str | None) -> str:
    """The canned ACL an AccessControlPolicy body grants exactly; NotImplemented for
    any other set of grants."""
    root = parse(body)
    lists = children(root, "AccessControlList")
    if local(root.tag) != "AccessControlPolicy" or len(lists) != 1:
        raise S3Error("MalformedACLError")
    grants: set[tuple[str, str]] = set()
    for grant in children(lists[0], "Grant"):
        grantees, permission = children(grant, "Grantee"), child_text(grant, "Permission")
        if len(grantees) != 1 or permission is None:
            raise S3Error("MalformedACLError")
        uri, canonical = child_text(grantees[0], "URI"), child_text(grantees[0], "ID")
        if uri is None and canonical is None:
            raise S3Error("NotImplemented", f"Grantees by e-mail address are not "
                          f"supported. {SUPPORTED}")
        grants.add(((uri or canonical or "").strip(), permission.strip()))
    private = {(owner_id(owner), "FULL_CONTROL")}
    if grants == private:
        return PRIVATE
    if grants == private | {(ALL_USERS, "READ")}:
        return PUBLIC_READ
    raise S3Error("NotImplemented", f"{SUPPORTED} An AccessControlPolicy may grant "
                  "FULL_CONTROL to the owner and, besides, READ to AllUsers; nothing else.")
