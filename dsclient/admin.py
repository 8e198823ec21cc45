"""`dsclient s3-key …`, `dsclient admin tokens …` and `dsclient admin secret rotate`: the
cluster's credentials.

All need the admin token; any node carries them out (cluster/admin.py; a rotation is
relayed to the bootstrapper, cluster/rotation.py) and every node honours the result
within seconds (cluster/credentials.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from dscluster.auth import CLIENT_ROLES, Token
from dscluster.client.admin import ask_admin
from dscluster.config import load_client_config, resolve

from .durations import describe_duration, parse_duration


def _ask(app: Any, action: str, **args: str) -> dict[str, Any]:
    return app.run(lambda ds: ask_admin(ds.caller, action, **args))


def _when(ms: int | None) -> str:
    if ms is None:
        return "never"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


@click.group("s3-key")
def s3_key() -> None:
    """S3 credentials every node's gateway accepts (needs the admin token)."""


@s3_key.command("add")
@click.pass_obj
def s3_key_add(app: Any) -> None:
    """Create a credential and print it (the secret is shown only now)."""
    got = _ask(app, "s3-key-add")
    click.echo(f"access_key: {got['access_key']}\nsecret_key: {got['secret_key']}")


@s3_key.command("list")
@click.pass_obj
def s3_key_list(app: Any) -> None:
    """Access keys with their creation and last use (within a minute), no secrets."""
    keys = _ask(app, "s3-key-list")["keys"]
    if not keys:
        click.echo("no cluster S3 keys (add one with: dsclient s3-key add)")
        return
    click.echo(f"{'ACCESS KEY':<22} {'CREATED':<21} LAST USED")
    for k in keys:
        click.echo(f"{k['access_key']:<22} {_when(k['created_ms']):<21} {_when(k['used_ms'])}")


@s3_key.command("remove")
@click.argument("access_key")
@click.pass_obj
def s3_key_remove(app: Any, access_key: str) -> None:
    """Remove a credential: every gateway refuses it within seconds."""
    _ask(app, "s3-key-remove", access_key=access_key)
    click.echo(f"removed {access_key}")


@s3_key.command("rotate")
@click.argument("access_key")
@click.pass_obj
def s3_key_rotate(app: Any, access_key: str) -> None:
    """Give ACCESS_KEY a new secret and print it; the old secret stops working."""
    got = _ask(app, "s3-key-rotate", access_key=access_key)
    click.echo(f"access_key: {got['access_key']}\nsecret_key: {got['secret_key']}")


@click.group("admin")
def admin() -> None:
    """Operator commands (need the admin token)."""


@admin.group("tokens")
def tokens() -> None:
    """Named client tokens, each revocable on its own."""


@tokens.command("issue")
@click.argument("name")
@click.option("--role", type=click.Choice(CLIENT_ROLES), default="client", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the token to this file (0600) instead of printing it.")
@click.pass_obj
def tokens_issue(app: Any, name: str, role: str, out: Path | None) -> None:
    """Issue a token named NAME and print it (or write it to --out FILE).

    NAME: 1-64 characters a-z 0-9 _ . -; `dsclient init --token-file` takes the token."""
    text = _ask(app, "token-issue", name=name, role=role)["token"]
    if out is None:
        click.echo(text)
    else:
        Token.parse(text).save(out)
        click.echo(f"{role} token {name} written to {out}")


@tokens.command("list")
@click.pass_obj
def tokens_list(app: Any) -> None:
    """Named tokens: name, role, creation time (never their keys)."""
    found = _ask(app, "token-list")["tokens"]
    if not found:
        click.echo("no named tokens (issue one with: dsclient admin tokens issue NAME)")
        return
    click.echo(f"{'NAME':<24} {'ROLE':<9} CREATED")
    for t in found:
        click.echo(f"{t['name']:<24} {t['role']:<9} {_when(t['created_ms'])}")


@tokens.command("revoke")
@click.argument("name")
@click.pass_obj
def tokens_revoke(app: Any, name: str) -> None:
    """Revoke a named token: every node refuses it, and closes its streams, within
    seconds."""
    _ask(app, "token-revoke", name=name)
    click.echo(f"revoked {name}")


@admin.group("secret")
def secret() -> None:
    """The cluster secret that node, client, read-only and admin tokens derive from."""


@secret.command("rotate")
@click.option("--grace", default="10m", show_default=True, callback=parse_duration,
              help="How long tokens of the old secret keep working (90s, 15m, 2h; 0: "
                   "refused at once).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for the new client.token, readonly.token and admin.token.")
@click.pass_obj
def secret_rotate(app: Any, grace: float, out: Path) -> None:
    """Give the cluster a new secret; tokens of the old one work until the grace ends.

    Writes the new tokens (0600) into --out, and puts the new one of its own role in
    this client's token file. Named tokens and S3 keys are kept. Nodes take the new
    secret themselves; a node down for the whole grace fetches it when it starts."""
    # before the request: the new tokens are shown this once and must have somewhere to go
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    own_path = resolve(app.conf_dir, load_client_config(app.conf_dir).token_file)
    own = Token.load(own_path)
    got = _ask(app, "secret-rotate", grace=str(grace))
    for role, text in got["tokens"].items():
        Token.parse(text).save(out / f"{role}.token")
    click.echo(f"cluster secret rotated to generation {got['generation']}; new tokens in "
               f"{out}: {', '.join(f'{r}.token' for r in got['tokens'])}")
    if not own.name:  # a named token outlives the rotation
        Token.parse(got["tokens"][own.role]).save(own_path)
        click.echo(f"this client now uses the new {own.role} token ({own_path})")
    if grace:
        click.echo(f"tokens of the old secret work until {_when(got['deadline_ms'])} "
                   f"({describe_duration(grace)} after the rotation)")
    else:
        click.echo("tokens of the old secret are refused")
    for member in got["pending"]:
        click.echo(f"warning: {member} did not take the new secret yet (it fetches it at "
                   "its next reload or start)", err=True)


def register(group: click.Group) -> None:
    group.add_command(s3_key)
    group.add_command(admin)
