"""S3Settings: the node config's s3 section, and new credentials."""

from __future__ import annotations

import pytest

from dscluster.errors import ConfigError
from dscluster.s3 import settings as settings_module
from dscluster.s3.settings import (
    S3Credential,
    S3Settings,
    new_credential,
    parse_listen,
)


def test_round_trip_and_defaults() -> None:
    assert S3Settings.from_dict({}) == S3Settings() == S3Settings.from_dict(None)
    s = S3Settings(listen="0.0.0.0:9100", credentials=[new_credential(), new_credential()],
                   allow_anonymous=True, max_value_size=1 << 20)
    assert S3Settings.from_dict(s.to_dict()) == s
    assert s.secret_for(s.credentials[1].access_key) == s.credentials[1].secret_key
    assert s.secret_for("nobody") is None


def test_new_credentials_are_random() -> None:
    a, b = new_credential(), new_credential()
    assert a != b and len(a.access_key) == 20 and len(a.secret_key) == 40
    assert a.access_key.startswith("DSCK") and a.access_key.isalnum()


@pytest.mark.parametrize("bad", [
    {"listen": "9000"}, {"listen": "host:99999"}, {"max_value_size": 0},
    {"max_value_size": 2, "max_object_size": 1}, {"unknown": 1}, {"credentials": {}},
    {"credentials": [{"access_key": "a"}]}, {"allow_anonymous": "yes"},
    {"credentials": [{"access_key": "a", "secret_key": "s"}] * 2},
    {"credentials": [{"access_key": "a/b", "secret_key": "s"}]}, {"tls_cert": "c.pem"},
    {"max_connections": 0}, {"max_connections": 2.5}, {"max_connections": True},
    {"header_timeout": 0}, {"header_timeout": "10"}, {"read_timeout": -1},
    {"adopt_prefixes": "blocks"}, {"adopt_prefixes": ["/blocks"]},
    {"adopt_prefixes": ["a/b"]}, {"adopt_prefixes": [".s3"]}, {"adopt_prefixes": [7]},
])
def test_invalid_sections(bad: dict) -> None:
    with pytest.raises(ConfigError):
        S3Settings.from_dict(bad)


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert parse_listen("[::1]:0") == ("::1", 0)
    with pytest.raises(ConfigError):
        S3Credential("", "x")


def test_gateway_limits_round_trip() -> None:
    s = S3Settings(adopt_prefixes=["blocks"], max_connections=20, header_timeout=2.5,
                   read_timeout=30)
    assert S3Settings.from_dict(s.to_dict()) == s
    assert s.connection_limit() == 20
    d = S3Settings().to_dict()
    assert (d["adopt_prefixes"], d["max_connections"], d["header_timeout"]) == ([], None, 10)


def test_the_default_connection_cap_is_the_gateways_share_of_the_fd_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the node's split (limits.fd_share): 30 % of what the store's reserve leaves, at least
    # 30 % of a quarter of a small limit, never more than 1024 and never none
    for limit, cap in ((1024, 76), (4096, 844), (64, 4), (2, 1), (1 << 20, 1024)):
        monkeypatch.setattr(settings_module, "fd_limit", lambda limit=limit: limit)
        assert S3Settings().connection_limit() == cap, limit
