"""Kinds 1-4: talking to the handshake server.

Apart from the cookie exchange, requests are *sealed*: encrypted to the handshake
server's long-term X25519 key with the peer's ephemeral key (Noise NK's first message),
a reply under the same channel's reply key (hschannel.py). Inside is a msgpack array
``[hs_kind, req_id, *fields]`` checked against the schema of its ``HsKind``.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from typing import Any, Final

from ..constants import MAX_DATAGRAM, PROTOCOL_ID, PROTOCOL_VERSION
from ..crypto import AEAD_NONCE_SIZE, AEAD_TAG_SIZE, PUBLIC_KEY_SIZE
from ..errors import ProtocolError
from .fields import (
    AFTER,
    BOOL,
    CANDIDATES,
    JOIN_TOKEN,
    NAME,
    PAD,
    PORT,
    RELAY_ID,
    RELAY_KEY,
    SECONDS,
    SERVER_ENTRIES,
    TOKEN,
    U16,
    U32,
    Validator,
    check_fields,
    is_literal_ip,
)
from .header import HEADER_SIZE, Kind, pack_fields, padding, unpack_body


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
    #: The relay runs on a relay node (``--relay-only``): its address, and the asker's
    #: key for RELAY_BIND. Sent instead of RELAY_READY by deployments with relay nodes.
    RELAY_AT = 14
    #: "Where is my relay now?": a player whose relay went quiet, proving it is one of
    #: the relay's ends with that end's key. Answered by RELAY_AT.
    RELAY_MOVE = 15


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


#: Fields of each sealed request and reply, after ``[hs_kind, req_id]``.
HS_SCHEMAS: dict[HsKind, tuple[Validator, ...]] = {
    HsKind.REGISTER: (NAME, CANDIDATES, BOOL, SECONDS, U32, PAD),
    HsKind.REGISTERED: (TOKEN, is_literal_ip, PORT, SECONDS),
    HsKind.REFRESH: (NAME, TOKEN, PAD),
    HsKind.REFRESHED: (SECONDS,),
    HsKind.UNREGISTER: (NAME, TOKEN, PAD),
    HsKind.UNREGISTERED: (),
    HsKind.JOIN: (NAME, NAME, CANDIDATES, PAD),
    HsKind.INTRODUCE: (NAME, CANDIDATES, BOOL, JOIN_TOKEN, SECONDS),
    HsKind.LIST: (AFTER, PAD),
    HsKind.LIST_REPLY: (SERVER_ENTRIES, BOOL),
    HsKind.HS_ERROR: (U16,),
    HsKind.RELAY_REQUEST: (NAME, NAME, PAD),
    HsKind.RELAY_READY: (RELAY_ID, NAME),
    HsKind.RELAY_AT: (RELAY_ID, NAME, is_literal_ip, PORT, RELAY_KEY),
    HsKind.RELAY_MOVE: (RELAY_ID, RELAY_KEY, PAD),
}

REQUESTS: Final = frozenset({HsKind.REGISTER, HsKind.REFRESH, HsKind.UNREGISTER, HsKind.JOIN,
                      HsKind.LIST, HsKind.RELAY_REQUEST, HsKind.RELAY_MOVE})

# --- sizes --------------------------------------------------------------------------

COOKIE_SIZE: Final = 16
#: Sealed request: header, req_id, cookie, the peer's ephemeral share, nonce | body + tag.
_SEALED_REQUEST_HEAD: Final = struct.Struct(
    f"!2sBBI{COOKIE_SIZE}s{PUBLIC_KEY_SIZE}s{AEAD_NONCE_SIZE}s")
SEALED_REQUEST_OVERHEAD: Final = _SEALED_REQUEST_HEAD.size + AEAD_TAG_SIZE
#: Sealed reply: header, nonce | body + tag.
_SEALED_REPLY_HEAD: Final = struct.Struct(f"!2sBB{AEAD_NONCE_SIZE}s")
SEALED_REPLY_OVERHEAD: Final = _SEALED_REPLY_HEAD.size + AEAD_TAG_SIZE
_COOKIE_REQUEST: Final = struct.Struct("!2sBBI")
_COOKIE: Final = struct.Struct(f"!2sBBI{COOKIE_SIZE}s{PUBLIC_KEY_SIZE}s")
#: A cookie request is padded to this, so that the COOKIE answer is smaller.
COOKIE_REQUEST_SIZE: Final = 96
#: Every sealed request is padded to this size at least, so that no answer to it (an
#: introduction with four candidate addresses and a 32-character name) is larger.
REQUEST_SIZE: Final = 600
#: A game-list request is padded to a whole datagram; its answer is filled up to that.
LIST_REQUEST_SIZE: Final = MAX_DATAGRAM


def request_size(kind: HsKind) -> int:
    return LIST_REQUEST_SIZE if kind is HsKind.LIST else REQUEST_SIZE


# --- encoding ----------------------------------------------------------------------


def encode_hs_body(kind: HsKind, req_id: int, fields: Sequence[Any], size: int = 0) -> bytes:
    """The plaintext of a sealed request or reply. With ``size``, padding (the last
    field) brings the sealed *request* datagram to that many bytes."""
    body = [int(kind), req_id, *fields]
    if size:
        bare = SEALED_REQUEST_OVERHEAD + len(pack_fields([*body, b""]))
        body.append(padding(bare, size))
    return pack_fields(body)


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


# --- decoding ----------------------------------------------------------------------


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


def decode_hs_body(plaintext: bytes) -> tuple[HsKind, int, list[Any]]:
    """Decode and check the plaintext of a sealed request or reply."""
    body = unpack_body("sealed body", plaintext)
    if type(body) is not list or len(body) < 2 or type(body[0]) is not int:
        raise ProtocolError("sealed body is not [kind, req_id, ...]")
    kind = _HS_KINDS.get(body[0])
    if kind is None:
        raise ProtocolError(f"unknown sealed kind {body[0]}")
    if not U32(body[1]):
        raise ProtocolError("bad request id")
    fields = body[2:]
    check_fields(kind.name, HS_SCHEMAS[kind], fields)
    return kind, body[1], fields
