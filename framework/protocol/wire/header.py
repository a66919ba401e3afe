"""The 4-byte header of every datagram, the packet kinds, msgpack bodies, and RELAY.

Every datagram starts with the protocol id ``b"P2"``, the version and the packet kind.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from typing import Any, Final

import msgpack

from ..constants import (
    MAX_DATAGRAM,
    PROTOCOL_ID,
    PROTOCOL_VERSION,
    RELAY_ID_SIZE,
)
from ..errors import ProtocolError

HEADER: Final = struct.Struct("!2sBB")
HEADER_SIZE: Final = HEADER.size


class Kind(enum.IntEnum):
    """Packet kinds. 1-31 talk to the handshake server, 32-63 between peers."""

    # peer <-> handshake server
    COOKIE_REQUEST = 1
    COOKIE = 2
    SEALED_REQUEST = 3
    SEALED_REPLY = 4
    #: Not msgpack: header, 8-byte relay id, then the relayed datagram as it is.
    RELAY = 5
    #: Not msgpack (``relay_bind`` below): a player tells a relay node where its end of
    #: a relay is, and the node confirms.
    RELAY_BIND = 6
    RELAY_BOUND = 7
    # peer <-> peer
    PUNCH = 32
    PUNCH_ACK = 33
    HELLO = 34
    CHALLENGE = 35
    AUTH = 36
    WELCOME = 37
    REJECT = 38
    DATA = 39
    # LAN discovery and joins with no handshake server (wire/lan.py)
    LAN_QUERY = 40
    LAN_ANNOUNCE = 41
    LAN_JOIN = 42
    LAN_INTRO = 43


_KINDS: dict[int, Kind] = {int(k): k for k in Kind}  # Kind(n) costs far more than a lookup
_PREFIX: Final = PROTOCOL_ID + bytes([PROTOCOL_VERSION])
_PACKB: Final = msgpack.Packer(use_bin_type=True)


def header(kind: Kind) -> bytes:
    return HEADER.pack(PROTOCOL_ID, PROTOCOL_VERSION, kind)


def pack_fields(fields: Sequence[Any]) -> bytes:
    """A msgpack array of ``fields`` (a failed call leaves the shared packer clean)."""
    try:
        return _PACKB.pack(list(fields))
    except Exception:
        _PACKB.reset()
        raise


def unpack_body(what: str, body: bytes) -> Any:
    try:
        return msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # every msgpack failure means a malformed datagram
        raise ProtocolError(f"undecodable {what}: {type(exc).__name__}") from exc


def check_size(kind: enum.IntEnum, data: bytes) -> bytes:
    if len(data) > MAX_DATAGRAM:
        raise ValueError(f"{kind.name} packet of {len(data)} bytes exceeds {MAX_DATAGRAM}")
    return data


def padding(current: int, target: int) -> bytes:
    """Zero bytes that bring a msgpack array to ``target`` bytes when added as the last
    (bin) field; ``current`` counts the array with an empty bin already in it."""
    pad = max(0, target - current)
    # A bin field's header grows with its length: 2 bytes up to 255, then 3.
    return bytes(max(0, pad - (1 if pad > 253 else 0)))


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


# --- RELAY: header | relay id | the peer datagram, unchanged -------------------------

RELAY_HEADER_SIZE: Final = HEADER_SIZE + RELAY_ID_SIZE
#: Room a relayed datagram needs on top of the datagram it carries.
RELAY_OVERHEAD: Final = RELAY_HEADER_SIZE
_RELAY_HEAD: Final = HEADER.pack(PROTOCOL_ID, PROTOCOL_VERSION, Kind.RELAY)


def encode_relay(relay_id: bytes, inner: bytes) -> bytes:
    return _RELAY_HEAD + relay_id + inner


def decode_relay(data: bytes) -> tuple[bytes, bytes]:
    """Split a RELAY datagram (already checked by peek_kind) into relay id and payload."""
    if len(data) < RELAY_HEADER_SIZE + HEADER_SIZE:
        raise ProtocolError("RELAY too short")
    return data[HEADER_SIZE:RELAY_HEADER_SIZE], data[RELAY_HEADER_SIZE:]


# --- RELAY_BIND / RELAY_BOUND: header | relay id | end | counter | tag ---------------

_BIND: Final = struct.Struct(f"!2sBB{RELAY_ID_SIZE}sBQ16s")
#: Both are this size: the answer to a bind is never larger than the bind.
RELAY_BIND_SIZE: Final = _BIND.size


def encode_relay_bind(kind: Kind, relay_id: bytes, end: int, counter: int, tag: bytes
                      ) -> bytes:
    return _BIND.pack(PROTOCOL_ID, PROTOCOL_VERSION, kind, relay_id, end, counter, tag)


def decode_relay_bind(data: bytes) -> tuple[bytes, int, int, bytes]:
    """(relay_id, end, counter, tag) of a RELAY_BIND or RELAY_BOUND (already checked by
    peek_kind)."""
    if len(data) != RELAY_BIND_SIZE:
        raise ProtocolError("RELAY_BIND of the wrong size")
    _, _, _, relay_id, end, counter, tag = _BIND.unpack(data)
    if end > 1:
        raise ProtocolError("a relay has two ends")
    return relay_id, end, counter, tag
