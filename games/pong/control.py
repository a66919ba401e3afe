"""Where paddle intents come from: the keyboard, a bot, or nobody."""

from __future__ import annotations

from collections.abc import Collection

import pygame

from games.pong.bot import BallSeen, Bot
from games.pong.match import Controller, View
from games.pong.sim import Intent, Phase

UP_KEYS = frozenset({pygame.K_w, pygame.K_UP})
DOWN_KEYS = frozenset({pygame.K_s, pygame.K_DOWN})


def keys_to_intent(held: Collection[int]) -> Intent:
    """The intent of the keys held down (both directions at once: stay)."""
    up = any(k in held for k in UP_KEYS)
    down = any(k in held for k in DOWN_KEYS)
    if up == down:
        return Intent.STAY
    return Intent.UP if up else Intent.DOWN


def bot_controller(bot: Bot) -> Controller:
    def decide(view: View) -> Intent:
        ball = None
        if view.phase == Phase.PLAY:
            ball = BallSeen(view.ball[0], view.ball[1], *view.ball_velocity)
        return bot.decide(ball, view.paddles[bot.side])

    return decide


def idle_controller(view: View) -> Intent:
    return Intent.STAY
