"""Getting two players into one session: what the engine is doing, and plain-words errors."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from enum import Enum

import pygame

from framework import events
from games.pong.cli import Address, Options, format_address
from games.pong.link import PeerLike

log = logging.getLogger(__name__)

REGISTER_TIMEOUT = 12.0  # s; the engine gives up after 5 x 1 s, this is the backstop
JOIN_TIMEOUT = 25.0  # s; handshake, then hole punching towards both addresses


class Role(Enum):
    HOST = "host"
    CLIENT = "client"


class Stage(Enum):
    STARTING = "starting"
    REGISTERING = "registering"  # host: waiting for the handshake server
    SEARCHING = "searching"  # client, --lan: looking for the game on the local network
    WAITING = "waiting"  # host: registered, nobody joined yet
    JOINING = "joining"  # client: handshake, then the direct connection
    CONNECTED = "connected"
    FAILED = "failed"


@dataclass(frozen=True)
class ConnectRequest:
    role: Role
    user_name: str
    server_name: str
    handshake: Address
    local_address: Address
    password: str | None = None
    handshake_key: str | None = None
    #: On the local network, with no handshake server: a host is found there only; a
    #: client joins ``host_address`` or, without one, looks for the game by name first.
    lan: bool = False
    host_address: Address | None = None

    @classmethod
    def from_options(cls, opts: Options) -> ConnectRequest:
        """The request `--host NAME` or `--join NAME` asks for."""
        if opts.server_name is None or opts.mode not in ("host", "join"):
            raise ValueError("needs --host NAME or --join NAME")
        return cls(
            role=Role.HOST if opts.mode == "host" else Role.CLIENT,
            user_name=opts.user_name,
            server_name=opts.server_name,
            handshake=opts.handshake,
            local_address=opts.local_address,
            password=opts.password,
            handshake_key=opts.handshake_key,
            lan=opts.lan,
        )


#: Seconds between two LAN list requests while a --lan client looks for its game.
LAN_SEARCH_INTERVAL = 1.5


def explain_error(message: str, request: ConnectRequest) -> str:
    """An engine error in words a player understands (the raw text kept at the end)."""
    low = message.lower()
    hs = format_address(request.handshake)
    server = request.server_name
    if "pinned" in low or "key changed" in low or "unusable key" in low:
        return f"The handshake server {hs} is not the one you trust: {message}"
    if "needs a password" in low and not request.password:
        return f"'{server}' needs a password."
    if "password" in low:
        return f"Wrong password for '{server}'."
    if request.lan and "did not answer" in low:
        return f"'{server}' does not answer on the local network: {message}"
    if any(k in low for k in ("no server", "no game", "not found", "no such", "not exist")):
        return f"No game called '{server}' is registered at {hs}."
    if any(k in low for k in ("taken", "in use", "already")):
        return f"The name '{request.user_name}' is already taken at {hs}: {message}"
    if "full" in low:
        return f"'{server}' is full."
    if "handshake" in low and any(
        k in low for k in ("unreach", "expire", "timed out", "timeout", "did not answer")
    ):
        return f"The handshake server {hs} does not answer."
    return message


class Connector:
    """Host or join; follows the engine's events until connected or failed."""

    def __init__(self, peer: PeerLike, request: ConnectRequest, now: float) -> None:
        self.peer = peer
        self.request = request
        self.started_at = now
        self.stage = Stage.STARTING
        self.error = ""
        self.note = ""  # a passing remark (a client that could not be reached...)
        self.opponent: str | None = None
        self._heard_from_handshake = False
        self._lan_fallback = False  # host: the handshake server is silent, go LAN only
        self._next_search = 0.0

    def start(self) -> None:
        r = self.request
        try:
            if r.role == Role.HOST and r.lan:
                self.peer.init_server(None, r.local_address, r.server_name, r.password)
                self.stage = Stage.REGISTERING
            elif r.role == Role.CLIENT and r.lan and r.host_address is None:
                self.stage = Stage.SEARCHING
                self._search(self.started_at)
            elif r.role == Role.CLIENT and r.lan:
                self.peer.init_client(None, r.local_address, r.user_name, r.server_name,
                                      r.password, host_address=r.host_address)
                self.stage = Stage.JOINING
            elif r.role == Role.HOST:
                self.peer.init_server(r.handshake, r.local_address, r.server_name, r.password,
                                      handshake_key=r.handshake_key)
                self.stage = Stage.REGISTERING
            else:
                self.peer.init_client(
                    r.handshake, r.local_address, r.user_name, r.server_name, r.password,
                    handshake_key=r.handshake_key,
                )
                self.stage = Stage.JOINING
        except (OSError, ValueError) as exc:
            self._fail(f"Could not start: {exc}")

    def _search(self, now: float) -> None:
        self._next_search = now + LAN_SEARCH_INTERVAL
        self.peer.request_lan_server_list()

    def _found(self, event: pygame.event.Event) -> None:
        """A LAN list while searching: join the game if it is there."""
        r = self.request
        for entry in getattr(event, "servers", None) or []:
            if (isinstance(entry, dict) and entry.get("lan") and entry.get("name") == r.server_name
                    and entry.get("address")):
                if entry.get("password_required") and not r.password:
                    self._fail(f"'{r.server_name}' needs a password.")
                    return
                host = entry["address"]
                self.request = replace(r, host_address=(str(host[0]), int(host[1])))
                self.stage = Stage.JOINING
                try:
                    self.peer.init_client(None, r.local_address, r.user_name, r.server_name,
                                          r.password, host_address=self.request.host_address)
                except (OSError, ValueError) as exc:
                    self._fail(f"Could not start: {exc}")
                return

    def _host_on_lan_only(self) -> None:
        """The handshake server never answered: host on the local network instead."""
        r = self.request
        self._lan_fallback = False
        self.request = replace(r, lan=True)
        self.note = (f"The handshake server {format_address(r.handshake)} does not answer: "
                     "hosting on the local network only.")
        log.info("%s", self.note)
        try:
            self.peer.init_server(None, r.local_address, r.server_name, r.password)
        except (OSError, ValueError) as exc:
            self._fail(f"Could not start: {exc}")

    @property
    def connected(self) -> bool:
        return self.stage == Stage.CONNECTED

    @property
    def failed(self) -> bool:
        return self.stage == Stage.FAILED

    def elapsed(self, now: float) -> float:
        return now - self.started_at

    def status(self) -> str:
        """One line saying what is going on."""
        r = self.request
        hs = format_address(r.handshake)
        if r.lan:
            where = (format_address(r.host_address) if r.host_address is not None
                     else "the local network")
            if self.stage == Stage.REGISTERING:
                return f"Hosting '{r.server_name}' on the local network..."
            if self.stage == Stage.WAITING:
                return (f"Hosting '{r.server_name}' on the local network (LAN). Waiting for "
                        "a player to join...")
            if self.stage == Stage.SEARCHING:
                return f"Looking for '{r.server_name}' on the local network..."
            if self.stage == Stage.JOINING:
                return f"Joining '{r.server_name}' at {where}..."
        if self.stage == Stage.REGISTERING:
            return f"Registering '{r.server_name}' with the handshake server {hs}..."
        if self.stage == Stage.WAITING:
            return f"Registered as '{r.server_name}' at {hs}. Waiting for a player to join..."
        if self.stage == Stage.JOINING:
            return f"Asking {hs} for '{r.server_name}', then connecting to it directly..."
        if self.stage == Stage.CONNECTED:
            return f"Connected to {self.opponent}."
        if self.stage == Stage.FAILED:
            return self.error
        return "Starting..."

    def _fail(self, error: str) -> None:
        if self.stage in (Stage.FAILED, Stage.CONNECTED):
            return
        log.info("connecting failed: %s", error)
        self.stage = Stage.FAILED
        self.error = error

    def update(self, now: float) -> None:
        """Backstop timeouts, should the engine stay silent."""
        waited = self.elapsed(now)
        hs = format_address(self.request.handshake)
        if self.stage == Stage.SEARCHING:
            if waited > JOIN_TIMEOUT:
                self._fail(f"No game called '{self.request.server_name}' answers on the "
                           "local network.")
            elif now >= self._next_search:
                try:
                    self._search(now)
                except (OSError, RuntimeError) as exc:
                    self._fail(f"Could not look for games: {exc}")
        elif self.request.lan and self.stage == Stage.JOINING and waited > JOIN_TIMEOUT:
            self._fail(f"Could not reach '{self.request.server_name}' on the local network.")
        elif self.stage == Stage.REGISTERING and waited > REGISTER_TIMEOUT:
            self._fail(f"The handshake server {hs} does not answer.")
        elif self.stage == Stage.JOINING and waited > JOIN_TIMEOUT:
            if self._heard_from_handshake:
                self._fail(f"Could not reach '{self.request.server_name}' (peer unreachable).")
            else:
                self._fail(f"The handshake server {hs} does not answer.")

    def handle(self, event: pygame.event.Event) -> None:
        t = event.type
        host = self.request.role == Role.HOST
        if t == events.CONFIRMED_AS_SERVER and self.stage == Stage.REGISTERING:
            self._heard_from_handshake = True
            self.stage = Stage.WAITING
        elif t == events.CLIENT_CONFIRMED and host and self.stage == Stage.WAITING:
            self.opponent = str(event.new_peer)
            self.stage = Stage.CONNECTED
        elif t == events.CONFIRMED_AS_CLIENT and not host and self.stage == Stage.JOINING:
            self.opponent = self.peer.get_server_name() or self.request.server_name
            self.stage = Stage.CONNECTED
        elif t == events.PEER_LIST_UPDATED:
            self._heard_from_handshake = True
        elif t == events.RECEIVED_SERVER_LIST and self.stage == Stage.SEARCHING:
            self._found(event)
        elif (t == events.ERROR and host and self.stage == Stage.REGISTERING
              and not self.request.lan and "registration failed" in str(event.message).lower()
              and "did not answer" in str(event.message).lower()):
            self._lan_fallback = True  # the session ends next: then host on the LAN
        elif t == events.ERROR:
            self._fail(explain_error(str(event.message), self.request))
        elif t == events.PEER_CONNECTION_FAILED:
            if host:
                self.note = f"{event.peer_name} tried to join but could not be reached."
            else:
                self._heard_from_handshake = True
                self._fail(f"Could not reach '{event.peer_name}' (peer unreachable).")
        elif t == events.SESSION_TERMINATED and self._lan_fallback:
            self._host_on_lan_only()
        elif t == events.SESSION_TERMINATED:
            self._fail(f"The session ended: {event.reason}")
        elif t == events.PEER_TIMEOUT and not host:
            self._fail(f"'{event.peer_name}' timed out.")
