"""The baseline for the server benchmark: the same protocol core on Twisted.

A minimal Twisted ``DatagramProtocol`` (Twisted is what the original server used) around
the very same ``HandshakeCore``, so the comparison measures the I/O loop, not the logic.

    python -m tools.twisted_server --port P
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.protocol import DatagramProtocol

from framework.protocol.crypto import KeyPair
from server.core import HandshakeCore, ServerConfig


class Handshake(DatagramProtocol):  # type: ignore[misc,unused-ignore]
    def __init__(self, config: ServerConfig) -> None:
        self.core = HandshakeCore(config, os.urandom, KeyPair.generate(os.urandom))

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        transport: Any = self.transport  # Twisted's interface types do not fit UDP writes
        for reply, to in self.core.receive(data, (addr[0], addr[1]), time.monotonic()):
            transport.write(reply, to)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.twisted_server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--unlimited", action="store_true", help="no per-address rate limit")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    cfg = ServerConfig(requests_per_sec_per_ip=1e9, request_burst=1e9) if a.unlimited \
        else ServerConfig()
    proto = Handshake(cfg)
    r: Any = reactor
    port = r.listenUDP(a.port, proto, interface=a.host)
    task.LoopingCall(lambda: proto.core.expire(time.monotonic())).start(1.0)
    print(f"listening on {a.host}:{port.getHost().port}", file=sys.stderr, flush=True)
    r.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
