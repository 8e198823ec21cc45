"""The codec on bytes only: two Connections wired back to back, no sockets."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dscluster import wire
from dscluster.errors import LocalProtocolError, RemoteProtocolError, TooLarge
from dscluster.limits import Limits
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
    hello = c.send(wire.Hello(role="client", nonce=b"n"))
    c.state = State.CHALLENGE  # as if the Challenge had arrived
    auth = c.send(wire.Auth(proof=b"p"))
    s.receive_data(hello + auth)
    assert isinstance(s.next_event(), wire.Hello)
    s.send(wire.Challenge(nonce=b"s", proof=b"q"))
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
    deliver(c, s, wire.Hello(role="client", nonce=b"n"))
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


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_fuzz_random_bytes_never_escape_the_error_hierarchy(data):
    s = Connection(Role.SERVER, Limits(max_value_bytes=256, max_key_bytes=64))
    s.receive_data(data)
    try:
        while s.next_event() is not NEED_DATA:
            pass
    except (RemoteProtocolError, TooLarge):
        assert s.state is State.CLOSED


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
