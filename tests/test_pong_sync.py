"""Snapshot interpolation, input prediction, and whole matches over a fake lossy link.

No sockets and no real clock: time is a number the test advances, the link is
seeded, so every run is the same.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace

import msgpack
import pytest

from games.pong.bot import Bot
from games.pong.control import bot_controller
from games.pong.match import SILENCE_TIMEOUT, ClientMatch, Controller, HostMatch, Match, Status
from games.pong.net import INPUT_HISTORY, InputMessage, Snapshot
from games.pong.sim import DT, LEFT, RIGHT, EventKind, Intent, Phase, Rules, move_paddle
from games.pong.sync import InputQueue, PaddlePredictor, SnapshotBuffer, StepClock

RULES = Rules()


# --- the pieces --------------------------------------------------------------------------


def test_the_step_clock_turns_time_into_whole_ticks() -> None:
    clock = StepClock(max_steps=8)
    assert clock.advance(10.0) == 0
    assert clock.advance(10.0 + 2.5 * DT) == 2
    assert clock.advance(10.0 + 3.0 * DT) == 1  # the half tick was kept
    assert clock.advance(10.0 + 3.0 * DT) == 0
    assert clock.advance(20.0) == 8  # a long stall is not replayed in full
    assert clock.advance(20.0 + DT / 2) == 0


def snap(
    tick: int,
    x: float,
    *,
    vx: float = 300.0,
    vy: float = 0.0,
    score: tuple[int, int] = (0, 0),
    left: float = 300.0,
) -> Snapshot:
    return Snapshot(
        tick=tick,
        game=0,
        phase=Phase.PLAY,
        points_to_win=11,
        score=score,
        ball_x=x,
        ball_y=300.0,
        ball_vx=vx,
        ball_vy=vy,
        left_y=left,
        right_y=300.0,
        input_ack=0,
    )


def test_the_buffer_interpolates_between_snapshots_a_delay_behind() -> None:
    buf = SnapshotBuffer(RULES, delay=4 * DT)
    for tick in range(0, 20, 2):
        assert buf.push(snap(tick, 100.0 + 10 * tick, left=200.0 + tick), now=tick * DT)
    now = 19 * DT
    play = buf.sample(now)
    assert play is not None
    assert play.tick == pytest.approx(15.0)
    assert play.ball_x == pytest.approx(100.0 + 10 * 15)  # between ticks 14 and 16
    assert play.left_y == pytest.approx(215.0)
    assert not play.extrapolated


def test_the_buffer_drops_stale_and_duplicate_snapshots() -> None:
    buf = SnapshotBuffer(RULES)
    assert buf.push(snap(10, 100.0), now=0.0)
    assert not buf.push(snap(10, 999.0), now=0.01)
    assert not buf.push(snap(8, 999.0), now=0.02)
    assert buf.newest is not None and buf.newest.ball_x == 100.0


def test_the_buffer_extrapolates_a_while_when_snapshots_stop_then_waits() -> None:
    buf = SnapshotBuffer(RULES, delay=2 * DT)
    for tick in range(0, 10, 2):
        buf.push(snap(tick, 100.0 + 5 * tick, vx=300.0), now=tick * DT)
    play = buf.sample(8 * DT + 0.1)  # 0.1 s without news
    assert play is not None and play.extrapolated
    assert play.ball_x == pytest.approx(140.0 + 300.0 * (0.1 - 2 * DT), abs=1.0)
    far = buf.sample(8 * DT + 5.0)
    assert far is not None
    assert far.ball_x == pytest.approx(140.0 + 300.0 * 0.25, abs=1.0)  # capped


def test_the_buffer_does_not_sweep_the_ball_across_a_point() -> None:
    buf = SnapshotBuffer(RULES, delay=0.0)
    buf.push(snap(0, 790.0), now=0.0)
    buf.push(replace(snap(2, 400.0, vx=0.0, score=(1, 0)), phase=Phase.SERVE), now=2 * DT)
    play = buf.sample(1 * DT)
    assert play is not None
    assert play.ball_x == 790.0  # held, not halfway back to the centre
    after = buf.sample(2 * DT)
    assert after is not None and after.ball_x == 400.0
    assert [e.kind for e in buf.take_events()] == [EventKind.POINT]


def test_playback_reports_bounces_for_sounds() -> None:
    buf = SnapshotBuffer(RULES, delay=0.0)
    buf.push(snap(0, 60.0, vx=-300.0, vy=10.0), now=0.0)
    buf.push(snap(2, 50.0, vx=300.0, vy=10.0), now=2 * DT)
    buf.push(snap(4, 60.0, vx=300.0, vy=-10.0), now=4 * DT)
    buf.sample(4 * DT)
    events = buf.take_events()
    assert [(e.kind, e.side) for e in events] == [(EventKind.PADDLE, LEFT), (EventKind.WALL, None)]


def test_prediction_replays_what_the_host_has_not_applied_yet() -> None:
    pred = PaddlePredictor(RULES, INPUT_HISTORY)
    intents = [1, 1, 1, 0, -1, 1, 1, 1, 1, 1]
    for intent in intents:
        pred.step(intent)
    assert pred.seq == 10
    # The host applied the first 6 inputs, from the centre.
    host_y = RULES.height / 2
    for intent in intents[:6]:
        host_y = move_paddle(host_y, intent, RULES)
    before = pred.y
    pred.reconcile(host_y, input_ack=6)
    assert pred.y == pytest.approx(before)  # it agreed: no visible correction
    assert pred.unacknowledged == 4
    # The host lost an input (applied as nothing): the prediction follows it.
    pred.reconcile(host_y, input_ack=8)
    expected = host_y
    for intent in intents[8:]:
        expected = move_paddle(expected, intent, RULES)
    assert pred.y == pytest.approx(expected)
    pred.reconcile(0.0, input_ack=7)  # older news is ignored
    assert pred.y == pytest.approx(expected)


def test_the_input_message_repeats_recent_history() -> None:
    pred = PaddlePredictor(RULES, history=4)
    assert pred.message() is None
    for intent in (1, 0, -1, 1, 1):
        pred.step(intent)
    assert pred.message() == InputMessage(seq=5, intents=(0, -1, 1, 1))


def test_the_input_queue_dedupes_redundant_messages_and_survives_loss() -> None:
    queue = InputQueue()
    queue.receive(InputMessage(seq=3, intents=(1, 1, 0)))
    assert queue.drain() == [1, 1, 0]
    queue.receive(InputMessage(seq=5, intents=(1, 0, -1, 1)))  # 2 and 3 again, then 4, 5
    # (message with seq 4 was lost; its input came along with seq 5)
    assert queue.drain() == [-1, 1]
    assert queue.newest == 5
    queue.receive(InputMessage(seq=4, intents=(-1,)))  # late duplicate
    assert queue.drain() == []
    queue.receive(InputMessage(seq=50, intents=(1, 1)))  # a gap beyond the history
    assert queue.drain() == [1, 1]
    assert queue.newest == 50


# --- whole matches over a fake link -----------------------------------------------------


class FakeWire:
    """Both directions of a link between "host" and "client": seeded latency, jitter and
    loss; fast messages are sequenced (stale ones dropped), events are reliable and ordered."""

    def __init__(self, latency: float, jitter: float, loss: float, seed: int) -> None:
        self.latency, self.jitter, self.loss = latency, jitter, loss
        self.rng = random.Random(seed)
        self.in_flight: list[tuple[float, int, str, str, object]] = []
        self.order = 0
        self.last_event_at = {"host": 0.0, "client": 0.0}
        self.newest_fast = {"host": -1, "client": -1}
        self.bytes_to = {"host": 0, "client": 0}
        self.now = 0.0

    def link(self, to: str) -> FakeLink:
        return FakeLink(self, to)

    def put(self, to: str, kind: str, payload: object) -> None:
        self.order += 1
        self.bytes_to[to] += len(msgpack.packb(payload)) + 20  # + a typical engine header
        at = self.now + self.latency + self.rng.uniform(0, self.jitter)
        if kind == "fast" and self.rng.random() < self.loss:
            return
        if kind == "event":  # resent until through, delivered in order
            while self.rng.random() < self.loss:
                at += 2 * self.latency
            at = max(at, self.last_event_at[to])
            self.last_event_at[to] = at
        self.in_flight.append((at, self.order, to, kind, payload))

    def deliver(self, now: float, ends: dict[str, Match]) -> None:
        self.now = now
        due = sorted(m for m in self.in_flight if m[0] <= now)
        self.in_flight = [m for m in self.in_flight if m[0] > now]
        for _, order, to, kind, payload in due:
            if kind == "fast":
                if order < self.newest_fast[to]:
                    continue  # unreliable-sequenced: never older after newer
                self.newest_fast[to] = order
                ends[to].on_fast(payload, now)
            else:
                ends[to].on_event(payload, now)


class FakeLink:
    def __init__(self, wire: FakeWire, to: str) -> None:
        self.wire, self.to = wire, to

    def send_fast(self, data: bytes) -> None:
        self.wire.put(self.to, "fast", data)

    def send_event(self, message: list[object]) -> None:
        self.wire.put(self.to, "event", message)


def make_match(wire: FakeWire, points: int = 3, seed: int = 7) -> tuple[HostMatch, ClientMatch]:
    host = HostMatch(
        wire.link("client"), "alice", "bob", 0.0, seed=seed, rules=Rules(points_to_win=points)
    )
    client = ClientMatch(wire.link("host"), "bob", "alice", 0.0)
    return host, client


def run(
    wire: FakeWire,
    host: HostMatch,
    client: ClientMatch,
    seconds: float,
    controls: tuple[Controller, Controller],
    until=lambda: False,
    on_frame=lambda now: None,
    start: float = 0.0,
) -> float:
    """Frames at 60 Hz from `start`; returns the time reached."""
    ends: dict[str, Match] = {"host": host, "client": client}
    now = start
    for frame in range(int(seconds * 60)):
        now = start + frame * DT
        wire.deliver(now, ends)
        host.update(now, controls[0])
        client.update(now, controls[1])
        on_frame(now)
        if until():
            break
    return now


def bots(seed: int) -> tuple[Controller, Controller]:
    return (
        bot_controller(Bot(LEFT, RULES, seed)),
        bot_controller(Bot(RIGHT, RULES, seed + 1)),
    )


def test_bots_finish_a_match_over_a_lossy_link_and_agree_on_the_score() -> None:
    wire = FakeWire(latency=0.05, jitter=0.01, loss=0.05, seed=1)
    host, client = make_match(wire, points=3)
    now = run(
        wire,
        host,
        client,
        300.0,
        bots(3),
        until=lambda: host.status == client.status == Status.OVER and host.over_seen,
    )
    assert host.status == client.status == Status.OVER
    assert max(host.final_score) == 3
    assert client.final_score == host.final_score
    assert client.winner == host.winner
    assert host.i_won != client.i_won
    assert host.over_seen
    # Bandwidth, as this fake link counts it (payload + 20 bytes), per direction.
    assert wire.bytes_to["client"] / now < 3000
    assert wire.bytes_to["host"] / now < 3000


def test_the_client_paddle_moves_at_once_and_ends_where_the_host_has_it() -> None:
    wire = FakeWire(latency=0.05, jitter=0.0, loss=0.05, seed=2)
    host, client = make_match(wire, points=11)
    stay = lambda view: Intent.STAY  # noqa: E731
    down = lambda view: Intent.DOWN  # noqa: E731
    run(wire, host, client, 0.5, (stay, stay))  # connected, first snapshots in
    start_y = client.view().paddles[RIGHT]
    ends: dict[str, Match] = {"host": host, "client": client}
    wire.deliver(0.5, ends)
    client.update(0.5 + DT, down)
    assert client.view().paddles[RIGHT] > start_y  # no waiting for the round trip
    now = run(wire, host, client, 0.5, (stay, down), start=0.5 + 2 * DT)
    now = run(wire, host, client, 1.0, (stay, stay), start=now + DT)
    assert client.predictor.y == pytest.approx(host.sim.state.paddles[RIGHT], abs=0.05)
    assert client.predictor.y > start_y + 100


def test_the_client_picture_is_smooth_at_100ms_rtt_and_5_percent_loss() -> None:
    wire = FakeWire(latency=0.05, jitter=0.01, loss=0.05, seed=3)
    host, client = make_match(wire, points=11)
    steps: list[float] = []
    last: dict[str, object] = {}
    extrapolated = 0
    frames = 0

    def watch(now: float) -> None:
        nonlocal extrapolated, frames
        view = client.view()
        play = client._play  # the test reads, never writes
        if play is None or view.phase != Phase.PLAY:
            last.clear()
            return
        frames += 1
        extrapolated += play.extrapolated
        key = (view.score, view.phase)
        if last.get("key") == key:
            x0, y0 = last["ball"]  # type: ignore[misc]
            steps.append(math.hypot(view.ball[0] - x0, view.ball[1] - y0))
        last["key"], last["ball"] = key, view.ball

    run(wire, host, client, 30.0, bots(5), on_frame=watch)
    assert frames > 600
    biggest = max(steps)
    # A frame never moves the ball more than the fastest ball does in 1.5 frames.
    assert biggest < RULES.max_speed * DT * 1.5
    assert extrapolated / frames < 0.1


def test_a_rematch_needs_both_players_and_starts_a_new_game() -> None:
    wire = FakeWire(latency=0.03, jitter=0.0, loss=0.0, seed=4)
    host, client = make_match(wire, points=1)
    now = run(wire, host, client, 120.0, bots(1), until=lambda: client.status == Status.OVER)
    assert host.status == Status.OVER
    client.request_rematch()
    now = run(wire, host, client, 0.5, bots(1), start=now + DT)
    assert host.they_want_rematch and host.status == Status.OVER
    host.request_rematch()
    now = run(wire, host, client, 0.5, bots(1), start=now + DT)
    assert host.status == client.status == Status.PLAYING
    assert host.sim.state.game == client.game == 1
    assert host.sim.state.score == [0, 0]
    run(wire, host, client, 1.0, bots(1), start=now + DT)
    assert client.view().score == (0, 0)


def test_a_player_who_says_bye_is_gone_for_the_other() -> None:
    wire = FakeWire(latency=0.02, jitter=0.0, loss=0.0, seed=5)
    host, client = make_match(wire)
    now = run(wire, host, client, 1.0, bots(1))
    client.leave()
    run(wire, host, client, 0.5, bots(1), start=now + DT)
    assert host.status == Status.LOST
    assert "bob left" in host.lost_reason


def test_silence_means_the_opponent_is_gone() -> None:
    wire = FakeWire(latency=0.02, jitter=0.0, loss=0.0, seed=6)
    host, client = make_match(wire)
    now = run(wire, host, client, 1.0, bots(1))
    # The client vanishes without a word: only the host keeps running.
    later = now + SILENCE_TIMEOUT + 0.5
    host.update(later, bots(1)[0])
    assert host.status == Status.LOST
    assert "timed out" in host.lost_reason


def test_garbage_from_the_opponent_is_dropped_not_fatal() -> None:
    wire = FakeWire(latency=0.02, jitter=0.0, loss=0.0, seed=7)
    host, client = make_match(wire)
    host.on_fast(b"garbage", 0.1)
    host.on_event({"not": "a list"}, 0.1)
    client.on_fast([1, 2, 3], 0.1)
    client.on_event(["over", "x", 1, 2], 0.1)
    assert host.status == Status.PLAYING and client.status == Status.WAITING
