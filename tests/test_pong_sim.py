"""The Pong simulation: bounces, scoring, serves, rematches, determinism, snapshots."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from games.pong.bot import BallSeen, Bot, predict_crossing_y
from games.pong.sim import (
    LEFT,
    REMATCH_BIT,
    RIGHT,
    SUB,
    EventKind,
    Intent,
    Phase,
    Rules,
    SimEvent,
    Simulation,
    checksum,
    encode_input,
    fold_y,
    snapshot,
)

RULES = Rules()
UP, STAY, DOWN = (encode_input(i) for i in (Intent.UP, Intent.STAY, Intent.DOWN))


def in_play(sim: Simulation, x: float, y: float, vx: float, vy: float) -> None:
    """Put the simulation in play with this ball (pixels, pixels per tick)."""
    s = sim.state
    s.phase = Phase.PLAY
    s.ball_x, s.ball_y = round(x * SUB), round(y * SUB)
    s.ball_vx, s.ball_vy = round(vx * SUB), round(vy * SUB)


def kinds(events: list[SimEvent]) -> list[EventKind]:
    return [e.kind for e in events]


def test_a_new_game_waits_in_the_centre_then_serves() -> None:
    sim = Simulation(seed=5)
    s = sim.state
    assert s.phase == Phase.SERVE
    assert (s.ball_x, s.ball_y) == (400 * SUB, 300 * SUB)
    for _ in range(RULES.serve_delay_ticks - 1):
        assert sim.step() == []
    events = sim.step()
    assert kinds(events) == [EventKind.SERVE]
    assert events[0].side == s.serve_to
    assert s.phase == Phase.PLAY
    assert abs(s.ball_vx) == RULES.serve_speed * SUB // 60  # 9 px a tick
    assert (s.ball_vx < 0) == (s.serve_to == LEFT)
    assert abs(s.ball_vy) * 100 <= abs(s.ball_vx) * RULES.max_serve_slope_percent


def test_the_ball_bounces_off_the_top_and_bottom_walls() -> None:
    sim = Simulation(seed=1)
    in_play(sim, 400, 8, 0, -5)
    assert kinds(sim.step()) == [EventKind.WALL]
    assert sim.state.ball_vy == 5 * SUB
    assert sim.state.ball_y == (6 + 3) * SUB  # 3 px past the wall, folded back
    in_play(sim, 400, RULES.height - 8, 2, 5)
    assert kinds(sim.step()) == [EventKind.WALL]
    assert sim.state.ball_vy == -5 * SUB
    assert sim.state.ball_y <= (RULES.height - 6) * SUB


def test_the_ball_bounces_off_a_paddle_faster_and_angled_by_where_it_hit() -> None:
    sim = Simulation(seed=1)
    face = RULES.paddle_face_x(LEFT)
    sim.state.left_y = 300 * SUB
    in_play(sim, face + 6 + 3, 300, -8, 0)
    assert kinds(sim.step()) == [EventKind.PADDLE]
    s = sim.state
    assert s.ball_vx == 8 * SUB * 107 // 100
    assert s.ball_vy == 0  # dead centre: straight back
    assert s.ball_x - 6 * SUB >= face * SUB
    assert (s.left_hits, s.rally) == (1, 1)

    # Hitting the lower half of the right paddle sends the ball downwards.
    sim = Simulation(seed=1)
    sim.state.right_y = 300 * SUB
    face = RULES.paddle_face_x(RIGHT)
    in_play(sim, face - 6 - 3, 330, 8, 0)
    events = sim.step()
    assert events[0].kind == EventKind.PADDLE and events[0].side == RIGHT
    assert sim.state.ball_vx < 0 < sim.state.ball_vy
    assert sim.state.right_hits == 1


def test_a_fast_ball_does_not_tunnel_through_a_paddle() -> None:
    sim = Simulation(seed=1)
    face = RULES.paddle_face_x(LEFT)
    sim.state.left_y = 300 * SUB
    # At top speed the ball moves 18 px a tick, more than the paddle's 12 px width.
    in_play(sim, face + 6 + 1, 300, -18, 0)
    assert EventKind.PADDLE in kinds(sim.step())
    assert sim.state.ball_vx > 0


def test_a_missed_ball_scores_for_the_other_side_and_serves_to_the_loser() -> None:
    sim = Simulation(seed=1)
    sim.state.left_y = 45 * SUB  # far from the ball
    in_play(sim, 60, 500, -10, 0)
    events = []
    for _ in range(20):
        events += sim.step()
    assert next(e for e in events if e.kind == EventKind.POINT).side == RIGHT
    s = sim.state
    assert s.score == (0, 1)
    assert (s.left_misses, s.right_misses) == (1, 0)
    assert s.phase == Phase.SERVE
    assert s.serve_to == LEFT
    assert (s.ball_x, s.ball_y, s.ball_vx, s.ball_vy) == (400 * SUB, 300 * SUB, 0, 0)


def win_points(sim: Simulation, points: int) -> list[SimEvent]:
    over = []
    for _ in range(points):
        sim.state.right_y = (RULES.height - 45) * SUB
        in_play(sim, 700, 100, 12, 0)
        for _ in range(30):
            over += [e for e in sim.step() if e.kind == EventKind.GAME_OVER]
    return over


def test_the_game_ends_when_a_side_reaches_the_target() -> None:
    sim = Simulation(seed=2, rules=Rules(points_to_win=3))
    over = win_points(sim, 3)
    assert sim.state.score == (3, 0)
    assert sim.state.phase == Phase.OVER
    assert [e.side for e in over] == [LEFT]
    assert sim.winner == LEFT
    before = sim.state.score
    assert sim.step(STAY, STAY) == []
    assert sim.state.score == before and sim.state.phase == Phase.OVER


def test_a_rematch_needs_both_players_and_keeps_counting_ticks() -> None:
    sim = Simulation(seed=2, rules=Rules(points_to_win=1))
    win_points(sim, 1)
    assert sim.state.phase == Phase.OVER
    tick = sim.state.tick
    assert sim.step(STAY | REMATCH_BIT, STAY) == []  # one wish is remembered...
    assert sim.step(STAY, STAY) == []
    assert kinds(sim.step(STAY, DOWN | REMATCH_BIT)) == [EventKind.RESTART]  # ...until both
    s = sim.state
    assert s.score == (0, 0) and s.phase == Phase.SERVE and s.game == 1
    assert s.tick == tick + 3


def _random_inputs(seed: int, n: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [(rng.randrange(8), rng.randrange(8)) for _ in range(n)]


def test_same_seed_and_inputs_give_identical_states_and_checksums() -> None:
    inputs = _random_inputs(11, 3000)
    a, b = Simulation(seed=42), Simulation(seed=42)
    for left, right in inputs:
        assert a.step(left, right) == b.step(left, right)
    assert snapshot(a.state) == snapshot(b.state)
    assert checksum(a.save()) == checksum(b.save())
    assert a.state.tick == 3000


def test_save_and_load_restore_everything() -> None:
    sim = Simulation(seed=7)
    inputs = _random_inputs(3, 600)
    for left, right in inputs[:300]:
        sim.step(left, right)
    saved = sim.save()
    first = [sim.step(left, right) for left, right in inputs[300:]]
    end = sim.save()
    sim.load(saved)
    again = [sim.step(left, right) for left, right in inputs[300:]]
    assert again == first and sim.save() == end
    assert checksum(saved) != checksum(end)


def test_the_checksum_is_a_fixed_function_of_the_state() -> None:
    # The same on every machine and Python: CRC-32 of the packed ints.
    assert checksum(Simulation(seed=1).save()) == checksum(Simulation(seed=1).save())
    assert checksum(Simulation(seed=1).save()) != checksum(Simulation(seed=2).save())


def test_different_seeds_serve_differently() -> None:
    def first_serve(seed: int) -> tuple[int, int]:
        sim = Simulation(seed=seed)
        for _ in range(RULES.serve_delay_ticks):
            sim.step()
        return (sim.state.ball_vx, sim.state.ball_vy)

    assert len({first_serve(seed) for seed in range(8)}) >= 7
    assert first_serve(3) == first_serve(3)


@settings(max_examples=200, deadline=None)
@given(
    x=st.integers(100, 700),
    y=st.integers(6, 594),
    vx=st.integers(-18, 18),
    vy=st.integers(-25, 25),
    left=st.integers(45, 555),
    right=st.integers(45, 555),
)
def test_the_ball_never_leaves_the_field_vertically(
    x: int, y: int, vx: int, vy: int, left: int, right: int
) -> None:
    sim = Simulation(seed=0)
    sim.state.left_y, sim.state.right_y = left * SUB, right * SUB
    in_play(sim, x, y, vx, vy)
    half = RULES.ball_size * SUB // 2
    for _ in range(120):
        sim.step()
        if sim.state.phase != Phase.PLAY:
            break
        assert half <= sim.state.ball_y <= RULES.height * SUB - half


def test_paddles_move_at_their_speed_and_stay_on_the_field() -> None:
    sim = Simulation(seed=0)
    sim.step(DOWN, 3)  # 3 is no direction: it stays
    assert sim.state.left_y == 300 * SUB + 8 * SUB
    assert sim.state.right_y == 300 * SUB
    for _ in range(200):
        sim.step(UP, DOWN)
    assert sim.state.left_y == 45 * SUB
    assert sim.state.right_y == (RULES.height - 45) * SUB


def test_fold_y_reflects_between_the_walls() -> None:
    top, bottom = RULES.ball_size / 2, RULES.height - RULES.ball_size / 2
    assert fold_y(300.0, RULES) == (300.0, False)
    assert fold_y(top - 10, RULES) == (pytest.approx(top + 10), True)
    assert fold_y(bottom + 10, RULES) == (pytest.approx(bottom - 10), True)
    span = bottom - top
    assert fold_y(300.0 + 2 * span, RULES) == (pytest.approx(300.0), False)


def test_the_bot_predicts_where_the_ball_crosses() -> None:
    ball = BallSeen(400.0, 300.0, -400.0, 400.0)  # 45 degrees down-left
    y = predict_crossing_y(ball, 100.0, RULES)
    assert y is not None
    expected, _ = fold_y(300.0 + 300.0, RULES)
    assert y == pytest.approx(expected)
    assert predict_crossing_y(ball, 700.0, RULES) is None  # moving away


def test_two_bots_finish_a_match_to_eleven() -> None:
    sim = Simulation(seed=9)
    bots = [Bot(LEFT, RULES, seed=1), Bot(RIGHT, RULES, seed=2)]
    while sim.state.phase != Phase.OVER:
        assert sim.state.tick < 60 * 60 * 5, "a bot match must end within 5 minutes"
        s = sim.state
        ball = None
        if s.phase == Phase.PLAY:
            ball = BallSeen(s.ball_x / SUB, s.ball_y / SUB, s.ball_vx * 60 / SUB,
                            s.ball_vy * 60 / SUB)
        left, right = (encode_input(bot.decide(ball, s.paddles[bot.side] / SUB))
                       for bot in bots)
        sim.step(left, right)
    s = sim.state
    assert max(s.score) == 11
    assert s.left_hits + s.right_hits > sum(s.score)  # they do return the ball
    assert (s.left_misses, s.right_misses) == (s.right_score, s.left_score)
