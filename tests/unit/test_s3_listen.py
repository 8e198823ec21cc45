"""s3.listen / --s3-listen: HOST:PORT or [IPv6]:PORT, port 0-65535."""

from __future__ import annotations

import pytest

from dscluster.errors import ConfigError
from dscluster.s3.settings import S3Settings, parse_listen


@pytest.mark.parametrize("listen, parsed", [
    ("127.0.0.1:9000", ("127.0.0.1", 9000)), ("0.0.0.0:0", ("0.0.0.0", 0)),
    ("localhost:65535", ("localhost", 65535)), ("[::1]:9000", ("::1", 9000)),
    ("[fe80::1%eth0]:80", ("fe80::1%eth0", 80)),
])
def test_good_addresses_parse(listen, parsed):
    assert parse_listen(listen) == parsed


@pytest.mark.parametrize("listen", ["[::1:1", "::1:9000", "[::1]", "[]:1", "[127.0.0.1]:1",
                                    "127.0.0.1:65536", "127.0.0.1:", "127.0.0.1", ":9000",
                                    "host:-1", "host:²", "a b:1", "[:::]:1", "h:" + "9" * 5000])
def test_bad_addresses_are_refused_from_flags_and_config_alike(listen):
    with pytest.raises(ConfigError, match=r"HOST:PORT or \[IPv6\]:PORT"):
        parse_listen(listen)
    with pytest.raises(ConfigError):
        S3Settings(listen=listen)
