"""Request bodies with a DTD (entity declarations, external entities) are refused in
every encoding XML allows, before anything is done with them."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from .support import Gateway, code_of, key_path, raw

pytestmark = pytest.mark.timeout(30)

ENCODINGS = ["utf-8", "utf-16", "utf-16-le", "utf-16-be"]


def _doc(encoding: str, dtd: str, body: str) -> bytes:
    """``utf-16`` starts with a byte order mark; the -le / -be forms have none (a parser
    tells them by the "<" they start with)."""
    declared = "UTF-8" if encoding == "utf-8" else "UTF-16"
    return f'<?xml version="1.0" encoding="{declared}"?>\n{dtd}\n{body}'.encode(encoding)


def _dtds(root: str, name: str) -> list[str]:
    return [
        f'<!DOCTYPE {root} [<!ENTITY {name} "victim">]>',
        f'<!DOCTYPE {root} [<!ENTITY {name} SYSTEM "file:///etc/hostname">]>',
        f"<!DOCTYPE {root}>",
    ]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_delete_objects_with_a_dtd_is_malformed(gw: Gateway, s3: Any, bucket: str,
                                                encoding: str) -> None:
    s3.put_object(Bucket=bucket, Key="victim", Body=b"still here")
    for dtd in _dtds("Delete", "k"):
        key = "&k;" if "ENTITY" in dtd else "victim"
        body = _doc(encoding, dtd, f"<Delete><Object><Key>{key}</Key></Object></Delete>")
        r = raw(gw, "POST", f"/{bucket}", query="delete", body=body)
        assert r.status == 400 and b"<Code>MalformedXML</Code>" in r.body, (dtd, r.body)
    assert s3.get_object(Bucket=bucket, Key="victim")["Body"].read() == b"still here"
    # the same document without a DTD is served, whatever its encoding
    body = _doc(encoding, "", "<Delete><Object><Key>victim</Key></Object></Delete>")
    assert raw(gw, "POST", f"/{bucket}", query="delete", body=body).status == 200
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="victim")
    assert code_of(e) == ("404", 404)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_complete_multipart_upload_with_a_dtd_is_malformed(gw: Gateway, s3: Any, bucket: str,
                                                           encoding: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1,
                          Body=b"part")["ETag"]
    for dtd in _dtds("CompleteMultipartUpload", "e"):
        tag = "&e;" if "ENTITY" in dtd else etag.replace('"', "&quot;")
        body = _doc(encoding, dtd, "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
                    f"<ETag>{tag}</ETag></Part></CompleteMultipartUpload>")
        r = raw(gw, "POST", key_path(bucket, "mp"), query=f"uploadId={upload_id}", body=body)
        assert r.status == 400 and b"<Code>MalformedXML</Code>" in r.body, (dtd, r.body)
    parts = s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload_id)["Parts"]
    assert [p["ETag"] for p in parts] == [etag]
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="mp")
