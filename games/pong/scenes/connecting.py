"""Connecting: what the engine is doing, how long it has taken, and a way back."""

from __future__ import annotations

import math

import pygame

from games.pong import render, theme
from games.pong.lobby import Connector, ConnectRequest, Role, Stage
from games.pong.scenes.base import Context, Scene
from games.pong.scenes.common import start_session
from games.pong.session import MatchSession

DEMO_LOCAL = ("127.0.0.1", 0)


class ConnectingScene(Scene):
    def __init__(self, ctx: Context, request: ConnectRequest, *, with_demo: bool = False) -> None:
        super().__init__(ctx)
        self.request = request
        self.with_demo = with_demo
        self.connector: Connector | None = None
        self.session: MatchSession | None = None
        self.bot_spawned = False
        self.error = ""

    @classmethod
    def demo(cls, ctx: Context, name: str) -> ConnectingScene:
        """Host `name` on a local handshake server against a bot process."""
        request = ConnectRequest(Role.HOST, name, name, ("127.0.0.1", 0), DEMO_LOCAL)
        return cls(ctx, request, with_demo=True)

    def enter(self, now: float) -> None:
        try:
            if self.with_demo:
                demo = self.ctx.start_demo()
                r = self.request
                self.request = ConnectRequest(
                    r.role, r.user_name, r.server_name, demo.handshake, r.local_address
                )
            peer = self.ctx.open_peer()
        except OSError as exc:
            self.error = f"Could not start: {exc}"
            return
        self.connector = Connector(peer, self.request, now)
        self.connector.start()

    def handle_event(self, event: pygame.event.Event, now: float) -> None:
        back = event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE
        if self.failed and event.type in (pygame.KEYDOWN, pygame.MOUSEBUTTONDOWN):
            back = True
        if back:
            self.ctx.go.menu()

    @property
    def failed(self) -> bool:
        return bool(self.error) or (self.connector is not None and self.connector.failed)

    def handle_net(self, event: pygame.event.Event, now: float) -> None:
        if self.session is not None:
            self.session.route(event, now)  # events after the connection in the same frame
            return
        c = self.connector
        if c is None:
            return
        c.handle(event)
        if c.connected and c.opponent is not None and self.ctx.peer is not None:
            self.session = start_session(self.ctx, self.request, c.opponent, now)
            self.ctx.go.play(self.session)

    def update(self, now: float) -> None:
        c = self.connector
        if c is None or self.session is not None:
            return
        c.update(now)
        demo = self.ctx.demo
        if self.with_demo and demo is not None:
            if c.stage == Stage.WAITING and not self.bot_spawned:
                self.bot_spawned = True
                try:
                    demo.spawn_bot(self.request.server_name)
                except OSError as exc:
                    self.error = f"Could not start the bot: {exc}"
            problem = demo.bot_failed()
            if problem and not self.error:
                self.error = problem

    def draw(self, surface: pygame.Surface, now: float) -> None:
        surface.fill(theme.BACKGROUND)
        w, h = surface.get_size()
        r = self.request
        verb = "Hosting" if r.role == Role.HOST else "Joining"
        title = "Demo against a bot" if self.with_demo else f"{verb} '{r.server_name}'"
        render.text(surface, title, theme.LARGE_SIZE, theme.TEXT, midtop=(w / 2, 110))
        c = self.connector
        if self.failed:
            message = self.error or (c.error if c else "")
            render.text(
                surface, "Could not connect", theme.MEDIUM_SIZE, theme.ERROR, midtop=(w / 2, 230)
            )
            for i, line in enumerate(_wrap(message, 60)):
                y = 280 + 28 * i
                render.text(surface, line, theme.SMALL_SIZE, theme.TEXT, midtop=(w / 2, y))
            hint = "Esc, Enter or click: back to the menu"
        else:
            status = c.status() if c else "Starting..."
            for i, line in enumerate(_wrap(status, 60)):
                y = 240 + 28 * i
                render.text(surface, line, theme.SMALL_SIZE, theme.TEXT, midtop=(w / 2, y))
            elapsed = c.elapsed(now) if c else 0.0
            render.text(
                surface, f"{elapsed:4.1f} s", theme.MEDIUM_SIZE, theme.TEXT_DIM, midtop=(w / 2, 330)
            )
            _spinner(surface, (w // 2, 410), now)
            if c is not None and c.note:
                render.text(surface, c.note, theme.SMALL_SIZE, theme.ACCENT, midtop=(w / 2, 460))
            hint = "Esc: back to the menu"
        render.text(surface, hint, theme.SMALL_SIZE, theme.TEXT_DIM, midtop=(w / 2, h - 40))


def _spinner(surface: pygame.Surface, centre: tuple[int, int], now: float) -> None:
    for i in range(8):
        angle = 2 * math.pi * i / 8
        lit = (int(now * 8) - i) % 8
        shade = max(60, 255 - lit * 28)
        colour = (shade, shade * 200 // 255, shade * 80 // 255)
        x = centre[0] + 26 * math.cos(angle)
        y = centre[1] + 26 * math.sin(angle)
        pygame.draw.circle(surface, colour, (round(x), round(y)), 5)


def _wrap(message: str, width: int) -> list[str]:
    """Greedy word wrap for one paragraph."""
    lines: list[str] = []
    line = ""
    for word in message.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return lines
