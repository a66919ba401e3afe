"""What the play and game-over scenes share: the session start, the field, leaving."""

from __future__ import annotations

import pygame

from games.pong import render
from games.pong.control import idle_controller
from games.pong.lobby import ConnectRequest
from games.pong.match import Status
from games.pong.scenes.base import Context
from games.pong.session import MatchSession, new_seed
from games.pong.sim import Phase

STATS_KEYS = (pygame.K_F3, pygame.K_TAB)


def start_session(ctx: Context, request: ConnectRequest, opponent: str, now: float) -> MatchSession:
    """The session for a connection just made; the keyboard is attached by PlayScene."""
    assert ctx.peer is not None
    opts = ctx.opts
    return MatchSession.start(
        ctx.peer,
        request,
        opponent,
        now,
        seed=opts.seed if opts.seed is not None else new_seed(),
        points=opts.points,
        controller=None if opts.bot else idle_controller,
    )


def draw_match(surface: pygame.Surface, ctx: Context, session: MatchSession, now: float) -> None:
    """The field, plus the overlay when it is on (shared by play and game-over)."""
    view = session.match.view()
    blink_off = view.phase == Phase.SERVE and int(now * 4) % 2 == 1
    render.draw_game(surface, view, show_ball=not blink_off)
    if ctx.settings.show_stats:
        render.draw_overlay(surface, session.overlay_lines(ctx.fps))


def advance(ctx: Context, session: MatchSession, now: float) -> bool:
    """A frame of a match scene (play, game over): the session and its sounds; switch
    away if the opponent is gone, and True if we did."""
    session.update(now)
    ctx.sounds.play_events(session.match.take_events(), session.match.my_side)
    if session.match.status != Status.LOST:
        return False
    ctx.go.message("Game ended", session.match.lost_reason)
    return True
