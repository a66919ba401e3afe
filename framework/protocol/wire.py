"""The wire format: one guarded boundary between bytes from the network and our code.

Every datagram starts with a 4-byte header: protocol id ``b"P2"``, version, packet kind.
Control packets carry one msgpack array after it; its fields are checked against the
kind's schema here, so nothing past :func:`decode_control` sees a wrongly typed value.
DATA packets (peer traffic) carry a binary ack header and a msgpack array of messages;
see ``docs/PROTOCOL.md``.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Sequence
from typing import Any

import msgpack

from .constants import MAX_DATAGRAM, MAX_NAME_LENGTH, PROTOCOL_ID, PROTOCOL_VERSION
from .errors import ProtocolError

HEADER = struct.Struct("!2sBB")
HEADER_SIZE = HEADER.size
#: After the header, a DATA packet has: packet sequence, latest ack, 32-bit ack field.
DATA_HEADER = struct.Struct("!2sBBHHI")
DATA_HEADER_SIZE = DATA_HEADER.size


class Kind(enum.IntEnum):
    """Packet kinds. 1-31 talk to the handshake server, 32-63 between peers."""

    # peer <-> handshake server
    REGISTER = 1
    REGISTERED = 2
    REFRESH = 3
    REFRESHED = 4
    UNREGISTER = 5
    UNREGISTERED = 6
    JOIN = 7
    INTRODUCE = 8
    LIST = 9
    LIST_REPLY = 10
    HS_ERROR = 11
    RELAY_REQUEST = 12
    RELAY_READY = 13
    #: Not msgpack: header, 8-byte relay id, then the relayed datagram as it is.
    RELAY = 14
    COOKIE = 15
    # peer <-> peer
    PUNCH = 32
    PUNCH_ACK = 33
    HELLO = 34
    CHALLENGE = 35
    AUTH = 36
    WELCOME = 37
    REJECT = 38
    DATA = 39


_KINDS: dict[int, Kind] = {int(k): k for k in Kind}  # Kind(n) costs far more than a lookup


class ErrorCode(enum.IntEnum):
    """Why a request was refused (handshake server errors and peer rejections)."""

    MALFORMED = 1
    NAME_TAKEN = 2
    NO_SUCH_SERVER = 3
    NOT_REGISTERED = 4
    BAD_TOKEN = 5
    TOO_MANY = 6
    BAD_NAME = 7
    WRONG_PASSWORD = 8
    NOT_INTRODUCED = 9
    SERVER_FULL = 10
    NAME_IN_SESSION = 11
    RELAY_DISABLED = 12


# --- field validators --------------------------------------------------------------

Validator = Callable[[Any], bool]


def _uint(bits: int) -> Validator:
    top = 1 << bits
    return lambda v: type(v) is int and 0 <= v < top


def _text(max_len: int) -> Validator:
    return lambda v: type(v) is str and len(v) <= max_len


def _blob(size: int) -> Validator:
    return lambda v: type(v) is bytes and len(v) == size


def valid_name(v: Any) -> bool:
    """A peer name: 1-32 printable characters."""
    return type(v) is str and 0 < len(v) <= MAX_NAME_LENGTH and v.isprintable()


U16 = _uint(16)
U32 = _uint(32)
PORT = _uint(16)
HOST = _text(64)
BOOL: Validator = lambda v: type(v) is bool  # noqa: E731
NONCE = _blob(16)
TOKEN = _blob(16)
PROOF = _blob(32)
PUNCH_ID = _blob(8)
SECONDS: Validator = lambda v: type(v) in (int, float) and 0 <= v < 1e6  # noqa: E731
MESSAGE = _text(200)
MAC = _blob(16)
COOKIE: Validator = lambda v: type(v) is bytes and len(v) in (0, 16)  # noqa: E731
PAD: Validator = lambda v: type(v) is bytes and len(v) <= 1200  # noqa: E731
RELAY_ID = _blob(8)


def _server_entries(v: Any) -> bool:
    return (
        type(v) is list
        and len(v) <= 64
        and all(
            type(e) is list and len(e) == 2 and valid_name(e[0]) and type(e[1]) is bool
            for e in v
        )
    )


SCHEMAS: dict[Kind, tuple[Validator, ...]] = {
    Kind.REGISTER: (U32, valid_name, HOST, PORT, BOOL, SECONDS, COOKIE, PAD),
    Kind.REGISTERED: (U32, TOKEN, HOST, PORT, SECONDS),
    Kind.REFRESH: (U32, valid_name, TOKEN, PAD),
    Kind.REFRESHED: (U32, SECONDS),
    Kind.UNREGISTER: (U32, valid_name, TOKEN, PAD),
    Kind.UNREGISTERED: (U32,),
    Kind.JOIN: (U32, valid_name, valid_name, HOST, PORT, COOKIE, PAD),
    Kind.INTRODUCE: (U32, valid_name, HOST, PORT, HOST, PORT, BOOL, NONCE),
    Kind.LIST: (U32, U16, PAD),
    Kind.LIST_REPLY: (U32, U16, U16, _server_entries),
    Kind.HS_ERROR: (U32, U16, MESSAGE),
    Kind.RELAY_REQUEST: (U32, valid_name, valid_name, COOKIE, PAD),
    Kind.COOKIE: (U32, _blob(16)),
    Kind.RELAY_READY: (U32, RELAY_ID, valid_name),
    Kind.PUNCH: (valid_name, valid_name, PUNCH_ID),
    Kind.PUNCH_ACK: (valid_name, valid_name, PUNCH_ID),
    Kind.HELLO: (valid_name, valid_name, NONCE, MAC),
    Kind.CHALLENGE: (NONCE, BOOL, MAC),
    Kind.AUTH: (PROOF,),
    Kind.WELCOME: (PROOF,),
    Kind.REJECT: (U16, MESSAGE, MAC),
}


# --- encoding ----------------------------------------------------------------------


def header(kind: Kind) -> bytes:
    return HEADER.pack(PROTOCOL_ID, PROTOCOL_VERSION, kind)


def encode_control(kind: Kind, fields: Sequence[Any]) -> bytes:
    """Encode a control packet; fields must match the kind's schema (checked in debug)."""
    data = header(kind) + msgpack.packb(list(fields), use_bin_type=True)
    if len(data) > MAX_DATAGRAM:
        raise ValueError(f"{kind.name} packet of {len(data)} bytes exceeds {MAX_DATAGRAM}")
    return data


#: Requests that make the handshake server keep state: they need its cookie.
COOKIE_KINDS = frozenset({Kind.REGISTER, Kind.JOIN, Kind.RELAY_REQUEST})
#: Every request is padded to this size at least, so that no answer (an error message,
#: an introduction) is larger than its request: the server cannot amplify.
MIN_REQUEST = 160
#: A server-list page can be ~900 bytes: a list request is padded to more.
LIST_REQUEST = 1000


def request_size(kind: Kind) -> int:
    return LIST_REQUEST if kind is Kind.LIST else MIN_REQUEST


RELAY_HEADER_SIZE = HEADER_SIZE + 8
#: Room a relayed datagram needs on top of the datagram it carries.
RELAY_OVERHEAD = RELAY_HEADER_SIZE


def encode_relay(relay_id: bytes, inner: bytes) -> bytes:
    return header(Kind.RELAY) + relay_id + inner


def decode_relay(data: bytes) -> tuple[bytes, bytes]:
    """Split a RELAY datagram (already checked by peek_kind) into relay id and payload."""
    if len(data) < RELAY_HEADER_SIZE + HEADER_SIZE:
        raise ProtocolError("RELAY too short")
    return data[HEADER_SIZE:RELAY_HEADER_SIZE], data[RELAY_HEADER_SIZE:]


# --- decoding: the guarded boundary --------------------------------------------------


_PREFIX = PROTOCOL_ID + bytes([PROTOCOL_VERSION])


def peek_kind(data: bytes) -> Kind:
    """Check size, protocol id and version; return the packet kind."""
    if len(data) < HEADER_SIZE:
        raise ProtocolError("datagram shorter than the header")
    if len(data) > MAX_DATAGRAM:
        raise ProtocolError("datagram larger than the protocol allows")
    if data[:3] != _PREFIX:
        if data[:2] != PROTOCOL_ID:
            raise ProtocolError("not our protocol")
        raise ProtocolError(f"protocol version {data[2]} is not {PROTOCOL_VERSION}")
    kind = _KINDS.get(data[3])
    if kind is None:
        raise ProtocolError(f"unknown packet kind {data[3]}")
    return kind


def decode_control(kind: Kind, data: bytes) -> list[Any]:
    """Decode and check the body of a control packet. Raises ProtocolError only."""
    schema = SCHEMAS.get(kind)
    if schema is None:
        raise ProtocolError(f"{kind.name} is not a control packet")
    try:
        fields = msgpack.unpackb(
            data[HEADER_SIZE:], raw=False, use_list=True, strict_map_key=True
        )
    except Exception as exc:  # every msgpack failure means a malformed datagram
        raise ProtocolError(f"undecodable {kind.name}: {type(exc).__name__}") from exc
    if type(fields) is not list or len(fields) != len(schema):
        raise ProtocolError(f"{kind.name} has the wrong number of fields")
    for check, value in zip(schema, fields, strict=False):  # lengths checked above
        if not check(value):
            raise ProtocolError(f"{kind.name} field {fields.index(value)} is invalid")
    return fields
