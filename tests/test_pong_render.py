"""Drawing a known state, then finding the paddles and the ball in the pixels."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pygame
import pytest

from games.pong import render, theme
from games.pong.match import View, make_view
from games.pong.sim import LEFT, RIGHT, SUB, Phase, Rules, Simulation, snapshot


@pytest.fixture
def screen() -> Iterator[pygame.Surface]:
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    pygame.display.init()
    pygame.font.init()
    try:
        yield pygame.display.set_mode(theme.SCREEN_SIZE)
    finally:
        pygame.display.quit()


def view_of(sim: Simulation, my_side: int = LEFT) -> View:
    return make_view(sim.state, sim.rules, my_side, ("alice", "bob"))


def find(surface: pygame.Surface, colour: theme.Colour) -> tuple[float, float, int, int]:
    """Centre (x, y) and size (w, h) of the pixels of exactly `colour`."""
    pixels = pygame.surfarray.array3d(surface)  # indexed [x, y]
    mask = np.all(pixels == np.array(colour, dtype=pixels.dtype), axis=2)
    xs, ys = np.nonzero(mask)
    assert xs.size, f"no pixel of colour {colour}"
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    return ((x0 + x1 + 1) / 2, (y0 + y1 + 1) / 2, int(x1 - x0 + 1), int(y1 - y0 + 1))


def test_paddles_and_ball_are_drawn_where_the_simulation_has_them(
    screen: pygame.Surface,
) -> None:
    rules = Rules()
    sim = Simulation(seed=1, rules=rules)
    s = sim.state
    s.phase = Phase.PLAY
    s.left_y, s.right_y = 140 * SUB, 455 * SUB
    s.ball_x, s.ball_y, s.ball_vx, s.ball_vy = 523 * SUB, 211 * SUB, 5 * SUB, -2 * SUB
    s.left_score, s.right_score = 4, 9
    render.draw_game(screen, view_of(sim))

    for side, colour in ((LEFT, theme.LEFT_PADDLE), (RIGHT, theme.RIGHT_PADDLE)):
        x, y, w, h = find(screen, colour)
        assert (w, h) == (rules.paddle_width, rules.paddle_height)
        assert x == pytest.approx(rules.paddle_centre_x(side), abs=0.5)
        assert y == pytest.approx(s.paddles[side] / SUB, abs=0.5)

    x, y, w, h = find(screen, theme.BALL)
    assert (w, h) == (rules.ball_size, rules.ball_size)
    assert (x, y) == (pytest.approx(523.0, abs=0.5), pytest.approx(211.0, abs=0.5))


def test_the_field_has_a_dashed_net_in_the_middle(screen: pygame.Surface) -> None:
    sim = Simulation(seed=1)
    render.draw_game(screen, view_of(sim))
    pixels = pygame.surfarray.array3d(screen)
    column = pixels[400, :, :]
    is_net = np.all(column == np.array(theme.NET, dtype=pixels.dtype), axis=1)
    # Dashes: the column is net colour about half the time, and not all of it.
    assert 0.3 < is_net.mean() < 0.7


def test_the_ball_blinks_off_when_asked_and_is_hidden_after_the_game(
    screen: pygame.Surface,
) -> None:
    sim = Simulation(seed=1)
    render.draw_game(screen, view_of(sim), show_ball=False)
    pixels = pygame.surfarray.array3d(screen)
    assert not np.all(pixels == np.array(theme.BALL, dtype=pixels.dtype), axis=2).any()
    sim.state.phase = Phase.OVER
    render.draw_game(screen, view_of(sim))
    pixels = pygame.surfarray.array3d(screen)
    assert not np.all(pixels == np.array(theme.BALL, dtype=pixels.dtype), axis=2).any()


def test_drawing_does_not_change_the_state(screen: pygame.Surface) -> None:
    sim = Simulation(seed=4)
    for _ in range(100):
        sim.step(1, 2)
    before = snapshot(sim.state)
    view = view_of(sim, my_side=RIGHT)
    render.draw_game(screen, view)
    render.draw_overlay(screen, ["RTT 100 ms", "loss 5 %"])
    render.draw_banner(screen, "You win!", [("11 : 3", theme.TEXT)])
    assert snapshot(sim.state) == before
