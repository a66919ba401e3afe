"""A message (the opponent left, the connection died) and then back to the menu."""

from __future__ import annotations

import pygame

from games.pong import render, theme
from games.pong.scenes.base import Context, Scene

AUTO_RETURN = 6.0  # s before going back to the menu on its own


class MessageScene(Scene):
    def __init__(self, ctx: Context, title: str, message: str) -> None:
        super().__init__(ctx)
        self.title = title
        self.message = message
        self.shown_at: float | None = None

    def enter(self, now: float) -> None:
        self.shown_at = now
        self.ctx.close_peer()
        self.ctx.stop_demo()

    def handle_event(self, event: pygame.event.Event, now: float) -> None:
        if event.type in (pygame.KEYDOWN, pygame.MOUSEBUTTONDOWN):
            self.ctx.go.menu()

    def update(self, now: float) -> None:
        if self.shown_at is not None and now - self.shown_at > AUTO_RETURN:
            self.ctx.go.menu()

    def draw(self, surface: pygame.Surface, now: float) -> None:
        surface.fill(theme.BACKGROUND)
        left = AUTO_RETURN - (now - self.shown_at) if self.shown_at is not None else AUTO_RETURN
        render.draw_banner(
            surface,
            self.title,
            [
                (self.message, theme.ERROR),
                (f"Back to the menu in {max(0.0, left):.0f} s (any key)", theme.TEXT_DIM),
            ],
        )
