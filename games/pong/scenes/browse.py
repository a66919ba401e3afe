"""The server browser: the games registered at the handshake server and those answering
on the local network (tagged LAN), refreshed on demand."""

from __future__ import annotations

from dataclasses import dataclass

import pygame

from framework import events
from games.pong import render, theme
from games.pong.cli import Address, format_address, parse_handshake
from games.pong.lobby import ConnectRequest, Role
from games.pong.scenes.base import Context, Scene
from games.pong.widgets import BUTTON_HEIGHT, FIELD_HEIGHT, Button, Form, TextField

LIST_TIMEOUT = 6.0  # s; the engine reports an expired request after 5 x 1 s
ROW_HEIGHT = 36
LIST_TOP = 150
MAX_ROWS = 8
PASSWORD = "Password"


@dataclass(frozen=True)
class ServerEntry:
    name: str
    locked: bool
    #: Found on the local network (joined there directly, with no handshake server).
    lan: bool = False
    address: Address | None = None


def _lan_address(entry: dict[str, object]) -> Address | None:
    address = entry.get("address")
    if (isinstance(address, (tuple, list)) and len(address) == 2
            and isinstance(address[0], str) and isinstance(address[1], int)):
        return (address[0], address[1])
    return None


def parse_server_list(event: pygame.event.Event) -> list[ServerEntry]:
    """The entries of a RECEIVED_SERVER_LIST event, sorted by name."""
    servers = getattr(event, "servers", None) or []
    entries: dict[tuple[str, Address | None], ServerEntry] = {}
    for s in servers:
        if not isinstance(s, dict) or "name" not in s:
            continue
        address = _lan_address(s) if s.get("lan") else None
        if s.get("lan") and address is None:
            continue
        entry = ServerEntry(str(s["name"]), bool(s.get("password_required")),
                            address is not None, address)
        entries[(entry.name, address)] = entry
    for name in getattr(event, "server_names", None) or []:
        if not any(key[0] == str(name) for key in entries):
            entries[(str(name), None)] = ServerEntry(str(name), False)
    return sorted(entries.values(), key=lambda e: (e.name.lower(), e.lan))


def merge_entries(old: list[ServerEntry], new: list[ServerEntry], lan: bool
                  ) -> list[ServerEntry]:
    """One list's answer replaces the entries of its kind (LAN or handshake server)."""
    kept = [e for e in old if e.lan != lan]
    fresh = [e for e in new if e.lan == lan]
    return sorted(kept + fresh, key=lambda e: (e.name.lower(), e.lan))


class BrowseScene(Scene):
    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.entries: list[ServerEntry] = []
        self.selected = 0
        self.asked_at: float | None = None
        self.lan_asked_at: float | None = None
        self.error = ""
        self.handshake: Address | None = None
        self.handshake_key: str | None = None
        self.form = Form(
            [
                TextField(
                    PASSWORD,
                    ctx.settings.password,
                    pygame.Rect(70, 492, 250, FIELD_HEIGHT),
                    secret=True,
                ),
                Button("Join (Enter)", "join", pygame.Rect(340, 490, 170, BUTTON_HEIGHT)),
                Button("Refresh (F5)", "refresh", pygame.Rect(520, 490, 170, BUTTON_HEIGHT)),
                Button("Back (Esc)", "back", pygame.Rect(600, 40, 150, BUTTON_HEIGHT)),
            ],
            focus=1,
        )

    def enter(self, now: float) -> None:
        pygame.key.start_text_input()
        try:
            self.handshake, self.handshake_key = parse_handshake(self.ctx.settings.handshake)
        except ValueError as exc:
            self.error = f"Handshake server: {exc}"
        self.refresh(now)

    def refresh(self, now: float) -> None:
        self.error = ""
        try:
            peer = self.ctx.peer or self.ctx.open_peer()
        except OSError as exc:
            self.error = f"Could not ask: {exc}"
            return
        if self.lan_asked_at is None:
            try:
                peer.request_lan_server_list()
                self.lan_asked_at = now
            except (OSError, RuntimeError) as exc:
                self.error = f"Could not look on the local network: {exc}"
        if self.handshake is None:
            return
        try:
            peer.request_server_list(self.handshake, handshake_key=self.handshake_key)
        except OSError as exc:
            self.error = f"Could not ask: {exc}"
            return
        self.asked_at = now

    def handle_event(self, event: pygame.event.Event, now: float) -> None:
        if event.type == pygame.KEYDOWN:
            if event.key == pygame.K_ESCAPE:
                self.ctx.go.menu()
                return
            if event.key == pygame.K_F5:
                self.refresh(now)
                return
            if event.key in (pygame.K_UP, pygame.K_DOWN) and self.entries:
                step = -1 if event.key == pygame.K_UP else 1
                self.selected = (self.selected + step) % len(self.entries)
                return
            if event.key in (pygame.K_RETURN, pygame.K_KP_ENTER):
                self.join()
                return
        if event.type == pygame.MOUSEBUTTONDOWN and event.button == 1:
            row = self._row_at(event.pos)
            if row is not None:
                if row == self.selected and getattr(event, "clicks", 1) >= 2:
                    self.join()
                self.selected = row
                return
        action = self.form.handle(event)
        if action == "join":
            self.join()
        elif action == "refresh":
            self.refresh(now)
        elif action == "back":
            self.ctx.go.menu()

    def _row_at(self, pos: tuple[int, int]) -> int | None:
        for i in range(min(len(self.entries), MAX_ROWS)):
            if self._row_rect(i).collidepoint(pos):
                return i
        return None

    @staticmethod
    def _row_rect(i: int) -> pygame.Rect:
        return pygame.Rect(70, LIST_TOP + i * (ROW_HEIGHT + 6), 660, ROW_HEIGHT)

    def join(self) -> None:
        if not self.entries:
            return
        entry = self.entries[self.selected]
        if not entry.lan and self.handshake is None:
            return
        s = self.ctx.settings
        s.password = self.form.field(PASSWORD).value
        if entry.locked and not s.password:
            self.error = f"'{entry.name}' needs a password: type it below."
            self.form.focus = 0
            return
        if entry.name == s.name:
            self.error = "That is your own name; change it in the menu."
            return
        s.join_name = entry.name
        request = ConnectRequest(
            Role.CLIENT,
            s.name,
            entry.name,
            self.handshake or self.ctx.opts.handshake,
            self.ctx.opts.local_address,
            s.password if entry.locked else None,
            None if entry.lan else self.handshake_key,
            lan=entry.lan,
            host_address=entry.address,
        )
        self.ctx.go.connect(request)

    def handle_net(self, event: pygame.event.Event, now: float) -> None:
        if event.type == events.RECEIVED_SERVER_LIST:
            found = parse_server_list(event)
            lan = bool(getattr(event, "lan", False))
            if lan:
                self.lan_asked_at = None
            else:
                self.asked_at = None
            self.entries = merge_entries(self.entries, found, lan)
            self.selected = min(self.selected, max(0, len(self.entries) - 1))
        elif event.type == events.ERROR and self.asked_at is not None:
            self.asked_at = None
            self.error = f"The handshake server does not answer ({event.message})."

    def update(self, now: float) -> None:
        if self.lan_asked_at is not None and now - self.lan_asked_at > LIST_TIMEOUT:
            self.lan_asked_at = None
        if self.asked_at is not None and now - self.asked_at > LIST_TIMEOUT:
            self.asked_at = None
            hs = format_address(self.handshake) if self.handshake else "?"
            self.error = f"The handshake server {hs} does not answer."

    def draw(self, surface: pygame.Surface, now: float) -> None:
        surface.fill(theme.BACKGROUND)
        hs = format_address(self.handshake) if self.handshake else self.ctx.settings.handshake
        render.text(surface, "Servers", theme.LARGE_SIZE, theme.TEXT, topleft=(70, 44))
        render.text(surface, f"at {hs} and on the local network (LAN)", theme.SMALL_SIZE,
                    theme.TEXT_DIM, topleft=(70, 92))
        asked = [t for t in (self.asked_at, self.lan_asked_at) if t is not None]
        if asked:
            status, colour = f"Asking... {now - min(asked):3.1f} s", theme.TEXT_DIM
        elif self.error:
            status, colour = self.error, theme.ERROR
        elif not self.entries:
            status, colour = "No games registered. F5 to refresh.", theme.TEXT_DIM
        else:
            status, colour = f"{len(self.entries)} game(s). Up/Down to pick.", theme.TEXT_DIM
        render.text(surface, status, theme.SMALL_SIZE, colour, topleft=(70, 118))
        for i, entry in enumerate(self.entries[:MAX_ROWS]):
            rect = self._row_rect(i)
            chosen = i == self.selected
            pygame.draw.rect(
                surface, theme.PANEL_EDGE if chosen else theme.PANEL, rect, border_radius=6
            )
            if chosen:
                pygame.draw.rect(surface, theme.ACCENT, rect, width=2, border_radius=6)
            render.text(
                surface,
                entry.name,
                theme.MEDIUM_SIZE,
                theme.TEXT,
                topleft=(rect.x + 14, rect.y + 8),
            )
            if entry.lan:
                _lan_tag(surface, (rect.right - 90, rect.y + 8))
            if entry.locked:
                _lock(surface, (rect.right - 30, rect.y + 8))
        if len(self.entries) > MAX_ROWS:
            more = f"... and {len(self.entries) - MAX_ROWS} more"
            render.text(
                surface,
                more,
                theme.SMALL_SIZE,
                theme.TEXT_DIM,
                topleft=(70, LIST_TOP + MAX_ROWS * (ROW_HEIGHT + 6)),
            )
        self.form.draw(surface, now)


def _lan_tag(surface: pygame.Surface, topleft: tuple[int, int]) -> None:
    """A small LAN badge: the game answered on the local network."""
    x, y = topleft
    pygame.draw.rect(surface, theme.ACCENT, (x, y, 48, 22), width=2, border_radius=4)
    render.text(surface, "LAN", theme.SMALL_SIZE, theme.ACCENT, center=(x + 24, y + 11))


def _lock(surface: pygame.Surface, topleft: tuple[int, int]) -> None:
    """A small padlock: the game needs a password."""
    x, y = topleft
    pygame.draw.arc(surface, theme.ACCENT, (x + 3, y, 12, 14), 0, 3.1416, 3)
    pygame.draw.rect(surface, theme.ACCENT, (x, y + 8, 18, 13), border_radius=3)
