"""The standalone handshake server. Importing it never imports pygame."""

from __future__ import annotations

from .config import ServerConfig, ServerStats
from .core import HandshakeCore
from .keys import load_or_create
from .server import HandshakeServer

__all__ = ["HandshakeCore", "HandshakeServer", "ServerConfig", "ServerStats", "load_or_create"]
