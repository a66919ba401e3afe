"""The one place Pong touches the engine: making a peer, routing its events."""

from __future__ import annotations

import logging
from typing import Any, Protocol

import pygame

from framework import Config, Delivery, Peer, events
from games.pong.cli import Address, Options
from games.pong.match import Match

log = logging.getLogger(__name__)


class PeerLike(Protocol):
    """The part of `framework.Peer` Pong uses (a fake one serves tests)."""

    def init_server(
        self,
        handshake_address: Address | None,
        local_address: Address,
        server_name: str,
        password: str | None = None,
        *,
        handshake_key: str | None = None,
    ) -> None: ...

    def init_client(
        self,
        handshake_address: Address | None,
        local_address: Address,
        user_name: str,
        server_name: str,
        password: str | None = None,
        *,
        handshake_key: str | None = None,
        host_address: Address | None = None,
    ) -> None: ...

    def request_lan_server_list(self) -> None: ...

    def request_server_list(
        self, handshake_address: Address, *, handshake_key: str | None = None
    ) -> None: ...

    def send(
        self,
        peer_name: str,
        message: Any,
        delivery: Delivery = ...,
        channel: int = ...,
    ) -> int | None: ...

    def drop_peer(self, peer_name: str) -> None: ...

    def get_stats(self, peer_name: str) -> Any: ...

    def get_server_name(self) -> str | None: ...

    def tick(self, now: float | None = None) -> list[pygame.event.Event]: ...

    def quit_connection(self) -> None: ...

    def close(self) -> None: ...


def make_peer(opts: Options) -> Peer:
    """A peer with the network simulator set from the command line. Its events come
    only from ``tick()``'s list (``post_events=False``): pygame's queue is the game's."""
    config = Config(
        post_events=False,
        sim_latency=opts.sim_latency,
        sim_jitter=opts.sim_jitter,
        sim_loss=opts.sim_loss,
        sim_seed=opts.seed if opts.seed is not None else 0,
    )
    return Peer(config)


class MatchRouter:
    """Feeds one match the engine events that concern it; turns latecomers away."""

    def __init__(self, match: Match, peer: PeerLike) -> None:
        self.match = match
        self.peer = peer
        self._opponent_listed = False

    def route(self, event: pygame.event.Event, now: float) -> None:
        m = self.match
        t = event.type
        if t in (
            events.RECEIVED_UNRELIABLE_MESSAGE_FROM_PEER,
            events.RECEIVED_RELIABLE_MESSAGE_FROM_PEER,
        ):
            if not m.handle_events([event], now):
                return  # the rollback session's inputs
            data = event.packet_data
            if data.get("from") == m.opponent and t == events.RECEIVED_RELIABLE_MESSAGE_FROM_PEER:
                m.on_event(data.get("message"), now)
        elif t == events.CLIENT_CONFIRMED and event.new_peer != m.opponent:
            log.info("%s joined during a match: dropped", event.new_peer)
            self.peer.drop_peer(event.new_peer)  # Pong is for two
        elif t == events.SESSION_TERMINATED:
            m.opponent_lost(f"the session ended: {event.reason}")
        elif t in (events.PEER_TIMEOUT, events.PEER_CONNECTION_FAILED):
            if event.peer_name == m.opponent:
                m.opponent_lost(f"{m.opponent} timed out")
        elif t == events.PEER_LIST_UPDATED:
            if m.opponent in event.peer_names:
                self._opponent_listed = True
            elif self._opponent_listed:
                m.opponent_lost(f"{m.opponent} left the session")
        elif t == events.ERROR:
            log.warning("engine error during the match: %s", event.message)
