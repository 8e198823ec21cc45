"""`dscfg ipfs` and `dscfg s3-key`: configuration around the S3 gateway.

``dscfg ipfs`` prints what Kubo (with the go-ds-s3 plugin) and Helia (with
blockstore-s3) need to keep their blocks in the cluster through the gateway. Blocks go
to the gateway bucket under Kubo's own keys (``/blocks/<base32 multihash>``), so Kubo,
Helia and ``dsclient add`` all see the same blocks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from dscluster.config import CONFIG_FILE, load_node_config
from dscluster.errors import ConfigError, InvalidArgument
from dscluster.s3.errors import S3Error
from dscluster.s3.keymap import check_bucket_name
from dscluster.s3.settings import S3Credential, S3Settings, add_node_credential

_conf_option = click.option(
    "--conf", "conf", type=click.Path(path_type=Path, file_okay=False),
    help="Node directory whose config.json holds the gateway's s3 section.")


def _node_settings(conf: Path) -> S3Settings:
    """The s3 section of a node's config, parsed; anything but a valid node directory
    with a private config.json is refused."""
    return S3Settings.from_dict(load_node_config(conf).s3 or {})


def kubo_spec(endpoint: str, bucket: str, region: str, cred: S3Credential) -> dict[str, Any]:
    """Kubo's Datastore.Spec: /blocks on the gateway (go-ds-s3), the rest in leveldb as
    in Kubo's default configuration."""
    return {
        "mounts": [
            {
                "child": {
                    "type": "s3ds",
                    "region": region,
                    "bucket": bucket,
                    "rootDirectory": "",
                    # go-ds-s3 switches to path-style requests when this is set
                    "regionEndpoint": endpoint,
                    "accessKey": cred.access_key,
                    "secretKey": cred.secret_key,
                },
                "mountpoint": "/blocks",
                "prefix": "s3.datastore",
                "type": "measure",
            },
            {
                "child": {"compression": "none", "path": "datastore", "type": "levelds"},
                "mountpoint": "/",
                "prefix": "leveldb.datastore",
                "type": "measure",
            },
        ],
        "type": "mount",
    }


def datastore_spec(bucket: str, region: str) -> str:
    """The repo's datastore_spec file: what Kubo derives from the Spec above (go-ds-s3's
    DiskSpec is bucket, region and rootDirectory), as Go's encoding/json writes it."""
    spec = {"mounts": [{"bucket": bucket, "mountpoint": "/blocks", "region": region,
                        "rootDirectory": ""},
                       {"mountpoint": "/", "path": "datastore", "type": "levelds"}],
            "type": "mount"}
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def helia_snippet(endpoint: str, bucket: str, region: str, cred: S3Credential) -> str:
    return f"""\
import {{ createHelia }} from 'helia'
import {{ S3 }} from '@aws-sdk/client-s3'
import {{ S3Blockstore }} from 'blockstore-s3'
import {{ base32upper }} from 'multiformats/bases/base32'
import {{ CID }} from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'

const s3 = new S3({{
  endpoint: {json.dumps(endpoint)},
  region: {json.dumps(region)},
  forcePathStyle: true,
  credentials: {{
    accessKeyId: {json.dumps(cred.access_key)},
    secretAccessKey: {json.dumps(cred.secret_key)}
  }}
}})

// Kubo's block keys (<base32 multihash>, no shard directory, no extension), so that
// Helia, Kubo and `dsclient add` share blocks
const kuboKeys = {{
  extension: '',
  encode: (cid) => base32upper.encoder.baseEncode(cid.multihash.bytes),
  decode: (key) => CID.createV1(0x55,
    Digest.decode(base32upper.decoder.baseDecode(key.split('/').pop())))
}}

const blockstore = new S3Blockstore(s3, {json.dumps(bucket)}, {{ shardingStrategy: kuboKeys }})
await blockstore.open()
const helia = await createHelia({{ blockstore }})
"""


@click.command("ipfs")
@click.option("--s3", "endpoint", required=True, metavar="URL",
              help="The gateway's URL, e.g. http://127.0.0.1:9000.")
@click.option("--bucket", required=True, help="Bucket that holds the blocks, e.g. blocks.")
@_conf_option
@click.option("--access-key", help="Access key (instead of --conf).")
@click.option("--secret-key", help="Secret key (instead of --conf).")
@click.option("--region", help="Region to sign for [default: the node's s3.region].")
def ipfs(endpoint: str, bucket: str, conf: Path | None, access_key: str | None,
         secret_key: str | None, region: str | None) -> None:
    """Print Kubo's Datastore.Spec (go-ds-s3) and a Helia snippet for the gateway."""
    url = urlsplit(endpoint)
    if url.scheme not in ("http", "https") or not url.hostname or url.path not in ("", "/"):
        raise InvalidArgument(f"--s3 must be a URL like http://127.0.0.1:9000, not {endpoint!r}")
    try:
        check_bucket_name(bucket)
    except S3Error:
        raise InvalidArgument(f"{bucket!r} is not a valid bucket name (3-63 characters: "
                              "a-z, 0-9, '.', '-')") from None
    if conf is not None:
        if access_key or secret_key:
            raise InvalidArgument("give either --conf or --access-key/--secret-key")
        settings = _node_settings(conf)
        if not settings.credentials:
            raise ConfigError(f"{conf / CONFIG_FILE} has no S3 credential; add one with: "
                              f"dscfg s3-key add --conf {conf}")
        cred = settings.credentials[0]
        region = region or settings.region
    elif access_key and secret_key:
        cred = S3Credential(access_key, secret_key)
    else:
        raise InvalidArgument("give --conf NODE_DIR, or both --access-key and --secret-key")
    region = region or "us-east-1"
    endpoint = endpoint.rstrip("/")
    click.echo(f"# Create the bucket once. If the cluster already holds keys under /{bucket}\n"
               f"# (dsclient add, or large S3 objects, write IPFS blocks there), first add\n"
               f'#   "adopt_prefixes": ["{bucket}"] to the s3 section of the node\'s config.json\n'
               f"# and restart it (doc/s3.md, Buckets):\n"
               f"#   aws --endpoint-url {endpoint} s3 mb s3://{bucket}")
    click.echo("\n# Kubo (with the go-ds-s3 plugin): set Datastore.Spec in $IPFS_PATH/config to")
    click.echo(json.dumps(kubo_spec(endpoint, bucket, region, cred), indent=2))
    click.echo("\n# ...and, in a new repo, write this line to $IPFS_PATH/datastore_spec:")
    click.echo(datastore_spec(bucket, region))
    click.echo("\n// Helia (JavaScript, blockstore-s3):")
    click.echo(helia_snippet(endpoint, bucket, region, cred), nl=False)


@click.group("s3-key")
def s3_key() -> None:
    """A node's own (bootstrap) S3 credentials, in its config.

    Keys added here work on that node's gateway only, after a restart. Keys for every
    gateway of the cluster, effective at once: `dsclient s3-key add` (admin token)."""


@s3_key.command("add")
@_conf_option
def s3_key_add(conf: Path | None) -> None:
    """Add a new random credential to the node's s3.credentials and print it."""
    if conf is None:
        raise InvalidArgument("--conf NODE_DIR is required")
    _node_settings(conf)  # a readable node config with a valid s3 section, or one error
    cred = add_node_credential(conf)
    click.echo(f"access_key: {cred.access_key}\nsecret_key: {cred.secret_key}")
    click.echo("this key works on this node's gateway after its restart; for a key every "
               "gateway accepts at once, use: dsclient s3-key add", err=True)


@s3_key.command("list")
@_conf_option
def s3_key_list(conf: Path | None) -> None:
    """List the access keys of the node's S3 credentials (not the secrets)."""
    if conf is None:
        raise InvalidArgument("--conf NODE_DIR is required")
    settings = _node_settings(conf)
    for cred in settings.credentials:
        click.echo(cred.access_key)


def register(group: click.Group) -> None:
    """Add this module's commands to the `dscfg` command group."""
    group.add_command(ipfs)
    group.add_command(s3_key)
