"""The handshake server's I/O: one thread, ``selectors``, one non-blocking UDP socket
(``shell.UdpServer``), around ``core.HandshakeCore``."""

from __future__ import annotations

import json
import logging
import os
import selectors
import time
from typing import TYPE_CHECKING

from framework.protocol.addresses import Address
from framework.protocol.crypto import KeyPair

from .core import HandshakeCore, ServerConfig
from .metrics import exposition
from .shell import UdpServer
from .store import StoreError

if TYPE_CHECKING:
    from .cluster import Cluster

log = logging.getLogger("server")


class HandshakeServer(UdpServer):
    """``HandshakeServer(host, port).serve_forever()``, or ``start()`` / ``stop()``.

    ``key`` is the handshake server's long-term key (``server.keys.load_or_create``); without one a
    fresh key is made in memory, which suits tests and a handshake server embedded in a game.

    ``cluster`` (``server.cluster.Cluster``) keeps the state in Redis, shared with the other
    nodes of a deployment; ``reuse_port`` lets several processes bind the same port
    (SO_REUSEPORT: the kernel spreads sources across them); ``metrics`` serves the counters
    over HTTP (``server.metrics``)."""

    thread_name = "handshake-server"

    def __init__(self, host: str = "0.0.0.0", port: int = 5160,
                 config: ServerConfig | None = None, key: KeyPair | None = None, *,
                 cluster: Cluster | None = None, reuse_port: bool = False,
                 metrics: Address | None = None) -> None:
        key = key if key is not None else KeyPair.generate(os.urandom)
        self.cluster = cluster
        self.core = HandshakeCore(config, os.urandom, key,
                                  cluster.stores if cluster is not None else None)
        self._receive = self.core.receive
        super().__init__(host, port, reuse_port=reuse_port, metrics=metrics)

    @property
    def fingerprint(self) -> str:
        """The fingerprint of the handshake server's key, which players may pin."""
        return self.core.fingerprint

    def serve_forever(self) -> None:
        """Serve in this thread until stop() (or Ctrl-C in the caller)."""
        log.info("handshake server listening on %s:%d", *self.address)
        log.info("key fingerprint: %s", self.fingerprint)
        super().serve_forever()

    def _attach(self, sel: selectors.BaseSelector) -> None:
        if self.cluster is not None:
            log.info("cluster node %s, state in Redis", self.cluster.node)
            self.cluster.attach(sel)

    def _tick(self, now: float) -> None:
        self.core.expire(now)
        if self.cluster is not None:
            self.cluster.tick(now)

    def _log_stats(self, now: float) -> None:
        log.info("%s registered, %d relays; since start: %s", self._registered(now),
                 len(self.core.relays), json.dumps(self.core.stats.summary()))

    def _closed(self) -> None:
        if self.cluster is not None:
            self.cluster.close()
        log.info("handshake server stopped: %s", json.dumps(self.core.stats.summary()))

    def _other(self, data: object, fileobj: object, mask: int) -> None:
        """The pub/sub channel of a cluster node."""
        try:
            if data is self.cluster and self.cluster is not None:
                self._send(self.cluster.readable(time.monotonic()))
        except Exception:  # a bug must not stop the handshake server
            self.loop_errors += 1
            log.exception("event handling failed")

    def _registered(self, now: float) -> int | None:
        try:
            return self.core.registered(now)
        except StoreError:
            return None

    def render_metrics(self) -> str:
        now = time.monotonic()
        extra = {"send_errors": self.send_errors}
        if self.cluster is not None:
            extra.update(cluster_handed_off=self.cluster.handed_off,
                         cluster_delivered=self.cluster.delivered,
                         cluster_refused=self.cluster.refused,
                         redis_failures=self.cluster.link.failures)
        return exposition(self.core.stats, self._registered(now), len(self.core.relays),
                          extra)
