"""Framing on bytes only (wire/_frames.py): the reader over every way a stream may cut
its frames, and the writer's reused buffer."""

from __future__ import annotations

import struct

import msgpack
import pytest

from dscluster import wire
from dscluster.errors import TooLarge
from dscluster.wire import Connection, Role, State
from dscluster.wire import _connection as wire_connection
from dscluster.wire._frames import FrameReader, pack_frame

PAYLOADS = [b"", b"a", b"\x00" * 3, b"abcd", bytes(range(256)) * 3]
STREAM = b"".join(wire.encode_frame(p) for p in PAYLOADS)
LIMIT = 1 << 20


def drain(r: FrameReader, limit: int = LIMIT) -> list[bytes]:
    out = []
    while (f := r.next_frame(limit)) is not None:
        out.append(bytes(f))
    return out


def test_frames_cut_at_every_byte_boundary_come_out_whole():
    for cut in range(len(STREAM) + 1):
        r = FrameReader()
        r.feed(STREAM[:cut])
        got = drain(r)
        r.feed(STREAM[cut:])
        got += drain(r)
        assert got == PAYLOADS, cut
        assert not r.mid_frame


def test_frames_fed_one_byte_at_a_time_come_out_whole():
    r = FrameReader()
    got = []
    for b in STREAM:
        r.feed(bytes([b]))
        got += drain(r)
    assert got == PAYLOADS


def test_a_frame_cut_twice_anywhere_comes_out_whole():
    frame = wire.encode_frame(bytes(range(40)))
    for i in range(len(frame) + 1):
        for j in range(i, len(frame) + 1):
            r = FrameReader()
            got = []
            for piece in (frame[:i], frame[i:j], frame[j:]):
                r.feed(piece)
                got += drain(r)
            assert got == [bytes(range(40))], (i, j)


def test_several_frames_in_one_chunk_are_views_of_that_chunk():
    r = FrameReader()
    r.feed(STREAM)
    for p in PAYLOADS[1:]:  # the empty frame has nothing to view
        f = r.next_frame(LIMIT)
        if not len(f):
            f = r.next_frame(LIMIT)
        assert f is not None and bytes(f) == p
        assert f.obj is STREAM  # not a copy
    assert r.next_frame(LIMIT) is None and not r.mid_frame


def test_a_frame_in_pieces_is_joined_once_into_a_buffer_of_its_own():
    body = b"v" * 100_000
    frame = wire.encode_frame(body)
    r = FrameReader()
    pieces = [frame[i:i + 16384] for i in range(0, len(frame), 16384)]
    for p in pieces[:-1]:
        r.feed(p)
        assert r.next_frame(LIMIT) is None
    assert r.pending_bytes == len(frame) - 16384 * (len(pieces) - 1)
    r.feed(pieces[-1])
    f = r.next_frame(LIMIT)
    assert f is not None and f.obj not in pieces and len(f.obj) == len(body)
    assert bytes(f) == body


def test_an_oversized_frame_is_refused_from_its_header_before_its_body():
    r = FrameReader()
    r.feed(struct.pack(">I", 1001)[:3])
    assert r.next_frame(1000) is None  # the header is not all in yet
    r.feed(struct.pack(">I", 1001)[3:])
    with pytest.raises(TooLarge, match="1001-byte frame"):
        r.next_frame(1000)


def test_a_frame_at_the_limit_is_accepted():
    r = FrameReader()
    r.feed(wire.encode_frame(b"x" * 1000))
    f = r.next_frame(1000)
    assert f is not None and len(f) == 1000


def test_fed_bytearrays_are_copied_so_the_caller_may_reuse_them():
    buf = bytearray(wire.encode_frame(b"abc"))
    r = FrameReader()
    r.feed(buf)  # type: ignore[arg-type]
    buf[4:] = b"xyz"
    buf += b"more"  # a view of it held by the reader would make this fail
    assert bytes(r.next_frame(LIMIT) or b"") == b"abc"


def test_a_large_value_in_one_chunk_is_decoded_from_that_chunk(monkeypatch):
    value = bytes(range(256)) * 1024
    frame = pack_frame(wire.Record(hlc=1, writer="w", state=1, size=len(value),
                                   value=value).to_wire())
    decoded_from = []
    unpack = wire_connection._unpack

    def spy(payload: memoryview, bounds: object) -> object:
        decoded_from.append(payload)
        return unpack(payload, bounds)  # type: ignore[arg-type]

    monkeypatch.setattr(wire_connection, "_unpack", spy)
    c = Connection(Role.CLIENT)
    c.state = State.BUSY  # a request is out
    c.receive_data(frame)
    got = c.next_event()
    assert isinstance(got, wire.Record) and got.value == value
    assert decoded_from[0].obj is frame  # msgpack read the received bytes themselves


def test_packed_frames_do_not_share_the_packers_reused_buffer():
    a = pack_frame([1, b"a" * 1000])
    b = pack_frame([2, b"b" * 10])
    assert a == wire.encode_frame(msgpack.packb([1, b"a" * 1000], use_bin_type=True))
    assert b == wire.encode_frame(msgpack.packb([2, b"b" * 10], use_bin_type=True))


def test_a_failed_pack_leaves_nothing_behind_for_the_next_frame():
    with pytest.raises(TypeError):
        pack_frame([1, object()])
    assert pack_frame([3]) == wire.encode_frame(msgpack.packb([3]))
