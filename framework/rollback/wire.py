"""The rollback messages, as msgpack-ready lists, and their checks.

Every field of a message from the network is checked here; anything odd raises
``MalformedMessage``, which the sessions count and drop. Frame numbers travel as
differences from the sender's frame where they can, so they fit one msgpack byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: First item of each message, so a session can tell its own traffic from the game's.
TAG_INPUT = 101
TAG_SPECTATE = 102
TAG_SPECTATE_ACK = 103
TAGS = frozenset({TAG_INPUT, TAG_SPECTATE, TAG_SPECTATE_ACK})

#: Inputs in one message at most; also bounds what one datagram can make us store.
MAX_FRAMES_PER_MESSAGE = 64
#: Sequence numbers of input messages wrap here (one msgpack byte).
SEQ_MODULO = 128
#: Frame numbers stay below this (2**31: a year at 60 FPS).
MAX_FRAME = (1 << 31) - 1
#: The frame advantage a message may report, either way.
MAX_LEAD = 64


class MalformedMessage(ValueError):
    """A message from the network that does not follow the format: the sender's fault."""


@dataclass(frozen=True, slots=True)
class InputMessage:
    seq: int  # this message's number, for round-trip times
    echo: int  # the newest seq received from the addressee, -1 none yet
    frame: int  # the sender's current frame
    lead: int  # frames the sender thinks it runs ahead of the addressee
    ack: int  # newest frame of the addressee's inputs the sender holds contiguously
    start: int  # frame of the first input in `inputs`
    inputs: bytes  # input_size bytes per frame from `start` on (run-length coded on the wire)
    checksum_frame: int = -1  # a confirmed frame of the sender's, -1 none
    checksum: int = 0


@dataclass(frozen=True, slots=True)
class SpectateMessage:
    start: int  # frame of the first group of inputs
    inputs: bytes  # per frame, every player's input in player order


def _int(value: Any, low: int, high: int, what: str) -> int:
    if type(value) is not int or not low <= value <= high:
        raise MalformedMessage(f"{what} must be an int in [{low}, {high}], not {value!r}")
    return value


def _blob(value: Any, unit: int, what: str) -> bytes:
    if type(value) is not bytes:
        raise MalformedMessage(f"{what} must be bytes, not {type(value).__name__}")
    if len(value) % unit or len(value) > MAX_FRAMES_PER_MESSAGE * unit:
        raise MalformedMessage(f"{what} of {len(value)} bytes is not whole inputs of {unit}")
    return value


def pack_runs(inputs: bytes, unit: int) -> bytes:
    """Run-length code whole inputs: (count, input) pairs. Players hold a direction
    for many frames, so the redundant inputs of a message shrink to a few runs."""
    out = bytearray()
    i, n = 0, len(inputs)
    while i < n:
        value = inputs[i:i + unit]
        j = i + unit
        while j < n and j - i < 255 * unit and inputs[j:j + unit] == value:
            j += unit
        out.append((j - i) // unit)
        out += value
        i = j
    return bytes(out)


def unpack_runs(data: Any, unit: int) -> bytes:
    if type(data) is not bytes:
        raise MalformedMessage(f"inputs must be bytes, not {type(data).__name__}")
    out = bytearray()
    step = unit + 1
    if len(data) % step:
        raise MalformedMessage("inputs are not whole runs")
    for i in range(0, len(data), step):
        count = data[i]
        if count == 0 or len(out) + count * unit > MAX_FRAMES_PER_MESSAGE * unit:
            raise MalformedMessage("a run of no inputs, or too many inputs")
        out += data[i + 1:i + step] * count
    return bytes(out)


def tag_of(message: Any) -> int | None:
    """The rollback tag of a message, or None if it is not a rollback message."""
    if isinstance(message, list) and message and type(message[0]) is int:
        tag: int = message[0]
        return tag if tag in TAGS else None
    return None


def encode_input(m: InputMessage, unit: int) -> list[Any]:
    out: list[Any] = [TAG_INPUT, m.seq, m.echo, m.frame, m.lead, m.frame - m.ack,
                      m.frame - m.start, pack_runs(m.inputs, unit)]
    if m.checksum_frame >= 0:
        out += [m.frame - m.checksum_frame, m.checksum]
    return out


def decode_input(message: Any, input_size: int) -> InputMessage:
    if not isinstance(message, list) or len(message) not in (8, 10) or message[0] != TAG_INPUT:
        raise MalformedMessage("not an input message")
    seq = _int(message[1], 0, SEQ_MODULO - 1, "seq")
    echo = _int(message[2], -1, SEQ_MODULO - 1, "echo")
    frame = _int(message[3], 0, MAX_FRAME, "frame")
    lead = _int(message[4], -MAX_LEAD, MAX_LEAD, "lead")
    ack = frame - _int(message[5], frame - MAX_FRAME, frame + 1, "ack")
    start = frame - _int(message[6], frame - MAX_FRAME, frame, "start")
    inputs = unpack_runs(message[7], input_size)
    checksum_frame, checksum = -1, 0
    if len(message) == 10:
        checksum_frame = frame - _int(message[8], 0, frame, "checksum frame")
        checksum = _int(message[9], 0, (1 << 32) - 1, "checksum")
    return InputMessage(seq, echo, frame, lead, ack, start, inputs, checksum_frame, checksum)


def encode_spectate(m: SpectateMessage) -> list[Any]:
    return [TAG_SPECTATE, m.start, m.inputs]


def decode_spectate(message: Any, group_size: int) -> SpectateMessage:
    if not isinstance(message, list) or len(message) != 3 or message[0] != TAG_SPECTATE:
        raise MalformedMessage("not a spectator message")
    start = _int(message[1], 0, MAX_FRAME, "start")
    return SpectateMessage(start, _blob(message[2], group_size, "inputs"))


def encode_spectate_ack(ack: int) -> list[Any]:
    return [TAG_SPECTATE_ACK, ack]


def decode_spectate_ack(message: Any) -> int:
    if not isinstance(message, list) or len(message) != 2 or message[0] != TAG_SPECTATE_ACK:
        raise MalformedMessage("not a spectator ack")
    return _int(message[1], -1, MAX_FRAME, "ack")
