"""The wire format: every byte layout, and the one guarded boundary for bytes from the network.

Every datagram starts with a 4-byte header: protocol id ``b"P2"``, version, packet kind.

- Kinds 1-5 talk to the handshake server. Apart from the cookie exchange and relayed
  datagrams, they are *sealed*: a request is encrypted to the server's long-term X25519
  key with the peer's ephemeral key (Noise NK's first message), a reply under the same
  channel's reply key. Inside is a msgpack array ``[hs_kind, req_id, *fields]`` checked
  against the schema of its ``HsKind``.
- Kinds 32-38 are a peer's punching and handshake packets: a msgpack array after the
  header, checked against the kind's schema.
- Kind 39, DATA, carries a session's traffic, encrypted (see ``protection.py``).

Nothing past :func:`peek_kind`, :func:`decode_control` and :func:`decode_hs_body` sees a
wrongly typed value. See ``docs/PROTOCOL.md``.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Callable, Sequence
from typing import Any

import msgpack

from .constants import MAX_DATAGRAM, PROTOCOL_ID, PROTOCOL_VERSION
from .crypto import AEAD_NONCE_SIZE, AEAD_TAG_SIZE, MAC_SIZE, PAKE_MESSAGE_SIZE, PUBLIC_KEY_SIZE
from .delivery import CHANNEL_SHIFT, FLAG_CANCEL, FLAG_FRAGMENT
from .errors import ProtocolError
from .names import is_valid_name

HEADER = struct.Struct("!2sBB")
HEADER_SIZE = HEADER.size


class Kind(enum.IntEnum):
    """Packet kinds. 1-31 talk to the handshake server, 32-63 between peers."""

    # peer <-> handshake server
    COOKIE_REQUEST = 1
    COOKIE = 2
    SEALED_REQUEST = 3
    SEALED_REPLY = 4
    #: Not msgpack: header, 8-byte relay id, then the relayed datagram as it is.
    RELAY = 5
    # peer <-> peer
    PUNCH = 32
    PUNCH_ACK = 33
    HELLO = 34
    CHALLENGE = 35
    AUTH = 36
    WELCOME = 37
    REJECT = 38
    DATA = 39


class HsKind(enum.IntEnum):
    """What a sealed request or reply says (the first element of its plaintext)."""

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


_KINDS: dict[int, Kind] = {int(k): k for k in Kind}  # Kind(n) costs far more than a lookup
_HS_KINDS: dict[int, HsKind] = {int(k): k for k in HsKind}


class ErrorCode(enum.IntEnum):
    """Why a request was refused (handshake server errors and peer rejections). The
    text shown to people comes from :data:`ERROR_TEXT`, never from the network."""

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
    LOOK_ALIKE = 13
    #: Too many password guesses from the asker's network: try again after a while.
    BUSY = 14
    NAME_BUSY = 15


ERROR_TEXT: dict[int, str] = {
    ErrorCode.MALFORMED: "malformed request",
    ErrorCode.NAME_TAKEN: "the name is taken",
    ErrorCode.NO_SUCH_SERVER: "no game of that name is registered",
    ErrorCode.NOT_REGISTERED: "not registered",
    ErrorCode.BAD_TOKEN: "bad registration token",
    ErrorCode.TOO_MANY: "too many requests or registrations from your address",
    ErrorCode.BAD_NAME: "the name is not allowed",
    ErrorCode.WRONG_PASSWORD: "wrong password",
    ErrorCode.NOT_INTRODUCED: "no introduction to relay",
    ErrorCode.SERVER_FULL: "the game is full",
    ErrorCode.NAME_IN_SESSION: "that name is already in the game",
    ErrorCode.RELAY_DISABLED: "the handshake server does not relay",
    ErrorCode.LOOK_ALIKE: "the name looks like the name of another registered game",
    ErrorCode.BUSY: "too many password attempts from your network: wait a little",
    ErrorCode.NAME_BUSY: "a player of that name is joining right now",
}


def error_text(code: int) -> str:
    return ERROR_TEXT.get(code, f"error {code}")


class CandidateKind(enum.IntEnum):
    """Where an address of a player comes from (how a path to it is named)."""

    PUBLIC = 0  # as the handshake server saw it
    LAN = 1  # as the player reported it: a local network
    MAPPED = 2  # a port mapping the player's router made (UPnP IGD, NAT-PMP, PCP)


# --- field validators --------------------------------------------------------------

Validator = Callable[[Any], bool]


def _uint(bits: int) -> Validator:
    top = 1 << bits
    return lambda v: type(v) is int and 0 <= v < top


def _blob(size: int) -> Validator:
    return lambda v: type(v) is bytes and len(v) == size


def is_literal_ip(v: Any) -> bool:
    """An IPv4 or IPv6 address in text, never a name: nothing on the wire causes a lookup."""
    if type(v) is not str or not 2 <= len(v) <= 45:
        return False
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return False
    return True


def _candidates(v: Any) -> bool:
    return type(v) is list and len(v) <= 4 and all(
        type(e) is list and len(e) == 3 and is_literal_ip(e[0]) and type(e[1]) is int
        and 0 < e[1] < 65536 and type(e[2]) is int and e[2] in CandidateKind._value2member_map_
        for e in v)


def _server_entries(v: Any) -> bool:
    return type(v) is list and len(v) <= 64 and all(
        type(e) is list and len(e) == 2 and is_valid_name(e[0]) and type(e[1]) is bool
        for e in v)


NAME = is_valid_name
U16 = _uint(16)
U32 = _uint(32)
PORT = _uint(16)
BOOL: Validator = lambda v: type(v) is bool  # noqa: E731
TOKEN = _blob(16)
JOIN_TOKEN = _blob(32)
MAC = _blob(MAC_SIZE)
SHARE = _blob(PUBLIC_KEY_SIZE)
PAKE: Validator = lambda v: type(v) is bytes and len(v) in (0, PAKE_MESSAGE_SIZE)  # noqa: E731
SECONDS: Validator = lambda v: type(v) in (int, float) and 0 <= v < 1e6  # noqa: E731
PAD: Validator = lambda v: type(v) is bytes and len(v) <= MAX_DATAGRAM  # noqa: E731
RELAY_ID = _blob(8)
PUNCH_NONCE = _blob(8)
AFTER: Validator = lambda v: v == "" or is_valid_name(v)  # noqa: E731

#: Fields of each sealed request and reply, after ``[hs_kind, req_id]``.
HS_SCHEMAS: dict[HsKind, tuple[Validator, ...]] = {
    HsKind.REGISTER: (NAME, _candidates, BOOL, SECONDS, PAD),
    HsKind.REGISTERED: (TOKEN, is_literal_ip, PORT, SECONDS),
    HsKind.REFRESH: (NAME, TOKEN, PAD),
    HsKind.REFRESHED: (SECONDS,),
    HsKind.UNREGISTER: (NAME, TOKEN, PAD),
    HsKind.UNREGISTERED: (),
    HsKind.JOIN: (NAME, NAME, _candidates, PAD),
    HsKind.INTRODUCE: (NAME, _candidates, BOOL, JOIN_TOKEN, SECONDS),
    HsKind.LIST: (AFTER, PAD),
    HsKind.LIST_REPLY: (_server_entries, BOOL),
    HsKind.HS_ERROR: (U16,),
    HsKind.RELAY_REQUEST: (NAME, NAME, PAD),
    HsKind.RELAY_READY: (RELAY_ID, NAME),
}

#: Fields of each peer packet.
SCHEMAS: dict[Kind, tuple[Validator, ...]] = {
    Kind.PUNCH: (NAME, NAME, PUNCH_NONCE, MAC),
    Kind.PUNCH_ACK: (NAME, NAME, PUNCH_NONCE, MAC),
    Kind.HELLO: (NAME, NAME, SHARE, PAKE, MAC, PAD),
    Kind.CHALLENGE: (SHARE, PAKE, BOOL, MAC, MAC),
    Kind.AUTH: (MAC, PAD),
    Kind.WELCOME: (MAC,),
    Kind.REJECT: (U16, U32, MAC),
}

REQUESTS = frozenset({HsKind.REGISTER, HsKind.REFRESH, HsKind.UNREGISTER, HsKind.JOIN,
                      HsKind.LIST, HsKind.RELAY_REQUEST})

# --- sizes --------------------------------------------------------------------------

COOKIE_SIZE = 16
#: Sealed request: header, req_id, cookie, the peer's ephemeral share, nonce | body + tag.
_SEALED_REQUEST_HEAD = struct.Struct(f"!2sBBI{COOKIE_SIZE}s{PUBLIC_KEY_SIZE}s{AEAD_NONCE_SIZE}s")
SEALED_REQUEST_OVERHEAD = _SEALED_REQUEST_HEAD.size + AEAD_TAG_SIZE
#: Sealed reply: header, nonce | body + tag.
_SEALED_REPLY_HEAD = struct.Struct(f"!2sBB{AEAD_NONCE_SIZE}s")
SEALED_REPLY_OVERHEAD = _SEALED_REPLY_HEAD.size + AEAD_TAG_SIZE
_COOKIE_REQUEST = struct.Struct("!2sBBI")
_COOKIE = struct.Struct(f"!2sBBI{COOKIE_SIZE}s{PUBLIC_KEY_SIZE}s")
#: A cookie request is padded to this, so that the COOKIE answer is smaller.
COOKIE_REQUEST_SIZE = 96
#: Every sealed request is padded to this size at least, so that no answer to it (an
#: introduction with four candidate addresses and a 32-character name) is larger.
REQUEST_SIZE = 600
#: A server-list request is padded to a whole datagram; its answer is filled up to that.
LIST_REQUEST_SIZE = MAX_DATAGRAM
#: A HELLO is padded to this, so that the CHALLENGE answering it is never larger.
HELLO_SIZE = 200
#: An AUTH is padded to this, so that a REJECT answering it is never larger.
AUTH_SIZE = 64


def request_size(kind: HsKind) -> int:
    return LIST_REQUEST_SIZE if kind is HsKind.LIST else REQUEST_SIZE


# --- encoding ----------------------------------------------------------------------

_PACKB = msgpack.Packer(use_bin_type=True)


def header(kind: Kind) -> bytes:
    return HEADER.pack(PROTOCOL_ID, PROTOCOL_VERSION, kind)


def _pack(fields: Sequence[Any]) -> bytes:
    try:
        return _PACKB.pack(list(fields))
    except Exception:
        _PACKB.reset()
        raise


def _check_size(kind: Kind | HsKind, data: bytes) -> bytes:
    if len(data) > MAX_DATAGRAM:
        raise ValueError(f"{kind.name} packet of {len(data)} bytes exceeds {MAX_DATAGRAM}")
    return data


def _padding(current: int, target: int) -> bytes:
    """Zero bytes that bring a msgpack array to ``target`` bytes when added as the last
    (bin) field; ``current`` counts the array with an empty bin already in it."""
    pad = max(0, target - current)
    # A bin field's header grows with its length: 2 bytes up to 255, then 3.
    return bytes(max(0, pad - (1 if pad > 253 else 0)))


def encode_control(kind: Kind, fields: Sequence[Any], size: int = 0) -> bytes:
    """Encode a peer packet. With ``size``, the last field is padding that brings the
    datagram to that size (the kinds whose schema ends with a pad field)."""
    if size:
        bare = len(header(kind)) + len(_pack([*fields, b""]))
        fields = [*fields, _padding(bare, size)]
    return _check_size(kind, header(kind) + _pack(fields))


def encode_hs_body(kind: HsKind, req_id: int, fields: Sequence[Any], size: int = 0) -> bytes:
    """The plaintext of a sealed request or reply. With ``size``, padding (the last
    field) brings the sealed *request* datagram to that many bytes."""
    body = [int(kind), req_id, *fields]
    if size:
        bare = SEALED_REQUEST_OVERHEAD + len(_pack([*body, b""]))
        body.append(_padding(bare, size))
    return _pack(body)


def encode_cookie_request(req_id: int) -> bytes:
    data = _COOKIE_REQUEST.pack(PROTOCOL_ID, PROTOCOL_VERSION, Kind.COOKIE_REQUEST, req_id)
    return data + bytes(COOKIE_REQUEST_SIZE - len(data))


def encode_cookie(req_id: int, cookie: bytes, server_public: bytes) -> bytes:
    return _COOKIE.pack(PROTOCOL_ID, PROTOCOL_VERSION, Kind.COOKIE, req_id, cookie,
                        server_public)


def sealed_request_head(req_id: int, cookie: bytes, share: bytes, nonce: bytes) -> bytes:
    """The clear part of a sealed request; it is also the AEAD's associated data."""
    return _SEALED_REQUEST_HEAD.pack(PROTOCOL_ID, PROTOCOL_VERSION, Kind.SEALED_REQUEST,
                                     req_id, cookie, share, nonce)


def sealed_reply_head(nonce: bytes) -> bytes:
    return _SEALED_REPLY_HEAD.pack(PROTOCOL_ID, PROTOCOL_VERSION, Kind.SEALED_REPLY, nonce)


# --- DATA ---------------------------------------------------------------------------
#
# header | packet number (low 16 bits) | ChaCha20-Poly1305( acks | msgpack array of items )
# The first six bytes are the AEAD's associated data; see protection.py.

_DATA_HEAD = HEADER.pack(PROTOCOL_ID, PROTOCOL_VERSION, Kind.DATA)
DATA_PREFIX_SIZE = HEADER_SIZE + 2
#: At the start of a DATA plaintext: the newest packet number received from the other
#: side (low 16 bits) and a 32-bit field acknowledging the 32 before it.
ACKS = struct.Struct("!HI")


def message_flags(mode: int, channel: int, fragment: bool = False,
                  cancelled: bool = False) -> int:
    """A message item's first element: mode in bits 0-1, fragment bit 2, cancelled bit 3,
    channel in bits 4-7."""
    return mode | (FLAG_FRAGMENT if fragment else 0) | (FLAG_CANCEL if cancelled else 0) \
        | channel << CHANNEL_SHIFT


def fragment_item(mode: int, channel: int, seq: int, message_id: int, index: int,
                  count: int, chunk: bytes) -> list[Any]:
    """A piece of a reliable message too large for one datagram."""
    return [message_flags(mode, channel, fragment=True), seq, message_id, index, count, chunk]


def reliable_item(mode: int, channel: int, seq: int, message_id: int, value: Any
                  ) -> list[Any]:
    return [message_flags(mode, channel), seq, message_id, value]


def data_plaintext(ack: int, ack_bits: int, items: list[Any]) -> bytes:
    """What a DATA datagram encrypts: the acks, then the array of message items."""
    return ACKS.pack(ack, ack_bits) + _pack(items)


def data_prefix(number: int) -> bytes:
    """The clear start of a DATA datagram with packet number ``number`` (low 16 bits)."""
    return _DATA_HEAD + (number & 0xFFFF).to_bytes(2, "big")


RELAY_HEADER_SIZE = HEADER_SIZE + 8
#: Room a relayed datagram needs on top of the datagram it carries.
RELAY_OVERHEAD = RELAY_HEADER_SIZE


def encode_relay(relay_id: bytes, inner: bytes) -> bytes:
    return header(Kind.RELAY) + relay_id + inner


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


def decode_relay(data: bytes) -> tuple[bytes, bytes]:
    """Split a RELAY datagram (already checked by peek_kind) into relay id and payload."""
    if len(data) < RELAY_HEADER_SIZE + HEADER_SIZE:
        raise ProtocolError("RELAY too short")
    return data[HEADER_SIZE:RELAY_HEADER_SIZE], data[RELAY_HEADER_SIZE:]


def decode_cookie_request(data: bytes) -> int:
    if len(data) < COOKIE_REQUEST_SIZE:
        raise ProtocolError("COOKIE_REQUEST without its padding")
    return int(_COOKIE_REQUEST.unpack_from(data)[3])


def decode_cookie(data: bytes) -> tuple[int, bytes, bytes]:
    """(req_id, cookie, server public key) of a COOKIE."""
    if len(data) != _COOKIE.size:
        raise ProtocolError("COOKIE of the wrong size")
    _, _, _, req_id, cookie, public = _COOKIE.unpack(data)
    return req_id, cookie, public


def split_sealed_request(data: bytes) -> tuple[int, bytes, bytes, bytes, bytes, bytes]:
    """(req_id, cookie, share, nonce, associated data, ciphertext) of a sealed request."""
    n = _SEALED_REQUEST_HEAD.size
    if len(data) < n + AEAD_TAG_SIZE:
        raise ProtocolError("sealed request too short")
    _, _, _, req_id, cookie, share, nonce = _SEALED_REQUEST_HEAD.unpack_from(data)
    return req_id, cookie, share, nonce, data[:n], data[n:]


def split_sealed_reply(data: bytes) -> tuple[bytes, bytes, bytes]:
    """(nonce, associated data, ciphertext) of a sealed reply."""
    n = _SEALED_REPLY_HEAD.size
    if len(data) < n + AEAD_TAG_SIZE:
        raise ProtocolError("sealed reply too short")
    return data[HEADER_SIZE:n], data[:n], data[n:]


def _unpack(what: str, body: bytes) -> Any:
    try:
        return msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # every msgpack failure means a malformed datagram
        raise ProtocolError(f"undecodable {what}: {type(exc).__name__}") from exc


def _check(what: str, schema: tuple[Validator, ...], fields: list[Any]) -> None:
    if len(fields) != len(schema):
        raise ProtocolError(f"{what} has the wrong number of fields")
    for i, (check, value) in enumerate(zip(schema, fields, strict=True)):
        if not check(value):
            raise ProtocolError(f"{what} field {i} is invalid")


def decode_control(kind: Kind, data: bytes) -> list[Any]:
    """Decode and check the body of a peer packet. Raises ProtocolError only."""
    schema = SCHEMAS.get(kind)
    if schema is None:
        raise ProtocolError(f"{kind.name} is not a control packet")
    fields = _unpack(kind.name, data[HEADER_SIZE:])
    if type(fields) is not list:
        raise ProtocolError(f"{kind.name} is not an array")
    _check(kind.name, schema, fields)
    return fields


def decode_hs_body(plaintext: bytes) -> tuple[HsKind, int, list[Any]]:
    """Decode and check the plaintext of a sealed request or reply."""
    body = _unpack("sealed body", plaintext)
    if type(body) is not list or len(body) < 2 or type(body[0]) is not int:
        raise ProtocolError("sealed body is not [kind, req_id, ...]")
    kind = _HS_KINDS.get(body[0])
    if kind is None:
        raise ProtocolError(f"unknown sealed kind {body[0]}")
    if not U32(body[1]):
        raise ProtocolError("bad request id")
    fields = body[2:]
    _check(kind.name, HS_SCHEMAS[kind], fields)
    return kind, body[1], fields
