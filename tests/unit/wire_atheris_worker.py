"""Subprocess of the wire codec's atheris soak test: libFuzzer (through atheris) on
Connection.receive_data/next_event.

    python wire_atheris_worker.py [libFuzzer options, e.g. -max_total_time=60]

Any exception but the protocol's own errors (LocalProtocolError, RemoteProtocolError,
TooLarge) is a crash: libFuzzer prints it, writes the input next to its
-artifact_prefix and exits non-zero. libFuzzer ends the process itself, hence a process
of its own.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from dscluster import wire
    from dscluster.errors import LocalProtocolError, RemoteProtocolError, TooLarge
    from dscluster.limits import Limits
    from dscluster.wire import NEED_DATA, Connection, Role, State

LIMITS = [Limits(), Limits(max_value_bytes=256, max_key_bytes=64, max_batch_ops=8,
                           max_page_entries=8)]
# what this end sends after receiving, so that the input reaches every state
REPLIES: dict[tuple[Role, State], wire.Message] = {
    (Role.SERVER, State.HELLO): wire.Challenge(nonce=b"s" * 32, proof=b"p" * 32),
    (Role.SERVER, State.AUTH): wire.Welcome(epoch=1, node_index=0, role="client"),
    (Role.SERVER, State.BUSY): wire.Ok(),
    (Role.CLIENT, State.CHALLENGE): wire.Auth(proof=b"p" * 32),
    (Role.CLIENT, State.IDLE): wire.ReadRecord(key="/k"),
}


def one(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    role = Role.SERVER if fdp.ConsumeBool() else Role.CLIENT
    conn = Connection(role, LIMITS[fdp.ConsumeIntInRange(0, len(LIMITS) - 1)])
    if role is Role.CLIENT:
        conn.send(wire.Hello(role="client", nonce=b"n" * 32))
    try:
        while fdp.remaining_bytes():
            conn.receive_data(fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 4096)))
            while conn.next_event() is not NEED_DATA:
                reply = REPLIES.get((conn.our_role, conn.state))
                if reply is not None:
                    conn.send(reply)
    except (LocalProtocolError, RemoteProtocolError, TooLarge):
        if conn.state is not State.CLOSED:
            raise AssertionError("a protocol error left the conversation open") from None


if __name__ == "__main__":
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()
