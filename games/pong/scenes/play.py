"""Playing: keyboard (or bot) in, match updated, field drawn; the stats overlay."""

from __future__ import annotations

import pygame

from games.pong import render, theme
from games.pong.control import idle_controller, keys_to_intent
from games.pong.lobby import ConnectRequest
from games.pong.match import Status, View
from games.pong.scenes import menu, message, win
from games.pong.scenes.base import Context, Scene
from games.pong.session import MatchSession, new_seed
from games.pong.sim import Intent, Phase

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


def leave_for_status(ctx: Context, session: MatchSession) -> bool:
    """Switch away if the opponent is gone; True if we did."""
    if session.match.status != Status.LOST:
        return False
    ctx.switch(message.MessageScene(ctx, "Game ended", session.match.lost_reason))
    return True


class PlayScene(Scene):
    def __init__(self, ctx: Context, session: MatchSession) -> None:
        super().__init__(ctx)
        self.session = session
        self.held: set[int] = set()

    def _keyboard(self, view: View) -> Intent:
        return keys_to_intent(self.held)

    def enter(self, now: float) -> None:
        pygame.key.stop_text_input()  # W and S steer here; no IME popups
        if not self.ctx.opts.bot:
            self.session.controller = self._keyboard

    def handle_event(self, event: pygame.event.Event, now: float) -> None:
        if event.type == pygame.KEYDOWN:
            if event.key == pygame.K_ESCAPE:
                self.session.leave()
                menu.back_to_menu(self.ctx)
            elif event.key in STATS_KEYS:
                self.ctx.settings.show_stats = not self.ctx.settings.show_stats
            else:
                self.held.add(event.key)
        elif event.type == pygame.KEYUP:
            self.held.discard(event.key)
        elif event.type == pygame.WINDOWFOCUSLOST:
            self.held.clear()

    def handle_net(self, event: pygame.event.Event, now: float) -> None:
        self.session.route(event, now)

    def update(self, now: float) -> None:
        self.session.update(now)
        self.ctx.sounds.play_events(self.session.match.take_events(), self.session.match.my_side)
        if leave_for_status(self.ctx, self.session):
            return
        if self.session.match.status == Status.OVER:
            self.ctx.switch(win.WinScene(self.ctx, self.session))

    def draw(self, surface: pygame.Surface, now: float) -> None:
        draw_match(surface, self.ctx, self.session, now)
        if self.session.match.status == Status.WAITING:
            render.draw_banner(surface, "Connected", [("Waiting for the host...", theme.TEXT)])
