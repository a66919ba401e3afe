"""The standalone handshake server. Importing it never imports pygame."""

from __future__ import annotations

from .core import HandshakeCore, ServerConfig
from .server import HandshakeServer

__all__ = ["HandshakeCore", "HandshakeServer", "ServerConfig"]
