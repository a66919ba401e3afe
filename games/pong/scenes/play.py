"""Playing: keyboard (or bot) in, match updated, field drawn; the stats overlay."""

from __future__ import annotations

import pygame

from games.pong import render, theme
from games.pong.control import keys_to_intent
from games.pong.match import Status, View
from games.pong.scenes.base import Context, Scene
from games.pong.scenes.common import STATS_KEYS, advance, draw_match
from games.pong.session import MatchSession
from games.pong.sim import Intent


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
                self.ctx.go.menu()
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
        if advance(self.ctx, self.session, now):
            return
        if self.session.match.status == Status.OVER:
            self.ctx.go.game_over(self.session)

    def draw(self, surface: pygame.Surface, now: float) -> None:
        draw_match(surface, self.ctx, self.session, now)
        if self.session.match.status == Status.WAITING:
            render.draw_banner(surface, "Connected", [("Waiting for the host...", theme.TEXT)])
