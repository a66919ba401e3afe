"""The peer engine's state machine: registration, join, punch, handshake, session.

Pure and sans-I/O (in the manner of h11 and aioquic): no socket, no clock, no pygame.
The shell feeds it ``receive_datagram(data, address, now)`` and ``handle_timer(now)``,
sends what ``datagrams_to_send()`` returns and hands ``events()`` to the game.

Roles: a *server player* registers its name with the handshake server and accepts
clients; a *client* asks the handshake server for a server player by name. The
handshake server introduces the two (each learns the other's public and LAN address
and a shared secret); both punch holes towards both addresses at once; the first path
that answers wins; the client then proves the password with a challenge-response and
the session's reliable connection starts.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import crypto
from . import events as ev
from .channels import ReassemblyBudget
from .config import Config
from .connection import Connection, ConnectionConfig, Delivered, Group
from .constants import (
    DISCONNECT_COPIES,
    HS_SERVER_NAME,
    NONCE_SIZE,
    PUNCH_BURST,
    PUNCH_INTERVAL,
    SYSTEM_CHANNEL,
    USER_CHANNELS,
)
from .delivery import Delivery
from .errors import MessageTooLarge, NotConnected, ProtocolError
from .requests import Request, RequestTracker, encode_request
from .values import Encoder, decode_value, encode_value
from .wire import (
    ErrorCode,
    Kind,
    decode_control,
    decode_relay,
    encode_control,
    encode_relay,
    peek_kind,
    valid_name,
)

log = logging.getLogger(__name__)

Address = tuple[str, int]
RandomBytes = Callable[[int], bytes]

# System messages on SYSTEM_CHANNEL: msgpack arrays whose first element is one of these.
SYS_PING = 0
SYS_PEERS = 1
SYS_FORWARD = 2
SYS_FORWARDED = 3
SYS_FORWARD_FAILED = 4
SYS_BYE = 5

#: Clients a server player may be connecting to at once (introduced, not yet confirmed).
MAX_PENDING = 8
#: After a wrong password, the same IP address is not heard for 2^(failures-1) seconds,
#: up to this many: online guessing gets slow fast.
MAX_AUTH_PENALTY = 60.0

#: While a peer is reached through the relay, try the direct path again this often.
DIRECT_RETRY_INTERVAL = 5.0


#: Networks a LAN address may be in (RFC 1918, RFC 6598 shared, link-local, loopback,
#: RFC 4193 unique local). Python's is_private also admits documentation and other
#: special ranges, which are not local networks.
_LOCAL_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
    "127.0.0.0/8", "fc00::/7", "fe80::/10", "::1/128"))


def _is_local(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(ip in net for net in _LOCAL_NETWORKS if net.version == ip.version)


def relay_address(relay_id: bytes) -> Address:
    """The stand-in address of a peer reached through the handshake server's relay."""
    return (f"relay-{relay_id.hex()}", 0)


class Role(enum.Enum):
    NONE = "none"
    SERVER = "server"
    CLIENT = "client"


class PeerState(enum.Enum):
    PUNCHING = "punching"
    HANDSHAKE = "handshake"  # path found; proving the password
    CONNECTED = "connected"


@dataclass
class _Remote:
    """Another player we are connecting or connected to directly."""

    name: str
    intro_nonce: bytes
    candidates: list[tuple[Address, str]]
    deadline: float
    password_required: bool = False
    state: PeerState = PeerState.PUNCHING
    address: Address | None = None
    path: str = "direct"
    next_punch: float = 0.0
    punch_count: int = 0
    client_nonce: bytes = b""
    server_nonce: bytes = b""
    next_resend: float = 0.0
    attempts: int = 0
    connection: Connection | None = None
    punch_started: float = 0.0
    relay_id: bytes | None = None
    relay_requested: bool = False
    next_direct_try: float = 0.0
    # When our last handshake datagram left, and whether it was a resend (Karn: a
    # resent exchange gives no round-trip sample).
    sent_at: float = 0.0
    resent: bool = False

    @property
    def punch_id(self) -> bytes:
        return crypto.punch_id(self.intro_nonce)


@dataclass
class _Known:
    """A peer of the session we only reach through the server player."""

    name: str
    address: Address


@dataclass
class _ListQuery:
    address: Address
    servers: list[dict[str, Any]] = field(default_factory=list)


class Session:
    """One local player's protocol state. See the module docstring."""

    def __init__(self, config: Config | None = None,
                 random_bytes: RandomBytes | None = None) -> None:
        self.config = config if config is not None else Config()
        if random_bytes is None:
            raise ValueError("Session needs a random_bytes source (os.urandom in production)")
        self._random = random_bytes
        self._out: list[tuple[bytes, Address]] = []
        self._events: list[ev.EngineEvent] = []
        self._tracker = RequestTracker(self._send, int.from_bytes(random_bytes(3), "big") + 1,
                                       self.config.secs_to_await_reply,
                                       self.config.attempts_before_expiration)
        self._lists: dict[int, _ListQuery] = {}
        self._budget = ReassemblyBudget(self.config.reassembly_limit_total)
        cfg = self.config
        self._conn_config = ConnectionConfig(
            secs_to_await_reply=cfg.secs_to_await_reply,
            attempts_before_expiration=cfg.attempts_before_expiration,
            secs_between_peer_checks=cfg.secs_between_peer_checks,
            max_message_size=cfg.max_message_size,
            reassembly_limit_per_peer=cfg.reassembly_limit_per_peer,
        )
        self._next_message_id = 1
        self._encoder = Encoder()
        self._blocked_count = 0
        self._blocked_window = 0.0
        self._blocked_in_window = 0
        self._now = 0.0
        self._reset()

    def _reset(self) -> None:
        self.role = Role.NONE
        self._name: str | None = None
        self._server_name: str | None = None
        self._hs: Address | None = None
        self._hs_dropped = False
        self._lan: Address = ("", 0)
        self._key: bytes | None = None  # password key, when the session has a password
        self._password_required = False
        self._token: bytes | None = None
        self._public: Address | None = None
        self._registered = False
        self._next_refresh = 0.0
        self._join_req: int | None = None
        self._remotes: dict[str, _Remote] = {}
        self._by_addr: dict[Address, _Remote] = {}
        self._known: dict[str, _Known] = {}
        # Addresses of peers that just left: their last datagrams (the extra copies of a
        # disconnect, data in flight) are ignored quietly for a moment, not reported.
        self._departed: dict[Address, float] = {}
        self._relay_remotes: dict[bytes, _Remote] = {}
        self._relay_ids: dict[Address, bytes] = {}
        self._auth_penalty: dict[str, tuple[int, float]] = {}  # ip -> (failures, until)
        self._peer_names: list[str] = []
        self._connected = False
        self._seq_counters: dict[tuple[str, int], int] = {}
        self._latest_forwarded: dict[tuple[str, int], int] = {}
        if hasattr(self, "_tracker"):
            self._tracker.drop(lambda q: q.kind is not Kind.LIST)

    # ------------------------------------------------------------------ public API

    def init_server(self, handshake: Address, lan: Address, server_name: str,
                    password: str | None, now: float) -> None:
        self._check_new_session(server_name)
        self.role = Role.SERVER
        self._name = self._server_name = server_name
        self._hs = handshake
        self._lan = lan
        self._password_required = bool(password)
        self._key = crypto.password_key(password, server_name) if password else None
        self._register(now)

    def init_client(self, handshake: Address, lan: Address, user_name: str, server_name: str,
                    password: str | None, now: float) -> None:
        self._check_new_session(user_name)
        if not valid_name(server_name) or server_name == HS_SERVER_NAME:
            raise ValueError(f"invalid server name {server_name!r}")
        if user_name == server_name:
            raise ValueError("the user name must differ from the server name")
        self.role = Role.CLIENT
        self._name = user_name
        self._server_name = server_name
        self._hs = handshake
        self._lan = lan
        self._key = crypto.password_key(password, server_name) if password else None
        self._join_req = self._request(
            Kind.JOIN, [server_name, user_name, lan[0], lan[1]], handshake, now)

    def _check_new_session(self, name: str) -> None:
        if self.role is not Role.NONE:
            raise RuntimeError("a session is already on: call quit_connection() first")
        if not valid_name(name):
            raise ValueError(f"invalid name {name!r}: 1-32 printable characters")
        if name == HS_SERVER_NAME:
            raise ValueError(f"{HS_SERVER_NAME!r} is reserved for the handshake server")

    def request_server_list(self, handshake: Address, now: float) -> None:
        rid = self._request(Kind.LIST, [0], handshake, now)
        self._lists[rid] = _ListQuery(handshake)

    def send(self, peer_name: str, message: object, delivery: Delivery, channel: int,
             now: float) -> int | None:
        """Queue a message; returns its message_id for reliable deliveries."""
        if not isinstance(delivery, Delivery):
            raise TypeError("delivery must be a framework.Delivery member")
        if type(channel) is not int or not 0 <= channel < USER_CHANNELS:
            raise ValueError(f"channel must be an int from 0 to {USER_CHANNELS - 1}")
        payload = self._encoder.encode(message)  # TypeError here, at the call
        if not self._connected:
            raise NotConnected("no session: messages can be sent once connected")
        if peer_name == self._name:
            raise ValueError("cannot send a message to yourself")
        message_id: int | None = None
        if delivery.reliable:
            message_id = self._next_message_id
        remote = self._remotes.get(peer_name)
        if remote is not None and remote.connection is not None:
            remote.connection.send(delivery, channel, payload, message_id or 0, message)
        elif self.role is Role.CLIENT and peer_name in self._known:
            self._forward(peer_name, message, payload, delivery, channel, message_id)
        else:
            raise NotConnected(f"no peer named {peer_name!r} in this session")
        if message_id is not None:
            self._next_message_id += 1
        return message_id

    def _forward(self, to: str, message: object, payload: bytes, delivery: Delivery,
                 channel: int, message_id: int | None) -> None:
        host = self._host_connection()
        if message_id is None:  # sequenced: a counter lets the receiver drop stale ones
            key = (to, channel)
            message_id = self._seq_counters.get(key, 0)
            self._seq_counters[key] = message_id + 1
        body = encode_value([SYS_FORWARD, to, int(delivery), channel, message_id, payload])
        mode = Delivery.RELIABLE_ORDERED if delivery.reliable else Delivery.UNRELIABLE
        if delivery.reliable:
            host.send(mode, SYSTEM_CHANNEL, body, message_id, ("user", to, message, message_id),
                      expires=True)
        else:
            host.send(mode, SYSTEM_CHANNEL, body)

    def _host_connection(self) -> Connection:
        host = self._remotes.get(self._server_name or "")
        if host is None or host.connection is None:
            raise NotConnected("not connected to the server player")
        return host.connection

    def drop_peer(self, peer_name: str, now: float) -> None:
        self._now = now
        if self.role is not Role.SERVER:
            raise RuntimeError("only the server player can drop peers")
        remote = self._remotes.get(peer_name)
        if remote is None:
            raise NotConnected(f"no peer named {peer_name!r} in this session")
        self._send_disconnect(remote, "dropped by the server player")
        self._remove(remote)

    def drop_connection_with_handshake_server(self, now: float) -> None:
        if self.role is Role.NONE or self._hs_dropped:
            return
        self._unregister()
        self._hs_dropped = True
        hs = self._hs
        self._tracker.drop(lambda q: q.address == hs)

    def quit_connection(self, now: float) -> None:
        self._now = now
        if self.role is Role.NONE:
            return
        for remote in list(self._remotes.values()):
            if remote.state is PeerState.CONNECTED:
                self._send_disconnect(remote, "quit")
        self._unregister()
        self._terminate("quit")

    # getters -----------------------------------------------------------------------

    def get_peer(self, peer_name: str) -> dict[str, Any] | None:
        remote = self._remotes.get(peer_name)
        if remote is not None and remote.state is PeerState.CONNECTED and remote.address:
            address = remote.address
            if remote.path == "relay":  # the peer's own public address, not the stand-in
                address = next(a for a, p in remote.candidates if p == "direct")
            return {"name": peer_name, "address": address}
        known = self._known.get(peer_name)
        if known is not None:
            return {"name": peer_name, "address": known.address}
        return None

    def get_peers(self) -> list[str]:
        return list(self._peer_names)

    def get_server_address(self) -> Address | None:
        if self.role is Role.SERVER:
            return self._public
        if self.role is Role.CLIENT:
            host = self._remotes.get(self._server_name or "")
            if host is not None and host.state is PeerState.CONNECTED:
                return host.address
        return None

    def get_server_name(self) -> str | None:
        return self._server_name if self.role is not Role.NONE else None

    def get_user_name(self) -> str | None:
        return self._name if self.role is not Role.NONE else None

    def i_am_server(self) -> bool | None:
        if self.role is Role.NONE:
            return None
        return self.role is Role.SERVER

    def is_connected(self) -> bool:
        return self._connected

    def connection(self, peer_name: str) -> Connection | None:
        remote = self._remotes.get(peer_name)
        return remote.connection if remote is not None else None

    @property
    def blocked_count(self) -> int:
        return self._blocked_count

    # ------------------------------------------------------------------ I/O interface

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        out, self._out = self._out, []
        return out

    def events(self) -> list[ev.EngineEvent]:
        out, self._events = self._events, []
        return out

    def next_timer(self, now: float) -> float | None:
        first = self._tracker.next_time()
        times = [first] if first is not None else []
        if self._registered and not self._hs_dropped:
            times.append(self._next_refresh)
        for r in self._remotes.values():
            if r.connection is not None:
                times.append(r.connection.next_timer(now))
            else:
                times.append(min(r.next_punch if r.state is PeerState.PUNCHING else r.next_resend,
                                 r.deadline))
        return min(times) if times else None

    def receive_datagram(self, data: bytes, address: Address, now: float) -> None:
        """Take one datagram from the network. Never raises for bad input."""
        self._now = now
        try:
            kind = peek_kind(data)
            if kind is Kind.DATA:
                self._on_data(data, address, now)
            elif kind is Kind.RELAY:
                self._on_relay(data, address, now)
            elif kind < Kind.PUNCH:
                self._on_hs_packet(kind, data, address, now)
            else:
                self._on_peer_packet(kind, data, address, now)
        except ProtocolError as exc:
            log.debug("dropped datagram from %s: %s", address, exc)
            self._block(address, now)

    def _on_relay(self, data: bytes, address: Address, now: float) -> None:
        relay_id, inner = decode_relay(data)
        remote = self._relay_remotes.get(relay_id)
        if remote is None or address != self._hs:
            if self._recently_departed(relay_address(relay_id), now):
                return
            raise ProtocolError("RELAY of no relay of ours")
        kind = peek_kind(inner)
        if kind is Kind.RELAY or kind < Kind.PUNCH:
            raise ProtocolError(f"{kind.name} cannot travel through a relay")
        virtual = relay_address(relay_id)
        if kind is Kind.DATA:
            self._on_data(inner, virtual, now)
        else:
            self._on_peer_packet(kind, inner, virtual, now)

    def handle_timer(self, now: float) -> None:
        """Run everything that is due: resends, refreshes, punches, peer traffic."""
        self._now = now
        self._run_requests(now)
        if (self.role is Role.SERVER and self._registered and not self._hs_dropped
                and now >= self._next_refresh):
            self._refresh(now)
        for remote in list(self._remotes.values()):
            if remote.state is PeerState.CONNECTED:
                self._service_connection(remote, now)
            else:
                self._service_handshake(remote, now)

    # ------------------------------------------------------------------ helpers

    def _emit(self, event: ev.EngineEvent) -> None:
        self._events.append(event)

    def _block(self, address: Address, now: float) -> None:
        self._blocked_count += 1
        if now - self._blocked_window >= 1.0:
            self._blocked_window = now
            self._blocked_in_window = 0
        if self._blocked_in_window < self.config.max_blocked_events_per_sec:
            self._blocked_in_window += 1
            self._emit(ev.PacketBlocked(address))

    def _send(self, data: bytes, address: Address) -> None:
        relay_id = self._relay_ids.get(address)
        if relay_id is not None and self._hs is not None:
            self._out.append((encode_relay(relay_id, data), self._hs))
        else:
            self._out.append((data, address))

    def _error(self, message: str) -> None:
        log.info("error: %s", message)
        self._emit(ev.Error(message))

    def _terminate(self, reason: str) -> None:
        if self.role is Role.NONE:
            return
        log.info("session ended: %s", reason)
        for remote in self._remotes.values():
            if remote.connection is not None:
                remote.connection.close()
        self._reset()
        self._emit(ev.SessionTerminated(reason))

    # handshake server requests ---------------------------------------------------------

    def _request(self, kind: Kind, fields: list[Any], address: Address, now: float) -> int:
        return self._tracker.start(kind, fields, address, now).req_id

    def _run_requests(self, now: float) -> None:
        for req in self._tracker.run(now):
            self._request_expired(req, now)

    def _request_expired(self, req: Request, now: float) -> None:
        host, port = req.address
        where = f"handshake server {host}:{port} did not answer"
        if req.kind is Kind.LIST:
            self._lists.pop(req.req_id, None)
            self._error(f"server list request failed: {where}")
        elif req.kind is Kind.REGISTER:
            self._error(f"registration failed: {where}")
            if not self._any_connected():
                self._terminate(f"registration failed: {where}")
        elif req.kind is Kind.REFRESH:
            if self._any_connected():
                # Better than the seed, which quits: the game goes on peer to peer.
                self._error(f"registration refresh failed ({where}); the session goes on, "
                            "but new players cannot join")
                self._hs_dropped = True
            else:
                self._error(f"registration refresh failed: {where}")
                self._terminate(f"registration refresh failed: {where}")
        elif req.kind is Kind.JOIN and self.role is Role.CLIENT and not self._connected:
            host_remote = self._remotes.get(self._server_name or "")
            if host_remote is None:
                self._error(f"could not join: {where}")
                self._terminate(f"could not join: {where}")
            elif host_remote.state is PeerState.PUNCHING and now < host_remote.deadline:
                # Introduced, but no path yet: the server player may not have heard of us
                # (its introduction lost, or it was busy). Keep asking while we punch.
                self._join_req = self._request(Kind.JOIN, req.fields, req.address, now)

    def _any_connected(self) -> bool:
        return any(r.state is PeerState.CONNECTED for r in self._remotes.values())

    def _register(self, now: float) -> None:
        assert self._hs is not None and self._name is not None
        self._request(Kind.REGISTER, [self._name, self._lan[0], self._lan[1],
                                      self._password_required,
                                      float(self.config.secs_reg_valid)], self._hs, now)

    def _refresh(self, now: float) -> None:
        assert self._hs is not None and self._name is not None and self._token is not None
        self._next_refresh = now + self.config.secs_between_reg_refresh
        if not any(q.kind is Kind.REFRESH for q in self._tracker.pending.values()):
            self._request(Kind.REFRESH, [self._name, self._token], self._hs, now)

    def _unregister(self) -> None:
        if (self.role is Role.SERVER and self._token is not None and self._hs is not None
                and not self._hs_dropped):
            data = encode_request(Kind.UNREGISTER, 0, [self._name, self._token])
            for _ in range(2):
                self._send(data, self._hs)

    def _on_hs_packet(self, kind: Kind, data: bytes, address: Address, now: float) -> None:
        fields = decode_control(kind, data)
        rid = fields[0]
        if kind is Kind.COOKIE:
            if not self._tracker.got_cookie(rid, address, fields[1], now):
                raise ProtocolError("COOKIE for no request of ours")
            return
        req = self._tracker.find(rid, address)
        if kind is Kind.RELAY_READY and rid == 0 and address == self._hs:
            self._on_relay_ready(fields, now)
            return
        if kind is Kind.INTRODUCE and rid == 0:
            # Unsolicited introduction of a client: only from our own handshake server.
            if (self.role is not Role.SERVER or address != self._hs or self._hs_dropped
                    or not self._registered):
                raise ProtocolError("introduction from an unexpected address")
            self._on_introduce(fields, now)
            return
        if req is None:
            if self._tracker.answered_before(rid):
                return  # a late copy of an answer we already have (our request was resent)
            raise ProtocolError(f"{kind.name} answers no request of ours")
        if kind is not Kind.INTRODUCE:
            self._tracker.finish(req)
        if kind is Kind.HS_ERROR:
            self._on_hs_error(req, ErrorCode(fields[1]) if fields[1] in ErrorCode._value2member_map_
                              else None, fields[2], now)
        elif kind is Kind.REGISTERED and req.kind is Kind.REGISTER:
            self._token = fields[1]
            self._public = (fields[2], fields[3])
            self._next_refresh = now + min(self.config.secs_between_reg_refresh, fields[4] / 3)
            first = not self._registered
            self._registered = True
            if first:
                self._connected = True
                assert self._hs is not None
                self._emit(ev.ConfirmedAsServer(self._hs))
        elif kind is Kind.REFRESHED and req.kind is Kind.REFRESH:
            self._next_refresh = now + min(self.config.secs_between_reg_refresh, fields[1] / 3)
        elif kind is Kind.UNREGISTERED:
            pass
        elif kind is Kind.INTRODUCE and req.kind is Kind.JOIN:
            self._on_introduce(fields, now)
            req.next_send = now + self.config.secs_to_await_reply
        elif kind is Kind.RELAY_READY and req.kind is Kind.RELAY_REQUEST:
            self._on_relay_ready(fields, now)
        elif kind is Kind.LIST_REPLY and req.kind is Kind.LIST:
            self._on_list_page(rid, fields, now)
        else:
            raise ProtocolError(f"{kind.name} does not answer {req.kind.name}")

    def _on_hs_error(self, req: Request, code: ErrorCode | None, message: str,
                     now: float) -> None:
        if req.kind is Kind.LIST:
            self._lists.pop(req.req_id, None)
            self._error(f"server list refused: {message}")
        elif req.kind is Kind.RELAY_REQUEST:
            log.info("relay refused: %s", message)
        elif req.kind is Kind.REFRESH and code in (ErrorCode.NOT_REGISTERED, ErrorCode.BAD_TOKEN):
            # The handshake server forgot us (restarted, or we were away): register again.
            self._register(now)
        elif req.kind in (Kind.REGISTER, Kind.REFRESH, Kind.JOIN):
            what = "registration" if req.kind is not Kind.JOIN else "join"
            self._error(f"{what} refused by the handshake server: {message}")
            if req.kind is Kind.JOIN or not self._any_connected():
                self._terminate(f"{what} refused: {message}")

    def _on_list_page(self, rid: int, fields: list[Any], now: float) -> None:
        query = self._lists.pop(rid, None)
        if query is None:
            return
        _, page, pages, entries = fields
        query.servers.extend({"name": n, "password_required": p} for n, p in entries)
        if page + 1 < pages and page + 1 < 64:
            nxt = self._request(Kind.LIST, [page + 1], query.address, now)
            self._lists[nxt] = query
        else:
            self._emit(ev.ReceivedServerList([s["name"] for s in query.servers], query.servers))

    # introductions and punching ----------------------------------------------------------

    def _on_introduce(self, fields: list[Any], now: float) -> None:
        _, name, pub_host, pub_port, lan_host, lan_port, password_required, nonce = fields
        if name == self._name:
            raise ProtocolError("introduced to ourselves")
        existing = self._remotes.get(name)
        if existing is not None:
            if existing.state is PeerState.CONNECTED or existing.intro_nonce == nonce:
                return  # a repeated introduction: punching already under way
            self._remove(existing, quiet=True)
        if self.role is Role.CLIENT:
            if name != self._server_name:
                raise ProtocolError("introduced to a peer we did not ask for")
            if self._remotes:
                return
            if password_required and self._key is None:
                self._error(f"{name!r} needs a password")
                self._terminate("wrong password")
                return
        else:
            connected = sum(1 for r in self._remotes.values() if r.state is PeerState.CONNECTED)
            joining = len(self._remotes) - connected
            if connected >= self.config.max_clients or joining >= MAX_PENDING:
                log.info("ignoring %s: no room (%d clients, %d joining)", name, connected,
                         joining)
                return
            penalty = self._auth_penalty.get(pub_host)
            if penalty is not None and now < penalty[1]:
                log.info("ignoring %s: %s gave a wrong password %d times", name, pub_host,
                         penalty[0])
                return
        candidates: list[tuple[Address, str]] = [((pub_host, pub_port), "direct")]
        lan = (lan_host, lan_port)
        if lan_port and lan != candidates[0][0] and _is_local(lan_host):
            # Only an address of a local network: a client cannot make us punch
            # an arbitrary public address it names.
            candidates.insert(0, (lan, "lan"))
        remote = _Remote(name, nonce, candidates, now + self.config.handshake_timeout,
                         password_required=password_required, punch_started=now)
        self._remotes[name] = remote
        log.info("introduced to %s at %s", name, [c[0] for c in candidates])
        self._punch(remote, now, burst=PUNCH_BURST)

    def _punch(self, remote: _Remote, now: float, burst: int = 1) -> None:
        assert self._name is not None
        data = encode_control(Kind.PUNCH, [self._name, remote.name, remote.punch_id])
        for address, path in remote.candidates:
            if path == "relay":
                continue
            for _ in range(burst):
                self._send(data, address)
        remote.punch_count += 1
        remote.next_punch = now + PUNCH_INTERVAL

    def _service_handshake(self, remote: _Remote, now: float) -> None:
        if now >= remote.deadline:
            self._connection_failed(remote)
            return
        if remote.state is PeerState.PUNCHING:
            if now >= remote.next_punch:
                self._punch(remote, now)
            if (not remote.relay_requested and self.config.use_relay
                    and now >= remote.punch_started + self.config.relay_delay
                    and self._hs is not None and not self._hs_dropped):
                self._request_relay(remote, now)
        elif self.role is Role.CLIENT and now >= remote.next_resend:
            self._send_handshake(remote, now)

    def _request_relay(self, remote: _Remote, now: float) -> None:
        """Punching has not found a path yet: ask the handshake server to relay."""
        assert self._hs is not None and self._name is not None
        remote.relay_requested = True
        remote.deadline = max(remote.deadline, now + self.config.handshake_timeout)
        server, client = (self._name, remote.name) if self.role is Role.SERVER \
            else (remote.name, self._name)
        log.info("no direct path to %s yet: asking for a relay", remote.name)
        self._request(Kind.RELAY_REQUEST, [server, client], self._hs, now)

    def _on_relay_ready(self, fields: list[Any], now: float) -> None:
        _, relay_id, peer_name = fields
        remote = self._remotes.get(peer_name)
        if remote is None or remote.relay_id is not None:
            return
        virtual = relay_address(relay_id)
        remote.relay_id = relay_id
        self._relay_remotes[relay_id] = remote
        self._relay_ids[virtual] = relay_id
        remote.candidates.append((virtual, "relay"))
        if remote.state is not PeerState.PUNCHING:
            return  # a direct path won meanwhile; the relay stays as a spare
        log.info("reaching %s through the relay", peer_name)
        remote.deadline = max(remote.deadline, now + self.config.handshake_timeout)
        if self.role is Role.CLIENT:
            self._choose_path(remote, virtual, now)

    def _connection_failed(self, remote: _Remote) -> None:
        log.info("no connection to %s (%s)", remote.name, remote.state.value)
        self._remove(remote, quiet=True)
        self._emit(ev.PeerConnectionFailed(remote.name))
        if self.role is Role.CLIENT:
            self._terminate(f"could not connect to {remote.name!r}")

    def _send_handshake(self, remote: _Remote, now: float) -> None:
        """Client side: (re)send HELLO or AUTH to the server player."""
        assert remote.address is not None and self._name is not None
        remote.next_resend = now + self.config.secs_to_await_reply
        if not remote.server_nonce:
            mac = crypto.intro_mac(remote.intro_nonce, b"hello", remote.client_nonce)
            data = encode_control(Kind.HELLO, [self._name, remote.name, remote.client_nonce,
                                               mac])
        else:
            data = encode_control(Kind.AUTH, [self._client_proof(remote)])
            self._mark_sent(remote, now)
        self._send(data, remote.address)

    @staticmethod
    def _mark_sent(remote: _Remote, now: float) -> None:
        remote.resent = remote.sent_at > 0
        remote.sent_at = now

    @staticmethod
    def _handshake_rtt(remote: _Remote, now: float) -> float | None:
        return None if remote.resent or remote.sent_at <= 0 else now - remote.sent_at

    def _session_key(self, remote: _Remote) -> bytes:
        return self._key if self._key is not None else crypto.introduction_key(remote.intro_nonce)

    def _transcript(self, remote: _Remote, client: str, server: str) -> tuple[bytes, ...]:
        return (remote.client_nonce, remote.server_nonce, remote.intro_nonce,
                client.encode(), server.encode())

    def _client_proof(self, remote: _Remote) -> bytes:
        assert self._name is not None
        client, server = (self._name, remote.name) if self.role is Role.CLIENT \
            else (remote.name, self._name or "")
        return crypto.proof(self._session_key(remote), b"client-proof",
                            *self._transcript(remote, client, server))

    def _server_proof(self, remote: _Remote) -> bytes:
        assert self._name is not None
        client, server = (self._name, remote.name) if self.role is Role.CLIENT \
            else (remote.name, self._name)
        return crypto.proof(self._session_key(remote), b"server-proof",
                            *self._transcript(remote, client, server))

    # peer control packets ------------------------------------------------------------

    def _on_peer_packet(self, kind: Kind, data: bytes, address: Address, now: float) -> None:
        fields = decode_control(kind, data)
        if kind is Kind.PUNCH or kind is Kind.PUNCH_ACK:
            self._on_punch(kind, fields, address, now)
        elif kind is Kind.HELLO:
            self._on_hello(fields, address, now)
        elif kind is Kind.CHALLENGE:
            self._on_challenge(fields, address, now)
        elif kind is Kind.AUTH:
            self._on_auth(fields, address, now)
        elif kind is Kind.WELCOME:
            self._on_welcome(fields, address, now)
        elif kind is Kind.REJECT:
            self._on_reject(fields, address)
        else:  # pragma: no cover - every peer kind is handled above
            raise ProtocolError(f"unexpected {kind.name}")

    def _on_punch(self, kind: Kind, fields: list[Any], address: Address, now: float) -> None:
        sender, target, pid = fields
        remote = self._remotes.get(sender)
        if remote is None or target != self._name or pid != remote.punch_id:
            raise ProtocolError("punch from a peer we were not introduced to")
        if kind is Kind.PUNCH:
            if (not address[0].startswith("relay-")
                    and all(a != address for a, _ in remote.candidates)):
                # A mapping we did not know of (the peer's NAT chose another port):
                # worth trying later, as in ICE's peer-reflexive candidates.
                remote.candidates.append((address, "direct"))
            # Answer every valid punch, one small datagram for one: this opens our NAT
            # towards that address and proves the path to the other side.
            self._send(encode_control(Kind.PUNCH_ACK, [self._name, sender, pid]), address)
            return
        if remote.state is PeerState.CONNECTED and remote.path == "relay":
            if address[0].startswith("relay-"):
                raise ProtocolError("punch answer through the relay")
            self._switch_path(remote, address)
            return
        if self.role is Role.SERVER or remote.state is not PeerState.PUNCHING:
            # The client chooses the path (the first answer it gets); the server player
            # follows its HELLO. Answers from other paths change nothing.
            return
        self._choose_path(remote, address, now)

    def _choose_path(self, remote: _Remote, address: Address, now: float) -> None:
        remote.address = address
        # The handshake gets its own attempts, whatever punching took.
        remote.deadline = max(remote.deadline, now + self.config.handshake_timeout)
        remote.path = self._path_name(remote, address)
        remote.state = PeerState.HANDSHAKE
        log.info("path to %s: %s (%s)", remote.name, address, remote.path)
        remote.client_nonce = self._random(NONCE_SIZE)
        remote.attempts = 0
        self._send_handshake(remote, now)

    @staticmethod
    def _path_name(remote: _Remote, address: Address) -> str:
        return next((p for a, p in remote.candidates if a == address), "direct")

    def _switch_path(self, remote: _Remote, address: Address) -> None:
        """A direct path opened for a peer we reach through the relay: use it."""
        assert remote.connection is not None
        remote.address = address
        remote.path = self._path_name(remote, address)
        if remote.path == "relay":
            remote.path = "direct"
        remote.connection.path = remote.path
        self._by_addr[address] = remote
        log.info("direct path to %s opened: %s (%s)", remote.name, address, remote.path)
        self._emit(ev.PathChanged(remote.name, remote.path))

    def _on_hello(self, fields: list[Any], address: Address, now: float) -> None:
        user, server, client_nonce, mac = fields
        remote = self._remotes.get(user)
        if (self.role is not Role.SERVER or server != self._name or remote is None
                or not crypto.verify(crypto.intro_mac(remote.intro_nonce, b"hello",
                                                      client_nonce), mac)):
            raise ProtocolError("HELLO from a client that was not introduced")
        if remote.state is PeerState.CONNECTED:
            raise ProtocolError("HELLO from a client already in the session")
        if remote.client_nonce != client_nonce:
            remote.client_nonce = client_nonce
            remote.server_nonce = self._random(NONCE_SIZE)
            remote.sent_at = 0.0
        self._mark_sent(remote, now)
        if remote.state is PeerState.PUNCHING:
            remote.deadline = max(remote.deadline, now + self.config.handshake_timeout)
        remote.address = address  # the client chose this path
        remote.path = self._path_name(remote, address)
        remote.state = PeerState.HANDSHAKE
        mac = crypto.intro_mac(remote.intro_nonce, b"challenge", client_nonce,
                               remote.server_nonce, bytes([self._password_required]))
        self._send(encode_control(Kind.CHALLENGE, [remote.server_nonce,
                                                   self._password_required, mac]), address)

    def _on_challenge(self, fields: list[Any], address: Address, now: float) -> None:
        server_nonce, password_required, mac = fields
        remote = self._remotes.get(self._server_name or "")
        if (self.role is not Role.CLIENT or remote is None or remote.address != address
                or remote.state is not PeerState.HANDSHAKE):
            raise ProtocolError("unexpected CHALLENGE")
        expected = crypto.intro_mac(remote.intro_nonce, b"challenge", remote.client_nonce,
                                    server_nonce, bytes([password_required]))
        if not crypto.verify(expected, mac):
            raise ProtocolError("CHALLENGE with a bad MAC")
        if password_required and self._key is None:
            self._remove(remote, quiet=True)
            self._error(f"{remote.name!r} needs a password")
            self._terminate("wrong password")
            return
        if remote.server_nonce != server_nonce:
            remote.server_nonce = server_nonce
            remote.sent_at = 0.0
            self._send_handshake(remote, now)

    def _on_auth(self, fields: list[Any], address: Address, now: float) -> None:
        remote = self._by_addr.get(address)
        if remote is None:
            remote = next((r for r in self._remotes.values()
                           if r.address == address and r.state is PeerState.HANDSHAKE), None)
        if self.role is not Role.SERVER or remote is None or not remote.server_nonce:
            raise ProtocolError("AUTH from an address without a challenge")
        if not crypto.verify(self._client_proof(remote), fields[0]):
            log.info("wrong password from %s at %s", remote.name, address)
            ip = next(a for a, p in remote.candidates if p == "direct")[0]
            failures = self._auth_penalty.get(ip, (0, 0.0))[0] + 1
            self._auth_penalty[ip] = (failures, now + min(MAX_AUTH_PENALTY, 2.0 ** (failures - 1)))
            if len(self._auth_penalty) > 4096:
                del self._auth_penalty[next(iter(self._auth_penalty))]
            self._send(self._reject(remote, ErrorCode.WRONG_PASSWORD, "wrong password"), address)
            self._remove(remote, quiet=True)
            self._emit(ev.PeerConnectionFailed(remote.name))
            return
        if remote.state is not PeerState.CONNECTED:
            self._connect(remote, now)
            self._emit(ev.ClientConfirmed(remote.name))
            self._peers_changed()
        self._send(encode_control(Kind.WELCOME, [self._server_proof(remote)]), address)

    def _on_welcome(self, fields: list[Any], address: Address, now: float) -> None:
        remote = self._remotes.get(self._server_name or "")
        if (self.role is not Role.CLIENT or remote is None or remote.address != address
                or not remote.server_nonce):
            raise ProtocolError("unexpected WELCOME")
        if remote.state is PeerState.CONNECTED:
            return  # a repeat: our AUTH was resent
        if not crypto.verify(self._server_proof(remote), fields[0]):
            self._error(f"{remote.name!r} could not prove it knows the password")
            self._terminate("server player failed to authenticate")
            return
        self._connect(remote, now)
        self._connected = True
        if self._join_req is not None:
            join = self._join_req
            self._tracker.drop(lambda q: q.req_id == join)
        self._emit(ev.ConfirmedAsClient(address))
        self._peers_changed()

    @staticmethod
    def _reject(remote: _Remote, code: ErrorCode, message: str) -> bytes:
        mac = crypto.intro_mac(remote.intro_nonce, b"reject", remote.client_nonce,
                               remote.server_nonce, int(code).to_bytes(2, "big"),
                               message.encode())
        return encode_control(Kind.REJECT, [int(code), message, mac])

    def _on_reject(self, fields: list[Any], address: Address) -> None:
        code, message, mac = fields
        remote = self._remotes.get(self._server_name or "")
        if self.role is not Role.CLIENT or remote is None or remote.address != address:
            raise ProtocolError("unexpected REJECT")
        expected = crypto.intro_mac(remote.intro_nonce, b"reject", remote.client_nonce,
                                    remote.server_nonce, int(code).to_bytes(2, "big"),
                                    message.encode())
        if not crypto.verify(expected, mac):
            raise ProtocolError("REJECT with a bad MAC")
        self._error(f"{remote.name!r} refused us: {message}")
        self._terminate(message)

    def _on_bye(self, remote: _Remote, reason: object) -> None:
        text = str(reason)[:200]
        log.info("%s left: %s", remote.name, text)
        if self.role is Role.CLIENT:
            self._terminate(f"the server player left ({text})")
        else:
            self._remove(remote)

    def _send_disconnect(self, remote: _Remote, reason: str) -> None:
        """Tell a peer we are leaving: a few authenticated copies, sent at once."""
        conn = remote.connection
        if remote.address is None or conn is None:
            return
        bye = encode_value([SYS_BYE, reason])
        for _ in range(DISCONNECT_COPIES):
            conn.send(Delivery.UNRELIABLE, SYSTEM_CHANNEL, bye)
            for data in conn.poll(self._now):
                self._send(data, remote.address)

    # connected peers -----------------------------------------------------------------

    def _connect(self, remote: _Remote, now: float) -> None:
        assert remote.address is not None
        remote.state = PeerState.CONNECTED
        client, server = (self._name or "", remote.name) if self.role is Role.CLIENT \
            else (remote.name, self._name or "")
        key = crypto.proof(self._session_key(remote), b"session-key",
                           *self._transcript(remote, client, server))
        mine, theirs = (b"c2s", b"s2c") if self.role is Role.CLIENT else (b"s2c", b"c2s")
        remote.connection = Connection(self._conn_config, now, self._budget, remote.path,
                                       initial_rtt=self._handshake_rtt(remote, now),
                                       key=key, send_label=mine, recv_label=theirs)
        self._by_addr[remote.address] = remote
        log.info("connected to %s at %s (%s)", remote.name, remote.address, remote.path)

    def _remove(self, remote: _Remote, quiet: bool = False) -> None:
        self._remotes.pop(remote.name, None)
        aliases = [a for a, r in self._by_addr.items() if r is remote]
        for a in aliases:
            del self._by_addr[a]
        if remote.relay_id is not None:
            self._relay_remotes.pop(remote.relay_id, None)
            self._relay_ids.pop(relay_address(remote.relay_id), None)
            aliases.append(relay_address(remote.relay_id))
        if remote.connection is not None:
            remote.connection.close()
        if remote.state is PeerState.CONNECTED:
            if len(self._departed) > 256:
                self._departed.clear()
            for a in aliases:
                self._departed[a] = self._now + 2.0
        if not quiet and remote.state is PeerState.CONNECTED:
            self._peers_changed()

    def _peers_changed(self) -> None:
        """Recompute the peer list; tell the game, and (server player) the clients."""
        if self.role is Role.SERVER:
            clients = [r for r in self._remotes.values() if r.state is PeerState.CONNECTED]
            names = [r.name for r in clients]
            for r in clients:
                assert r.connection is not None and r.address is not None
                others = [[o.name, o.address[0], o.address[1]] for o in clients
                          if o is not r and o.address is not None]
                r.connection.send(Delivery.RELIABLE_ORDERED, SYSTEM_CHANNEL,
                                  encode_value([SYS_PEERS, others]), 0, None)
        else:
            names = [n for n in self._remotes if self._remotes[n].state is PeerState.CONNECTED]
            names += [n for n in self._known if n not in names]
        if names != self._peer_names:
            self._peer_names = names
            self._emit(ev.PeerListUpdated(list(names)))

    def _service_connection(self, remote: _Remote, now: float) -> None:
        conn = remote.connection
        assert conn is not None and remote.address is not None
        if conn.timed_out(now):
            log.info("%s timed out", remote.name)
            self._emit(ev.PeerTimeout(remote.name))
            if self.role is Role.CLIENT:
                self._terminate(f"lost the server player {remote.name!r} (timeout)")
            else:
                self._remove(remote)
            return
        if remote.path == "relay" and now >= remote.next_direct_try:
            remote.next_direct_try = now + DIRECT_RETRY_INTERVAL
            self._punch(remote, now)
        for data in conn.poll(now):
            self._send(data, remote.address)
        if conn.expired:
            groups, conn.expired = conn.expired, []
            for group in groups:
                self._on_expired(remote, group)

    def _on_expired(self, remote: _Remote, group: Group) -> None:
        ctx = group.message
        if group.channel != SYSTEM_CHANNEL:
            self._emit(ev.ReliableMessageTimeout(self._packet_data(
                self._name or "", remote.name, group.message, group.message_id)))
        elif isinstance(ctx, tuple) and ctx[0] == "user":
            # A message we sent to another client through the server player.
            _, to, message, message_id = ctx
            self._emit(ev.ReliableMessageTimeout(self._packet_data(
                self._name or "", to, message, message_id)))
        elif isinstance(ctx, tuple) and ctx[0] == "forward":
            # We are the server player and could not pass a client's message on.
            _, origin, message_id, to = ctx
            self._forward_failed(origin, message_id, to)

    def _forward_failed(self, origin: str, message_id: int, to: str) -> None:
        remote = self._remotes.get(origin)
        if remote is not None and remote.connection is not None:
            remote.connection.send(Delivery.RELIABLE_ORDERED, SYSTEM_CHANNEL,
                                   encode_value([SYS_FORWARD_FAILED, message_id, to]), 0, None)

    @staticmethod
    def _packet_data(sender: str, to: str, message: object, message_id: int | None,
                     channel: int | None = None, delivery: Delivery | None = None
                     ) -> dict[str, Any]:
        data: dict[str, Any] = {"from": sender, "to": to, "message": message}
        if message_id is not None:
            data["message_id"] = message_id
        if channel is not None:
            data["channel"] = channel
        if delivery is not None:
            data["delivery"] = delivery
        return data

    def _recently_departed(self, address: Address, now: float) -> bool:
        until = self._departed.get(address)
        if until is None:
            return False
        if until < now:
            del self._departed[address]
            return False
        return True

    def _on_data(self, data: bytes, address: Address, now: float) -> None:
        remote = self._by_addr.get(address)
        if remote is None:
            remote = self._migrating(address)
        if remote is None or remote.connection is None:
            if self._recently_departed(address, now):
                return
            raise ProtocolError("DATA from an address not in the session")
        delivered = remote.connection.receive(data, now)
        if remote.path == "relay" and address != remote.address:
            self._switch_path(remote, address)  # authenticated: the direct path works
        for d in delivered:
            if d.channel == SYSTEM_CHANNEL:
                self._on_system(remote, d, now)
            else:
                self._deliver_user(remote.name, d.value, d.message_id, d.channel, d.mode)

    def _migrating(self, address: Address) -> _Remote | None:
        """A relayed peer whose direct path just opened may send from a known candidate."""
        for r in self._relay_remotes.values():
            if r.path == "relay" and any(a == address for a, _ in r.candidates):
                return r
        return None

    def _deliver_user(self, sender: str, value: object, message_id: int | None, channel: int,
                      mode: Delivery) -> None:
        data = self._packet_data(sender, self._name or "", value,
                                 message_id if mode.reliable else None, channel, mode)
        if mode.reliable:
            self._emit(ev.ReceivedReliableMessageFromPeer(data))
        else:
            self._emit(ev.ReceivedUnreliableMessageFromPeer(data))

    def _on_system(self, remote: _Remote, d: Delivered, now: float) -> None:
        msg = d.value
        if type(msg) is not list or not msg or type(msg[0]) is not int:
            raise ProtocolError("malformed system message")
        kind = msg[0]
        if kind == SYS_PING:
            return
        if kind == SYS_PEERS and self.role is Role.CLIENT and len(msg) == 2:
            self._on_peer_list(msg[1])
        elif kind == SYS_FORWARD and self.role is Role.SERVER and len(msg) == 6:
            self._on_forward(remote, msg)
        elif kind == SYS_FORWARDED and self.role is Role.CLIENT and len(msg) == 6:
            self._on_forwarded(msg)
        elif kind == SYS_BYE and len(msg) == 2:
            self._on_bye(remote, msg[1])
        elif kind == SYS_FORWARD_FAILED and self.role is Role.CLIENT and len(msg) == 3:
            _, message_id, to = msg
            self._emit(ev.ReliableMessageTimeout(self._packet_data(
                self._name or "", str(to), None, message_id)))
        else:
            log.debug("ignored system message %r from %s", kind, remote.name)

    def _on_peer_list(self, entries: Any) -> None:
        if type(entries) is not list:
            return
        known: dict[str, _Known] = {}
        for e in entries:
            if (type(e) is list and len(e) == 3 and valid_name(e[0]) and type(e[1]) is str
                    and type(e[2]) is int and e[0] != self._name):
                known[e[0]] = _Known(e[0], (e[1], e[2]))
        self._known = known
        self._peers_changed()

    def _on_forward(self, remote: _Remote, msg: list[Any]) -> None:
        _, to, mode, channel, message_id, payload = msg
        if (type(mode) is not int or mode not in Delivery._value2member_map_
                or type(channel) is not int or not 0 <= channel < USER_CHANNELS
                or type(message_id) is not int or type(payload) is not bytes):
            raise ProtocolError("malformed forward")
        delivery = Delivery(mode)
        if to == self._name:
            value = decode_value(payload)
            self._deliver_user(remote.name, value, message_id, channel, delivery)
            return
        target = self._remotes.get(to) if isinstance(to, str) else None
        if target is None or target.connection is None:
            if delivery.reliable:
                self._forward_failed(remote.name, message_id, str(to))
            return
        body = encode_value([SYS_FORWARDED, remote.name, mode, channel, message_id, payload])
        try:
            if delivery.reliable:
                target.connection.send(Delivery.RELIABLE_ORDERED, SYSTEM_CHANNEL, body, 0,
                                       ("forward", remote.name, message_id, to), expires=True)
            else:
                target.connection.send(Delivery.UNRELIABLE, SYSTEM_CHANNEL, body)
        except MessageTooLarge:
            if delivery.reliable:
                self._forward_failed(remote.name, message_id, str(to))

    def _on_forwarded(self, msg: list[Any]) -> None:
        _, sender, mode, channel, message_id, payload = msg
        if (type(sender) is not str or type(mode) is not int
                or mode not in Delivery._value2member_map_ or type(channel) is not int
                or not 0 <= channel < USER_CHANNELS or type(message_id) is not int
                or type(payload) is not bytes):
            raise ProtocolError("malformed forwarded message")
        delivery = Delivery(mode)
        if delivery is Delivery.UNRELIABLE_SEQUENCED:
            key = (sender, channel)
            latest = self._latest_forwarded.get(key)
            if latest is not None and message_id <= latest:
                return
            self._latest_forwarded[key] = message_id
        self._deliver_user(sender, decode_value(payload), message_id, channel, delivery)
