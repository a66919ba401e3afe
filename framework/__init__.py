"""pygame-p2p: peer-to-peer networking for pygame games.

    from framework import Peer, Config, events, Delivery

``Peer`` and ``events`` load pygame when first used; the protocol core
(``framework.protocol``) never does, so the handshake server can share it.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
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



def _is_extension(module: str) -> bool:
    """Whether ``module`` would load from a compiled extension (without importing it)."""
    spec = importlib.util.find_spec(module)
    origin = spec.origin if spec is not None else None
    return origin is not None and origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


#: True when the protocol core runs compiled (``make fast``: mypyc's extension modules
#: beside the sources), False when it runs as pure Python, the reference.
COMPILED: bool = _is_extension(f"{__name__}.protocol.connection")

__all__ = [
    "COMPILED",
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
