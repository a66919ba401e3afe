"""The peer's end of the handshake server's channel over many real sockets, for the load
and flood tools: a cookie round trip per socket, then requests sealed as a peer seals them.
"""

from __future__ import annotations

import os
import selectors
import socket
import time
from typing import Any

from framework.protocol.addresses import Address
from framework.protocol.errors import ProtocolError
from framework.protocol.hschannel import ServerChannel
from framework.protocol.wire import (
    HsKind,
    Kind,
    decode_cookie,
    encode_cookie_request,
    peek_kind,
    request_size,
)


def channels(socks: list[socket.socket], target: Address, timeout: float = 2.0
             ) -> dict[int, ServerChannel]:
    """A ready channel (cookie and server key known) for each socket that got a COOKIE."""
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        sel.register(s, selectors.EVENT_READ, i)
    out: dict[int, ServerChannel] = {}
    deadline = time.monotonic() + timeout
    while len(out) < len(socks) and time.monotonic() < deadline:
        for i, s in enumerate(socks):
            if i not in out:
                s.sendto(encode_cookie_request(i), target)
        end = min(deadline, time.monotonic() + 0.2)
        while time.monotonic() < end and len(out) < len(socks):
            for key, _ in sel.select(0.05):
                try:
                    data = key.fileobj.recv(2048)  # type: ignore[union-attr]
                    if peek_kind(data) is not Kind.COOKIE:
                        continue
                    _, cookie, public = decode_cookie(data)
                except (BlockingIOError, ProtocolError):
                    continue
                ch = ServerChannel(os.urandom)
                ch.learn(cookie, public)
                out[key.data] = ch
    sel.close()
    return out


def seal(ch: ServerChannel, kind: HsKind, req_id: int, fields: list[Any]) -> bytes:
    """A request padded as a peer pads it."""
    return ch.seal(kind, req_id, fields, request_size(kind))
