"""Menu widgets: text fields and buttons, driven by keyboard and mouse.

A `Form` owns the focus: Tab / Shift+Tab / Up / Down move it, the mouse
focuses what it clicks, Enter on a button (or a click) returns its action.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pygame

from games.pong import theme
from games.pong.render import text

FIELD_HEIGHT = 40
BUTTON_HEIGHT = 44


@dataclass
class TextField:
    label: str
    value: str
    rect: pygame.Rect
    max_length: int = 32
    secret: bool = False

    def shown_text(self) -> str:
        return "*" * len(self.value) if self.secret else self.value

    def handle(self, event: pygame.event.Event) -> None:
        """Typing, when focused."""
        if event.type == pygame.TEXTINPUT:
            printable = "".join(ch for ch in event.text if ch.isprintable())
            self.value = (self.value + printable)[: self.max_length]
        elif event.type == pygame.KEYDOWN and event.key == pygame.K_BACKSPACE:
            self.value = "" if event.mod & pygame.KMOD_CTRL else self.value[:-1]

    def draw(self, surface: pygame.Surface, focused: bool, now: float) -> None:
        text(
            surface,
            self.label,
            theme.SMALL_SIZE,
            theme.TEXT_DIM,
            topleft=(self.rect.x, self.rect.y - 22),
        )
        pygame.draw.rect(surface, theme.PANEL, self.rect, border_radius=6)
        edge = theme.ACCENT if focused else theme.PANEL_EDGE
        pygame.draw.rect(surface, edge, self.rect, width=2, border_radius=6)
        shown = self.shown_text()
        where = text(
            surface,
            shown,
            theme.MEDIUM_SIZE,
            theme.TEXT,
            topleft=(self.rect.x + 10, self.rect.y + 9),
        )
        if focused and int(now * 2) % 2 == 0:
            x = where.right + 2 if shown else self.rect.x + 10
            pygame.draw.line(
                surface, theme.ACCENT, (x, self.rect.y + 8), (x, self.rect.bottom - 8), 2
            )


@dataclass
class Button:
    label: str
    action: str
    rect: pygame.Rect
    enabled: bool = True

    def draw(self, surface: pygame.Surface, focused: bool) -> None:
        fill = theme.PANEL_EDGE if focused and self.enabled else theme.PANEL
        pygame.draw.rect(surface, fill, self.rect, border_radius=8)
        edge = theme.ACCENT if focused and self.enabled else theme.PANEL_EDGE
        pygame.draw.rect(surface, edge, self.rect, width=2, border_radius=8)
        colour = theme.TEXT if self.enabled else theme.TEXT_DIM
        text(surface, self.label, theme.MEDIUM_SIZE, colour, center=self.rect.center)


Widget = TextField | Button


@dataclass
class Form:
    widgets: list[Widget] = field(default_factory=list)
    focus: int = 0

    @property
    def focused(self) -> Widget | None:
        return self.widgets[self.focus] if self.widgets else None

    def field(self, label: str) -> TextField:
        for w in self.widgets:
            if isinstance(w, TextField) and w.label == label:
                return w
        raise KeyError(label)

    def move_focus(self, step: int) -> None:
        if self.widgets:
            self.focus = (self.focus + step) % len(self.widgets)

    def focus_action(self, action: str) -> None:
        for i, w in enumerate(self.widgets):
            if isinstance(w, Button) and w.action == action:
                self.focus = i

    def handle(self, event: pygame.event.Event) -> str | None:
        """Feed one input event; returns a button's action when one is pressed."""
        current = self.focused
        if event.type == pygame.MOUSEBUTTONDOWN and event.button == 1:
            for i, w in enumerate(self.widgets):
                if w.rect.collidepoint(event.pos):
                    self.focus = i
                    if isinstance(w, Button) and w.enabled:
                        return w.action
            return None
        if event.type == pygame.KEYDOWN:
            if event.key == pygame.K_TAB:
                self.move_focus(-1 if event.mod & pygame.KMOD_SHIFT else 1)
                return None
            if event.key in (pygame.K_UP, pygame.K_DOWN):
                self.move_focus(-1 if event.key == pygame.K_UP else 1)
                return None
            if event.key in (pygame.K_RETURN, pygame.K_KP_ENTER):
                if isinstance(current, Button):
                    return current.action if current.enabled else None
                self.move_focus(1)
                return None
            if event.key == pygame.K_SPACE and isinstance(current, Button) and current.enabled:
                return current.action
        if isinstance(current, TextField):
            current.handle(event)
        return None

    def draw(self, surface: pygame.Surface, now: float) -> None:
        for i, w in enumerate(self.widgets):
            if isinstance(w, TextField):
                w.draw(surface, i == self.focus, now)
            else:
                w.draw(surface, i == self.focus)
