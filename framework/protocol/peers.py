"""The people of a session as the state machine sees them, and how datagrams reach them."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from .addresses import Address
from .constants import DEPARTED_GRACE, MAX_DEPARTED
from .crypto import KeyPair, Pake, SessionKeys

if TYPE_CHECKING:
    from .connection import Connection
from .rtt import RttEstimate

log = logging.getLogger(__name__)


class PathKind(enum.Enum):
    """How datagrams reach a peer. The value is what ``PeerStats.path`` and the
    ``PATH_CHANGED`` event say."""

    LAN = "lan"
    DIRECT = "direct"
    MAPPED = "mapped"
    RELAY = "relay"
    SERVER_PLAYER = "server-player"


class Route(NamedTuple):
    """Where a datagram goes: an address, or a relay of the handshake server at that
    address (``relay_id`` set), which forwards it to the peer."""

    address: Address
    relay_id: bytes = b""

    @property
    def relayed(self) -> bool:
        return bool(self.relay_id)


@dataclass(frozen=True, slots=True)
class Candidate:
    route: Route
    kind: PathKind


class Role(enum.Enum):
    NONE = "none"
    SERVER = "server"
    CLIENT = "client"


class RemoteState(enum.Enum):
    """A remote player's progress. Legal moves are in ``REMOTE_TRANSITIONS``; a remote
    that fails or leaves is removed from the session instead."""

    PUNCHING = "punching"  # introduced; looking for a path
    HANDSHAKE = "handshake"  # a path; exchanging keys (and proving the password)
    CONNECTED = "connected"


REMOTE_TRANSITIONS: dict[RemoteState, frozenset[RemoteState]] = {
    RemoteState.PUNCHING: frozenset({RemoteState.HANDSHAKE}),
    RemoteState.HANDSHAKE: frozenset({RemoteState.CONNECTED}),
    RemoteState.CONNECTED: frozenset(),
}


@dataclass(eq=False)
class Handshake:
    """One key exchange in progress (the client's or the server player's side)."""

    key: KeyPair
    pake: Pake | None
    client_share: bytes = b""
    client_pake: bytes = b""
    keys: SessionKeys | None = None
    challenge: bytes = b""  # the server player's CHALLENGE, resent for a repeated HELLO
    guess_held: str | None = None  # server player: prefix whose guess token this holds


@dataclass(eq=False)
class Remote:
    """Another player we are connecting or connected to directly."""

    name: str
    token: bytes  # the join token the handshake server gave both of us
    intro_key: bytes  # derived from the token: authenticates punching and the handshake
    candidates: list[Candidate]
    deadline: float
    password_required: bool = False
    state: RemoteState = RemoteState.PUNCHING
    route: Route | None = None  # the validated path, once chosen
    path: PathKind = PathKind.DIRECT
    prefix: str = ""  # network of its public address (limits are per prefix)
    joined_at: float = 0.0
    next_punch: float = 0.0
    punch_started: float = 0.0
    # nonce -> where it went and when (a PUNCH_ACK echoing it is a round-trip sample)
    punches: dict[bytes, tuple[Route, float]] = field(default_factory=dict)
    rtt: RttEstimate = field(default_factory=lambda: RttEstimate(1.0))
    tries: int = 0  # sends of the current handshake datagram (HELLO, then AUTH)
    handshake: Handshake | None = None
    next_resend: float = 0.0
    sent_at: float = 0.0  # when our last handshake datagram left (for a first RTT)
    resent: bool = False  # Karn: a resent exchange gives no round-trip sample
    connection: Connection | None = None
    relay_id: bytes = b""
    relay_requested: bool = False
    # A relay on a relay node (relaying.py): our end's key, the route, and binding.
    relay_key: bytes = b""
    relay_route: Route | None = None
    relay_counter: int = 0
    relay_bound: bool = False
    next_bind: float = float("inf")
    next_relay_move: float = 0.0
    #: The chosen path answered one of our punches (both ways proven), as opposed to
    #: only a punch of theirs having come in (their way in proven, ours out not).
    path_answered: bool = False
    next_direct_try: float = 0.0
    # Path validation: token per route being tested, and bytes received from each
    # unvalidated route (we never send one more than it sent us).
    challenges: dict[Route, bytes] = field(default_factory=dict)
    credit: dict[Route, int] = field(default_factory=dict)

    def set_state(self, state: RemoteState) -> None:
        if state not in REMOTE_TRANSITIONS[self.state]:
            raise AssertionError(f"{self.name}: no move from {self.state.value} to "
                                 f"{state.value}")
        log.debug("%s: %s -> %s", self.name, self.state.value, state.value)
        self.state = state

    def kind_of(self, route: Route) -> PathKind:
        if route.relayed:
            return PathKind.RELAY
        return next((c.kind for c in self.candidates if c.route == route), PathKind.DIRECT)

    @property
    def public_address(self) -> Address | None:
        return next((c.route.address for c in self.candidates if c.kind is PathKind.DIRECT),
                    None)

    @property
    def shown_address(self) -> Address:
        """The address to show for this peer: its own, even while relayed."""
        if self.route is not None and not self.route.relayed:
            return self.route.address
        public = self.public_address
        assert public is not None
        return public


class Departures:
    """Paths of peers that just left: their last datagrams (the extra copies of a
    disconnect, data in flight) are ignored quietly for a moment, not reported."""

    def __init__(self) -> None:
        self._until: dict[Route, float] = {}

    def remember(self, routes: list[Route], now: float) -> None:
        if len(self._until) > MAX_DEPARTED:
            self._until.clear()
        for r in routes:
            self._until[r] = now + DEPARTED_GRACE

    def recent(self, route: Route, now: float) -> bool:
        until = self._until.get(route)
        if until is None:
            return False
        if until < now:
            del self._until[route]
            return False
        return True


@dataclass
class Known:
    """A peer of the session we only reach through the server player."""

    name: str
    address: Address


@dataclass
class ListQuery:
    address: Address
    servers: list[dict[str, Any]] = field(default_factory=list)
    pages: int = 0
