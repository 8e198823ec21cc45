"""Sans-IO framing and the conversation state of one stream.

Theory of operation (as h11): ``Connection`` never touches a socket. Feed it bytes with
``receive_data``; pull messages with ``next_event`` (``NEED_DATA`` when a frame is not
complete yet); turn a message into bytes with ``send``. A frame is a 4-byte big-endian
length followed by that many bytes of msgpack (_frames.py: framing with few copies). A
frame announcing more than the limit is refused as soon as its header arrives — nothing
of it is buffered. Until the
handshake is over that limit is a few KiB (``HANDSHAKE_BOUNDS``), so a peer that has not
proved anything can make us buffer and decode only that much.

Decoding is bounded too (``limits.FrameBounds``): msgpack refuses a string, bin, array
or map longer than the limits in force before it allocates it, and every array and map
is counted as it is built, so a frame of millions of tiny nested containers is refused
once it passes the budget instead of costing seconds of event loop and sixty times its
size in memory. What is left is linear in the frame's length.

Both ends track one conversation in ``TRANSITIONS``: the handshake (Hello, Challenge,
Auth, Welcome), then strictly alternating request and response. A message that is not
allowed next is a LocalProtocolError when we try to send it and a RemoteProtocolError
when the peer sends it. An Error ends the handshake (the stream is closed) but after
Welcome it only answers the request, and the stream carries on.
"""

from __future__ import annotations

import enum
from typing import Any, Final

import msgpack

from ..errors import LocalProtocolError, RemoteProtocolError, TooLarge
from ..limits import HANDSHAKE_BOUNDS, FrameBounds, Limits
from ._frames import HEADER, FrameReader, pack_frame
from ._messages import Message, decode_message


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class State(enum.Enum):
    START = "start"  # client sends Hello
    HELLO = "hello"  # server answers Challenge (or Error)
    CHALLENGE = "challenge"  # client sends Auth
    AUTH = "auth"  # server answers Welcome (or Error)
    IDLE = "idle"  # client sends a request
    BUSY = "busy"  # server answers the request
    CLOSED = "closed"


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()

# (state, sender, message kind) -> next state
TRANSITIONS: dict[tuple[State, Role, str], State] = {
    (State.START, Role.CLIENT, "hello"): State.HELLO,
    (State.HELLO, Role.SERVER, "challenge"): State.CHALLENGE,
    (State.HELLO, Role.SERVER, "error"): State.CLOSED,
    (State.CHALLENGE, Role.CLIENT, "auth"): State.AUTH,
    (State.AUTH, Role.SERVER, "welcome"): State.IDLE,
    (State.AUTH, Role.SERVER, "error"): State.CLOSED,
    (State.IDLE, Role.CLIENT, "request"): State.BUSY,
    (State.BUSY, Role.SERVER, "response"): State.IDLE,
    (State.BUSY, Role.SERVER, "error"): State.IDLE,
}


_AUTHENTICATED = (State.IDLE, State.BUSY)


def encode_frame(payload: bytes) -> bytes:
    """A frame of already packed bytes (tests build raw frames with it)."""
    return HEADER.pack(len(payload)) + payload


class _OverBudget(Exception):
    pass


def _unpack(payload: memoryview, bounds: FrameBounds) -> Any:
    left = bounds.max_objects

    def count(container: Any) -> Any:
        # called as each array and map is completed, innermost first
        nonlocal left
        left -= 1 + len(container)
        if left < 0:
            raise _OverBudget
        return container

    return msgpack.unpackb(
        payload, raw=False, strict_map_key=True, list_hook=count, object_hook=count,
        ext_hook=_no_ext, max_str_len=bounds.max_str, max_bin_len=bounds.max_bin,
        max_array_len=bounds.max_array, max_map_len=bounds.max_map, max_ext_len=0,
    )


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not part of the protocol")


class Connection:
    """One end of one stream."""

    def __init__(self, role: Role, limits: Limits | None = None) -> None:
        self.our_role = role
        self.their_role = Role.SERVER if role is Role.CLIENT else Role.CLIENT
        self.limits = limits or Limits()
        # a server decodes requests, a client responses
        self._bounds = (self.limits.request_bounds if role is Role.SERVER
                        else self.limits.response_bounds)
        self.state = State.START
        self._frames = FrameReader()

    # -- sending ------------------------------------------------------------------------
    def send(self, msg: Message) -> bytes:
        max_frame = self.bounds.max_frame
        self.state = self._advance(self.our_role, msg, LocalProtocolError)
        frame = pack_frame(msg.to_wire())
        if len(frame) - HEADER.size > max_frame:
            raise TooLarge(
                f"{type(msg).__name__} frame of {len(frame) - HEADER.size} bytes exceeds the "
                f"{max_frame}-byte frame limit"
            )
        return frame

    def send_final_error(self, msg: Message) -> bytes:
        """Encode a last Error after a protocol violation, whatever the state; the
        stream is over afterwards."""
        self.state = State.CLOSED
        return pack_frame(msg.to_wire())

    # -- receiving ----------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        self._frames.feed(data)

    def next_event(self) -> Message | _NeedData:
        bounds = self.bounds
        try:
            payload = self._frames.next_frame(bounds.max_frame)
        except TooLarge as e:
            authenticated = self.authenticated
            self.state = State.CLOSED
            if authenticated:
                raise
            raise TooLarge(f"{e} before the handshake is complete") from None
        if payload is None:
            return NEED_DATA
        try:
            obj = _unpack(payload, bounds)
        except _OverBudget:
            self.state = State.CLOSED
            raise TooLarge(
                f"frame holds more than {bounds.max_objects} arrays, maps and entries"
            ) from None
        except Exception as e:  # msgpack raises several unrelated types for bad input
            self.state = State.CLOSED
            if "exceeds max_" in str(e):  # msgpack's wording for its length limits
                raise TooLarge(f"frame refused: {e}") from None
            raise RemoteProtocolError(
                f"undecodable frame: {e or type(e).__name__}") from None
        try:
            msg = decode_message(obj)
            self.state = self._advance(self.their_role, msg, RemoteProtocolError)
        except RemoteProtocolError:
            self.state = State.CLOSED
            raise
        return msg

    @property
    def authenticated(self) -> bool:
        """Whether the handshake is over (Welcome sent or received)."""
        return self.state in _AUTHENTICATED

    @property
    def bounds(self) -> FrameBounds:
        """What the next frame may hold: little until the handshake is over."""
        return self._bounds if self.authenticated else HANDSHAKE_BOUNDS

    @property
    def mid_frame(self) -> bool:
        """Whether part of a frame has arrived (EOF now would cut a frame)."""
        return self._frames.mid_frame

    @property
    def pending_bytes(self) -> int:
        """How many more bytes the frame in progress needs (0 if none)."""
        return self._frames.pending_bytes

    def _advance(
        self, sender: Role, msg: Message, err: type[LocalProtocolError | RemoteProtocolError]
    ) -> State:
        nxt = TRANSITIONS.get((self.state, sender, msg.KIND))
        if nxt is None:
            raise err(
                f"{sender.value} may not send {type(msg).__name__} in state {self.state.value}"
            )
        return nxt
