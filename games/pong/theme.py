"""The palette, the fonts and the window size: one place for how things look."""

from __future__ import annotations

from functools import cache

import pygame

Colour = tuple[int, int, int]

SCREEN_SIZE = (800, 600)  # the simulation's field, drawn 1:1

BACKGROUND: Colour = (13, 17, 28)
PANEL: Colour = (27, 33, 51)
PANEL_EDGE: Colour = (58, 68, 99)
NET: Colour = (52, 61, 88)
SCORE: Colour = (84, 96, 132)
TEXT: Colour = (229, 233, 242)
TEXT_DIM: Colour = (139, 148, 173)
ACCENT: Colour = (255, 198, 77)
ERROR: Colour = (255, 99, 99)
GOOD: Colour = (112, 221, 143)
LEFT_PADDLE: Colour = (88, 196, 255)  # the host's side
RIGHT_PADDLE: Colour = (255, 112, 150)  # the client's side
BALL: Colour = (255, 255, 255)

PADDLE_COLOURS: tuple[Colour, Colour] = (LEFT_PADDLE, RIGHT_PADDLE)

TITLE_SIZE = 96
SCORE_SIZE = 120
LARGE_SIZE = 48
MEDIUM_SIZE = 32
SMALL_SIZE = 24


@cache
def font(size: int) -> pygame.font.Font:
    """pygame's default font at `size` (created once; needs pygame.font.init())."""
    return pygame.font.Font(None, size)
