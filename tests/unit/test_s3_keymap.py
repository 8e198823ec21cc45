"""The S3 key -> datastore key mapping: identity for clean keys, injective, reversible,
order-preserving, and never outside the bucket's namespace."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dscluster.keys import MAX_KEY_BYTES, clean_path
from dscluster.s3 import keymap
from dscluster.s3.errors import S3Error

# keys built from the characters that matter: separators, dots, the escape mark
keys = st.text(alphabet=st.sampled_from("/.%ab\u00e9\U0001f600 "), min_size=1, max_size=24)
any_keys = st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                          blacklist_characters="\0"), min_size=1, max_size=40)


@pytest.mark.parametrize("key", ["CIQL7TG2PB52XIZLLHDYIUFMHUQLMMZWBNBZSLDXFCPZ5VDNQQ2WDZQ",
                                 "photos/2024/a.jpg", "a b/c", "100%", "...", "x/.y", "%a"])
def test_clean_keys_map_to_themselves(key: str) -> None:
    assert keymap.data_key("blocks", key) == f"/blocks/{key}"


@pytest.mark.parametrize("key", ["/x", "x/", "a//b", ".", "..", "../etc", "a/./b", "a/..",
                                 "%", "%/y", "/"])
def test_unclean_keys_are_escaped(key: str) -> None:
    dkey = keymap.data_key("b", key)
    assert dkey.startswith("/b/%/") and clean_path(dkey) == dkey
    assert keymap.key_from_suffix(dkey[len("/b/"):]) == key


@given(any_keys)
def test_reversible_and_clean(key: str) -> None:
    dkey = keymap.data_key("bucket", key)
    assert clean_path(dkey) == dkey and dkey.startswith("/bucket/")
    assert keymap.key_from_suffix(dkey[len("/bucket/"):]) == key


@given(keys, keys)
def test_injective(a: str, b: str) -> None:
    if a != b:
        assert keymap.data_key("b", a) != keymap.data_key("b", b)


@given(st.lists(keys, min_size=2, max_size=20, unique=True))
def test_each_space_keeps_s3_order(ks: list[str]) -> None:
    """Within the natural and within the escaped space, datastore order is S3 order
    (UTF-8 byte order), so merging the two sorted spaces gives S3's listing order."""
    for space in ([k for k in ks if keymap.is_natural(k)],
                  [k for k in ks if not keymap.is_natural(k)]):
        by_s3 = sorted(space, key=lambda k: k.encode())
        assert sorted(space, key=lambda k: keymap.data_key("b", k)) == by_s3


@given(st.lists(keys, min_size=2, max_size=10, unique=True))
def test_upload_records_sort_by_key_then_id(ks: list[str]) -> None:
    records = [(k, i) for k in ks for i in ("0" * 32, "f" * 32)]
    by_s3 = sorted(records, key=lambda r: (r[0].encode(), r[1]))
    assert sorted(records, key=lambda r: keymap.upload_key("b", *r)) == by_s3
    for k, i in records:
        suffix = keymap.upload_key("b", k, i)[len(keymap.uploads_prefix("b")) + 1:]
        assert keymap.upload_from_suffix(suffix) == (k, i)


def test_foreign_datastore_keys_map_to_no_s3_key() -> None:
    assert keymap.key_from_suffix("%") is None
    assert keymap.key_from_suffix("%/not-base32!") is None
    assert keymap.key_from_suffix("%/" + keymap.order_code("natural")) is None
    assert keymap.from_order_code(keymap.order_code("ab") + "1") is None


def test_limits() -> None:
    keymap.check_object_key("k" * 1024)
    for bad, code in (("k" * 1025, "KeyTooLongError"), ("é" * 513, "KeyTooLongError"),
                      ("", "InvalidArgument"), ("a\0b", "InvalidArgument")):
        with pytest.raises(S3Error) as e:
            keymap.check_object_key(bad)
        assert e.value.code == code
    # the longest record key of the longest escaped key still fits the datastore
    longest = keymap.meta_key("b" * 63, "/" * 1024)
    assert len(longest.encode()) <= MAX_KEY_BYTES
