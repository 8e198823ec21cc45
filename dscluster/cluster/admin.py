"""What a node does for `dsclient s3-key …`, `dsclient admin tokens …` and `dsclient admin
secret rotate` (rotation.py).

Any member answers (the records are replicated, credentials.py); the node checks the
admin token before it gets here (node/server.py). Secrets leave the node only in the
answer to the operator who asked for them, over the authenticated, encrypted stream:
"add" and "rotate" print a secret once, "list" never does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..auth import CLIENT_ROLES, Token, check_token_name
from ..errors import InvalidArgument
from .credentials import CredentialBook, check_access_key, new_s3_pair

if TYPE_CHECKING:
    from .rotation import SecretRotation

ACTIONS = ("s3-key-add", "s3-key-list", "s3-key-remove", "s3-key-rotate",
           "token-issue", "token-list", "token-revoke", "secret-rotate")


def _arg(args: dict[str, Any], name: str) -> str:
    v = args.get(name)
    if not isinstance(v, str):
        raise InvalidArgument(f"this request needs {name} (a string)")
    return v


async def handle(book: CredentialBook, action: str, args: dict[str, Any],
                 rotation: SecretRotation | None = None) -> dict[str, Any]:
    if action == "secret-rotate":
        if rotation is None:
            raise InvalidArgument("this node does not rotate the cluster secret")
        return await rotation.rotate(_arg(args, "grace"))
    if action == "s3-key-add":
        access_key, secret_key = new_s3_pair()
        await book.put_s3_key(access_key, secret_key)
        return {"access_key": access_key, "secret_key": secret_key}
    if action == "s3-key-rotate":
        access_key = check_access_key(_arg(args, "access_key"))
        if book.s3_secret(access_key) is None and await book.look_up_s3(access_key) is None:
            raise InvalidArgument(f"no cluster S3 access key {access_key!r} to rotate")
        secret_key = new_s3_pair()[1]
        await book.put_s3_key(access_key, secret_key)
        return {"access_key": access_key, "secret_key": secret_key}
    if action == "s3-key-remove":
        await book.remove_s3_key(check_access_key(_arg(args, "access_key")))
        return {}
    if action == "s3-key-list":
        await book.reload()
        return {"keys": [{"access_key": c.access_key, "created_ms": c.created_ms,
                          "used_ms": c.used_ms} for c in book.s3_keys()]}
    if action == "token-issue":
        name = check_token_name(_arg(args, "name"))
        role = _arg(args, "role")
        if role not in CLIENT_ROLES:
            raise InvalidArgument(f"a named token's role is one of {', '.join(CLIENT_ROLES)}")
        key = await book.issue_token(name, role)
        return {"token": Token(role, key, name).encode()}
    if action == "token-revoke":
        await book.revoke_token(check_token_name(_arg(args, "name")))
        return {}
    if action == "token-list":
        await book.reload()
        return {"tokens": [{"name": t.name, "role": t.role, "created_ms": t.created_ms}
                           for t in book.tokens()]}
    raise InvalidArgument(f"unknown admin action {action!r} (one of {', '.join(ACTIONS)})")
