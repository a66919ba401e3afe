"""Rollback sessions on a fake clock and a seeded lossy link: exact outcomes."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framework.protocol.delivery import Delivery
from framework.rollback import (
    DEFAULT_CHANNEL,
    AdvanceFrame,
    Desync,
    Disconnected,
    InputStatus,
    LoadState,
    P2PSession,
    RollbackError,
    SaveState,
    SpectatorSession,
    WaitRecommendation,
)
from framework.rollback.p2p import MAX_FRAMES_AHEAD
from framework.rollback.wire import TAG_INPUT, pack_runs, unpack_runs
from tests.rollback_harness import FRAME, FakeNet, ToyGame

Inputs = Callable[[str, int], bytes]


def changing_inputs(name: str, frame: int) -> bytes:
    """Inputs that change every few frames, differently per player (so guesses fail)."""
    rng = random.Random(hash((name, frame // 7)) & 0xFFFF)
    return bytes([rng.randrange(3)])


def play(
    net: FakeNet,
    names: list[str],
    frames: int,
    *,
    inputs: Inputs = changing_inputs,
    start_late: dict[str, int] | None = None,
    **options: object,
) -> tuple[dict[str, P2PSession], dict[str, ToyGame], list[tuple[str, object]]]:
    sessions = {
        n: P2PSession(net.transport(n), names, n, net.now, **options)  # type: ignore[arg-type]
        for n in names
    }
    games = {n: ToyGame() for n in names}
    net.handlers.update(sessions)
    events: list[tuple[str, object]] = []
    late = start_late or {}
    for step in range(frames):
        net.now = step * FRAME
        net.deliver()
        for n in names:
            if step < late.get(n, 0):
                continue
            s = sessions[n]
            if s.skip_frame():
                continue
            s.add_local_input(inputs(n, s.frame))
            games[n].run(s.advance_frame(net.now))
            games[n].record(s)
            events += [(n, e) for e in s.events()]
    return sessions, games, events


def settle(net: FakeNet, sessions: dict[str, P2PSession], games: dict[str, ToyGame],
           frames: int = 120) -> None:
    """Keep running with idle inputs so every frame gets confirmed."""
    start = round(net.now / FRAME) + 1
    for step in range(start, start + frames):
        net.now = step * FRAME
        net.deliver()
        for n, s in sessions.items():
            s.add_local_input(b"\x00")
            games[n].run(s.advance_frame(net.now))
            games[n].record(s)


def agree(games: dict[str, ToyGame]) -> int:
    """The confirmed frames every game has: equal values; returns how many."""
    common = set.intersection(*(set(g.confirmed) for g in games.values()))
    for frame in common:
        assert len({g.confirmed[frame] for g in games.values()}) == 1, frame
    return len(common)


def test_two_players_at_150ms_and_5_percent_loss_agree_on_every_confirmed_frame() -> None:
    net = FakeNet(latency=0.075, loss=0.05, seed=3)
    sessions, games, events = play(net, ["a", "b"], 1200)
    settle(net, sessions, games)
    assert agree(games) > 400  # each side notes one frame an advance
    for s in sessions.values():
        assert s.stats.rollbacks > 20  # the inputs change: guesses fail, and are repaired
        assert 1 <= s.stats.max_rollback_frames <= 8
        assert s.stats.desyncs == 0
        assert s.stats.dropped_messages == 0
        assert s.stats.prediction_misses > 0
    assert not [e for _, e in events if isinstance(e, (Desync, Disconnected))]
    # Inputs travel unreliable, on the rollback channel, and nothing else does.
    assert net.sent_channels == {(Delivery.UNRELIABLE, DEFAULT_CHANNEL)}


def test_three_players_agree_too() -> None:
    net = FakeNet(latency=0.03, loss=0.02, seed=5)
    sessions, games, _ = play(net, ["a", "b", "c"], 600)
    settle(net, sessions, games)
    assert agree(games) > 200
    assert all(s.stats.desyncs == 0 for s in sessions.values())


def test_requests_follow_the_ggrs_order_and_mark_guesses() -> None:
    net = FakeNet(latency=0.05, seed=1)
    sessions, games, _ = play(net, ["a", "b"], 120)
    statuses = {st for _, st in games["a"].statuses}
    assert ("confirmed", "predicted") in statuses  # b's input guessed while it travels
    s = sessions["a"]
    s.add_local_input(b"\x02")
    requests = s.advance_frame(net.now + FRAME)
    # save this frame, then advance it; a rollback comes first, as load + (save, advance)*
    assert isinstance(requests[-2], SaveState) and isinstance(requests[-1], AdvanceFrame)
    assert requests[-2].frame == requests[-1].frame == s.frame - 1
    if isinstance(requests[0], LoadState):
        frames = [r.frame for r in requests if isinstance(r, AdvanceFrame)]
        assert frames == list(range(requests[0].frame, s.frame))


def test_lockstep_never_rolls_back() -> None:
    net = FakeNet(latency=0.05, loss=0.05, seed=2)
    sessions, games, _ = play(net, ["a", "b"], 600, prediction_window=0)
    settle(net, sessions, games)
    for n, s in sessions.items():
        assert s.stats.rollbacks == 0
        assert s.stats.stalls > 0  # it waited for inputs instead
        assert all("predicted" not in st for _, st in games[n].statuses)
    assert agree(games) > 100


def test_the_prediction_window_bounds_how_far_a_session_runs_ahead() -> None:
    net = FakeNet()
    net.cut.add("b")  # b's inputs never arrive
    sessions, _, _ = play(net, ["a", "b"], 60, prediction_window=5)
    assert sessions["a"].frame == 5  # frames 0..4 on guesses, then it waits
    assert sessions["a"].stats.stalls == 55


def test_input_delay_plays_local_inputs_later_and_can_change_while_playing() -> None:
    net = FakeNet(latency=0.02, seed=4)
    names = ["a", "b"]
    sessions, games, _ = play(net, names, 10, frame_delay=3,
                              inputs=lambda n, f: bytes([f % 3]))
    s = sessions["a"]
    played = [st for f, st in games["a"].statuses if f < 3]
    assert all(st[0] == "confirmed" for st in played)  # the blank inputs of the delay
    s.set_frame_delay(5)
    assert s.frame_delay == 5
    s.add_local_input(b"\x01")
    advance = [r for r in s.advance_frame(net.now + FRAME) if isinstance(r, AdvanceFrame)][-1]
    assert advance.inputs[0].status is InputStatus.CONFIRMED  # known since frame - 3
    # With a delay as long as the trip, the other side rarely has to guess.
    net2 = FakeNet(latency=0.05, seed=4)
    delayed, _, _ = play(net2, names, 600, frame_delay=4)
    net3 = FakeNet(latency=0.05, seed=4)
    undelayed, _, _ = play(net3, names, 600)
    assert delayed["a"].stats.frames_rolled_back < undelayed["a"].stats.frames_rolled_back / 4


def test_a_desync_is_reported_with_its_frame() -> None:
    net = FakeNet(latency=0.02, seed=6)
    sessions, games, _ = play(net, ["a", "b"], 100)
    broken_at = sessions["b"].frame + 10
    games["b"].bug_at = broken_at  # b's copy of the game goes its own way there
    _, _, events = play_more(net, sessions, games, 200)
    desyncs = [e for _, e in events if isinstance(e, Desync)]
    assert desyncs
    assert {d.player for d in desyncs} == {"a", "b"}
    assert all(d.frame > broken_at for d in desyncs)
    assert sessions["a"].stats.desyncs > 0


def play_more(net: FakeNet, sessions: dict[str, P2PSession], games: dict[str, ToyGame],
              frames: int) -> tuple[dict[str, P2PSession], dict[str, ToyGame],
                                    list[tuple[str, object]]]:
    events: list[tuple[str, object]] = []
    start = round(net.now / FRAME) + 1
    for step in range(start, start + frames):
        net.now = step * FRAME
        net.deliver()
        for n, s in sessions.items():
            s.add_local_input(changing_inputs(n, s.frame))
            games[n].run(s.advance_frame(net.now))
            games[n].record(s)
            events += [(n, e) for e in s.events()]
    return sessions, games, events


def test_a_silent_player_is_reported_once_and_then_plays_blank() -> None:
    net = FakeNet(latency=0.02, seed=7)
    sessions, games, _ = play(net, ["a", "b"], 120, disconnect_timeout=1.0)
    net.cut.add("b")
    _, _, events = play_more(net, sessions, games, 120)
    gone = [e for n, e in events if n == "a" and isinstance(e, Disconnected)]
    assert len(gone) == 1 and gone[0].player == "b"
    assert gone[0].frame <= sessions["a"].frame
    last = games["a"].statuses[-1][1]
    assert last == ("confirmed", "disconnected")
    assert sessions["a"].stats.stalls == 0 or sessions["a"].frame > 180  # it went on


def test_a_runner_ahead_is_told_to_wait_and_the_gap_closes() -> None:
    net = FakeNet(latency=0.03, seed=8)
    sessions, _, events = play(net, ["a", "b"], 900, start_late={"b": 6})
    waits = [(n, e) for n, e in events if isinstance(e, WaitRecommendation)]
    assert waits and all(n == "a" for n, _ in waits)
    assert all(e.frames <= 8 for _, e in waits)  # type: ignore[attr-defined]
    assert abs(sessions["a"].frame - sessions["b"].frame) <= 2


@pytest.mark.parametrize(
    "message",
    [
        [TAG_INPUT],
        [TAG_INPUT, 0, 0, 0, 0, 0, 0, "not bytes"],
        [TAG_INPUT, 0, 0, -5, 0, 0, 0, b""],
        [TAG_INPUT, 999, 0, 10, 0, 0, 0, b"\x00"],
        [TAG_INPUT, 0, 0, 10, 0, 0, 0, bytes([65, 0])],  # more than a message may hold
        [TAG_INPUT, 0, 0, 10, 0, 0, 0, bytes([0, 1])],  # a run of nothing
        [TAG_INPUT, 0, 0, 10, 0, 0, 0, b"\x01"],  # half a run
        [TAG_INPUT, 0, 0, 10, 0, 0, -5, b"\x01\x00"],  # a gap: starts after what we have
        [TAG_INPUT, 0, 0, 10, 0, 0, 0, b"\x01\x00", 11, 3],
        [TAG_INPUT, True, 0, 10, 0, 0, 0, b"\x01\x00"],
        [TAG_INPUT, 0, 0, 10, 0, 0, 0, b"\x01\x00", 0, -1],
        [102, 0, b""],  # spectator traffic from a player
        [103, "x"],
    ],
)
def test_malformed_messages_are_counted_and_dropped(message: list[object]) -> None:
    net = FakeNet()
    session = P2PSession(net.transport("a"), ["a", "b"], "a", 0.0)
    assert session.handle_message("b", message, 0.0) is True
    assert session.stats.dropped_messages == 1
    session.add_local_input(b"\x00")
    session.advance_frame(0.0)  # still works


def test_other_traffic_is_left_to_the_game_and_strangers_are_ignored() -> None:
    net = FakeNet()
    session = P2PSession(net.transport("a"), ["a", "b"], "a", 0.0)
    assert session.handle_message("b", {"hello": 1}, 0.0) is False
    assert session.handle_message("b", ["point", 1], 0.0) is False
    assert session.handle_message("mallory", [TAG_INPUT, 0, -1, 0, 0, 1, 0, b"\x01\x01"], 0.0)
    assert session.stats.dropped_messages == 1


class Event:
    def __init__(self, **attrs: object) -> None:
        self.__dict__.update(attrs)


def test_engine_events_are_taken_and_the_rest_returned() -> None:
    net = FakeNet()
    session = P2PSession(net.transport("a"), ["a", "b"], "a", 0.0)
    ours = Event(packet_data={"from": "b", "message": [TAG_INPUT, 0, -1, 0, 0, 1, 0, b"\x01\x01"]})
    theirs = Event(packet_data={"from": "b", "message": ["bye"]})
    other = Event(peer_name="b")
    assert session.handle_events([ours, theirs, other], 0.0) == [theirs, other]
    assert session.confirmed_frame == -1  # a's own input for frame 0 is not in yet
    session.add_local_input(b"\x00")
    assert session.confirmed_frame == 0


def test_inputs_far_ahead_are_bounded() -> None:
    net = FakeNet()
    session = P2PSession(net.transport("a"), ["a", "b"], "a", 0.0)
    for k in range(40):  # a flood of inputs, each message a little further
        start = k * 64
        frame = start
        msg = [TAG_INPUT, k % 128, -1, frame, 0, frame + 1, 0, bytes([64, 0])]
        session.handle_message("b", msg, 0.0)
    assert session.held_inputs <= MAX_FRAMES_AHEAD + 1
    assert session.stats.dropped_messages > 0


def test_misuse_raises_at_the_call() -> None:
    net = FakeNet()
    with pytest.raises(RollbackError):
        P2PSession(net.transport("a"), ["a", "a"], "a", 0.0)
    with pytest.raises(RollbackError):
        P2PSession(net.transport("a"), ["a", "b"], "c", 0.0)
    session = P2PSession(net.transport("a"), ["a", "b"], "a", 0.0)
    with pytest.raises(RollbackError):
        session.advance_frame(0.0)  # no input yet
    with pytest.raises(RollbackError):
        session.add_local_input(b"\x00\x00")
    with pytest.raises(RollbackError):
        session.set_frame_delay(-1)


def test_spectators_play_back_the_same_match() -> None:
    net = FakeNet(latency=0.04, loss=0.05, seed=9)
    names = ["a", "b"]
    sessions = {
        n: P2PSession(net.transport(n), names, n, 0.0, spectators=["eve"] if n == "a" else ())
        for n in names
    }
    watcher = SpectatorSession(net.transport("eve"), "a", 2, 0.0)
    net.handlers.update(sessions)
    net.handlers["eve"] = watcher
    games = {n: ToyGame() for n in [*names, "eve"]}
    for step in range(900):
        net.now = step * FRAME
        net.deliver()
        for n, s in sessions.items():
            s.add_local_input(changing_inputs(n, s.frame) if step < 700 else b"\x00")
            games[n].run(s.advance_frame(net.now))
            games[n].record(s)
        requests = watcher.advance_frame(net.now)
        assert all(isinstance(r, AdvanceFrame) and r.confirmed for r in requests)
        games["eve"].run(requests)
        frames, value = games["eve"].state
        games["eve"].confirmed[frames] = value
    assert watcher.frame > 800
    assert agree(games) > 300
    assert not watcher.events()


def test_a_spectator_notices_a_silent_host() -> None:
    net = FakeNet()
    watcher = SpectatorSession(net.transport("eve"), "a", 2, 0.0, disconnect_timeout=1.0)
    assert watcher.advance_frame(0.5) == []
    watcher.advance_frame(1.5)
    assert [type(e) for e in watcher.events()] == [Disconnected]


@given(st.lists(st.integers(0, 3), max_size=64))
def test_inputs_survive_run_length_coding(values: list[int]) -> None:
    raw = bytes(values)
    assert unpack_runs(pack_runs(raw, 1), 1) == raw
    pairs = bytes(v for v in values for _ in range(2))[:128]
    assert unpack_runs(pack_runs(pairs, 2), 2) == pairs


_junk = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.binary(max_size=70)
    | st.text(max_size=4),
    lambda c: st.lists(c, max_size=11),
    max_leaves=14,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(100, 104), min_size=1, max_size=1).flatmap(
    lambda tag: st.lists(_junk, max_size=10).map(lambda rest: [tag[0], *rest])))
def test_hostile_messages_never_raise(message: list[object]) -> None:
    net = FakeNet()
    session = P2PSession(net.transport("a"), ["a", "b"], "a", 0.0, spectators=["eve"])
    for sender in ("b", "eve", "mallory"):
        session.handle_message(sender, message, 0.0)
    session.add_local_input(b"\x00")
    session.advance_frame(0.0)
    assert session.held_inputs <= MAX_FRAMES_AHEAD + 2
