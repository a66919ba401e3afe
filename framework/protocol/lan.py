"""Playing on the local network with no handshake server: discovery and joins.

A host *listens* on the discovery port (the shell's second socket) and answers:

- LAN_QUERY (a player lists the LAN's games; broadcast, padded) with one LAN_ANNOUNCE
  (name, password flag) to where it came from, from the game's own socket;
- LAN_JOIN (a player asks to join, padded, with an ephemeral X25519 key) with a
  LAN_INTRO carrying a fresh join token for that player's name and address, sealed to
  that key, and admits the player as an introduced remote.

From there on the join is an internet join: the client takes the host's address as its
path and runs the usual handshake (handshake.py) under the introduction key derived from
the token (``punching.intro_key``), so the password is proven through SPAKE2 and the
session keys come from X25519, exactly as when a handshake server introduced the two.

Only sources in local ranges (``addresses.is_local_address``) are answered, and only
local sources are believed as answers; a host bound to loopback answers loopback only.
No answer is larger than what it answers (wire/lan.py pads queries and joins), and
answers are rate-limited, so discovery cannot be used to amplify traffic.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import events as ev
from .addresses import Address, is_local_address
from .constants import JOIN_TOKEN_SIZE
from .context import Context
from .crypto import Aead, CryptoError, KeyPair, hkdf, lp
from .errors import ProtocolError
from .limits import TokenBucket, prefix_of
from .peers import Candidate, PathKind, Remote, RemoteState, Role, Route
from .punching import intro_key
from .rtt import RttEstimate
from .wire import LAN_NONCE_SIZE, Kind, decode_lan, encode_lan

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger(__name__)

#: A list request sends its query this many times (broadcasts are not resent by anyone).
LIST_SENDS = 2
#: Seconds between those sends.
LIST_REPEAT = 0.3
#: Seconds the answers to a list request are collected before RECEIVED_SERVER_LIST.
LIST_WAIT = 1.0
#: Games one list holds at most (a crowded LAN, or someone answering in many names).
MAX_LAN_ENTRIES = 64
#: List requests under way at once (each waits LIST_WAIT).
MAX_LIST_QUERIES = 8
#: Announces and introductions a host sends a second at most (bursts of twice that):
#: a LAN flooding us with queries costs a bounded, smaller flow back.
ANSWERS_PER_SEC = 50.0
#: Seconds before an unanswered LAN_JOIN is sent again (doubling, like a handshake).
JOIN_RESEND = 0.25


@dataclass
class LanQuery:
    """A list request under way: the answers so far."""

    nonce: bytes
    targets: list[Address]
    ends: float
    next_send: float
    sends: int = 0
    servers: dict[tuple[str, Address], dict[str, Any]] = field(default_factory=dict)


@dataclass
class LanJoin:
    """A client's join of a LAN host, until its LAN_INTRO arrives."""

    host: Address
    nonce: bytes
    key: KeyPair  # the join token comes sealed to it
    deadline: float
    next_send: float = 0.0
    sends: int = 0
    first_sent: float = 0.0


def _token_box(shared: bytes, nonce: bytes) -> Aead:
    """The one-use key a LAN join token is sealed under (a fresh host key each time)."""
    return Aead(hkdf(shared, salt=nonce, info=b"p2p lan join token"))


def _token_aad(nonce: bytes, password_required: bool, valid_for: int) -> bytes:
    return lp(b"lan intro", nonce, bytes([password_required]), valid_for.to_bytes(2, "big"))


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Lan:
    """The session's LAN part: answering as a host, listing and joining as a player."""

    def __init__(self, ctx: Context, session: Session) -> None:
        self._ctx = ctx
        self._session = session
        self._queries: dict[bytes, LanQuery] = {}
        self._answers = TokenBucket(ANSWERS_PER_SEC, 2 * ANSWERS_PER_SEC, 0.0)
        self.reset()

    def reset(self) -> None:
        """The session ended: stop hosting and joining (list requests go on)."""
        self.listening = False
        self._loopback_only = False
        self._join: LanJoin | None = None

    # --- the game's calls ------------------------------------------------------------

    def host(self, bound_host: str) -> None:
        """Answer discovery and joins for the game this session hosts. ``bound_host``:
        the address the game's socket is bound to (a loopback one answers loopback only)."""
        self.listening = True
        self._loopback_only = _is_loopback(bound_host)

    def request_list(self, targets: list[Address], now: float) -> None:
        """Ask the LAN for its games: one query to every target (broadcast addresses and
        the discovery port); RECEIVED_SERVER_LIST comes ``LIST_WAIT`` seconds later."""
        if not targets:
            raise ValueError("no address to send the LAN query to")
        if len(self._queries) >= MAX_LIST_QUERIES:
            raise RuntimeError(f"{MAX_LIST_QUERIES} LAN list requests are already under way")
        nonce = self._ctx.random(LAN_NONCE_SIZE)
        query = LanQuery(nonce, list(targets), now + LIST_WAIT, now)
        self._queries[nonce] = query
        self._send_query(query, now)

    def join(self, host: Address, now: float) -> None:
        """Client: ask the host at ``host`` for a join token (resent until answered)."""
        self._join = LanJoin(host, self._ctx.random(LAN_NONCE_SIZE),
                             KeyPair.generate(self._ctx.random),
                             now + self._ctx.config.handshake_timeout, now)
        self._send_join(now)

    # --- time ------------------------------------------------------------------------

    def run(self, now: float) -> None:
        for query in list(self._queries.values()):
            if now >= query.ends:
                del self._queries[query.nonce]
                servers = list(query.servers.values())
                self._ctx.emit(ev.ReceivedServerList([s["name"] for s in servers], servers,
                                                     lan=True))
            elif query.sends < LIST_SENDS and now >= query.next_send:
                self._send_query(query, now)
        join = self._join
        if join is None:
            return
        if now >= join.deadline:
            self._join = None
            host, port = join.host
            self._session.fail(f"could not join: the host at {host}:{port} did not answer")
        elif now >= join.next_send:
            self._send_join(now)

    def next_timer(self) -> float | None:
        times = [q.ends if q.sends >= LIST_SENDS else min(q.ends, q.next_send)
                 for q in self._queries.values()]
        if self._join is not None:
            times.append(min(self._join.next_send, self._join.deadline))
        return min(times) if times else None

    def _send_query(self, query: LanQuery, now: float) -> None:
        data = encode_lan(Kind.LAN_QUERY, [query.nonce])
        for target in query.targets:
            self._ctx.send(data, target)
        query.sends += 1
        query.next_send = now + LIST_REPEAT

    def _send_join(self, now: float) -> None:
        join = self._join
        session = self._session
        assert join is not None
        data = encode_lan(Kind.LAN_JOIN, [session.name or "", session.server_name or "",
                                          join.nonce, join.key.public])
        self._ctx.send(data, join.host)
        if join.sends == 0:
            join.first_sent = now
        join.next_send = now + JOIN_RESEND * (2 ** min(join.sends, 4))
        join.sends += 1

    # --- packets ---------------------------------------------------------------------

    def on_packet(self, kind: Kind, data: bytes, route: Route, now: float) -> None:
        """A LAN packet. Raises ProtocolError when it is malformed or not for us."""
        if route.relayed:
            raise ProtocolError(f"{kind.name} cannot travel through a relay")
        address = route.address
        if not is_local_address(address[0]):
            raise ProtocolError(f"{kind.name} from outside the local network")
        fields = decode_lan(kind, data)
        if kind is Kind.LAN_QUERY:
            self._on_query(fields, address, now)
        elif kind is Kind.LAN_ANNOUNCE:
            self._on_announce(fields, address)
        elif kind is Kind.LAN_JOIN:
            self._on_join(fields, address, now)
        else:
            self._on_intro(fields, address, now)

    def _hosting(self, address: Address) -> bool:
        session = self._session
        from .session import Phase  # noqa: PLC0415 - session imports this module

        return (self.listening and session.role is Role.SERVER
                and session.phase is Phase.HOSTING
                and (not self._loopback_only or _is_loopback(address[0])))

    def _may_answer(self, address: Address, now: float) -> bool:
        if self._answers.take(now):
            return True
        log.debug("LAN answer to %s dropped: answering too much", address)
        return False

    def _on_query(self, fields: list[Any], address: Address, now: float) -> None:
        session = self._session
        if not self._hosting(address):
            return  # not hosting (any more): nothing to say, nothing wrong
        if self._may_answer(address, now):
            self._ctx.send(encode_lan(Kind.LAN_ANNOUNCE, [fields[0], session.name or "",
                                                          session.password is not None]),
                           address)

    def _on_announce(self, fields: list[Any], address: Address) -> None:
        nonce, name, password_required = fields
        query = self._queries.get(nonce)
        if query is None:
            raise ProtocolError("LAN_ANNOUNCE that answers no query of ours")
        key = (name, address)
        if key not in query.servers and len(query.servers) < MAX_LAN_ENTRIES:
            query.servers[key] = {"name": name, "password_required": password_required,
                                  "address": address, "lan": True}

    def _on_join(self, fields: list[Any], address: Address, now: float) -> None:
        client, server, nonce, share = fields[:4]
        session = self._session
        if not self._hosting(address) or server != session.name:
            raise ProtocolError("LAN_JOIN for a game we do not host")
        if client == session.name:
            raise ProtocolError("LAN_JOIN under the host's own name")
        remote = session.remotes.get(client)
        if remote is not None:
            # The same player asking again (our LAN_INTRO was lost): the same token. A
            # player of that name from another address is never replaced.
            if (remote.state is not RemoteState.CONNECTED and remote.candidates
                    and remote.candidates[0].route == Route(address)):
                self._intro(remote, nonce, share, address, now)
                return
            raise ProtocolError(f"LAN_JOIN for the name {client!r}, which is taken")
        prefix = prefix_of(address[0])
        if not session.punching._admit(prefix, now):
            return
        cfg = self._ctx.config
        token = self._ctx.random(JOIN_TOKEN_SIZE)
        remote = Remote(client, token, intro_key(token), [Candidate(Route(address),
                                                                    PathKind.LAN)],
                        now + cfg.handshake_timeout,
                        password_required=session.password is not None, prefix=prefix,
                        joined_at=now, punch_started=now,
                        next_punch=float("inf"),  # no NAT between us: the HELLO comes
                        relay_requested=True,  # and no relay for a LAN player
                        rtt=RttEstimate(cfg.secs_to_await_reply))
        session.remotes[client] = remote
        log.info("LAN join from %s at %s", client, address)
        try:
            self._intro(remote, nonce, share, address, now)
        except ProtocolError:
            del session.remotes[client]  # a bad key share admits nobody
            raise

    def _intro(self, remote: Remote, nonce: bytes, share: bytes, address: Address,
               now: float) -> None:
        """The join token, sealed to the player's key: whoever only listens on the LAN
        never learns it."""
        if not self._may_answer(address, now):
            return
        key = KeyPair.generate(self._ctx.random)
        try:
            shared = key.exchange(share)
        except CryptoError as exc:
            raise ProtocolError(f"LAN_JOIN with a bad key share: {exc}") from exc
        valid_for = max(1, min(0xFFFF, int(remote.deadline - now)))
        flag = remote.password_required
        sealed = _token_box(shared, nonce).seal(bytes(12), remote.token,
                                                _token_aad(nonce, flag, valid_for))
        self._ctx.send(encode_lan(Kind.LAN_INTRO, [nonce, flag, key.public, sealed,
                                                   valid_for]), address)

    def _on_intro(self, fields: list[Any], address: Address, now: float) -> None:
        nonce, password_required, host_share, sealed, valid_for = fields
        session = self._session
        join = self._join
        if join is None or address != join.host or nonce != join.nonce:
            raise ProtocolError("LAN_INTRO that answers no join of ours")
        try:
            token = _token_box(join.key.exchange(host_share), nonce).open(
                bytes(12), sealed, _token_aad(nonce, password_required, valid_for))
        except CryptoError as exc:
            raise ProtocolError(f"LAN_INTRO that does not open: {exc}") from exc
        self._join = None
        name = session.server_name or ""
        if session.role is not Role.CLIENT or name in session.remotes:
            return
        if password_required and session.password is None:
            session.fail(f"{name!r} needs a password", reason="wrong password")
            return
        cfg = self._ctx.config
        remote = Remote(name, token, intro_key(token), [Candidate(Route(address),
                                                                  PathKind.LAN)],
                        now + min(float(valid_for), cfg.handshake_timeout),
                        password_required=password_required, prefix=prefix_of(address[0]),
                        joined_at=now, punch_started=now,
                        rtt=RttEstimate(cfg.secs_to_await_reply))
        if join.sends == 1:
            remote.rtt.sample(now - join.first_sent)
        session.remotes[name] = remote
        log.info("LAN host %s at %s gave us a join token", name, address)
        session.punching._choose(remote, Route(address), now)

