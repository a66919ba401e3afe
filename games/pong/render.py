"""Drawing. Every function reads what it is given and only writes pixels."""

from __future__ import annotations

from collections.abc import Sequence

import pygame

from games.pong import theme
from games.pong.match import View
from games.pong.sim import LEFT, RIGHT, Phase, Rules

NET_DASH = 18
NET_GAP = 14
NET_WIDTH = 4


def text(
    surface: pygame.Surface,
    content: str,
    size: int,
    colour: theme.Colour,
    *,
    center: tuple[float, float] | None = None,
    topleft: tuple[float, float] | None = None,
    midtop: tuple[float, float] | None = None,
) -> pygame.Rect:
    """Draw one line of text; returns where it went."""
    image = theme.font(size).render(content, True, colour)
    rect = image.get_rect()
    if center is not None:
        rect.center = (round(center[0]), round(center[1]))
    elif midtop is not None:
        rect.midtop = (round(midtop[0]), round(midtop[1]))
    elif topleft is not None:
        rect.topleft = (round(topleft[0]), round(topleft[1]))
    surface.blit(image, rect)
    return rect


def panel(surface: pygame.Surface, rect: pygame.Rect, alpha: int = 235) -> None:
    """A rounded, slightly transparent box to put text on."""
    box = pygame.Surface(rect.size, pygame.SRCALPHA)
    pygame.draw.rect(box, (*theme.PANEL, alpha), box.get_rect(), border_radius=12)
    pygame.draw.rect(box, (*theme.PANEL_EDGE, 255), box.get_rect(), width=2, border_radius=12)
    surface.blit(box, rect)


def paddle_rect(rules: Rules, side: int, y: float) -> pygame.Rect:
    x = rules.paddle_centre_x(side)
    rect = pygame.Rect(0, 0, round(rules.paddle_width), round(rules.paddle_height))
    rect.center = (round(x), round(y))
    return rect


def ball_rect(rules: Rules, x: float, y: float) -> pygame.Rect:
    size = round(rules.ball_size)
    rect = pygame.Rect(0, 0, size, size)
    rect.center = (round(x), round(y))
    return rect


def draw_net(surface: pygame.Surface, rules: Rules) -> None:
    x = round(rules.width / 2 - NET_WIDTH / 2)
    y = NET_GAP // 2
    while y < rules.height:
        pygame.draw.rect(surface, theme.NET, (x, y, NET_WIDTH, NET_DASH))
        y += NET_DASH + NET_GAP


def draw_game(surface: pygame.Surface, view: View, *, show_ball: bool = True) -> None:
    """The field: net, scores, names, paddles and ball."""
    r = view.rules
    surface.fill(theme.BACKGROUND)
    draw_net(surface, r)
    for side in (LEFT, RIGHT):
        centre_x = r.width / 2 + (-1 if side == LEFT else 1) * r.width / 6
        text(surface, str(view.score[side]), theme.SCORE_SIZE, theme.SCORE, midtop=(centre_x, 24))
        label = view.names[side] + ("  (you)" if side == view.my_side else "")
        colour = theme.TEXT if side == view.my_side else theme.TEXT_DIM
        text(surface, label, theme.SMALL_SIZE, colour, midtop=(centre_x, 112))
        rect = paddle_rect(r, side, view.paddles[side])
        pygame.draw.rect(surface, theme.PADDLE_COLOURS[side], rect)
    goal = f"first to {view.points_to_win}"
    goal_image = theme.font(theme.SMALL_SIZE).render(goal, True, theme.TEXT_DIM)
    where = goal_image.get_rect(midbottom=(round(r.width / 2), round(r.height) - 8))
    surface.fill(theme.BACKGROUND, where.inflate(16, 6))  # the net pauses under the label
    surface.blit(goal_image, where)
    if show_ball and view.phase != Phase.OVER:
        pygame.draw.rect(surface, theme.BALL, ball_rect(r, *view.ball))


def draw_overlay(surface: pygame.Surface, lines: Sequence[str]) -> None:
    """The network statistics box (F3 / Tab)."""
    size = theme.SMALL_SIZE
    width = max(theme.font(size).size(line)[0] for line in lines) + 24
    rect = pygame.Rect(56, 150, width, 14 + len(lines) * (size - 4))  # clear of the paddle
    panel(surface, rect, alpha=210)
    for i, line in enumerate(lines):
        text(surface, line, size, theme.TEXT, topleft=(rect.x + 12, rect.y + 8 + i * (size - 4)))


def draw_banner(
    surface: pygame.Surface, title: str, lines: Sequence[tuple[str, theme.Colour]]
) -> pygame.Rect:
    """A centred panel with a big title and a few lines under it."""
    w, h = surface.get_size()
    rect = pygame.Rect(0, 0, 520, 120 + 34 * len(lines))
    rect.center = (w // 2, h // 2)
    panel(surface, rect)
    text(surface, title, theme.LARGE_SIZE, theme.ACCENT, midtop=(rect.centerx, rect.y + 24))
    for i, (line, colour) in enumerate(lines):
        text(surface, line, theme.SMALL_SIZE, colour, midtop=(rect.centerx, rect.y + 84 + i * 34))
    return rect
