"""Rollback sessions (GGPO / GGRS style) over a ``framework.Peer``.

Pure: no socket, clock or pygame; the engine is a ``Transport`` and time a
parameter. See the README's "Make your game rollback-ready".
"""

from __future__ import annotations

from framework.rollback.p2p import P2PSession
from framework.rollback.spectating import SpectatorSession
from framework.rollback.synctest import SyncTestSession
from framework.rollback.types import (
    DEFAULT_CHANNEL,
    DEFAULT_DISCONNECT_TIMEOUT,
    DEFAULT_PREDICTION_WINDOW,
    AdvanceFrame,
    Cell,
    Desync,
    Disconnected,
    InputStatus,
    LoadState,
    PlayerInput,
    Request,
    RollbackError,
    RollbackEvent,
    RollbackStats,
    SaveState,
    SyncMismatch,
    Transport,
    WaitRecommendation,
)

__all__ = [
    "DEFAULT_CHANNEL",
    "DEFAULT_DISCONNECT_TIMEOUT",
    "DEFAULT_PREDICTION_WINDOW",
    "AdvanceFrame",
    "Cell",
    "Desync",
    "Disconnected",
    "InputStatus",
    "LoadState",
    "P2PSession",
    "PlayerInput",
    "Request",
    "RollbackError",
    "RollbackEvent",
    "RollbackStats",
    "SaveState",
    "SpectatorSession",
    "SyncMismatch",
    "SyncTestSession",
    "Transport",
    "WaitRecommendation",
]
