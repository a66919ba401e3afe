"""From an introduction to a connection: punching both addresses at once, the relay when
punching fails, and the challenge-response that proves the password."""

from __future__ import annotations

import logging
from typing import Any

from . import crypto
from . import events as ev
from .connection import Connection
from .constants import (
    NONCE_SIZE,
    PUNCH_BURST,
    PUNCH_INTERVAL,
)
from .errors import ProtocolError
from .peers import (
    MAX_AUTH_PENALTY,
    MAX_PENDING,
    Address,
    PeerState,
    Remote,
    Role,
    is_local_address,
    relay_address,
)
from .state import SessionState
from .wire import (
    ErrorCode,
    Kind,
    decode_control,
    decode_relay,
    encode_control,
    peek_kind,
)

log = logging.getLogger(__name__)


class Punching(SessionState):
    """Introductions, hole punching, the relay, and the password handshake."""

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
        if lan_port and lan != candidates[0][0] and is_local_address(lan_host):
            # Only an address of a local network: a client cannot make us punch
            # an arbitrary public address it names.
            candidates.insert(0, (lan, "lan"))
        remote = Remote(name, nonce, candidates, now + self.config.handshake_timeout,
                         password_required=password_required, punch_started=now)
        self._remotes[name] = remote
        log.info("introduced to %s at %s", name, [c[0] for c in candidates])
        self._punch(remote, now, burst=PUNCH_BURST)

    def _punch(self, remote: Remote, now: float, burst: int = 1) -> None:
        assert self._name is not None
        data = encode_control(Kind.PUNCH, [self._name, remote.name, remote.punch_id])
        for address, path in remote.candidates:
            if path == "relay":
                continue
            for _ in range(burst):
                self._send(data, address)
        remote.punch_count += 1
        remote.next_punch = now + PUNCH_INTERVAL

    def _service_handshake(self, remote: Remote, now: float) -> None:
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

    def _request_relay(self, remote: Remote, now: float) -> None:
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

    def _connection_failed(self, remote: Remote) -> None:
        log.info("no connection to %s (%s)", remote.name, remote.state.value)
        self._remove(remote, quiet=True)
        self._emit(ev.PeerConnectionFailed(remote.name))
        if self.role is Role.CLIENT:
            self._terminate(f"could not connect to {remote.name!r}")

    def _send_handshake(self, remote: Remote, now: float) -> None:
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
    def _mark_sent(remote: Remote, now: float) -> None:
        remote.resent = remote.sent_at > 0
        remote.sent_at = now

    @staticmethod
    def _handshake_rtt(remote: Remote, now: float) -> float | None:
        return None if remote.resent or remote.sent_at <= 0 else now - remote.sent_at

    def _session_key(self, remote: Remote) -> bytes:
        return self._key if self._key is not None else crypto.introduction_key(remote.intro_nonce)

    def _transcript(self, remote: Remote, client: str, server: str) -> tuple[bytes, ...]:
        return (remote.client_nonce, remote.server_nonce, remote.intro_nonce,
                client.encode(), server.encode())

    def _client_proof(self, remote: Remote) -> bytes:
        assert self._name is not None
        client, server = (self._name, remote.name) if self.role is Role.CLIENT \
            else (remote.name, self._name or "")
        return crypto.proof(self._session_key(remote), b"client-proof",
                            *self._transcript(remote, client, server))

    def _server_proof(self, remote: Remote) -> bytes:
        assert self._name is not None
        client, server = (self._name, remote.name) if self.role is Role.CLIENT \
            else (remote.name, self._name)
        return crypto.proof(self._session_key(remote), b"server-proof",
                            *self._transcript(remote, client, server))

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

    def _choose_path(self, remote: Remote, address: Address, now: float) -> None:
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
    def _path_name(remote: Remote, address: Address) -> str:
        return next((p for a, p in remote.candidates if a == address), "direct")

    def _switch_path(self, remote: Remote, address: Address) -> None:
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
    def _reject(remote: Remote, code: ErrorCode, message: str) -> bytes:
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

    def _connect(self, remote: Remote, now: float) -> None:
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
