"""The codec on bytes only: two Connections wired back to back, no sockets."""

from __future__ import annotations

import contextlib
import functools
import os
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dscluster import wire
from dscluster.clustermap import ClusterMap, Member
from dscluster.errors import (
    InvalidKey,
    LocalProtocolError,
    RemoteProtocolError,
    TooLarge,
    Unauthorized,
)
from dscluster.keys import SLOT_COUNT
from dscluster.limits import (
    HANDSHAKE_FRAME_BYTES,
    MAX_ERROR_CHARS,
    MAX_MAP_ENTRIES,
    Limits,
    MiB,
)
from dscluster.net.channel import MessageChannel, error_message
from dscluster.wire import NEED_DATA, Connection, Role, State


def pair(limits: Limits | None = None) -> tuple[Connection, Connection]:
    return Connection(Role.CLIENT, limits), Connection(Role.SERVER, limits)


def deliver(src: Connection, dst: Connection, msg: wire.Message) -> wire.Message:
    dst.receive_data(src.send(msg))
    got = dst.next_event()
    assert got is not NEED_DATA
    return got  # type: ignore[return-value]


def handshake(c: Connection, s: Connection) -> None:
    deliver(c, s, wire.Hello(role="client", nonce=b"n" * 32))
    deliver(s, c, wire.Challenge(nonce=b"s" * 32, proof=b"p" * 32))
    deliver(c, s, wire.Auth(proof=b"q" * 32))
    deliver(s, c, wire.Welcome(epoch=3, node_index=1, role="client"))
    assert c.state is State.IDLE and s.state is State.IDLE


def test_full_conversation_round_trips_every_field():
    c, s = pair()
    handshake(c, s)
    req = wire.Query(prefix="/a", start_after="/a/b", reverse=True, limit=10, keys_only=True,
                     filters=[["key_compare", ">", "/a/a"]])
    assert deliver(c, s, req) == req
    assert c.state is State.BUSY
    page = wire.QueryPage(entries=[["/a/c", None, 3]], cursor=None)
    assert deliver(s, c, page) == page
    put = wire.Put(key="/k", value=b"\x00\xff" * 10)
    assert deliver(c, s, put) == put
    err = wire.Error(code="not_found", message="nope", detail={"slot": 5})
    assert deliver(s, c, err) == err
    assert c.state is State.IDLE  # an error after the handshake keeps the stream usable


def test_bytes_arrive_one_at_a_time():
    c, s = pair()
    data = c.send(wire.Hello(role="node", nonce=b"x" * 32))
    for b in data[:-1]:
        s.receive_data(bytes([b]))
        assert s.next_event() is NEED_DATA
    s.receive_data(data[-1:])
    assert isinstance(s.next_event(), wire.Hello)


def test_two_frames_in_one_read_are_both_delivered():
    c, s = pair()
    hello = c.send(wire.Hello(role="client", nonce=b"n" * 32))
    c.state = State.CHALLENGE  # as if the Challenge had arrived
    auth = c.send(wire.Auth(proof=b"p" * 32))
    s.receive_data(hello + auth)
    assert isinstance(s.next_event(), wire.Hello)
    s.send(wire.Challenge(nonce=b"s" * 32, proof=b"q" * 32))
    assert isinstance(s.next_event(), wire.Auth)
    assert s.next_event() is NEED_DATA


def test_a_client_may_not_pipeline_requests():
    c, s = pair()
    handshake(c, s)
    c.send(wire.Get(key="/a"))
    with pytest.raises(LocalProtocolError):
        c.send(wire.Get(key="/b"))


def test_out_of_order_messages_are_refused_on_both_sides():
    c, s = pair()
    with pytest.raises(LocalProtocolError):
        c.send(wire.Get(key="/a"))  # no request before the handshake
    # the peer sending it anyway is a remote error
    raw = wire.encode_frame(msgpack.packb(wire.Get(key="/a").to_wire()))
    s.receive_data(raw)
    with pytest.raises(RemoteProtocolError):
        s.next_event()
    assert s.state is State.CLOSED


def test_error_during_handshake_closes():
    c, s = pair()
    deliver(c, s, wire.Hello(role="client", nonce=b"n" * 32))
    deliver(s, c, wire.Error(code="unauthorized", message="no"))
    assert c.state is State.CLOSED and s.state is State.CLOSED


def test_oversized_frame_refused_from_its_header_alone():
    limits = Limits(max_value_bytes=1024, max_key_bytes=64, max_batch_ops=4, max_page_entries=4)
    s = Connection(Role.SERVER, limits)
    s.receive_data(struct.pack(">I", limits.max_frame_bytes + 1))  # no body at all
    with pytest.raises(TooLarge):
        s.next_event()
    assert s.state is State.CLOSED


def test_sender_refuses_to_encode_an_oversized_frame():
    limits = Limits(max_value_bytes=1024, max_key_bytes=64, max_batch_ops=4, max_page_entries=4)
    c = Connection(Role.CLIENT, limits)
    c.state = State.IDLE
    with pytest.raises(TooLarge):
        c.send(wire.Put(key="/k", value=b"x" * (limits.max_frame_bytes + 1)))


@pytest.mark.parametrize(
    "obj",
    [
        "not a list",
        [],
        [999],
        [wire.Get.TYPE],  # missing field
        [wire.Get.TYPE, "/a", "extra"],
        [wire.Get.TYPE, b"/a"],  # bytes where str is required
        [wire.Put.TYPE, "/a", "text"],  # str where bytes is required
        [True, "/a"],  # bool is not a type code
        [wire.Query.TYPE, "/", None, False, "10", False, []],
    ],
)
def test_malformed_frames_are_remote_protocol_errors(obj):
    s = Connection(Role.SERVER)
    s.state = State.IDLE
    s.receive_data(wire.encode_frame(msgpack.packb(obj, use_bin_type=True)))
    with pytest.raises(RemoteProtocolError):
        s.next_event()


def test_garbage_payload_is_a_remote_protocol_error():
    s = Connection(Role.SERVER)
    s.receive_data(wire.encode_frame(b"\xc1\xc1\xc1"))
    with pytest.raises(RemoteProtocolError):
        s.next_event()


def test_message_validates_when_built():
    with pytest.raises(LocalProtocolError):
        wire.Put(key="/a", value="not bytes")  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=50), st.binary(max_size=300), st.integers(0, 2**40))
def test_fuzz_round_trip(key, value, n):
    c, s = pair()
    handshake(c, s)
    assert deliver(c, s, wire.Put(key=key, value=value)) == wire.Put(key=key, value=value)
    assert deliver(s, c, wire.Size(value=n)).value == n


def test_every_message_type_is_exported_and_unique():
    assert len(wire.MESSAGE_TYPES) == len({c.TYPE for c in wire.MESSAGE_TYPES.values()})
    for cls in wire.MESSAGE_TYPES.values():
        assert getattr(wire, cls.__name__) is cls


# --- bounds before the handshake --------------------------------------------------------

TEN_MIB = 10 * 1024 * 1024
# the frame of the security review: 10 MiB of msgpack, one array of 10.5 M empty arrays,
# 17.7 s of event loop on a node when it was sent before Hello
EMPTY_ARRAYS = b"\xdd" + (TEN_MIB - 5).to_bytes(4, "big") + b"\x90" * (TEN_MIB - 5)


def _array(n: int, body: bytes) -> bytes:
    return b"\xdc" + n.to_bytes(2, "big") + body


# the same 10 M empty arrays, nested so that no array is longer than 1000
NESTED_EMPTY_ARRAYS = b"\x9a" + _array(1000, _array(1000, b"\x90" * 1000) * 1000) * 10

PRE_AUTH = [(Role.SERVER, State.START), (Role.SERVER, State.CHALLENGE),
            (Role.CLIENT, State.HELLO), (Role.CLIENT, State.AUTH)]


def at(role: Role, state: State, limits: Limits | None = None) -> Connection:
    conn = Connection(role, limits)
    conn.state = state  # as if the conversation had got there
    return conn


@pytest.mark.parametrize(("role", "state"), PRE_AUTH)
def test_before_the_handshake_only_a_small_frame_is_accepted(role, state):
    conn = at(role, state)
    assert conn.bounds.max_frame == HANDSHAKE_FRAME_BYTES
    conn.receive_data(struct.pack(">I", HANDSHAKE_FRAME_BYTES + 1))  # the header alone
    with pytest.raises(TooLarge, match="before the handshake"):
        conn.next_event()
    assert conn.state is State.CLOSED


@pytest.mark.parametrize("payload", [EMPTY_ARRAYS, NESTED_EMPTY_ARRAYS],
                         ids=["flat", "nested"])
def test_ten_mib_of_empty_arrays_before_hello_is_refused_from_the_header(payload):
    s = Connection(Role.SERVER)
    frame = wire.encode_frame(payload)
    s.receive_data(frame[:4])
    with pytest.raises(TooLarge, match="before the handshake"):
        s.next_event()
    # and if the whole frame has arrived already, nothing of it is decoded
    s = Connection(Role.SERVER)
    s.receive_data(frame)
    t = time.perf_counter()
    with pytest.raises(TooLarge, match="before the handshake"):
        s.next_event()
    assert time.perf_counter() - t < 0.5


def test_the_largest_handshake_messages_fit_the_handshake_frame():
    c, s = pair()
    hello = wire.Hello(role="readonly", nonce=b"\xff" * 32)
    assert deliver(c, s, hello) == hello
    ch = wire.Challenge(nonce=b"\xff" * 32, proof=b"\xff" * 32)
    assert deliver(s, c, ch) == ch
    assert deliver(c, s, wire.Auth(proof=b"\xff" * 32)) == wire.Auth(proof=b"\xff" * 32)
    welcome = wire.Welcome(epoch=2**64 - 1, node_index=2**64 - 1, role="readonly")
    assert deliver(s, c, welcome) == welcome
    for msg in (hello, ch, welcome):
        assert len(msgpack.packb(msg.to_wire())) < HANDSHAKE_FRAME_BYTES // 16


class _Sink:
    """A ByteStream that keeps what is sent."""

    remote_peer = local_peer = "peer"

    def __init__(self) -> None:
        self.sent = b""

    async def send_all(self, data: bytes) -> None:
        self.sent += data


async def test_an_error_ending_the_handshake_fits_the_handshake_frame():
    sink = _Sink()
    chan = MessageChannel(sink, Connection(Role.SERVER))  # type: ignore[arg-type]
    await chan.send_final_error(Unauthorized("unknown role " + "x" * 100_000, why="y" * 9999))
    c = at(Role.CLIENT, State.HELLO)
    c.receive_data(sink.sent)
    err = c.next_event()
    assert isinstance(err, wire.Error) and err.code == "unauthorized"
    assert err.message.startswith("unknown role xxx") and c.state is State.CLOSED


@pytest.mark.parametrize("role", [Role.SERVER, Role.CLIENT])
def test_nonces_and_proofs_must_be_32_bytes(role):
    for bad in (b"", b"x" * 31, b"x" * 33):
        for make in (lambda b: wire.Hello(role="client", nonce=b),
                     lambda b: wire.Challenge(nonce=b, proof=b"p" * 32),
                     lambda b: wire.Challenge(nonce=b"n" * 32, proof=b),
                     lambda b: wire.Auth(proof=b)):
            with pytest.raises(LocalProtocolError, match=r"bytes\[32\]"):
                make(bad)
    received = {
        Role.SERVER: {State.START: [wire.Hello.TYPE, wire.PROTOCOL_VERSION, "client", b"x" * 33],
                      State.CHALLENGE: [wire.Auth.TYPE, b"x" * 31]},
        Role.CLIENT: {State.HELLO: [wire.Challenge.TYPE, b"n" * 32, b"p" * 16]},
    }
    for state, obj in received[role].items():
        conn = at(role, state)
        conn.receive_data(wire.encode_frame(msgpack.packb(obj)))
        with pytest.raises(RemoteProtocolError, match=r"bytes\[32\]"):
            conn.next_event()


# --- bounds after the handshake ---------------------------------------------------------


@pytest.mark.parametrize("payload", [EMPTY_ARRAYS, NESTED_EMPTY_ARRAYS],
                         ids=["flat", "nested"])
@pytest.mark.parametrize(("role", "state"), [(Role.SERVER, State.IDLE),
                                             (Role.CLIENT, State.BUSY)])
def test_ten_mib_of_empty_arrays_after_the_handshake_is_refused_while_decoding(
        payload, role, state):
    conn = at(role, state)
    conn.receive_data(wire.encode_frame(payload))
    t = time.perf_counter()
    # the flat one by its array header, the nested one by the object budget
    with pytest.raises(TooLarge, match=r"max_array_len|arrays, maps and entries"):
        conn.next_event()
    assert conn.state is State.CLOSED
    # a node refuses after ~5,000 objects, a client after ~800,000 (a whole cluster map)
    assert time.perf_counter() - t < (0.5 if role is Role.SERVER else 2.0)


def test_the_object_budget_counts_nested_containers():
    limits = Limits(max_value_bytes=1024, max_key_bytes=64, max_batch_ops=4, max_page_entries=4)
    s = at(Role.SERVER, State.IDLE, limits)
    budget = limits.request_bounds.max_objects
    # a Batch whose ops hold empty lists: every list is short, together they are many
    ops = [[[[]] * 4] * 4] * 4
    s.receive_data(wire.encode_frame(msgpack.packb([wire.Batch.TYPE, ops])))
    with pytest.raises(TooLarge, match=f"more than {budget} arrays"):
        s.next_event()


@pytest.mark.parametrize(
    ("obj", "what"),
    [
        ([wire.Get.TYPE, "/" + "k" * (2 * 2048 + 4096)], "max_str_len"),
        ([wire.Put.TYPE, "/k", b"v" * (4 * MiB + 1)], "max_bin_len"),
        ([wire.Batch.TYPE, [["/k", b""]] * (1024 + 17)], "max_array_len"),
        ([wire.Query.TYPE, "/", None, False, 1, False, [{str(i): 0 for i in range(65)}]],
         "max_map_len"),
    ],
    ids=["key", "value", "batch", "map"],
)
def test_requests_over_the_decoding_limits_are_too_large(obj, what):
    s = at(Role.SERVER, State.IDLE)
    s.receive_data(wire.encode_frame(msgpack.packb(obj, use_bin_type=True)))
    with pytest.raises(TooLarge, match=what):
        s.next_event()


@pytest.mark.parametrize("ext", [b"\xd4\x05\x00", b"\xc7\x00\x05", b"\xd6\xff\x00\x00\x00\x00"],
                         ids=["fixext", "empty-ext", "timestamp"])
def test_msgpack_extension_types_are_refused(ext):
    s = at(Role.SERVER, State.IDLE)
    s.receive_data(wire.encode_frame(b"\x92\x0a" + ext))
    with pytest.raises((RemoteProtocolError, TooLarge)):
        s.next_event()


def test_requests_at_the_limits_decode():
    lim = Limits()
    key = "/" + "k" * (lim.max_key_bytes - 1)
    for msg in (
        wire.Put(key=key, value=b"v" * lim.max_value_bytes),
        # a bit over the key limit still decodes: the node answers invalid_key, and
        # over the batch limit too: the node answers too_large, and the stream goes on
        wire.Get(key="/" + "k" * (2 * lim.max_key_bytes)),
        wire.Batch(ops=[[f"{key[:-5]}{i:05d}", b"v" * 16] for i in range(lim.max_batch_ops)]),
        wire.Batch(ops=[[f"/{i}", None] for i in range(lim.max_batch_ops + 16)]),
        wire.Query(prefix=key, start_after=key, limit=lim.max_page_entries,
                   filters=[["key_compare", ">", key]] * 16 + [["value_compare", "=", b"v"]]),
        wire.Join(index=16383, addrs=["/ip4/255.255.255.255/tcp/65535/tls" * 7] * 16),
    ):
        c, s = pair(lim)
        handshake(c, s)
        assert deliver(c, s, msg) == msg
        deliver(s, c, wire.Ok())


def _fragmented_map(members: int, addrs: int, owners: int) -> ClusterMap:
    ms = tuple(Member(i, "12D3KooW" + f"{i:044d}",
                      tuple(f"/ip4/10.{i % 250}.0.{j}/tcp/4001" for j in range(addrs)), "joined")
               for i in range(members))
    # neighbouring slots never share owners: one run per slot
    slots = tuple(tuple((s + k) % members for k in range(owners)) for s in range(SLOT_COUNT))
    return ClusterMap(7, ms, slots, owners)


def test_responses_at_the_limits_decode():
    lim = Limits()
    big_key = "/" + "k" * (lim.max_key_bytes - 1)
    worst_map = _fragmented_map(SLOT_COUNT, 16, 4)
    full_page = [[f"{big_key[:-5]}{i:05d}", None, 1] for i in range(lim.max_page_entries - 2)]
    full_page += [[big_key[:-1] + "x", b"v" * lim.max_value_bytes, lim.max_value_bytes],
                  [big_key[:-1] + "y", b"w" * lim.max_value_bytes, lim.max_value_bytes]]
    for msg in (
        wire.Value(value=b"v" * (lim.max_value_bytes + 1)),  # stored under a larger limit
        wire.QueryPage(entries=full_page, cursor=big_key),
        wire.MapData(map=worst_map.to_dict()),
        wire.MapData(map=ClusterMap.initial(3).to_dict()),
        wire.StatsData(stats={"peer_id": "12D3KooW" + "x" * 44, "index": 0, "epoch": 2**40,
                              "store": "flatfs", "keys": 2**62, "disk_usage": 2**62,
                              "slots": _fragmented_map(2, 1, 1).describe_ranges(0),
                              "disable_delete": False}),
    ):
        c, s = pair(lim)
        handshake(c, s)
        deliver(c, s, wire.Stats())
        assert deliver(s, c, msg) == msg
    assert ClusterMap.from_dict(got_map(worst_map)) == worst_map


def test_an_error_of_any_length_is_cut_to_fit():
    err = InvalidKey("key " + repr("é" * 1_000_000) + " is not clean",
                     **{f"d{i}": "x" * 100_000 for i in range(100)})
    c, s = pair()
    handshake(c, s)
    deliver(c, s, wire.Stats())
    got = deliver(s, c, error_message(err))
    assert isinstance(got, wire.Error) and got.code == "invalid_key"
    assert got.message.startswith("key 'ééé") and len(got.message) <= MAX_ERROR_CHARS + 1
    assert len(got.detail) == MAX_MAP_ENTRIES


def got_map(cmap: ClusterMap) -> dict:
    c, s = pair()
    handshake(c, s)
    deliver(c, s, wire.GetMap(known_epoch=0))
    got = deliver(s, c, wire.MapData(map=cmap.to_dict()))
    assert isinstance(got, wire.MapData) and got.map is not None
    return got.map


# --- fuzzing ------------------------------------------------------------------------------
#
# Whatever arrives, Connection.receive_data/next_event raise nothing but the protocol's
# own errors, and those close the conversation. Each property runs briefly in the
# default run and at length under `make soak` (pytest -m soak).

FUZZ_QUICK = 150
FUZZ_SOAK = 5_000
SMALL = Limits(max_value_bytes=256, max_key_bytes=64, max_batch_ops=8, max_page_entries=8)


def _answer(conn: Connection) -> None:
    """Reply as this end would, so that fuzzed input reaches every state."""
    reply = {
        (Role.SERVER, State.HELLO): wire.Challenge(nonce=b"s" * 32, proof=b"p" * 32),
        (Role.SERVER, State.AUTH): wire.Welcome(epoch=1, node_index=0, role="client"),
        (Role.SERVER, State.BUSY): wire.Ok(),
        (Role.CLIENT, State.CHALLENGE): wire.Auth(proof=b"p" * 32),
        (Role.CLIENT, State.IDLE): wire.Get(key="/k"),
    }.get((conn.our_role, conn.state))
    if reply is not None:
        conn.send(reply)


def _feed(conn: Connection, data: bytes, cuts: list[int]) -> None:
    """``data`` in pieces cut at ``cuts``; only protocol errors may escape, and close."""
    pieces = [data[a:b] for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(data)],
                                        strict=True)]
    try:
        for piece in pieces:
            conn.receive_data(piece)
            while (msg := conn.next_event()) is not NEED_DATA:
                assert isinstance(msg, wire.Message)
                _answer(conn)
    except (LocalProtocolError, RemoteProtocolError, TooLarge):
        assert conn.state is State.CLOSED


def _fresh(role: Role, limits: Limits) -> Connection:
    conn = Connection(role, limits)
    if role is Role.CLIENT:
        conn.send(wire.Hello(role="client", nonce=b"n" * 32))
    return conn


_roles = st.sampled_from([Role.SERVER, Role.CLIENT])
_limits = st.sampled_from([SMALL, Limits()])
_cuts = st.lists(st.integers(0, 4096), max_size=4)

_msgpack_objects = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=40) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=6)
    | st.dictionaries(st.text(max_size=8), inner, max_size=6),
    max_leaves=40,
)
# shaped like messages: a known type code and arbitrary fields
_message_like = st.builds(lambda t, fields: [t, *fields],
                          st.sampled_from(sorted(wire.MESSAGE_TYPES)),
                          st.lists(_msgpack_objects, max_size=7))


def _frames(objs: list[Any]) -> bytes:
    return b"".join(wire.encode_frame(msgpack.packb(o, use_bin_type=True)) for o in objs)


@functools.cache
def _valid_conversation(role: Role) -> bytes:
    """What the peer of ``role`` sends in a whole conversation."""
    if role is Role.SERVER:
        msgs: list[wire.Message] = [
            wire.Hello(role="client", nonce=b"n" * 32), wire.Auth(proof=b"a" * 32),
            wire.Get(key="/a"), wire.Put(key="/a/b", value=b"\x00\xff" * 8),
            wire.Batch(ops=[["/x", b"1"], ["/y", None]]),
            wire.Query(prefix="/", start_after="/a", limit=5, filters=[["key_prefix", "", "/"]]),
            wire.Join(index=1, addrs=["/ip4/127.0.0.1/tcp/1"]), wire.GetMap(known_epoch=3),
        ]
    else:
        msgs = [
            wire.Challenge(nonce=b"s" * 32, proof=b"p" * 32),
            wire.Welcome(epoch=2, node_index=1, role="client"),
            wire.QueryPage(entries=[["/a", b"v", 1], ["/b", None, 2]], cursor="/b"),
            wire.MapData(map=ClusterMap.initial(2).to_dict()),
            wire.StatsData(stats={"keys": 1, "slots": "0-8191"}),
            wire.Error(code="moved", message="m", detail={"slot": 1, "owner": None}),
            wire.Value(value=b"x" * 20),
        ]
    return _frames([m.to_wire() for m in msgs])


_mutations = st.lists(st.tuples(st.sampled_from(["flip", "insert", "delete", "cut"]),
                                st.integers(0, 2**20), st.binary(min_size=1, max_size=8)),
                      min_size=1, max_size=6)


def _mutate(data: bytes, mutations: list[tuple[str, int, bytes]]) -> bytes:
    buf = bytearray(data)
    for op, pos, some in mutations:
        i = pos % (len(buf) + 1)
        if op == "flip" and i < len(buf):
            buf[i] ^= some[0]
        elif op == "insert":
            buf[i:i] = some
        elif op == "delete":
            del buf[i:i + len(some)]
        elif op == "cut":
            del buf[i:]
    return bytes(buf)


def _check_random_bytes(role: Role, limits: Limits, data: bytes, cuts: list[int]) -> None:
    _feed(_fresh(role, limits), data, cuts)


def _check_random_frames(role: Role, limits: Limits, frames: list[tuple[int, bytes]],
                         cuts: list[int]) -> None:
    # announced lengths that need not match the bodies, around the limits
    _feed(_fresh(role, limits), b"".join(struct.pack(">I", n) + body for n, body in frames),
          cuts)


def _check_mutated(role: Role, limits: Limits, mutations: list[tuple[str, int, bytes]],
                   cuts: list[int]) -> None:
    _feed(_fresh(role, limits), _mutate(_valid_conversation(role), mutations), cuts)


def _check_msgpack(role: Role, limits: Limits, prefix: int, objs: list[Any],
                   cuts: list[int]) -> None:
    # a valid start of the conversation, then arbitrary msgpack in well-formed frames
    valid = _valid_conversation(role)
    _feed(_fresh(role, limits), valid[:prefix % (len(valid) + 1)] + _frames(objs), cuts)


_lengths = st.one_of(st.integers(0, 64), st.sampled_from(
    [HANDSHAKE_FRAME_BYTES, HANDSHAKE_FRAME_BYTES + 1, SMALL.max_frame_bytes + 1, 2**32 - 1]))
_FUZZ_ARGS: dict[str, tuple[st.SearchStrategy[Any], ...]] = {
    "random_bytes": (_roles, _limits, st.binary(max_size=2048), _cuts),
    "random_frames": (_roles, _limits,
                      st.lists(st.tuples(_lengths, st.binary(max_size=64)), max_size=6), _cuts),
    "mutated_frames": (_roles, _limits, _mutations, _cuts),
    "msgpack_objects": (_roles, _limits, st.integers(0, 2**16),
                        st.lists(_msgpack_objects | _message_like, min_size=1, max_size=4),
                        _cuts),
}
_CHECKS = {"random_bytes": _check_random_bytes, "random_frames": _check_random_frames,
           "mutated_frames": _check_mutated, "msgpack_objects": _check_msgpack}


def _fuzz_test(name: str, examples: int) -> Any:
    test = settings(
        max_examples=examples, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )(given(*_FUZZ_ARGS[name])(_CHECKS[name]))
    return test if examples == FUZZ_QUICK else pytest.mark.timeout(900)(pytest.mark.soak(test))


test_fuzz_random_bytes = _fuzz_test("random_bytes", FUZZ_QUICK)
test_fuzz_random_frames = _fuzz_test("random_frames", FUZZ_QUICK)
test_fuzz_mutated_frames = _fuzz_test("mutated_frames", FUZZ_QUICK)
test_fuzz_msgpack_objects = _fuzz_test("msgpack_objects", FUZZ_QUICK)
test_soak_fuzz_random_bytes = _fuzz_test("random_bytes", FUZZ_SOAK)
test_soak_fuzz_random_frames = _fuzz_test("random_frames", FUZZ_SOAK)
test_soak_fuzz_mutated_frames = _fuzz_test("mutated_frames", FUZZ_SOAK)
test_soak_fuzz_msgpack_objects = _fuzz_test("msgpack_objects", FUZZ_SOAK)


# --- decoding cost is linear in the frame's length ----------------------------------------

def _hostile(kind: str, n: int, array: int) -> bytes:
    """About ``n`` bytes of a frame built to be expensive to decode."""
    if kind == "empty-arrays":  # as many containers as bytes, in arrays of legal length
        return _array(n // array + 1, _array(array - 1, b"\x90" * (array - 1)) * (n // array + 1))
    if kind == "open-arrays":  # small strings in arrays that never complete
        level = _array(array, b"\xa2xy" * (array - 1))
        return (level * (n // len(level) + 1))[:n]
    # one-entry maps, in arrays of legal length
    maps = _array(array - 1, b"\x81\xa1k\xc0" * (array - 1))
    return _array(n // len(maps) + 1, maps * (n // len(maps) + 1))


def _decode_seconds(role: Role, payload: bytes) -> float:
    best = float("inf")
    frame = wire.encode_frame(payload)
    for _ in range(3):
        conn = at(role, State.IDLE if role is Role.SERVER else State.BUSY)
        conn.receive_data(frame)
        t = time.perf_counter()
        with contextlib.suppress(RemoteProtocolError, TooLarge):
            conn.next_event()
        best = min(best, time.perf_counter() - t)
    return best


def _check_linear(role: Role, kind: str, n: int) -> None:
    bounds = Limits().request_bounds if role is Role.SERVER else Limits().response_bounds
    t1 = _decode_seconds(role, _hostile(kind, n, bounds.max_array))
    t8 = _decode_seconds(role, _hostile(kind, 8 * n, bounds.max_array))
    # linear would be 8x; the margin absorbs a busy machine, superlinear would exceed it
    assert t8 < 8 * 4 * t1 + 0.05, (t1, t8)


@pytest.mark.parametrize("kind", ["empty-arrays", "open-arrays", "maps"])
@pytest.mark.parametrize("role", [Role.SERVER, Role.CLIENT])
def test_decoding_cost_is_linear_in_the_frame_length(role, kind):
    _check_linear(role, kind, 128 * 1024)


@pytest.mark.soak
@pytest.mark.parametrize("kind", ["empty-arrays", "open-arrays", "maps"])
@pytest.mark.parametrize("role", [Role.SERVER, Role.CLIENT])
def test_soak_decoding_cost_is_linear_in_the_frame_length(role, kind):
    _check_linear(role, kind, 1024 * 1024)


# --- atheris --------------------------------------------------------------------------------

ATHERIS_WORKER = Path(__file__).with_name("wire_atheris_worker.py")


@pytest.mark.soak
@pytest.mark.timeout(900)
def test_atheris_wire_codec(tmp_path: Path) -> None:
    """libFuzzer's coverage-guided search, in a process of its own (it exits when done)."""
    pytest.importorskip("atheris")
    seconds = os.environ.get("DSCLUSTER_ATHERIS_SECONDS", "60")
    done = subprocess.run([sys.executable, str(ATHERIS_WORKER), f"-max_total_time={seconds}",
                           f"-artifact_prefix={tmp_path}/"],
                          capture_output=True, text=True, timeout=int(seconds) + 600)
    assert done.returncode == 0, done.stderr[-4000:]
