"""From an introduction to a connection: punching, the relay, and the key exchange.

The handshake server introduces two players with a *join token* (32 bytes, bound by the
server to the game, the joining player's name and address, and an expiry), sealed to
each of them. From it both derive an introduction key that authenticates punching and
the handshake's clear packets, so a stranger can neither punch nor answer for a player.

The handshake (client C, server player S), after C found a path:

    C -> S  HELLO      C's ephemeral X25519 share, C's SPAKE2 message (with a password)
    S -> C  CHALLENGE  S's share and SPAKE2 message, S's key confirmation
    C -> S  AUTH       C's key confirmation
    S -> C  WELCOME    or REJECT

Keys come from HKDF over the X25519 result, the SPAKE2 key and the join token, salted
with the transcript (crypto.session_keys). A wrong password gives different keys, which
each side sees in the other's confirmation: that is one online guess, and nothing on the
wire lets anyone test another guess offline, the server player and the handshake server
included. Guesses are limited per network of the guesser (constants.GUESS_*).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from . import events as ev
from .addresses import is_local_address
from .connection import Connection
from .constants import (
    GUESS_BURST,
    GUESS_INTERVAL,
    MAX_PENDING_JOINS,
    MAX_PENDING_PER_PREFIX,
    MAX_PUNCHES,
    PUNCH_BURST,
    PUNCH_INTERVAL,
    PUNCH_NONCE_SIZE,
)
from .context import Context
from .crypto import CryptoError, KeyPair, Pake, handshake_transcript, hkdf, mac, session_keys
from .crypto import verify as verify_mac
from .errors import ProtocolError
from .limits import Buckets, prefix_of
from .peers import (
    Candidate,
    Handshake,
    PathKind,
    Remote,
    RemoteState,
    Role,
    Route,
)
from .protection import PacketProtection
from .wire import (
    AUTH_SIZE,
    HELLO_SIZE,
    CandidateKind,
    ErrorCode,
    Kind,
    decode_control,
    encode_control,
    error_text,
)

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger(__name__)

def intro_key(token: bytes) -> bytes:
    return hkdf(token, salt=b"", info=b"p2p introduction key")


class Handshakes:
    """Every remote between introduction and connection, for both roles."""

    def __init__(self, ctx: Context, session: Session) -> None:
        self._ctx = ctx
        self._session = session
        # Password guesses per network, for the game this session hosts.
        self._guesses = Buckets(1.0 / GUESS_INTERVAL, GUESS_BURST, capacity=4096)

    # --- introductions ---------------------------------------------------------------

    def introduce(self, fields: list[Any], now: float) -> None:
        """The handshake server introduced a player: admit it, and start punching."""
        name, raw_candidates, password_required, token, valid_for = fields
        session = self._session
        if name == session.name:
            raise ProtocolError("introduced to ourselves")
        existing = session.remotes.get(name)
        if existing is not None:
            # A repeat (the client asks again while it punches), or someone else under
            # that name: a second introduction never replaces a player already joining.
            return
        candidates = self._candidates(raw_candidates)
        if not candidates:
            raise ProtocolError("introduction without a usable address")
        public = next(c.route.address for c in candidates if c.kind is PathKind.DIRECT)
        prefix = prefix_of(public[0])
        if session.role is Role.CLIENT:
            if name != session.server_name or session.remotes:
                raise ProtocolError("introduced to a peer we did not ask for")
            if password_required and session.password is None:
                session.fail(f"{name!r} needs a password", reason="wrong password")
                return
        elif not self._admit(prefix, now):
            return
        deadline = now + min(float(valid_for), self._ctx.config.handshake_timeout)
        remote = Remote(name, token, intro_key(token), candidates, deadline,
                        password_required=password_required, prefix=prefix, joined_at=now,
                        punch_started=now)
        session.remotes[name] = remote
        log.info("introduced to %s at %s", name, [c.route.address for c in candidates])
        self.punch(remote, now, burst=PUNCH_BURST)

    def _candidates(self, raw: list[list[Any]]) -> list[Candidate]:
        public = next((e for e in raw if e[2] == CandidateKind.PUBLIC), None)
        if public is None:
            return []
        out: list[Candidate] = []
        for host, port, kind in raw:
            route = Route((host, port))
            if any(c.route == route for c in out):
                continue
            if kind == CandidateKind.PUBLIC:
                out.append(Candidate(route, PathKind.DIRECT))
            elif kind == CandidateKind.LAN and is_local_address(host):
                # Only a local network: nobody can aim us at a public address it names.
                out.insert(0, Candidate(route, PathKind.LAN))
            elif kind == CandidateKind.MAPPED and host == public[0]:
                out.append(Candidate(route, PathKind.MAPPED))
        return out

    def _admit(self, prefix: str, now: float) -> bool:
        """Room for one more joining client from ``prefix``? Evicts fairly when full."""
        session = self._session
        connected = sum(1 for r in session.remotes.values()
                        if r.state is RemoteState.CONNECTED)
        if connected >= self._ctx.config.max_clients:
            log.info("ignoring an introduction: %d clients already", connected)
            return False
        joining = [r for r in session.remotes.values() if r.state is not RemoteState.CONNECTED]
        mine = sum(1 for r in joining if r.prefix == prefix)
        if mine >= MAX_PENDING_PER_PREFIX:
            log.info("ignoring an introduction: %s has %d joins under way", prefix, mine)
            return False
        if len(joining) >= MAX_PENDING_JOINS:
            # Full: the network holding most half-open joins loses its oldest one, so one
            # address cannot keep everyone else out.
            counts: dict[str, int] = {}
            for r in joining:
                counts[r.prefix] = counts.get(r.prefix, 0) + 1
            worst = max(counts, key=lambda p: counts[p])
            if counts[worst] <= mine + 1:
                return False
            victim = min((r for r in joining if r.prefix == worst), key=lambda r: r.joined_at)
            log.info("evicting %s's half-open join to make room", victim.name)
            session.remove(victim, quiet=True)
        return True

    # --- punching --------------------------------------------------------------------

    def punch(self, remote: Remote, now: float, burst: int = 1) -> None:
        me = self._session.name or ""
        for cand in remote.candidates:
            if cand.route.relayed:
                continue
            for _ in range(burst):
                nonce = self._ctx.random(PUNCH_NONCE_SIZE)
                remote.punches[nonce] = cand.route
                tag = mac(remote.intro_key, b"punch", me.encode(), remote.name.encode(), nonce)
                self._ctx.send_on(encode_control(Kind.PUNCH, [me, remote.name, nonce, tag]),
                                  cand.route)
        while len(remote.punches) > MAX_PUNCHES:
            del remote.punches[next(iter(remote.punches))]
        remote.next_punch = now + PUNCH_INTERVAL

    def service(self, remote: Remote, now: float) -> None:
        """Timers of a remote not yet connected."""
        session = self._session
        if now >= remote.deadline:
            self.failed(remote)
            return
        if remote.state is RemoteState.PUNCHING:
            if now >= remote.next_punch:
                self.punch(remote, now)
            cfg = self._ctx.config
            if (not remote.relay_requested and cfg.use_relay and session.rendezvous.usable
                    and now >= remote.punch_started + cfg.relay_delay):
                self._request_relay(remote, now)
        elif session.role is Role.CLIENT and now >= remote.next_resend:
            self._send_client(remote, now)

    def next_timer(self, remote: Remote) -> float:
        if remote.state is RemoteState.PUNCHING:
            return min(remote.next_punch, remote.deadline)
        return min(remote.next_resend, remote.deadline)

    def _request_relay(self, remote: Remote, now: float) -> None:
        session = self._session
        remote.relay_requested = True
        remote.deadline = max(remote.deadline, now + self._ctx.config.handshake_timeout)
        me = session.name or ""
        server, client = (me, remote.name) if session.role is Role.SERVER else (remote.name, me)
        log.info("no direct path to %s yet: asking for a relay", remote.name)
        session.rendezvous.request_relay(server, client, now)

    def relay_ready(self, remote: Remote, relay_route: Route, now: float) -> None:
        remote.relay_id = relay_route.relay_id
        remote.candidates.append(Candidate(relay_route, PathKind.RELAY))
        if remote.state is RemoteState.CONNECTED:
            self._session.by_route[relay_route] = remote
        if remote.state is not RemoteState.PUNCHING:
            return  # a direct path won meanwhile; the relay stays as a spare
        log.info("reaching %s through the relay", remote.name)
        remote.deadline = max(remote.deadline, now + self._ctx.config.handshake_timeout)
        if self._session.role is Role.CLIENT:
            self._choose(remote, relay_route, now)

    def failed(self, remote: Remote) -> None:
        session = self._session
        log.info("no connection to %s (%s)", remote.name, remote.state.value)
        session.remove(remote, quiet=True)
        self._ctx.emit(ev.PeerConnectionFailed(remote.name))
        if session.role is Role.CLIENT:
            session.fail(f"could not connect to {remote.name!r}", report=False)

    # --- packets ---------------------------------------------------------------------

    def on_packet(self, kind: Kind, data: bytes, route: Route, now: float) -> None:
        fields = decode_control(kind, data)
        if kind is Kind.PUNCH or kind is Kind.PUNCH_ACK:
            self._on_punch(kind, fields, route, len(data), now)
        elif kind is Kind.HELLO:
            self._on_hello(fields, route, now)
        elif kind is Kind.CHALLENGE:
            self._on_challenge(fields, route, now)
        elif kind is Kind.AUTH:
            self._on_auth(fields, route, now)
        elif kind is Kind.WELCOME:
            self._on_welcome(fields, route, now)
        elif kind is Kind.REJECT:
            self._on_reject(fields, route, now)
        else:  # pragma: no cover - every peer kind is handled above
            raise ProtocolError(f"unexpected {kind.name}")

    def _on_punch(self, kind: Kind, fields: list[Any], route: Route, size: int,
                  now: float) -> None:
        sender, target, nonce, tag = fields
        session = self._session
        remote = session.remotes.get(sender)
        label = b"punch" if kind is Kind.PUNCH else b"punch-ack"
        if (remote is None or target != session.name or not verify_mac(
                mac(remote.intro_key, label, sender.encode(), target.encode(), nonce), tag)):
            raise ProtocolError("punch from a peer we were not introduced to")
        if kind is Kind.PUNCH:
            # One answer of the same size to where it came from: it opens our NAT toward
            # that address and proves the path to the other side; it amplifies nothing.
            me = session.name or ""
            ack = mac(remote.intro_key, b"punch-ack", me.encode(), sender.encode(), nonce)
            self._ctx.send_on(encode_control(Kind.PUNCH_ACK, [me, sender, nonce, ack]), route)
            return
        if remote.punches.pop(nonce, None) is None:
            return  # not an answer to a punch of ours (or a copy of one already used)
        if remote.state is RemoteState.CONNECTED:
            if remote.path is PathKind.RELAY and not route.relayed:
                session.paths.consider(remote, route, size, now)
            return
        if session.role is Role.CLIENT and remote.state is RemoteState.PUNCHING:
            self._choose(remote, route, now)
        # The server player follows the path the client's HELLO comes from.

    def _choose(self, remote: Remote, route: Route, now: float) -> None:
        """Client: the first path that answered; start the key exchange on it."""
        session = self._session
        remote.route = route
        remote.path = remote.kind_of(route)
        remote.set_state(RemoteState.HANDSHAKE)
        remote.deadline = max(remote.deadline, now + self._ctx.config.handshake_timeout)
        log.info("path to %s: %s (%s)", remote.name, route.address, remote.path.value)
        pake = None
        if remote.password_required:
            assert session.password is not None
            pake = Pake(session.password, session.name or "", remote.name, True,
                        self._ctx.random)
        remote.handshake = Handshake(KeyPair.generate(self._ctx.random), pake)
        self._send_client(remote, now)

    def _send_client(self, remote: Remote, now: float) -> None:
        """Client: (re)send HELLO, or AUTH once the server player proved its keys."""
        hs = remote.handshake
        assert hs is not None and remote.route is not None
        me = self._session.name or ""
        remote.next_resend = now + self._ctx.config.secs_to_await_reply
        remote.resent = remote.sent_at > 0
        remote.sent_at = now
        if hs.keys is None:
            share, pake = hs.key.public, hs.pake.message if hs.pake else b""
            tag = mac(remote.intro_key, b"hello", me.encode(), remote.name.encode(), share, pake)
            data = encode_control(Kind.HELLO, [me, remote.name, share, pake, tag], HELLO_SIZE)
        else:
            data = encode_control(Kind.AUTH, [hs.keys.client_confirm], AUTH_SIZE)
        self._ctx.send_on(data, remote.route)

    def _on_hello(self, fields: list[Any], route: Route, now: float) -> None:
        user, server, share, client_pake, tag = fields[:5]
        session = self._session
        remote = session.remotes.get(user)
        if (session.role is not Role.SERVER or server != session.name or remote is None
                or not verify_mac(mac(remote.intro_key, b"hello", user.encode(),
                                      server.encode(), share, client_pake), tag)):
            raise ProtocolError("HELLO from a client that was not introduced")
        if remote.state is RemoteState.CONNECTED:
            raise ProtocolError("HELLO from a client already in the session")
        hs = remote.handshake
        if hs is not None and hs.client_share == share:
            if route == remote.route:  # our CHALLENGE was lost: the same one again
                self._ctx.send_on(hs.challenge, route)
            return
        if bool(client_pake) != remote.password_required:
            raise ProtocolError("HELLO with a password exchange that does not fit the game")
        held = None
        if remote.password_required:
            bucket = self._guesses.get(remote.prefix, now)
            if not bucket.take(now):
                wait = bucket.wait_for(now)
                self._reject(remote, share, ErrorCode.BUSY, route, int(wait * 1000) + 1)
                remote.deadline = max(remote.deadline, now + wait
                                      + self._ctx.config.handshake_timeout)
                return
            held = remote.prefix
        hs = self._respond(remote, share, client_pake)
        hs.guess_held = held
        remote.handshake = hs
        if remote.state is RemoteState.PUNCHING:
            remote.set_state(RemoteState.HANDSHAKE)
            remote.deadline = max(remote.deadline, now + self._ctx.config.handshake_timeout)
        remote.route = route  # the client chose this path
        remote.path = remote.kind_of(route)
        remote.sent_at, remote.resent = now, False
        self._ctx.send_on(hs.challenge, route)

    def _respond(self, remote: Remote, share: bytes, client_pake: bytes) -> Handshake:
        """Server player: the keys of a new HELLO, and the CHALLENGE that answers it."""
        session = self._session
        me = session.name or ""
        pake = None
        if remote.password_required:
            assert session.password is not None
            pake = Pake(session.password, remote.name, me, False, self._ctx.random)
        hs = Handshake(KeyPair.generate(self._ctx.random), pake, share, client_pake)
        try:
            dh = hs.key.exchange(share)
            pake_key = pake.finish(client_pake) if pake is not None else b""
        except CryptoError as exc:
            raise ProtocolError(f"HELLO with a bad key share: {exc}") from exc
        server_pake = pake.message if pake is not None else b""
        transcript = handshake_transcript(remote.name, me, remote.token, share, client_pake,
                                          hs.key.public, server_pake)
        hs.keys = session_keys(dh, pake_key, remote.token, transcript)
        flag = remote.password_required
        tag = mac(remote.intro_key, b"challenge", share, hs.key.public, server_pake,
                  bytes([flag]), hs.keys.server_confirm)
        hs.challenge = encode_control(Kind.CHALLENGE, [hs.key.public, server_pake, flag,
                                                       hs.keys.server_confirm, tag])
        return hs

    def _on_challenge(self, fields: list[Any], route: Route, now: float) -> None:
        server_share, server_pake, flag, confirm, tag = fields
        session = self._session
        remote = session.remotes.get(session.server_name or "")
        if (session.role is not Role.CLIENT or remote is None or remote.route != route
                or remote.state is not RemoteState.HANDSHAKE or remote.handshake is None):
            raise ProtocolError("unexpected CHALLENGE")
        hs = remote.handshake
        if not verify_mac(mac(remote.intro_key, b"challenge", hs.key.public, server_share,
                              server_pake, bytes([flag]), confirm), tag):
            raise ProtocolError("CHALLENGE that the server player did not make")
        if hs.keys is not None:
            return  # a repeat: our AUTH is on its way (and resent on its timer)
        if flag != remote.password_required or bool(server_pake) != flag:
            raise ProtocolError("CHALLENGE that contradicts the introduction")
        try:
            dh = hs.key.exchange(server_share)
            pake_key = hs.pake.finish(server_pake) if hs.pake is not None else b""
        except CryptoError as exc:
            raise ProtocolError(f"CHALLENGE with a bad key share: {exc}") from exc
        client_pake = hs.pake.message if hs.pake is not None else b""
        transcript = handshake_transcript(session.name or "", remote.name, remote.token,
                                          hs.key.public, client_pake, server_share,
                                          server_pake)
        keys = session_keys(dh, pake_key, remote.token, transcript)
        if not verify_mac(keys.server_confirm, confirm):
            # Authentic (the introduction key checked out) but other keys: the passwords
            # differ. Told as such, never as "could not connect". Our AUTH still goes, so
            # that the server player frees our place at once.
            self._ctx.send_on(encode_control(Kind.AUTH, [keys.client_confirm], AUTH_SIZE),
                              route)
            session.fail(f"wrong password for {remote.name!r}", reason="wrong password")
            return
        hs.keys = keys
        hs.confirmed = True
        remote.sent_at = 0.0  # the AUTH is a new exchange, not a resend (Karn)
        self._send_client(remote, now)

    def _on_auth(self, fields: list[Any], route: Route, now: float) -> None:
        session = self._session
        remote = next((r for r in session.remotes.values()
                       if r.route == route and r.handshake is not None), None)
        if session.role is not Role.SERVER or remote is None:
            raise ProtocolError("AUTH from an address without a handshake")
        hs = remote.handshake
        assert hs is not None and hs.keys is not None
        if not verify_mac(hs.keys.client_confirm, fields[0]):
            log.info("wrong password from %s at %s", remote.name, route.address)
            self._reject(remote, hs.client_share, ErrorCode.WRONG_PASSWORD, route)
            session.remove(remote, quiet=True)
            self._ctx.emit(ev.PeerConnectionFailed(remote.name))
            return
        if remote.state is not RemoteState.CONNECTED:
            if hs.guess_held is not None:  # a right password costs no guess
                self._guesses.get(hs.guess_held, now).give_back()
                hs.guess_held = None
            self.connect(remote, now)
            self._ctx.emit(ev.ClientConfirmed(remote.name))
            session.peers_changed()
        welcome = mac(hs.keys.server_to_client, b"welcome", hs.keys.server_confirm)
        self._ctx.send_on(encode_control(Kind.WELCOME, [welcome]), route)

    def _on_welcome(self, fields: list[Any], route: Route, now: float) -> None:
        session = self._session
        remote = session.remotes.get(session.server_name or "")
        if (session.role is not Role.CLIENT or remote is None or remote.route != route
                or remote.handshake is None or remote.handshake.keys is None):
            raise ProtocolError("unexpected WELCOME")
        if remote.state is RemoteState.CONNECTED:
            return  # a repeat: our AUTH was resent
        keys = remote.handshake.keys
        if not verify_mac(mac(keys.server_to_client, b"welcome", keys.server_confirm),
                          fields[0]):
            raise ProtocolError("WELCOME that the server player did not make")
        self.connect(remote, now)
        session.on_welcomed(remote)

    def _reject(self, remote: Remote, client_share: bytes, code: ErrorCode, route: Route,
                retry_ms: int = 0) -> None:
        tag = mac(remote.intro_key, b"reject", client_share, int(code).to_bytes(2, "big"),
                  retry_ms.to_bytes(4, "big"))
        self._ctx.send_on(encode_control(Kind.REJECT, [int(code), retry_ms, tag]), route)

    def _on_reject(self, fields: list[Any], route: Route, now: float) -> None:
        code, retry_ms, tag = fields
        session = self._session
        remote = session.remotes.get(session.server_name or "")
        if (session.role is not Role.CLIENT or remote is None or remote.route != route
                or remote.handshake is None):
            raise ProtocolError("unexpected REJECT")
        expected = mac(remote.intro_key, b"reject", remote.handshake.key.public,
                       int(code).to_bytes(2, "big"), int(retry_ms).to_bytes(4, "big"))
        if not verify_mac(expected, tag):
            raise ProtocolError("REJECT that the server player did not make")
        if code == ErrorCode.BUSY:
            # Too many guesses from our network lately: we are next once it refills.
            wait = min(retry_ms / 1000.0, 60.0)
            log.info("%s asks us to wait %.1f s before trying the password", remote.name,
                     wait)
            remote.next_resend = now + wait
            remote.deadline = max(remote.deadline,
                                  now + wait + self._ctx.config.handshake_timeout)
            return
        text = error_text(code)
        session.fail(f"{remote.name!r} refused us: {text}",
                     reason="wrong password" if code == ErrorCode.WRONG_PASSWORD else text)

    # --- the connection --------------------------------------------------------------

    def connect(self, remote: Remote, now: float) -> None:
        session = self._session
        hs = remote.handshake
        assert remote.route is not None and hs is not None and hs.keys is not None
        keys = hs.keys
        if session.role is Role.CLIENT:
            protection = PacketProtection(keys.client_to_server, keys.server_to_client)
        else:
            protection = PacketProtection(keys.server_to_client, keys.client_to_server)
        rtt = None if remote.resent or remote.sent_at <= 0 else now - remote.sent_at
        remote.set_state(RemoteState.CONNECTED)
        remote.connection = Connection(self._ctx.config, now, protection,
                                       self._ctx.budget, remote.path, initial_rtt=rtt)
        remote.handshake = Handshake(hs.key, None, keys=keys)  # the PAKE is done with
        session.by_route[remote.route] = remote
        for cand in remote.candidates:
            if cand.route.relayed:  # late relayed datagrams still find their peer
                session.by_route[cand.route] = remote
        log.info("connected to %s at %s (%s)", remote.name, remote.route.address,
                 remote.path.value)

