"""Kinds 32-38: a peer's punching and handshake packets, a msgpack array after the header
checked against the kind's schema."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from ..errors import ProtocolError
from .fields import (
    BOOL,
    MAC,
    NAME,
    PAD,
    PAKE,
    PUNCH_NONCE,
    SHARE,
    U16,
    U32,
    Validator,
    check_fields,
)
from .header import HEADER_SIZE, Kind, check_size, header, pack_fields, padding, unpack_body

#: Fields of each peer packet.
SCHEMAS: dict[Kind, tuple[Validator, ...]] = {
    Kind.PUNCH: (NAME, NAME, PUNCH_NONCE, MAC),
    Kind.PUNCH_ACK: (NAME, NAME, PUNCH_NONCE, MAC),
    Kind.HELLO: (NAME, NAME, SHARE, PAKE, MAC, PAD),
    Kind.CHALLENGE: (SHARE, PAKE, BOOL, MAC, MAC),
    Kind.AUTH: (MAC, MAC, PAD),
    Kind.WELCOME: (MAC,),
    Kind.REJECT: (U16, U32, MAC),
}

#: A HELLO is padded to this, so that the CHALLENGE answering it is never larger.
HELLO_SIZE: Final = 200
#: An AUTH is padded to this, so that a REJECT answering it is never larger.
AUTH_SIZE: Final = 64


def encode_control(kind: Kind, fields: Sequence[Any], size: int = 0) -> bytes:
    """Encode a peer packet. With ``size``, the last field is padding that brings the
    datagram to that size (the kinds whose schema ends with a pad field)."""
    if size:
        bare = HEADER_SIZE + len(pack_fields([*fields, b""]))
        fields = [*fields, padding(bare, size)]
    return check_size(kind, header(kind) + pack_fields(fields))


def decode_control(kind: Kind, data: bytes) -> list[Any]:
    """Decode and check the body of a peer packet. Raises ProtocolError only."""
    schema = SCHEMAS.get(kind)
    if schema is None:
        raise ProtocolError(f"{kind.name} is not a control packet")
    fields = unpack_body(kind.name, data[HEADER_SIZE:])
    if type(fields) is not list:
        raise ProtocolError(f"{kind.name} is not an array")
    check_fields(kind.name, schema, fields)
    return fields
