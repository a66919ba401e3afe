"""Pong's reliable events: round trips and rejection of garbage."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from games.pong.net import GameEvent, Kind, MessageError, decode_event, encode_event


def test_events_round_trip_through_msgpack() -> None:
    for event in (
        GameEvent(Kind.START, ((1 << 64) - 1, 11)),
        GameEvent(Kind.OVER_SEEN, (3,)),
        GameEvent(Kind.BYE),
    ):
        wire = msgpack.unpackb(msgpack.packb(encode_event(event)), raw=False)
        assert decode_event(wire) == event


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        [1, 2],
        ["nope"],
        ["start"],
        ["start", 1, 0],  # no game to zero points
        ["start", 1, 100],
        ["start", -1, 11],
        ["start", 1.5, 11],
        ["start", True, 11],
        ["over_seen", "x"],
        ["bye", 1],
    ],
)
def test_malformed_events_are_rejected(data: object) -> None:
    with pytest.raises(MessageError):
        decode_event(data)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=4), max_leaves=10))
def test_anything_decodes_or_raises_message_error(data: object) -> None:
    with contextlib.suppress(MessageError):
        decode_event(data)  # any other exception fails the test


def test_encoding_a_wrong_event_is_our_own_bug() -> None:
    with pytest.raises(ValueError):
        encode_event(GameEvent(Kind.START, (1,)))
