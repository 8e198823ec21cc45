from __future__ import annotations

import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dscluster.keys import SLOT_COUNT, Key, clean_path, prefix_bound, slot_of


@pytest.mark.parametrize("raw, clean", [
    ("", "/"), ("/", "/"), ("a", "/a"), ("/a/", "/a"), ("//a//b", "/a/b"),
    ("/a/./b", "/a/b"), ("/a/../b", "/b"), ("/../a", "/a"), ("a/b/../../..", "/"),
    ("/a/b/", "/a/b"),
])
def test_clean_matches_go_path_clean(raw, clean):
    assert clean_path(raw) == clean
    assert Key(raw) == clean


@given(st.text(alphabet="ab/.", max_size=30))
def test_clean_is_idempotent_and_rooted(s):
    k = Key(s)
    assert k.startswith("/") and Key(k) == k and k.is_clean()
    # Go's path.Clean differs from normpath only on a leading "//"
    assert k == posixpath.normpath("/" + s.lstrip("/")) or k == "/"


def test_ancestry_needs_a_segment_boundary():
    assert Key("/a").is_ancestor_of("/a/b")
    assert not Key("/a").is_ancestor_of("/ab")
    assert not Key("/a").is_ancestor_of("/a")
    assert Key("/").is_ancestor_of("/x") and not Key("/").is_ancestor_of("/")
    assert Key("/a/b").is_descendant_of("/a")
    assert Key("/a/b/c").parent() == "/a/b" and Key("/a").parent() == "/"
    assert Key("/a/b").name() == "b" and Key("/a").child("c") == "/a/c"
    assert Key("/a/b").namespaces() == ["a", "b"] and Key("/").namespaces() == []


def test_prefix_bound():
    assert prefix_bound("/") == "" and prefix_bound("/a/") == "/a/"


def test_slot_is_xxhash64_mod_16384_and_stable():
    # pinned values: changing the hash would silently move every key in every cluster
    assert slot_of("/foo/bar") == 15870
    assert all(0 <= slot_of(f"/k{i}") < SLOT_COUNT for i in range(1000))
    assert len({slot_of(f"/k{i}") for i in range(1000)}) > 900
