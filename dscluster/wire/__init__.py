"""The dscluster wire protocol: sans-IO codec, messages and conversation state."""

from ._connection import NEED_DATA, TRANSITIONS, Connection, Role, State, encode_frame
from ._messages import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Auth,
    Batch,
    Bool,
    Challenge,
    Delete,
    DiskUsage,
    Error,
    Get,
    GetMap,
    GetSize,
    Has,
    Hello,
    Join,
    MapData,
    Message,
    Ok,
    Put,
    Query,
    QueryPage,
    Size,
    Stats,
    StatsData,
    Sync,
    Value,
    Welcome,
    decode_message,
)

__all__ = [
    "MESSAGE_TYPES", "NEED_DATA", "PROTOCOL_VERSION", "TRANSITIONS",
    "Auth", "Batch", "Bool", "Challenge", "Connection", "Delete", "DiskUsage", "Error",
    "Get", "GetMap", "GetSize", "Has", "Hello", "Join", "MapData", "Message", "Ok", "Put",
    "Query", "QueryPage", "Role", "Size", "State", "Stats", "StatsData", "Sync", "Value",
    "Welcome", "decode_message", "encode_frame",
]
