"""Checks of single fields: nothing past the wire layer sees a wrongly typed value."""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable
from typing import Any, Final

from ..constants import (
    JOIN_TOKEN_SIZE,
    MAX_CANDIDATES,
    MAX_DATAGRAM,
    MAX_LIST_ENTRIES,
    PUNCH_NONCE_SIZE,
    RELAY_ID_SIZE,
    RELAY_KEY_SIZE,
    TOKEN_SIZE,
)
from ..crypto import MAC_SIZE, PAKE_MESSAGE_SIZE, PUBLIC_KEY_SIZE
from ..errors import ProtocolError
from ..names import is_valid_name


class CandidateKind(enum.IntEnum):
    """Where an address of a player comes from (how a path to it is named)."""

    PUBLIC = 0  # as the handshake server saw it
    LAN = 1  # as the player reported it: a local network
    MAPPED = 2  # a port mapping the player's router made (UPnP IGD, NAT-PMP, PCP)


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
    return type(v) is list and len(v) <= MAX_CANDIDATES and all(
        type(e) is list and len(e) == 3 and is_literal_ip(e[0]) and type(e[1]) is int
        and 0 < e[1] < 65536 and type(e[2]) is int and e[2] in CandidateKind._value2member_map_
        for e in v)


def _server_entries(v: Any) -> bool:
    return type(v) is list and len(v) <= MAX_LIST_ENTRIES and all(
        type(e) is list and len(e) == 2 and is_valid_name(e[0]) and type(e[1]) is bool
        for e in v)


NAME: Final = is_valid_name
CANDIDATES: Final = _candidates
SERVER_ENTRIES: Final = _server_entries
U16: Final = _uint(16)
U32: Final = _uint(32)
PORT: Final = _uint(16)
BOOL: Validator = lambda v: type(v) is bool  # noqa: E731
TOKEN: Final = _blob(TOKEN_SIZE)
JOIN_TOKEN: Final = _blob(JOIN_TOKEN_SIZE)
MAC: Final = _blob(MAC_SIZE)
SHARE: Final = _blob(PUBLIC_KEY_SIZE)
PAKE: Validator = lambda v: type(v) is bytes and len(v) in (0, PAKE_MESSAGE_SIZE)  # noqa: E731
SECONDS: Validator = lambda v: type(v) in (int, float) and 0 <= v < 1e6  # noqa: E731
PAD: Validator = lambda v: type(v) is bytes and len(v) <= MAX_DATAGRAM  # noqa: E731
RELAY_ID: Final = _blob(RELAY_ID_SIZE)
RELAY_KEY: Final = _blob(RELAY_KEY_SIZE)
PUNCH_NONCE: Final = _blob(PUNCH_NONCE_SIZE)
AFTER: Validator = lambda v: v == "" or is_valid_name(v)  # noqa: E731


def check_fields(what: str, schema: tuple[Validator, ...], fields: list[Any]) -> None:
    if len(fields) != len(schema):
        raise ProtocolError(f"{what} has the wrong number of fields")
    for i, (check, value) in enumerate(zip(schema, fields, strict=True)):
        if not check(value):
            raise ProtocolError(f"{what} field {i} is invalid")
