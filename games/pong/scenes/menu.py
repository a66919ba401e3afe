"""The main menu: who you are, where the handshake server is, and what to do."""

from __future__ import annotations

import pygame

from games.pong import render, theme
from games.pong.cli import parse_handshake
from games.pong.lobby import ConnectRequest, Role
from games.pong.scenes.base import Context, Scene
from games.pong.widgets import BUTTON_HEIGHT, FIELD_HEIGHT, Button, Form, TextField

NAME = "Your name"
HANDSHAKE = "Handshake server"
PASSWORD = "Password (optional)"
JOIN = "Game to join"


class MenuScene(Scene):
    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        s = ctx.settings
        left, width = 70, 330

        def field_rect(row: int) -> pygame.Rect:
            return pygame.Rect(left, 200 + row * 78, width, FIELD_HEIGHT)

        def button_rect(row: int) -> pygame.Rect:
            return pygame.Rect(470, 176 + row * 62, 260, BUTTON_HEIGHT)

        self.form = Form(
            [
                TextField(NAME, s.name, field_rect(0), max_length=24),
                TextField(HANDSHAKE, s.handshake, field_rect(1), max_length=100),
                TextField(PASSWORD, s.password, field_rect(2), max_length=32, secret=True),
                TextField(JOIN, s.join_name, field_rect(3), max_length=24),
                Button("Host a game", "host", button_rect(0)),
                Button("Join", "join", button_rect(1)),
                Button("Browse servers", "browse", button_rect(2)),
                Button("Demo vs. bot", "demo", button_rect(3)),
                Button("Quit", "quit", button_rect(4)),
            ]
        )
        self.error = ""

    def enter(self, now: float) -> None:
        pygame.key.start_text_input()

    def _save(self) -> None:
        s = self.ctx.settings
        s.name = self.form.field(NAME).value.strip()
        s.handshake = self.form.field(HANDSHAKE).value.strip()
        s.password = self.form.field(PASSWORD).value
        s.join_name = self.form.field(JOIN).value.strip()

    def handle_event(self, event: pygame.event.Event, now: float) -> None:
        if event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE:
            self.ctx.quit()
            return
        action = self.form.handle(event)
        if action is not None:
            self._save()
            self.error = ""
            self.act(action)

    def request(self, role: Role) -> ConnectRequest | None:
        """The connect request the fields describe, or None (and `error` says why)."""
        s = self.ctx.settings
        if not s.name:
            self.error = "Type your name first."
            return None
        try:
            handshake, key = parse_handshake(s.handshake)
        except ValueError as exc:
            self.error = f"Handshake server: {exc}"
            return None
        server = s.name if role == Role.HOST else s.join_name
        if not server:
            self.error = "Type the name of the game to join (or browse the servers)."
            return None
        if role == Role.CLIENT and server == s.name:
            self.error = "Pick a name different from the game's."
            return None
        local = self.ctx.opts.local_address
        return ConnectRequest(role, s.name, server, handshake, local, s.password or None, key)

    def act(self, action: str) -> None:
        if action == "quit":
            self.ctx.quit()
        elif action == "browse":
            self.ctx.go.browse()
        elif action == "demo":
            if not self.ctx.settings.name:
                self.error = "Type your name first."
                return
            self.ctx.go.demo(self.ctx.settings.name)
        elif action in ("host", "join"):
            request = self.request(Role.HOST if action == "host" else Role.CLIENT)
            if request is not None:
                self.ctx.go.connect(request)

    def draw(self, surface: pygame.Surface, now: float) -> None:
        surface.fill(theme.BACKGROUND)
        w = surface.get_width()
        render.text(surface, "PONG", theme.TITLE_SIZE, theme.TEXT, midtop=(w / 2, 28))
        render.text(
            surface,
            "peer to peer, over pygame-p2p",
            theme.SMALL_SIZE,
            theme.TEXT_DIM,
            midtop=(w / 2, 100),
        )
        self.form.draw(surface, now)
        if self.error:
            render.text(surface, self.error, theme.SMALL_SIZE, theme.ERROR, midtop=(w / 2, 520))
        render.text(
            surface,
            "Tab / arrows: move    Enter or click: choose    Esc: quit",
            theme.SMALL_SIZE,
            theme.TEXT_DIM,
            midtop=(w / 2, 566),
        )
