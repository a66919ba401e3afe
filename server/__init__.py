"""The standalone handshake server. Importing it never imports pygame."""

from __future__ import annotations

import importlib.machinery

from . import core
from .config import ServerConfig, ServerStats
from .core import HandshakeCore
from .keys import load_or_create
from .server import HandshakeServer

#: True when the sans-I/O core (``server.core`` and the modules behind it) runs compiled
#: (``make fast``), False when it runs as pure Python, the reference.
COMPILED: bool = (core.__file__ or "").endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))

__all__ = ["COMPILED", "HandshakeCore", "HandshakeServer", "ServerConfig", "ServerStats",
           "load_or_create"]
