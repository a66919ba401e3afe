"""Kinds 40-43: finding games on the local network and joining one with no handshake
server. Clear msgpack arrays after the header, like the control packets; each is checked
against its schema here.

- LAN_QUERY ``[query_id (8), pad]``, padded to ``LAN_QUERY_SIZE``: broadcast by a player
  who lists the LAN's games, to the discovery port.
- LAN_ANNOUNCE ``[query_id, name, password_required]``: a host's answer, to where the
  query came from; never larger than the query.
- LAN_JOIN ``[client, server, join_nonce (8), client_share (32), pad]``, padded to
  ``LAN_JOIN_SIZE``: a player asks a host for a join token, with an ephemeral X25519 key.
- LAN_INTRO ``[join_nonce, password_required, host_share (32), sealed_token (48),
  valid_for_secs]``: the host's answer, to where the join came from; the join token is
  sealed to the player's key (protocol/lan.py); never larger than the join.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..constants import JOIN_TOKEN_SIZE, PUNCH_NONCE_SIZE
from ..errors import ProtocolError
from .fields import BOOL, NAME, PAD, SHARE, U16, Validator, _blob, check_fields
from .header import HEADER_SIZE, Kind, check_size, header, pack_fields, padding, unpack_body

#: The 8-byte ids that tie an answer to its query or join.
LAN_NONCE_SIZE = PUNCH_NONCE_SIZE
LAN_NONCE = _blob(LAN_NONCE_SIZE)
#: The join token sealed with ChaCha20-Poly1305: the token and a 16-byte tag.
SEALED_TOKEN_SIZE = JOIN_TOKEN_SIZE + 16
SEALED_TOKEN = _blob(SEALED_TOKEN_SIZE)

LAN_SCHEMAS: dict[Kind, tuple[Validator, ...]] = {
    Kind.LAN_QUERY: (LAN_NONCE, PAD),
    Kind.LAN_ANNOUNCE: (LAN_NONCE, NAME, BOOL),
    Kind.LAN_JOIN: (NAME, NAME, LAN_NONCE, SHARE, PAD),
    Kind.LAN_INTRO: (LAN_NONCE, BOOL, SHARE, SEALED_TOKEN, U16),
}

#: A query is padded to this: the largest announce (a 32-character name of four-byte
#: characters, 146 bytes) is smaller, so answering a spoofed query amplifies nothing.
LAN_QUERY_SIZE = 160
#: A join is padded to this (its largest unpadded form, two such names, is 311 bytes);
#: the introduction answering it is 103 bytes at most.
LAN_JOIN_SIZE = 340

LAN_KINDS = frozenset(LAN_SCHEMAS)


def encode_lan(kind: Kind, fields: Sequence[Any]) -> bytes:
    """Encode a LAN packet; queries and joins get their padding field added here."""
    size = {Kind.LAN_QUERY: LAN_QUERY_SIZE, Kind.LAN_JOIN: LAN_JOIN_SIZE}.get(kind, 0)
    if size:
        bare = HEADER_SIZE + len(pack_fields([*fields, b""]))
        fields = [*fields, padding(bare, size)]
    return check_size(kind, header(kind) + pack_fields(fields))


def decode_lan(kind: Kind, data: bytes) -> list[Any]:
    """Decode and check a LAN packet. Raises ProtocolError only. Queries and joins
    shorter than their padded size are refused: what answers them is never larger."""
    schema = LAN_SCHEMAS.get(kind)
    if schema is None:
        raise ProtocolError(f"{kind.name} is not a LAN packet")
    if ((kind is Kind.LAN_QUERY and len(data) < LAN_QUERY_SIZE)
            or (kind is Kind.LAN_JOIN and len(data) < LAN_JOIN_SIZE)):
        raise ProtocolError(f"{kind.name} shorter than its padded size")
    fields = unpack_body(kind.name, data[HEADER_SIZE:])
    if type(fields) is not list:
        raise ProtocolError(f"{kind.name} is not an array")
    check_fields(kind.name, schema, fields)
    return fields
