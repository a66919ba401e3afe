"""A relay node's I/O (``python -m server --relay-only``): the shared UDP shell
(``shell.UdpServer``) around ``relaytier.RelayNodeCore``."""

from __future__ import annotations

import json
import logging
import time

from framework.protocol.addresses import Address

from .metrics import exposition
from .relaytier import RelayNodeCore
from .shell import UdpServer

log = logging.getLogger("server")


class RelayNodeServer(UdpServer):
    """``RelayNodeServer(core, host, port).serve_forever()``, or ``start()`` / ``stop()``."""

    thread_name = "relay-node"

    def __init__(self, core: RelayNodeCore, host: str = "0.0.0.0", port: int = 5170, *,
                 metrics: Address | None = None) -> None:
        self.core = core
        self._receive = core.receive
        super().__init__(host, port, metrics=metrics)

    def render_metrics(self) -> str:
        return exposition(self.core.stats, None, self.core.load,
                          {"send_errors": self.send_errors,
                           "relay_binds": self.core.binds_accepted,
                           "relay_capacity": self.core.capacity})

    def serve_forever(self) -> None:
        core = self.core
        log.info("relay node %s listening on %s:%d, players reach it at %s:%d",
                 core.node, *self.address, *core.public)
        core.tick(time.monotonic())  # in the directory at once
        super().serve_forever()

    def _tick(self, now: float) -> None:
        self.core.tick(now)

    def _log_stats(self, now: float) -> None:
        log.info("%d relays; since start: %s", self.core.load,
                 json.dumps(self.core.stats.summary()))

    def _closed(self) -> None:
        self.core.leave()
        log.info("relay node stopped: %s", json.dumps(self.core.stats.summary()))
