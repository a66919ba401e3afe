"""The wire format: every byte layout, and the one guarded boundary for bytes from the network.

- ``header``: the 4-byte header of every datagram, the packet kinds, RELAY.
- ``hsserver``: kinds 1-4, talking to the handshake server (cookies, sealed requests).
- ``control``: kinds 32-38, a peer's punching and handshake packets.
- ``data``: kind 39, DATA, and the grammar of the message items inside it.
- ``lan``: kinds 40-43, LAN discovery and joins with no handshake server.
- ``fields``: the checks of single fields the schemas are made of.

Nothing past :func:`peek_kind`, :func:`decode_control`, :func:`decode_hs_body` and
:func:`parse_data` sees a wrongly typed value. See ``docs/PROTOCOL.md``. Import from
here; the submodules are how the layouts are grouped, not separate layers.
"""

from __future__ import annotations

from .control import AUTH_SIZE, HELLO_SIZE, SCHEMAS, decode_control, encode_control
from .data import (
    ACKS,
    CANCEL,
    DATA_PREFIX_SIZE,
    FRAGMENT,
    ITEM_ROOM,
    MAX_MESSAGE_ID,
    PING_ITEM,
    SYS_BYE,
    SYS_FORWARD,
    SYS_FORWARD_FAILED,
    SYS_FORWARDED,
    SYS_PATH_CHALLENGE,
    SYS_PATH_RESPONSE,
    SYS_PEERS,
    SYS_PING,
    SYSTEM_UNRELIABLE,
    WHOLE,
    Parsed,
    data_plaintext,
    data_prefix,
    encode_cancel,
    encode_data_plaintext,
    encode_fragment,
    encode_reliable,
    encode_sequenced,
    encode_system,
    encode_unreliable,
    fragment_item,
    message_flags,
    parse_data,
    parse_items,
    reliable_item,
    stream_key,
)
from .fields import CandidateKind, Validator, is_literal_ip
from .header import (
    HEADER,
    HEADER_SIZE,
    RELAY_BIND_SIZE,
    RELAY_HEADER_SIZE,
    RELAY_OVERHEAD,
    Kind,
    decode_relay,
    decode_relay_bind,
    encode_relay,
    encode_relay_bind,
    header,
    peek_kind,
)
from .hsserver import (
    COOKIE_REQUEST_SIZE,
    COOKIE_SIZE,
    ERROR_TEXT,
    HS_SCHEMAS,
    LIST_REQUEST_SIZE,
    REQUEST_SIZE,
    REQUESTS,
    SEALED_REPLY_OVERHEAD,
    SEALED_REQUEST_OVERHEAD,
    ErrorCode,
    HsKind,
    decode_cookie,
    decode_cookie_request,
    decode_hs_body,
    encode_cookie,
    encode_cookie_request,
    encode_hs_body,
    error_text,
    request_size,
    sealed_reply_head,
    sealed_request_head,
    split_sealed_reply,
    split_sealed_request,
)
from .lan import (
    LAN_JOIN_SIZE,
    LAN_KINDS,
    LAN_NONCE_SIZE,
    LAN_QUERY_SIZE,
    LAN_SCHEMAS,
    decode_lan,
    encode_lan,
)

__all__ = [
    "ACKS", "AUTH_SIZE", "CANCEL", "COOKIE_REQUEST_SIZE", "COOKIE_SIZE", "DATA_PREFIX_SIZE",
    "ERROR_TEXT", "FRAGMENT", "HEADER", "HEADER_SIZE", "HELLO_SIZE", "HS_SCHEMAS",
    "ITEM_ROOM", "LAN_JOIN_SIZE", "LAN_KINDS", "LAN_NONCE_SIZE", "LAN_QUERY_SIZE",
    "LAN_SCHEMAS", "LIST_REQUEST_SIZE", "MAX_MESSAGE_ID", "PING_ITEM", "RELAY_HEADER_SIZE",
    "RELAY_BIND_SIZE", "RELAY_OVERHEAD", "REQUESTS", "REQUEST_SIZE", "SCHEMAS",
    "SEALED_REPLY_OVERHEAD",
    "SEALED_REQUEST_OVERHEAD", "SYSTEM_UNRELIABLE", "SYS_BYE", "SYS_FORWARD",
    "SYS_FORWARDED", "SYS_FORWARD_FAILED", "SYS_PATH_CHALLENGE", "SYS_PATH_RESPONSE",
    "SYS_PEERS", "SYS_PING", "WHOLE", "CandidateKind", "ErrorCode", "HsKind", "Kind",
    "Parsed", "Validator", "data_plaintext", "data_prefix", "decode_control",
    "decode_cookie", "decode_cookie_request", "decode_hs_body", "decode_lan", "decode_relay",
    "decode_relay_bind", "encode_relay_bind",
    "encode_cancel", "encode_control", "encode_cookie", "encode_cookie_request",
    "encode_data_plaintext", "encode_fragment", "encode_hs_body", "encode_lan", "encode_relay",
    "encode_reliable", "encode_sequenced", "encode_system", "encode_unreliable",
    "error_text", "fragment_item", "header", "is_literal_ip", "message_flags",
    "parse_data", "parse_items", "peek_kind", "reliable_item", "request_size",
    "sealed_reply_head", "sealed_request_head", "split_sealed_reply",
    "split_sealed_request", "stream_key",
]
