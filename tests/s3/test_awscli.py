"""The aws cli against the gateway: the commands from the README."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import urllib3

from .support import ACCESS_KEY, REGION, SECRET_KEY, Gateway

pytestmark = pytest.mark.timeout(60)
AWS = Path(sys.executable).with_name("aws")


def aws(gw: Gateway, tmp_path: Path, *args: str) -> str:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
    }
    done = subprocess.run([str(AWS), "--endpoint-url", gw.url, *args], env=env,
                          capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_aws_cli_round_trip(gw: Gateway, tmp_path: Path) -> None:
    big = tmp_path / "big.iso"
    big.write_bytes(os.urandom(20 << 20))  # above the cli's 8 MiB multipart threshold
    small = tmp_path / "notes.txt"
    small.write_text("hello from the aws cli\n")
    aws(gw, tmp_path, "s3", "mb", "s3://backups")
    aws(gw, tmp_path, "s3", "cp", str(big), "s3://backups/big.iso")
    aws(gw, tmp_path, "s3", "cp", str(small), "s3://backups/docs/notes.txt")
    listing = aws(gw, tmp_path, "s3", "ls", "--recursive", "s3://backups")
    assert "big.iso" in listing and "docs/notes.txt" in listing
    assert "PRE docs/" in aws(gw, tmp_path, "s3", "ls", "s3://backups/")
    head = aws(gw, tmp_path, "s3api", "head-object", "--bucket", "backups", "--key", "big.iso")
    # a multipart upload (above the cli's threshold): its CID is in x-ipfs-cid only
    assert str(20 << 20) in head and "ipfs-cid" not in head
    headers = gw.client().head_object(Bucket="backups", Key="big.iso")[
        "ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-ipfs-cid"].startswith("Qm")
    aws(gw, tmp_path, "s3", "cp", "s3://backups/big.iso", str(tmp_path / "back.iso"))
    assert (tmp_path / "back.iso").read_bytes() == big.read_bytes()
    versions = aws(gw, tmp_path, "s3api", "list-object-versions", "--bucket", "backups")
    assert versions.count('"VersionId": "null"') == 2
    url = aws(gw, tmp_path, "s3", "presign", "s3://backups/docs/notes.txt").strip()
    r = urllib3.PoolManager(retries=False).request("GET", url)
    assert r.status == 200 and r.data == small.read_bytes()
    aws(gw, tmp_path, "s3", "rb", "--force", "s3://backups")  # deletes the objects first
    assert "backups" not in [b["Name"] for b in gw.client().list_buckets()["Buckets"]]


def test_aws_cli_public_read(gw: Gateway, tmp_path: Path) -> None:
    page = tmp_path / "index.html"
    page.write_text("<p>public</p>\n")
    aws(gw, tmp_path, "s3", "mb", "s3://site")
    aws(gw, tmp_path, "s3", "cp", "--acl", "public-read", str(page), "s3://site/index.html")
    aws(gw, tmp_path, "s3", "cp", str(page), "s3://site/draft.html")
    acl = aws(gw, tmp_path, "s3api", "get-object-acl", "--bucket", "site", "--key",
              "index.html")
    assert "AllUsers" in acl and '"READ"' in acl
    http = urllib3.PoolManager(retries=False)
    r = http.request("GET", f"{gw.url}/site/index.html")
    assert r.status == 200 and r.data == page.read_bytes()
    assert http.request("GET", f"{gw.url}/site/draft.html").status == 403
    assert http.request("GET", f"{gw.url}/site/").status == 403
    aws(gw, tmp_path, "s3api", "put-bucket-acl", "--bucket", "site", "--acl", "public-read")
    assert b"draft.html" in http.request("GET", f"{gw.url}/site/").data
    aws(gw, tmp_path, "s3", "rb", "--force", "s3://site")
