"""From an introduction to a path: admission, hole punching, the relay.

The handshake server introduces two players with a *join token* (32 bytes, bound by the
handshake server to the game, the joining player's name and address, and an expiry), sealed to
each of them. From it both derive an introduction key that authenticates punching and
the handshake's clear packets, so a stranger can neither punch nor answer for a player.

Both sides send PUNCH to every candidate address of the other (LAN first), in bursts;
a PUNCH with a valid MAC is answered by one PUNCH_ACK of the same size to where it came
from. The client takes the path of the first PUNCH_ACK that echoes one of its nonces (or
the relay, after ``Config.relay_after``) and starts the key exchange there
(handshake.py); the server player follows the path the client's HELLO comes from.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from . import events as ev
from .addresses import Address, is_local_address
from .constants import (
    MAX_CANDIDATES,
    MAX_PENDING_JOINS,
    MAX_PENDING_PER_PREFIX,
    MAX_PUNCHES,
    PUNCH_BURST,
    PUNCH_INTERVAL,
    PUNCH_NONCE_SIZE,
)
from .context import Context
from .crypto import hkdf, mac
from .crypto import verify as verify_mac
from .errors import ProtocolError
from .limits import prefix_of
from .peers import Candidate, PathKind, Remote, RemoteState, Role, Route
from .rtt import RttEstimate
from .wire import CandidateKind, Kind, decode_control, encode_control

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger(__name__)


def intro_key(token: bytes) -> bytes:
    return hkdf(token, salt=b"", info=b"p2p introduction key")


class Punching:
    """Every remote from its introduction until a path to it is found."""

    def __init__(self, ctx: Context, session: Session) -> None:
        self._ctx = ctx
        self._session = session

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
            # A repeat of the same join may bring candidates learnt since (a port
            # mapping made after the first introduction): those are punched at once.
            if existing.token == token and existing.state is RemoteState.PUNCHING:
                self._learn_candidates(existing, raw_candidates, now)
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
                        punch_started=now,
                        rtt=RttEstimate(self._ctx.config.secs_to_await_reply))
        session.remotes[name] = remote
        log.info("introduced to %s at %s", name, [c.route.address for c in candidates])
        self.punch(remote, now, burst=PUNCH_BURST)

    def _learn_candidates(self, remote: Remote, raw: list[list[Any]], now: float) -> None:
        known = {c.route for c in remote.candidates}
        room = 2 * MAX_CANDIDATES - len(known)  # repeats cannot grow it without end
        fresh = [c for c in self._candidates(raw) if c.route not in known][:max(0, room)]
        if not fresh:
            return
        remote.candidates.extend(fresh)
        log.info("%s can also be reached at %s", remote.name, [c.route.address for c in fresh])
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
                remote.punches[nonce] = (cand.route, now)
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
        # A handshake through the relay goes on punching too: the session moves to the
        # direct path as soon as one answers.
        punching = remote.state is RemoteState.PUNCHING or remote.path is PathKind.RELAY
        if punching and now >= remote.next_punch:
            self.punch(remote, now)
        if remote.state is RemoteState.PUNCHING:
            cfg = self._ctx.config
            if (not remote.relay_requested and cfg.use_relay and session.rendezvous.usable
                    and now >= remote.punch_started + cfg.relay_delay):
                self._request_relay(remote, now)
        elif session.role is Role.CLIENT and now >= remote.next_resend:
            self._fall_back_to_relay(remote)
            session.handshakes.send_client(remote, now)

    def _fall_back_to_relay(self, remote: Remote) -> None:
        """Client: our HELLO went on a direct path because the server player's punch got
        in, but nothing came back: our way out may be shut (a NAT that maps each
        destination apart). Resend it through the relay, when there is one; the session
        moves to the direct path later if that turns out to work both ways."""
        hs = remote.handshake
        # On a path that answered our punches, one lost HELLO is only bad luck.
        if (hs is None or hs.keys is not None or remote.path is PathKind.RELAY
                or remote.tries < (2 if remote.path_answered else 1)):
            return
        relay = next((c.route for c in remote.candidates if c.kind is PathKind.RELAY), None)
        if relay is None:
            return
        log.info("no answer to %s on %s: going on through the relay", remote.name,
                 remote.route.address if remote.route else None)
        remote.route = relay
        remote.path = PathKind.RELAY

    def next_timer(self, remote: Remote) -> float:
        if remote.state is RemoteState.PUNCHING:
            return min(remote.next_punch, remote.deadline)
        if remote.path is PathKind.RELAY:
            return min(remote.next_resend, remote.next_punch, remote.deadline)
        return min(remote.next_resend, remote.deadline)

    def _request_relay(self, remote: Remote, now: float) -> None:
        session = self._session
        remote.relay_requested = True
        remote.deadline = max(remote.deadline, now + self._ctx.config.handshake_timeout)
        me = session.name or ""
        server, client = (me, remote.name) if session.role is Role.SERVER else (remote.name, me)
        log.info("no direct path to %s yet: asking for a relay", remote.name)
        session.rendezvous.request_relay(server, client, now)

    def relay_offered(self, relay_id: bytes, peer_name: str, now: float,
                      at: Address | None = None, key: bytes = b"") -> None:
        """The handshake server set up a relay to ``peer_name``: on itself, or on the
        relay node at ``at`` (where our end binds with ``key``)."""
        remote = self._session.remotes.get(peer_name)
        hs = self._session.rendezvous.address
        if remote is None or hs is None:
            return
        if at is None:
            if not remote.relay_id:
                self._relay_ready(remote, Route(hs, relay_id), now)
            return
        route = Route(at, relay_id)
        relaying = self._session.relaying
        if remote.relay_id:
            if remote.relay_id == relay_id and remote.relay_key == key:
                relaying.moved(remote, route, now)
            return  # one relay per pair
        relaying.start(remote, route, key, now)
        self._relay_ready(remote, route, now)

    def _relay_ready(self, remote: Remote, relay_route: Route, now: float) -> None:
        remote.relay_id = relay_route.relay_id
        remote.candidates.append(Candidate(relay_route, PathKind.RELAY))
        if remote.state is RemoteState.CONNECTED:
            self._session.by_route[relay_route] = remote
        if remote.state is not RemoteState.PUNCHING:
            return  # a direct path won meanwhile; the relay stays as a spare
        log.info("reaching %s through the relay", remote.name)
        remote.deadline = max(remote.deadline, now + self._ctx.config.handshake_timeout)
        if self._session.role is Role.CLIENT:
            if not remote.rtt.measured:
                # No punch came back: through the relay, about both players' round trips
                # to the handshake server, ours twice for a guess.
                hs_rtt = self._session.rendezvous.tracker.rtt_to(relay_route.address)
                if hs_rtt.measured:
                    remote.rtt.sample(2 * hs_rtt.srtt)
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
        """A PUNCH or PUNCH_ACK."""
        sender, target, nonce, tag = decode_control(kind, data)
        session = self._session
        remote = session.remotes.get(sender)
        label = b"punch" if kind is Kind.PUNCH else b"punch-ack"
        if (remote is None or target != session.name or not verify_mac(
                mac(remote.intro_key, label, sender.encode(), target.encode(), nonce), tag)):
            raise ProtocolError("punch from a peer we were not introduced to")
        if (remote.state is not RemoteState.PUNCHING and remote.path is PathKind.RELAY
                and not route.relayed):
            # Authenticated bytes from a direct address while we go through the relay:
            # path validation may spend them (1x) to move there.
            session.paths.consider(remote, route, len(data), now)
        if kind is Kind.PUNCH:
            # One answer of the same size to where it came from: it opens our NAT toward
            # that address and proves the path to the other side; it amplifies nothing.
            me = session.name or ""
            ack = mac(remote.intro_key, b"punch-ack", me.encode(), sender.encode(), nonce)
            self._ctx.send_on(encode_control(Kind.PUNCH_ACK, [me, sender, nonce, ack]), route)
            if session.role is Role.CLIENT and remote.state is RemoteState.PUNCHING:
                # The server player's punch got through, and our answer has just opened
                # our side: the path is there. Start at once instead of half a round trip
                # later, when the answer to one of our punches would come back.
                self._choose(remote, route, now, answered=False)
            return
        punched = remote.punches.pop(nonce, None)
        if punched is None:
            return  # not an answer to a punch of ours (or a copy of one already used)
        if remote.path is not PathKind.RELAY:
            remote.rtt.sample(now - punched[1])  # each nonce went out once: clean
        if route == remote.route:
            remote.path_answered = True
        if session.role is Role.CLIENT and remote.state is RemoteState.PUNCHING:
            self._choose(remote, route, now)
        # The server player follows the path the client's HELLO comes from.

    def _choose(self, remote: Remote, route: Route, now: float, answered: bool = True
                ) -> None:
        """Client: the first path that answered; start the key exchange on it."""
        remote.route = route
        remote.path_answered = answered
        remote.path = remote.kind_of(route)
        remote.set_state(RemoteState.HANDSHAKE)
        remote.deadline = max(remote.deadline, now + self._ctx.config.handshake_timeout)
        log.info("path to %s: %s (%s)", remote.name, route.address, remote.path.value)
        self._session.handshakes.start(remote, now)
