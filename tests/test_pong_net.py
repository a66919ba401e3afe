"""Pong's message formats: round trips, sizes, and rejection of garbage."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from games.pong.net import (
    GameEvent,
    InputMessage,
    Kind,
    MessageError,
    Snapshot,
    decode_event,
    decode_input,
    decode_snapshot,
    encode_event,
    encode_input,
    encode_snapshot,
)
from games.pong.sim import Ball, Phase, Simulation


def sample_snapshot() -> Snapshot:
    sim = Simulation(seed=3)
    s = sim.state
    s.tick = 123456
    s.phase = Phase.PLAY
    s.score = [7, 10]
    s.ball = Ball(412.34, 97.81, -733.3, 412.9)
    s.paddles = [45.0, 512.77]
    return Snapshot.from_state(s, points_to_win=11, input_ack=98765)


def test_a_snapshot_survives_the_trip_to_a_sixteenth_of_a_pixel() -> None:
    snap = sample_snapshot()
    back = decode_snapshot(encode_snapshot(snap))
    assert (back.tick, back.game, back.phase, back.score) == (123456, 0, Phase.PLAY, (7, 10))
    assert (back.points_to_win, back.input_ack) == (11, 98765)
    for a, b in [
        (back.ball_x, snap.ball_x),
        (back.ball_y, snap.ball_y),
        (back.left_y, snap.left_y),
        (back.right_y, snap.right_y),
    ]:
        assert a == pytest.approx(b, abs=1 / 32)
    assert back.ball_vx == pytest.approx(snap.ball_vx, abs=1 / 16)
    assert back.ball_vy == pytest.approx(snap.ball_vy, abs=1 / 16)
    assert decode_snapshot(encode_snapshot(back)) == back  # quantising is idempotent


def test_messages_are_small_on_the_wire() -> None:
    # Sizes after msgpack, before the engine's own header.
    snapshot = msgpack.packb(encode_snapshot(sample_snapshot()))
    assert len(snapshot) <= 30
    inputs = msgpack.packb(encode_input(InputMessage(seq=10**6, intents=(1, 0, -1) * 4)))
    assert len(inputs) <= 12


def bad_phase_snapshot() -> bytes:
    data = bytearray(encode_snapshot(sample_snapshot()))
    data[6] = 9  # tag (1) + tick (4) + game (1), then the phase
    return bytes(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"S" * 10,
        "not bytes",
        None,
        [1, 2, 3],
        b"X" + encode_snapshot(sample_snapshot())[1:],  # wrong tag
        bad_phase_snapshot(),
    ],
)
def test_malformed_snapshots_are_rejected(data: object) -> None:
    with pytest.raises(MessageError):
        decode_snapshot(data)


@given(
    seq=st.integers(16, 2**32 - 1),
    intents=st.lists(st.sampled_from([-1, 0, 1]), min_size=1, max_size=16),
)
def test_inputs_round_trip(seq: int, intents: list[int]) -> None:
    msg = InputMessage(seq=seq, intents=tuple(intents))
    assert decode_input(encode_input(msg)) == msg


def test_input_numbering_counts_back_from_the_newest() -> None:
    msg = InputMessage(seq=20, intents=(1, 0, -1))
    assert msg.numbered() == [(18, 1), (19, 0), (20, -1)]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"I\x05\x00\x00\x00",  # too short
        b"I\x05\x00\x00\x00\x00",  # zero intents
        b"I\x05\x00\x00\x00\x02\x05\x00",  # 2 intents need 1 byte, not 2
        b"I\x05\x00\x00\x00\x01\x03",  # intent code 3 does not exist
        b"I\x01\x00\x00\x00\x04\x55",  # 4 intents cannot end at sequence 1
        b"Z\x05\x00\x00\x00\x01\x01",
        42,
    ],
)
def test_malformed_inputs_are_rejected(data: object) -> None:
    with pytest.raises(MessageError):
        decode_input(data)


def test_events_round_trip_through_msgpack() -> None:
    for event in [
        GameEvent(Kind.POINT, (1, 3, 4)),
        GameEvent(Kind.OVER, (0, 11, 9)),
        GameEvent(Kind.OVER_SEEN),
        GameEvent(Kind.REMATCH),
        GameEvent(Kind.RESTART, (2,)),
        GameEvent(Kind.BYE),
    ]:
        wire = msgpack.unpackb(msgpack.packb(encode_event(event)))
        assert decode_event(wire) == event


@pytest.mark.parametrize(
    "data",
    [[], ["nope"], ["point", 1, 2], ["point", 1, 2, "3"], ["over", True, 1, 2], "bye", None, [3]],
)
def test_malformed_events_are_rejected(data: object) -> None:
    with pytest.raises(MessageError):
        decode_event(data)


def test_encoding_a_wrong_event_is_our_own_bug() -> None:
    with pytest.raises(ValueError):
        encode_event(GameEvent(Kind.POINT, (1,)))
    with pytest.raises(ValueError):
        encode_input(InputMessage(seq=1, intents=()))
