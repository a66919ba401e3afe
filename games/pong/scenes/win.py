"""Game over: who won, rematch or back to the menu."""

from __future__ import annotations

import pygame

from games.pong import render, theme
from games.pong.match import Status
from games.pong.scenes.base import Context, Scene
from games.pong.scenes.common import STATS_KEYS, advance, draw_match
from games.pong.session import MatchSession
from games.pong.widgets import BUTTON_HEIGHT, Button, Form


class WinScene(Scene):
    def __init__(self, ctx: Context, session: MatchSession) -> None:
        super().__init__(ctx)
        self.session = session
        self.form = Form(
            [
                Button("Rematch (R)", "rematch", pygame.Rect(160, 412, 220, BUTTON_HEIGHT)),
                Button("Menu (Esc)", "menu", pygame.Rect(420, 412, 220, BUTTON_HEIGHT)),
            ]
        )

    def handle_event(self, event: pygame.event.Event, now: float) -> None:
        action = self.form.handle(event)
        if event.type == pygame.KEYDOWN:
            if event.key == pygame.K_r:
                action = "rematch"
            elif event.key in (pygame.K_ESCAPE, pygame.K_m):
                action = "menu"
            elif event.key in STATS_KEYS:
                self.ctx.settings.show_stats = not self.ctx.settings.show_stats
        if action == "rematch":
            self.session.match.request_rematch()
        elif action == "menu":
            self.session.leave()
            self.ctx.go.menu()

    def handle_net(self, event: pygame.event.Event, now: float) -> None:
        self.session.route(event, now)

    def update(self, now: float) -> None:
        if advance(self.ctx, self.session, now):
            return
        if self.session.match.status == Status.PLAYING:
            self.ctx.go.play(self.session)

    def draw(self, surface: pygame.Surface, now: float) -> None:
        draw_match(surface, self.ctx, self.session, now)
        m = self.session.match
        title = "You win!" if m.i_won else f"{m.opponent} wins"
        left, right = m.final_score
        lines = [(f"{m.names[0]}  {left} : {right}  {m.names[1]}", theme.TEXT)]
        if m.i_want_rematch:
            lines.append((f"Waiting for {m.opponent} to accept...", theme.TEXT_DIM))
        elif m.they_want_rematch:
            lines.append((f"{m.opponent} wants a rematch!", theme.GOOD))
        else:
            lines.append(("Play again?", theme.TEXT_DIM))
        render.draw_banner(surface, title, lines)
        self.form.draw(surface, now)
