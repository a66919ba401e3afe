"""From a path to a connection: the key exchange, and the password's proof.

The clear packets are authenticated with the introduction key both players derived from
the handshake server's join token (punching.py). The handshake (client C, server
player S), after C found a path:

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
from .connection import Connection
from .constants import (
    GUESS_BURST,
    GUESS_INTERVAL,
    GUESS_NETWORKS,
)
from .context import Context
from .crypto import CryptoError, KeyPair, Pake, handshake_transcript, mac, session_keys
from .crypto import verify as verify_mac
from .errors import ProtocolError
from .limits import Buckets
from .peers import (
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
    ErrorCode,
    Kind,
    decode_control,
    encode_control,
    error_text,
)

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger(__name__)

class Handshakes:
    """Every remote between its path and its connection, for both roles."""

    def __init__(self, ctx: Context, session: Session) -> None:
        self._ctx = ctx
        self._session = session
        # Password guesses per network, for the game this session hosts.
        self._guesses = Buckets(1.0 / GUESS_INTERVAL, GUESS_BURST, GUESS_NETWORKS)

    # --- packets ---------------------------------------------------------------------

    def on_packet(self, kind: Kind, data: bytes, route: Route, now: float) -> None:
        fields = decode_control(kind, data)
        if kind is Kind.HELLO:
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

    def start(self, remote: Remote, now: float) -> None:
        """Client: a path was chosen; begin the key exchange on it."""
        session = self._session
        pake = None
        if remote.password_required:
            assert session.password is not None
            pake = Pake(session.password, session.name or "", remote.name, True,
                        self._ctx.random)
        remote.handshake = Handshake(KeyPair.generate(self._ctx.random), pake)
        self.send_client(remote, now)

    def send_client(self, remote: Remote, now: float) -> None:
        """Client: (re)send HELLO, or AUTH once the server player proved its keys."""
        hs = remote.handshake
        assert hs is not None and remote.route is not None
        me = self._session.name or ""
        # One lost datagram costs about a round trip, not a fixed second (rtt.py).
        remote.next_resend = now + remote.rtt.timeout(remote.tries)
        remote.tries += 1
        remote.resent = remote.sent_at > 0
        remote.sent_at = now
        if hs.keys is None:
            share, pake = hs.key.public, hs.pake.message if hs.pake else b""
            tag = mac(remote.intro_key, b"hello", me.encode(), remote.name.encode(), share, pake)
            data = encode_control(Kind.HELLO, [me, remote.name, share, pake, tag], HELLO_SIZE)
        else:
            data = self._auth(remote, hs.key.public, hs.keys.client_confirm)
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
            if route != remote.route and route.relayed and route.relay_id == remote.relay_id:
                # The client went on through our relay (its direct HELLO got in, our
                # CHALLENGE did not get back): follow it there.
                remote.route, remote.path = route, PathKind.RELAY
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
            self._ctx.send_on(self._auth(remote, hs.key.public, keys.client_confirm), route)
            session.fail(f"wrong password for {remote.name!r}", reason="wrong password")
            return
        hs.keys = keys
        if not remote.resent and remote.sent_at > 0:
            remote.rtt.sample(now - remote.sent_at)
        remote.sent_at, remote.tries = 0.0, 0  # the AUTH is a new exchange (Karn)
        self.send_client(remote, now)

    @staticmethod
    def _auth(remote: Remote, client_share: bytes, confirm: bytes) -> bytes:
        """AUTH carries the key confirmation and a MAC under the introduction key, so that
        only the introduced client can make one, even a wrong one."""
        tag = mac(remote.intro_key, b"auth", client_share, confirm)
        return encode_control(Kind.AUTH, [confirm, tag], AUTH_SIZE)

    def _on_auth(self, fields: list[Any], route: Route, now: float) -> None:
        session = self._session
        confirm, tag = fields[0], fields[1]
        remote = next((r for r in session.remotes.values()
                       if r.route == route and r.handshake is not None), None)
        if session.role is not Role.SERVER or remote is None:
            raise ProtocolError("AUTH from an address without a handshake")
        hs = remote.handshake
        assert hs is not None and hs.keys is not None
        if remote.state is RemoteState.CONNECTED:
            # A repeat (our WELCOME was lost) has the right confirmation; anything else
            # from that address changes nothing: a connected player is never dropped here.
            if not verify_mac(hs.keys.client_confirm, confirm):
                raise ProtocolError("AUTH for a connected player that does not confirm")
        elif not verify_mac(mac(remote.intro_key, b"auth", hs.client_share, confirm), tag):
            raise ProtocolError("AUTH that the introduced client did not make")
        if not verify_mac(hs.keys.client_confirm, confirm):
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

    @staticmethod
    def _reject_tag(remote: Remote, client_share: bytes, code: int, retry_ms: int) -> bytes:
        return mac(remote.intro_key, b"reject", client_share, code.to_bytes(2, "big"),
                   retry_ms.to_bytes(4, "big"))

    def _reject(self, remote: Remote, client_share: bytes, code: ErrorCode, route: Route,
                retry_ms: int = 0) -> None:
        tag = self._reject_tag(remote, client_share, int(code), retry_ms)
        self._ctx.send_on(encode_control(Kind.REJECT, [int(code), retry_ms, tag]), route)

    def _on_reject(self, fields: list[Any], route: Route, now: float) -> None:
        code, retry_ms, tag = fields
        session = self._session
        remote = session.remotes.get(session.server_name or "")
        if (session.role is not Role.CLIENT or remote is None or remote.route != route
                or remote.handshake is None):
            raise ProtocolError("unexpected REJECT")
        expected = self._reject_tag(remote, remote.handshake.key.public, code, retry_ms)
        if not verify_mac(expected, tag):
            raise ProtocolError("REJECT that the server player did not make")
        if code == ErrorCode.BUSY:
            # Too many guesses from our network lately: we are next once it refills.
            wait = min(retry_ms / 1000.0, 60.0)
            log.info("%s asks us to wait %.1f s before trying the password", remote.name,
                     wait)
            remote.next_resend = now + wait
            remote.tries = 0
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
        # The client checks on the server player; the server player answers, and checks
        # only when a client goes quiet (its radio wakes half as often per client).
        remote.connection = Connection(self._ctx.config, now, protection,
                                       self._ctx.budget, remote.path, initial_rtt=rtt,
                                       checks_peer=session.role is Role.CLIENT)
        remote.handshake = Handshake(hs.key, None, keys=keys)  # the PAKE is done with
        session.by_route[remote.route] = remote
        for cand in remote.candidates:
            if cand.route.relayed:  # late relayed datagrams still find their peer
                session.by_route[cand.route] = remote
        log.info("connected to %s at %s (%s)", remote.name, remote.route.address,
                 remote.path.value)
        session.paths.resume(remote, now)

