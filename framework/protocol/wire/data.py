"""Kind 39, DATA: a session's traffic, and the message items inside it.

    header | packet number (low 16 bits) | ChaCha20-Poly1305( acks | msgpack array of items )

The first six bytes are the AEAD's associated data (protection.py). Each item is a
msgpack array whose first element is its flags: mode in bits 0-1, fragment bit 2,
cancelled bit 3, channel in bits 4-7.

    UNRELIABLE              [flags, value]
    UNRELIABLE_SEQUENCED    [flags, seq, value]
    RELIABLE_*              [flags, seq, message_id, value]
      + fragment bit        [flags, seq, message_id, index, count, chunk]
      + cancelled bit       [flags, seq, message_id, index, count]

The engine's encoders take values already encoded (values.py) and glue msgpack headers
around them, which is several times faster than packing the whole item again; the list
forms (``reliable_item``, ``fragment_item``, ``data_plaintext``) are the same layout for
tests and tools. ``parse_data`` is the grammar: it checks every item's shape before
anything is applied.
"""

from __future__ import annotations

import struct
from typing import Any, Final

import msgpack

from ..constants import FRAGMENT_SIZE, MAX_DATAGRAM, PROTOCOL_ID, PROTOCOL_VERSION, SYSTEM_CHANNEL
from ..crypto import AEAD_TAG_SIZE
from ..delivery import CHANNEL_SHIFT, FLAG_CANCEL, FLAG_FRAGMENT, MODE_MASK, Delivery
from ..errors import ProtocolError
from ..sequence import SEQ_MASK
from ..values import check_depth, numpy_ext_hook
from .header import HEADER, HEADER_SIZE, RELAY_OVERHEAD, Kind

_DATA_HEAD: Final = HEADER.pack(PROTOCOL_ID, PROTOCOL_VERSION, Kind.DATA)
DATA_PREFIX_SIZE: Final = HEADER_SIZE + 2
#: At the start of a DATA plaintext: the newest packet number received from the other
#: side (low 16 bits) and a 32-bit field acknowledging the 32 before it.
ACKS: Final = struct.Struct("!HI")
#: The largest msgpack array header of the item list (0xdc and a 16-bit count).
_ARRAY_HEAD_MAX: Final = 3
#: Room for items in one datagram: the clear prefix, the acks, the array header, the
#: AEAD tag, and the wrapping a relay adds, so that a relayed datagram stays within
#: MAX_DATAGRAM too. Also the largest message item that needs no fragmenting.
ITEM_ROOM: Final = (MAX_DATAGRAM - DATA_PREFIX_SIZE - ACKS.size - _ARRAY_HEAD_MAX - AEAD_TAG_SIZE
             - RELAY_OVERHEAD)
#: Message ids are unsigned 63-bit numbers.
MAX_MESSAGE_ID: Final = 1 << 63

# Engine messages on SYSTEM_CHANNEL: msgpack arrays whose first element is one of these.
SYS_PING: Final = 0
SYS_PEERS: Final = 1
SYS_FORWARD: Final = 2
SYS_FORWARDED: Final = 3
SYS_FORWARD_FAILED: Final = 4
SYS_BYE: Final = 5
SYS_PATH_CHALLENGE: Final = 6
SYS_PATH_RESPONSE: Final = 7

#: What a received reliable item is: a whole message, a piece of one, or the notice that
#: stands in for the pieces of a message that expired.
WHOLE: Final = 0
FRAGMENT: Final = 1
CANCEL: Final = 2

_pack = msgpack.Packer(use_bin_type=True).pack  # its own: packb makes a Packer per call
_FLAGS: Final = [_pack(i) for i in range(256)]  # every flags byte, encoded once
_ARRAY: Final = [bytes((0x90 | n,)) for n in range(16)]  # msgpack fixarray headers


def message_flags(mode: int, channel: int, fragment: bool = False,
                  cancelled: bool = False) -> int:
    """A message item's first element: mode in bits 0-1, fragment bit 2, cancelled bit 3,
    channel in bits 4-7."""
    return mode | (FLAG_FRAGMENT if fragment else 0) | (FLAG_CANCEL if cancelled else 0) \
        | channel << CHANNEL_SHIFT


def stream_key(flags: int) -> int:
    """The (channel, mode) stream an item belongs to, as one int: channel << 2 | mode."""
    return (flags >> CHANNEL_SHIFT) << 2 | (flags & MODE_MASK)


# --- the engine's encoders: payloads arrive encoded -----------------------------------


def encode_unreliable(flags: int, payload: bytes) -> bytes:
    return b"\x92" + _FLAGS[flags] + payload


def encode_sequenced(flags: int, seq: int, payload: bytes) -> bytes:
    return b"\x93" + _FLAGS[flags] + _pack(seq) + payload


def encode_reliable(flags: int, seq: int, message_id: int, payload: bytes) -> bytes:
    return b"\x94" + _pack((flags, seq, message_id))[1:] + payload


def encode_fragment(flags: int, seq: int, message_id: int, index: int, count: int,
                    chunk: bytes) -> bytes:
    return _pack((flags | FLAG_FRAGMENT, seq, message_id, index, count, chunk))


def encode_cancel(flags: int, seq: int, message_id: int, index: int, count: int) -> bytes:
    """The small notice that stands in for an expired message's piece."""
    return _pack(((flags & ~FLAG_FRAGMENT) | FLAG_CANCEL, seq, message_id, index, count))


SYSTEM_UNRELIABLE: Final = message_flags(Delivery.UNRELIABLE, SYSTEM_CHANNEL)


def encode_system(payload: bytes) -> bytes:
    """An engine message (already encoded), sent unreliably on the system channel."""
    return encode_unreliable(SYSTEM_UNRELIABLE, payload)


#: The peer check: an engine message that asks for a prompt ack.
PING_ITEM: Final = encode_system(_pack([SYS_PING]))


def encode_data_plaintext(ack: int, ack_bits: int, items: list[bytes]) -> bytes:
    """What a DATA datagram encrypts: the acks, then the array of encoded items."""
    n = len(items)
    array = _ARRAY[n] if n < 16 else b"\xdc" + n.to_bytes(2, "big")
    return ACKS.pack(ack, ack_bits) + array + b"".join(items)


def data_prefix(number: int) -> bytes:
    """The clear start of a DATA datagram with packet number ``number`` (low 16 bits)."""
    return _DATA_HEAD + (number & SEQ_MASK).to_bytes(2, "big")


# --- the same layout as lists, for tests and tools -------------------------------------


def fragment_item(mode: int, channel: int, seq: int, message_id: int, index: int,
                  count: int, chunk: bytes) -> list[Any]:
    """A piece of a reliable message too large for one datagram."""
    return [message_flags(mode, channel, fragment=True), seq, message_id, index, count, chunk]


def reliable_item(mode: int, channel: int, seq: int, message_id: int, value: Any
                  ) -> list[Any]:
    return [message_flags(mode, channel), seq, message_id, value]


def data_plaintext(ack: int, ack_bits: int, items: list[Any]) -> bytes:
    """What a DATA datagram encrypts, with the items given as lists."""
    return encode_data_plaintext(ack, ack_bits, [_pack(item) for item in items])


# --- the grammar ---------------------------------------------------------------------

#: A checked item: (stream key, mode, seq, message_id, value or chunk, piece), where
#: ``piece`` is None for a whole message, (FRAGMENT or CANCEL, index, count) otherwise.
Parsed = tuple[int, int, int, int, Any, "tuple[int, int, int] | None"]
_UNRELIABLE: Final = int(Delivery.UNRELIABLE)
_SEQUENCED: Final = int(Delivery.UNRELIABLE_SEQUENCED)
_FRAG_OR_CANCEL: Final = FLAG_FRAGMENT | FLAG_CANCEL


def parse_data(plain: bytes, max_fragments: int) -> tuple[int, int, list[Parsed]]:
    """(ack, ack_bits, checked items) of a DATA plaintext. Raises ProtocolError only."""
    if len(plain) < ACKS.size:
        raise ProtocolError("DATA shorter than its acks")
    ack, bits = ACKS.unpack_from(plain)
    try:
        items = msgpack.unpackb(plain[ACKS.size:], ext_hook=numpy_ext_hook, raw=False,
                                strict_map_key=False, use_list=True)
    except ProtocolError:
        raise
    except Exception as exc:
        raise ProtocolError(f"undecodable DATA body: {type(exc).__name__}") from exc
    if type(items) is not list:
        raise ProtocolError("DATA body is not an array")
    return ack, bits, parse_items(items, max_fragments)


def parse_items(items: list[Any], max_fragments: int) -> list[Parsed]:
    """Check every item's shape; see the module docstring for the grammar."""
    out: list[Parsed] = []
    append = out.append
    for it in items:
        if type(it) is not list or len(it) < 2 or type(it[0]) is not int:
            raise ProtocolError("malformed message item")
        flags = it[0]
        if not 0 <= flags <= 0xFF:
            raise ProtocolError("bad message flags")
        mode = flags & MODE_MASK
        key = (flags >> CHANNEL_SHIFT) << 2 | mode
        n = len(it)
        if mode == _UNRELIABLE:
            if n != 2 or flags & _FRAG_OR_CANCEL:
                raise ProtocolError("malformed unreliable item")
            value = it[1]
            if type(value) is list or type(value) is dict:
                check_depth(value)
            append((key, mode, 0, 0, value, None))
            continue
        seq = it[1]
        if type(seq) is not int or not 0 <= seq <= SEQ_MASK:
            raise ProtocolError("bad message sequence")
        if mode == _SEQUENCED:
            if n != 3 or flags & _FRAG_OR_CANCEL:
                raise ProtocolError("malformed sequenced item")
            value = it[2]
            if type(value) is list or type(value) is dict:
                check_depth(value)
            append((key, mode, seq, 0, value, None))
            continue
        mid = it[2] if n > 2 else None
        if type(mid) is not int or not 0 <= mid < MAX_MESSAGE_ID:
            raise ProtocolError("bad message id")
        kind = flags & _FRAG_OR_CANCEL
        if not kind:
            if n != 4:
                raise ProtocolError("malformed reliable item")
            value = it[3]
            if type(value) is list or type(value) is dict:
                check_depth(value)
            append((key, mode, seq, mid, value, None))
            continue
        if kind == _FRAG_OR_CANCEL:
            raise ProtocolError("fragment and cancel together")
        frag = kind == FLAG_FRAGMENT
        if n != (6 if frag else 5):
            raise ProtocolError("malformed fragment or cancel item")
        index, count = it[3], it[4]
        if (type(index) is not int or type(count) is not int
                or not 0 <= index < count <= max_fragments):
            raise ProtocolError("bad fragment numbering")
        if frag:
            chunk = it[5]
            if type(chunk) is not bytes or not 0 < len(chunk) <= FRAGMENT_SIZE:
                raise ProtocolError("bad fragment chunk")
            append((key, mode, seq, mid, chunk, (FRAGMENT, index, count)))
        else:
            append((key, mode, seq, mid, None, (CANCEL, index, count)))
    return out
