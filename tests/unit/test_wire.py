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
from dscluster.cluster.versions import MAX_WRITER_CHARS
from dscluster.clustermap import ClusterMap, Member
from dscluster.errors import (
    InvalidKey,
    LocalProtocolError,
    RemoteProtocolError,
    TooLarge,
    Unauthorized,
    Unavailable,
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
from dscluster.net.handshake import server_handshake
from dscluster.wire import NEED_DATA, Connection, Role, State
from dscluster.wire import _connection as wire_connection


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
    req = wire.SlotQuery(prefix="/a", start_after="/a/b", reverse=True, limit=10,
                         keys_only=True, filters=[["key_compare", ">", "/a/a"]],
                         slots=[[0, 3], [17, 18]])
    assert deliver(c, s, req) == req
    assert c.state is State.BUSY
    page = wire.QueryPage(entries=[["/a/c", None, 3]], cursor=None)
    assert deliver(s, c, page) == page
    write = wire.WriteRecords(ops=[["/k", b"\x00\xff" * 10, 2**63 - 1, "w" * 64],
                                   ["/t", None, 1, ""]], repair=True)
    assert deliver(c, s, write) == write
    written = wire.Written(results=[[True, 2**63 - 1, "w" * 64], [False, 2, "x"]])
    assert deliver(s, c, written) == written
    assert deliver(c, s, wire.ReadRecord(key="/k", value=False)) == wire.ReadRecord(
        key="/k", value=False)
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
    c.send(wire.ReadRecord(key="/a"))
    with pytest.raises(LocalProtocolError):
        c.send(wire.ReadRecord(key="/b"))
    with pytest.raises(LocalProtocolError):  # whatever the request
        c.send(wire.WriteRecords(ops=[["/b", None, 1, "w"]]))


def test_out_of_order_messages_are_refused_on_both_sides():
    c, s = pair()
    with pytest.raises(LocalProtocolError):
        c.send(wire.ReadRecord(key="/a"))  # no request before the handshake
    # the peer sending it anyway is a remote error
    raw = wire.encode_frame(msgpack.packb(wire.ReadRecord(key="/a").to_wire()))
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
        c.send(wire.WriteRecords(ops=[["/k", b"x" * (limits.max_frame_bytes + 1), 1, "w"]]))


@pytest.mark.parametrize(
    "obj",
    [
        "not a list",
        [],
        [999],
        [wire.ReadRecord.TYPE, "/a"],  # missing field
        [wire.ReadRecord.TYPE, "/a", True, "extra"],
        [wire.ReadRecord.TYPE, b"/a", True],  # bytes where str is required
        [wire.ReadRecord.TYPE, "/a", 1],  # int where bool is required
        [wire.WriteRecords.TYPE, "/a", False],  # str where a list is required
        [wire.WriteRecords.TYPE, [], None],
        [wire.StoreHints.TYPE, True, []],  # bool is not an int
        [wire.SlotDigests.TYPE, {"0": 1}],
        [wire.SlotVersions.TYPE, 0, b"/a", 10],  # bytes where str or nil is required
        [wire.Repair.TYPE],
        [True, "/a"],  # bool is not a type code
        [wire.SlotQuery.TYPE, "/", None, False, "10", False, [], [], False],
        # a version 2 Query: SlotQuery without its slots
        [wire.SlotQuery.TYPE, "/", None, False, 10, False, [], []],
    ],
)
def test_malformed_frames_are_remote_protocol_errors(obj):
    s = Connection(Role.SERVER)
    s.state = State.IDLE
    s.receive_data(wire.encode_frame(msgpack.packb(obj, use_bin_type=True)))
    with pytest.raises(RemoteProtocolError):
        s.next_event()


@pytest.mark.parametrize(
    "obj",
    [
        [10, "/a"], [11, "/a"], [12, "/a"],  # Get, Has, GetSize
        [13, "/a", b"v"], [14, "/a"], [15, [["/a", b"v"]]],  # Put, Delete, Batch
        [16, "/", None, False, 10, False, []],  # Query
    ],
    ids=["get", "has", "get-size", "put", "delete", "batch", "query"],
)
def test_the_requests_of_version_2_are_unknown(obj):
    s = at(Role.SERVER, State.IDLE)
    s.receive_data(wire.encode_frame(msgpack.packb(obj, use_bin_type=True)))
    with pytest.raises(RemoteProtocolError, match="unknown message type"):
        s.next_event()
    assert s.state is State.CLOSED


@pytest.mark.parametrize("obj", [[41, b"value"], [42, True]], ids=["value", "bool"])
def test_the_responses_of_version_2_do_not_fit_their_codes_now(obj):
    # Value and Bool were 41 and 42, which are Record and Written now
    c = at(Role.CLIENT, State.BUSY)
    c.receive_data(wire.encode_frame(msgpack.packb(obj, use_bin_type=True)))
    with pytest.raises(RemoteProtocolError, match=r"fields|must be"):
        c.next_event()


def test_garbage_payload_is_a_remote_protocol_error():
    s = Connection(Role.SERVER)
    s.receive_data(wire.encode_frame(b"\xc1\xc1\xc1"))
    with pytest.raises(RemoteProtocolError):
        s.next_event()


def test_message_validates_when_built():
    with pytest.raises(LocalProtocolError):
        wire.Record(hlc=1, writer="w", state=1, size=3, value="not bytes")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        wire.WriteRecords(ops="not a list")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        wire.ReadRecord(key=b"/a")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        wire.SlotQuery(prefix="/", limit=1, slots=((0, 1),))  # type: ignore[arg-type]


_ops = st.lists(st.tuples(st.text(max_size=50), st.none() | st.binary(max_size=300),
                          st.integers(0, 2**63 - 1), st.text(max_size=64)).map(list),
                max_size=5)


@settings(max_examples=200, deadline=None)
@given(_ops, st.booleans(), st.binary(max_size=300), st.integers(0, 2**40),
       st.integers(0, 2**64 - 1), st.text(max_size=64))
def test_fuzz_round_trip(ops, repair, value, n, hlc, writer):
    c, s = pair()
    handshake(c, s)
    write = wire.WriteRecords(ops=ops, repair=repair)
    assert deliver(c, s, write) == write
    written = wire.Written(results=[[True, op[2], op[3]] for op in ops])
    assert deliver(s, c, written) == written
    hints = wire.StoreHints(target=n, ops=ops)
    assert deliver(c, s, hints) == hints
    assert deliver(s, c, wire.Size(value=n)).value == n
    key = ops[0][0] if ops else ""
    assert deliver(c, s, wire.ReadRecord(key=key)) == wire.ReadRecord(key=key)
    record = wire.Record(hlc=hlc, writer=writer, state=n % 3, size=len(value), value=value)
    assert deliver(s, c, record) == record


def test_every_message_type_is_exported_and_unique():
    assert len(wire.MESSAGE_TYPES) == len({c.TYPE for c in wire.MESSAGE_TYPES.values()})
    for cls in wire.MESSAGE_TYPES.values():
        assert getattr(wire, cls.__name__) is cls


# one of each message type, every field set to something other than its default
ONE_OF_EACH: list[wire.Message] = [
    wire.Hello(version=wire.PROTOCOL_VERSION, role="client", nonce=b"n" * 32,
               token="ci-runner", key_id=b"k" * wire.KEY_ID_BYTES),
    wire.Challenge(nonce=b"s" * 32, proof=b"p" * 32),
    wire.Auth(proof=b"q" * 32),
    wire.Welcome(epoch=9, node_index=2, role="node"),
    wire.CheckBatch(ops=[["/a", b"1"], ["/b", None]]),
    wire.ReadRecord(key="/a/b", value=False),
    wire.WriteRecords(ops=[["/a", b"\x00v", 2**63 - 1, "12D3KooW" + "x" * 44],
                           ["/b", None, 0, ""]], repair=True, layout_epoch=12),
    wire.StoreHints(target=7, ops=[["/a", b"v", 5, "w"], ["/b", None, 6, "w"]]),
    wire.SlotDigests(slots=[[0, 1], [5, 9], [SLOT_COUNT - 1, SLOT_COUNT]]),
    wire.SlotVersions(slot=SLOT_COUNT - 1, start_after="/a", limit=100),
    wire.SlotQuery(prefix="/p", start_after="/p/a", reverse=True, limit=5, keys_only=True,
                   filters=[["value_compare", "<", b"z"]], slots=[[3, 4], [10, 20]]),
    wire.Repair(slots=[[0, SLOT_COUNT]], bytes_per_second=50_000_000),
    wire.Sync(prefix="/s"),
    wire.DiskUsage(),
    wire.Stats(),
    wire.GetMap(known_epoch=4),
    wire.Join(index=3, addrs=["/ip4/10.0.0.1/tcp/4001"], replace=True),
    wire.Ok(),
    wire.Record(hlc=2**64 - 1, writer="w", state=1, size=2, value=b"\xff\x00"),
    wire.Written(results=[[True, 3, "w"], [False, 4, "v"]]),
    wire.Digests(digests=bytes(range(32))),
    wire.Size(value=2**62),
    wire.VersionPage(entries=[["/a", 1, "w", False], ["/b", 2, "v", True]], cursor="/b"),
    wire.RepairReport(report={"slots": 3, "differing_slots": [[0, 2]], "fetched": 1}),
    wire.QueryPage(entries=[["/a", b"v", 1], ["/b", None, 2]], cursor=None),
    wire.MapData(map=ClusterMap.initial(2).to_dict()),
    wire.StatsData(stats={"keys": 1, "slots": "0-16383"}),
    wire.Error(code="stale", message="m", detail={"hlc": 5}),
    wire.Rebalance(action="remove", rate=1 << 20, node=3, weights={"1": 2.5, "2": 0}),
    wire.RebalanceStatus(status={"state": "moving", "slots_done": 3}),
    wire.Admin(action="token-revoke", args={"name": "ci-runner"}),
    wire.AdminResult(result={"tokens": [{"name": "a", "role": "client"}]}),
    wire.SecretFetch(generation=3),
    wire.SecretData(generation=4, secret=b"s" * 32, switch_ms=1, deadline_ms=2),
]


@pytest.mark.parametrize("msg", [wire.WriteRecords(ops=[], repair=True),
                                 wire.Repair(slots=[[0, 1]]),
                                 wire.Join(index=1, addrs=["/ip4/127.0.0.1/tcp/1"])],
                         ids=lambda m: type(m).__name__)
def test_fields_of_a_later_version_stay_off_the_wire_at_their_default(msg):
    # what a version 3 peer sends and reads: the fields it knows, no more
    assert len(msg.to_wire()) - 1 == msg.ADDED
    assert wire.decode_message(msg.to_wire()) == msg


def test_a_frame_may_leave_off_only_the_fields_of_a_later_version():
    with pytest.raises(RemoteProtocolError, match="2 to 3 fields, frame has 1"):
        wire.decode_message([wire.WriteRecords.TYPE, []])
    with pytest.raises(RemoteProtocolError, match="2 to 3 fields, frame has 4"):
        wire.decode_message([wire.WriteRecords.TYPE, [], False, 1, 2])


def test_one_of_each_covers_every_message_type():
    assert sorted(m.TYPE for m in ONE_OF_EACH) == sorted(wire.MESSAGE_TYPES)


@pytest.mark.parametrize("msg", ONE_OF_EACH, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_through_the_codec(msg):
    c, s = pair()
    if msg.KIND in ("request", "response", "error"):
        handshake(c, s)
    if msg.KIND == "request":
        assert deliver(c, s, msg) == msg
        return
    if msg.KIND in ("response", "error"):
        deliver(c, s, wire.Stats())
        assert deliver(s, c, msg) == msg
        return
    # a handshake step: the conversation up to it, then the step itself
    steps = [(c, s, wire.Hello(role="node", nonce=b"n" * 32)),
             (s, c, wire.Challenge(nonce=b"s" * 32, proof=b"p" * 32)),
             (c, s, wire.Auth(proof=b"q" * 32))]
    for src, dst, step in steps:
        if step.KIND == msg.KIND:
            assert deliver(src, dst, msg) == msg
            return
        deliver(src, dst, step)
    assert deliver(s, c, msg) == msg and c.state is State.IDLE


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


class _Script(_Sink):
    """A ByteStream that delivers ``incoming`` and then the peer's end of the stream."""

    transport = "lane"
    admission = None

    def __init__(self, incoming: bytes) -> None:
        super().__init__()
        self.incoming = incoming

    async def receive_some(self, max_bytes: int) -> bytes:
        data, self.incoming = self.incoming[:max_bytes], self.incoming[max_bytes:]
        return data


def _welcome(role: str) -> wire.Welcome:
    return wire.Welcome(epoch=1, node_index=0, role=role)


async def _server_answer(version: int) -> tuple[BaseException, list[wire.Message]]:
    """Run a node's handshake on a Hello of ``version``; what it raised and sent."""
    hello = Connection(Role.CLIENT).send(wire.Hello(version=version, role="client",
                                                    nonce=b"n" * 32))
    stream = _Script(hello)
    chan = MessageChannel(stream, Connection(Role.SERVER))  # type: ignore[arg-type]
    with pytest.raises((RemoteProtocolError, Unavailable)) as raised:
        await server_handshake(chan, b"secret" * 6, _welcome)
    c = at(Role.CLIENT, State.HELLO)
    c.receive_data(stream.sent)
    sent = []
    while (msg := c.next_event()) is not NEED_DATA:
        sent.append(msg)
    return raised.value, sent


@pytest.mark.parametrize("version", [wire.MIN_PROTOCOL_VERSION - 1, wire.PROTOCOL_VERSION + 1,
                                     2, 0, -1, 2**63], ids=str)
async def test_the_handshake_refuses_a_version_outside_the_range(version):
    err, sent = await _server_answer(version)
    assert isinstance(err, RemoteProtocolError)
    assert f"protocol version {version} is not supported" in str(err)
    assert f"{wire.MIN_PROTOCOL_VERSION}..{wire.PROTOCOL_VERSION}" in str(err)
    assert sent == []  # no Challenge: nothing is proved to a peer the node cannot talk to


async def test_the_handshake_accepts_every_version_in_the_range(monkeypatch):
    # a range of one today; widen it as a rolling upgrade would
    monkeypatch.setattr(wire, "MIN_PROTOCOL_VERSION", wire.PROTOCOL_VERSION - 1)
    for version in (wire.PROTOCOL_VERSION - 1, wire.PROTOCOL_VERSION):
        err, sent = await _server_answer(version)
        # the node goes on to the Challenge; the scripted peer then leaves
        assert isinstance(err, Unavailable), err
        assert [type(m) for m in sent] == [wire.Challenge]
    err, _ = await _server_answer(wire.PROTOCOL_VERSION - 2)
    assert f"{wire.PROTOCOL_VERSION - 1}..{wire.PROTOCOL_VERSION}" in str(err)


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
    # a node refuses after ~150,000 objects (full slot sets and batches), a client after
    # ~800,000 (a whole cluster map)
    assert time.perf_counter() - t < (0.5 if role is Role.SERVER else 2.0)


REQUEST = Limits().request_bounds
# a writer id of MAX_WRITER_CHARS characters, each as long as UTF-8 makes one
LONG_WRITER = "\U0001f600" * MAX_WRITER_CHARS


def objects(obj: Any) -> int:
    """What the decoder counts for ``obj``: every array and map, one plus its entries."""
    if isinstance(obj, list):
        return 1 + len(obj) + sum(objects(o) for o in obj)
    if isinstance(obj, dict):
        return 1 + len(obj) + sum(objects(v) for v in obj.values())
    return 0


def decoded_only_by_msgpack(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on building a message fails the test: what is refused must be refused
    while msgpack decodes, before any of it is made into a message."""
    def never(obj: Any) -> wire.Message:
        raise AssertionError("the frame got past msgpack's bounds")

    monkeypatch.setattr(wire_connection, "decode_message", never)


def test_the_object_budget_counts_nested_containers(monkeypatch):
    s = at(Role.SERVER, State.IDLE)
    budget = REQUEST.max_objects
    # a WriteRecords whose ops hold empty lists: every list is short, together they are many
    ops = [[[]] * 1000] * 200
    assert objects(ops) > budget
    decoded_only_by_msgpack(monkeypatch)
    s.receive_data(wire.encode_frame(msgpack.packb([wire.WriteRecords.TYPE, ops, False])))
    with pytest.raises(TooLarge, match=f"more than {budget} arrays"):
        s.next_event()
    assert s.state is State.CLOSED


def _slot_query_of(objs: int, lim: Limits) -> list[Any]:
    """A SlotQuery frame of exactly ``objs`` objects (at least 11 + 9 x max_array): every
    list full, the last filter's operand a list of nils to make up the rest."""
    n = lim.request_bounds.max_array
    filters: list[Any] = [["key_compare", ">", "/k"] for _ in range(n)]
    slots = [[i % SLOT_COUNT, i % SLOT_COUNT + 1] for i in range(n)]
    frame = [wire.SlotQuery.TYPE, "/", None, False, 1, False, filters, slots, False]
    rest = objs - objects(frame)
    assert rest >= 1
    filters[-1] = ["key_compare", ">", [None] * (rest - 1)]
    assert objects(frame) == objs
    return frame


def test_a_frame_of_exactly_the_object_budget_decodes_and_one_more_is_refused(monkeypatch):
    budget = REQUEST.max_objects
    s = at(Role.SERVER, State.IDLE)
    s.receive_data(wire.encode_frame(msgpack.packb(_slot_query_of(budget, Limits()))))
    assert isinstance(s.next_event(), wire.SlotQuery)
    decoded_only_by_msgpack(monkeypatch)
    s = at(Role.SERVER, State.IDLE)
    s.receive_data(wire.encode_frame(msgpack.packb(_slot_query_of(budget + 1, Limits()))))
    with pytest.raises(TooLarge, match=f"more than {budget} arrays"):
        s.next_event()


N = REQUEST.max_array
_OVER_KEY = "/" + "k" * REQUEST.max_str


@pytest.mark.parametrize(
    ("obj", "what"),
    [
        ([wire.ReadRecord.TYPE, _OVER_KEY, True], "max_str_len"),
        ([wire.WriteRecords.TYPE, [[_OVER_KEY, None, 1, "w"]], False], "max_str_len"),
        ([wire.WriteRecords.TYPE, [["/k", b"v" * (4 * MiB + 1), 1, "w"]], False],
         "max_bin_len"),
        ([wire.StoreHints.TYPE, 1, [["/k", b"v" * (4 * MiB + 1), 1, "w"]]], "max_bin_len"),
        ([wire.SlotQuery.TYPE, _OVER_KEY, None, False, 1, False, [], [[0, 1]], False],
         "max_str_len"),
        ([wire.SlotQuery.TYPE, "/", None, False, 1, False, [{str(i): 0 for i in range(65)}],
          [[0, 1]]], "max_map_len"),
        # one entry over what any list may hold
        ([wire.WriteRecords.TYPE, [["/k", None, 1, "w"]] * (N + 1), False], "max_array_len"),
        ([wire.StoreHints.TYPE, 1, [["/k", None, 1, "w"]] * (N + 1)], "max_array_len"),
        ([wire.CheckBatch.TYPE, [["/k", None]] * (N + 1)], "max_array_len"),
        ([wire.SlotQuery.TYPE, "/", None, False, 1, False, [["key_prefix", "", "/"]] * (N + 1),
          [[0, 1]]], "max_array_len"),
        ([wire.SlotQuery.TYPE, "/", None, False, 1, False, [], [[0, 1]] * (N + 1), False],
         "max_array_len"),
        ([wire.SlotDigests.TYPE, [[0, 1]] * (N + 1)], "max_array_len"),
        ([wire.Repair.TYPE, [[0, 1]] * (N + 1)], "max_array_len"),
    ],
    ids=["read-key", "write-key", "write-value", "hint-value", "query-prefix", "filter-map",
         "write-ops", "hint-ops", "check-ops", "query-filters", "query-slots", "digest-slots",
         "repair-slots"],
)
def test_requests_over_the_decoding_limits_are_too_large(obj, what, monkeypatch):
    s = at(Role.SERVER, State.IDLE)
    decoded_only_by_msgpack(monkeypatch)
    s.receive_data(wire.encode_frame(msgpack.packb(obj, use_bin_type=True)))
    with pytest.raises(TooLarge, match=what):
        s.next_event()
    assert s.state is State.CLOSED


@pytest.mark.parametrize("ext", [b"\xd4\x05\x00", b"\xc7\x00\x05", b"\xd6\xff\x00\x00\x00\x00"],
                         ids=["fixext", "empty-ext", "timestamp"])
def test_msgpack_extension_types_are_refused(ext):
    s = at(Role.SERVER, State.IDLE)
    s.receive_data(wire.encode_frame(b"\x92\x0a" + ext))
    with pytest.raises((RemoteProtocolError, TooLarge)):
        s.next_event()


def _through(lim: Limits, msg: wire.Message) -> None:
    c, s = pair(lim)
    handshake(c, s)
    assert deliver(c, s, msg) == msg
    deliver(s, c, wire.Ok())


def test_requests_at_the_limits_decode():
    lim = Limits()
    key = "/" + "k" * (lim.max_key_bytes - 1)
    value = b"v" * lim.max_value_bytes
    # a batch is cut once it holds page_bytes of values: up to two values' worth, the
    # longest keys, and versions with the longest writer ids
    full_batch = [[f"{key[:-5]}{i:05d}", value if i < 2 else None, 2**63 - 1, LONG_WRITER]
                  for i in range(lim.max_batch_ops)]
    for msg in (
        wire.WriteRecords(ops=[[key, value, 2**63 - 1, LONG_WRITER]]),
        wire.WriteRecords(ops=full_batch, repair=True),
        wire.StoreHints(target=2**63 - 1, ops=full_batch),
        # a bit over the key limit still decodes: the node answers invalid_key, and
        # over the batch limit too: the node answers too_large, and the stream goes on
        wire.ReadRecord(key="/" + "k" * (2 * lim.max_key_bytes)),
        wire.WriteRecords(ops=[[f"/{i}", None, 1, "w"] for i in range(lim.max_batch_ops + 16)]),
        wire.CheckBatch(ops=[[f"{key[:-5]}{i:05d}", b"v" * 16] for i in range(lim.max_batch_ops)]),
        wire.SlotQuery(prefix=key, start_after=key, limit=lim.max_page_entries,
                       filters=[["key_compare", ">", key]] * 16 + [["value_compare", "=", value]],
                       slots=[[s, s + 1] for s in range(SLOT_COUNT)]),
        # the node takes up to SLOT_COUNT slots a request, one range each at worst
        wire.SlotDigests(slots=[[s, s + 1] for s in range(SLOT_COUNT)]),
        wire.Repair(slots=[[s, s + 1] for s in range(SLOT_COUNT)]),
        wire.SlotVersions(slot=SLOT_COUNT - 1, start_after=key, limit=lim.max_page_entries),
        wire.Join(index=16383, addrs=["/ip4/255.255.255.255/tcp/65535/tls" * 7] * 16),
    ):
        _through(lim, msg)


def _full_lists(lim: Limits) -> list[wire.Message]:
    """Requests with every list as long as the decoding bounds allow."""
    n = lim.request_bounds.max_array
    ops = [[f"/{i}", None, 2**63 - 1, "w" * MAX_WRITER_CHARS] for i in range(n)]
    slots = [[i % SLOT_COUNT, i % SLOT_COUNT + 1] for i in range(n)]
    return [
        wire.WriteRecords(ops=ops),
        wire.StoreHints(target=1, ops=ops),
        wire.CheckBatch(ops=[[f"/{i}", None] for i in range(n)]),
        wire.SlotQuery(prefix="/", limit=1, filters=[["key_compare", ">", "/k"]] * n,
                       slots=slots),
        wire.SlotDigests(slots=slots),
        wire.Repair(slots=slots),
    ]


@pytest.mark.parametrize("lim", [Limits(), Limits(max_value_bytes=1024, max_key_bytes=64,
                                                  max_batch_ops=20_000)],
                         ids=["default", "large-batches"])
def test_requests_with_every_list_full_decode(lim):
    bounds = lim.request_bounds
    # every list a node takes fits: a batch (and a few over), a fully fragmented slot set
    assert bounds.max_array >= max(lim.max_batch_ops + 16, lim.max_page_entries, SLOT_COUNT)
    for msg in _full_lists(lim):
        assert objects(msg.to_wire()) <= bounds.max_objects, type(msg).__name__
        _through(lim, msg)


def test_the_request_bounds_fit_their_frame_limit():
    for lim in (Limits(), Limits(max_value_bytes=1024, max_key_bytes=64, max_batch_ops=4,
                                 max_page_entries=4),
                Limits(max_value_bytes=256 * MiB, max_key_bytes=2048, max_batch_ops=50_000)):
        b = lim.request_bounds
        assert b.max_frame == lim.max_frame_bytes and b.max_bin == lim.max_value_bytes
        # 5 + 6n for a WriteRecords of n ops, 11 + 5f + 4s for a SlotQuery
        assert 5 + 6 * b.max_array <= b.max_objects
        assert 11 + 9 * b.max_array <= b.max_objects


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
        # stored under a larger limit
        wire.Record(hlc=2**64 - 1, writer=LONG_WRITER, state=1, size=lim.max_value_bytes + 1,
                    value=b"v" * (lim.max_value_bytes + 1)),
        wire.QueryPage(entries=full_page, cursor=big_key),
        wire.Written(results=[[i % 2 == 0, 2**63 - 1, LONG_WRITER]
                              for i in range(lim.max_batch_ops)]),
        wire.VersionPage(entries=[[f"{big_key[:-5]}{i:05d}", 2**63 - 1, LONG_WRITER, True]
                                  for i in range(lim.max_page_entries)], cursor=big_key),
        wire.Digests(digests=b"\xff" * 16 * SLOT_COUNT),
        wire.RepairReport(report={"slots": SLOT_COUNT, "fetched": 2**62,
                                  "differing_slots": [[s, s + 1]
                                                      for s in range(0, SLOT_COUNT, 2)]}),
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
        (Role.CLIENT, State.IDLE): wire.ReadRecord(key="/k"),
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
            wire.ReadRecord(key="/a"),
            wire.WriteRecords(ops=[["/a/b", b"\x00\xff" * 8, 2**40, "w"], ["/y", None, 1, "w"]]),
            wire.StoreHints(target=2, ops=[["/x", b"1", 7, "w"]]),
            wire.CheckBatch(ops=[["/x", b"1"], ["/y", None]]),
            wire.SlotDigests(slots=[[0, 4096]]), wire.SlotVersions(slot=3, limit=100),
            wire.SlotQuery(prefix="/", start_after="/a", limit=5,
                           filters=[["key_prefix", "", "/"]], slots=[[0, 8], [100, 101]]),
            wire.Repair(slots=[[0, 1]]),
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
            wire.Record(hlc=5, writer="w", state=1, size=20, value=b"x" * 20),
            wire.Written(results=[[True, 5, "w"], [False, 6, "v"]]),
            wire.Digests(digests=b"\x01" * 32),
            wire.VersionPage(entries=[["/a", 1, "w", False]], cursor=None),
            wire.RepairReport(report={"fetched": 0}),
            wire.Size(value=12),
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
