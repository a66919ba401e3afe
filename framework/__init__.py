"""pygame-p2p: peer-to-peer networking for pygame games.

    from framework import Peer, Config, events, Delivery

``Peer`` and ``events`` load pygame when first used; the protocol core
(``framework.protocol``) never does, so the handshake server can share it.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from .protocol.config import Config
from .protocol.constants import HS_SERVER_NAME
from .protocol.delivery import Delivery
from .protocol.errors import MessageTooLarge, NotConnected
from .protocol.stats import PeerStats

if TYPE_CHECKING:
    from . import events
    from .peer import Peer

__all__ = [
    "HS_SERVER_NAME",
    "Config",
    "Delivery",
    "MessageTooLarge",
    "NotConnected",
    "Peer",
    "PeerStats",
    "events",
]


def __getattr__(name: str) -> Any:
    if name in ("Peer", "events"):
        # pygame prints a banner on import; a library must not write to the game's stdout.
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        if name == "events":
            return importlib.import_module(".events", __name__)
        return importlib.import_module(".peer", __name__).Peer
    raise AttributeError(f"module 'framework' has no attribute {name!r}")
