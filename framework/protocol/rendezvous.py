"""Talking to the handshake server: registration, refresh, join, server list, relays.

Everything after the cookie exchange travels sealed to the handshake server's key (hschannel.py),
so an introduction or relay offer that opens under our channel's key came from that
server: a spoofed one is dropped like any other forged datagram.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from . import events as ev
from .addresses import Address, is_local_address
from .constants import MAX_LIST_PAGES
from .context import Context
from .crypto import fingerprint
from .errors import ProtocolError
from .hschannel import KeyMismatch
from .peers import ListQuery, RemoteState, Role, Route
from .requests import Request, RequestTracker
from .wire import (
    REQUEST_SIZE,
    CandidateKind,
    ErrorCode,
    HsKind,
    Kind,
    decode_relay,
    error_text,
    peek_kind,
)

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger(__name__)


def own_candidates(lan: Address, mapped: Address | None = None) -> list[list[Any]]:
    """Our addresses besides the public one the handshake server sees: the LAN address
    (when it is in a local range) and a port mapping of our router (when we have one)."""
    out: list[list[Any]] = []
    if lan[1] and is_local_address(lan[0]):
        out.append([lan[0], lan[1], int(CandidateKind.LAN)])
    if mapped is not None:
        out.append([mapped[0], mapped[1], int(CandidateKind.MAPPED)])
    return out


class Rendezvous:
    """The session's client of the handshake server."""

    def __init__(self, ctx: Context, session: Session) -> None:
        self._ctx = ctx
        self._session = session
        self.tracker = RequestTracker(ctx, ctx.random)
        self._lists: dict[int, ListQuery] = {}
        self.reset()

    def reset(self) -> None:
        """Forget the session's handshake server (pending list requests go on)."""
        self.address: Address | None = None
        self.dropped = False
        self.registered = False
        self.token: bytes | None = None
        self.public: Address | None = None
        self.next_refresh = 0.0
        self._join: Request | None = None
        self._register_fields: list[Any] = []
        self.lan: Address = ("", 0)
        self.mapped: Address | None = None
        self.tracker.drop(lambda q: q.kind is not HsKind.LIST)

    @property
    def usable(self) -> bool:
        return self.address is not None and not self.dropped

    @property
    def candidates(self) -> list[list[Any]]:
        return own_candidates(self.lan, self.mapped)

    def update_candidates(self, now: float) -> None:
        """Our candidates changed (a port mapping came or went): tell the server."""
        if not self.usable:
            return
        if self._register_fields:
            # Registered or not yet answered: register again from the same address (the
            # same token). The new generation tells the server that these candidates
            # replace whatever copy of an older REGISTER is still on its way.
            self._register_fields = [*self._register_fields]
            self._register_fields[1] = self.candidates
            self._register_fields[4] += 1
            assert self.address is not None
            for req in [q for q in self.tracker.pending.values() if q.kind is HsKind.REGISTER]:
                self.tracker.finish(req)  # superseded: its late answer is not junk
            self.tracker.start(HsKind.REGISTER, self._register_fields, self.address, now)
        if self._join is not None:
            self._join.fields[2] = self.candidates  # the JOIN is repeated until joined

    def begin(self, address: Address, pinned: str | None, lan: Address) -> None:
        self.lan = lan
        self.address = address
        self.tracker.open_channel(address, pinned)

    # --- requests --------------------------------------------------------------------

    def register(self, name: str, candidates: list[list[Any]], password_required: bool,
                 now: float) -> None:
        assert self.address is not None
        self._register_fields = [name, candidates, password_required,
                                 float(self._ctx.config.secs_reg_valid), 0]
        self.tracker.start(HsKind.REGISTER, self._register_fields, self.address, now)

    def refresh(self, name: str, now: float) -> None:
        assert self.address is not None and self.token is not None
        self.next_refresh = now + self._ctx.config.secs_between_reg_refresh
        if not any(q.kind is HsKind.REFRESH for q in self.tracker.pending.values()):
            self.tracker.start(HsKind.REFRESH, [name, self.token], self.address, now)

    def unregister(self, name: str, now: float) -> None:
        """Tell the handshake server we are gone (twice, unanswered: no one waits for it)."""
        if self.token is None or not self.usable:
            return
        assert self.address is not None
        channel = self.tracker.channels.get(self.address)
        if channel is None or not channel.ready:
            return
        data = channel.seal(HsKind.UNREGISTER, 0, [name, self.token], REQUEST_SIZE)
        for _ in range(2):
            self._ctx.send(data, self.address)

    def join(self, server: str, user: str, candidates: list[list[Any]], now: float) -> None:
        assert self.address is not None
        self._join = self.tracker.start(HsKind.JOIN, [server, user, candidates],
                                        self.address, now)

    def joined(self) -> None:
        """The session is on: stop repeating the JOIN."""
        join = self._join
        if join is not None:
            self.tracker.drop(lambda q: q is join)
            self._join = None

    def request_relay(self, server: str, client: str, now: float) -> None:
        assert self.address is not None
        self.tracker.start(HsKind.RELAY_REQUEST, [server, client], self.address, now)

    def request_relay_move(self, relay_id: bytes, key: bytes, now: float) -> None:
        """Ask where our relay runs now (its relay node went quiet)."""
        assert self.address is not None
        if any(q.kind is HsKind.RELAY_MOVE and q.fields[0] == relay_id
               for q in self.tracker.pending.values()):
            return  # already asking
        self.tracker.start(HsKind.RELAY_MOVE, [relay_id, key], self.address, now)

    def request_list(self, address: Address, pinned: str | None, now: float) -> None:
        self.tracker.channel_for(address, pinned)
        req = self.tracker.start(HsKind.LIST, [""], address, now)
        self._lists[req.req_id] = ListQuery(address)

    def drop(self) -> None:
        """Stop talking to the handshake server (the game goes on peer to peer)."""
        self.dropped = True
        hs = self.address
        self.tracker.drop(lambda q: q.address == hs)

    # --- time ------------------------------------------------------------------------

    def run(self, now: float) -> None:
        for req in self.tracker.run(now):
            self._expired(req, now)
        session = self._session
        if (session.role is Role.SERVER and self.registered and not self.dropped
                and now >= self.next_refresh and session.name is not None):
            self.refresh(session.name, now)

    def next_timer(self) -> float | None:
        first = self.tracker.next_time()
        if self.registered and not self.dropped:
            return self.next_refresh if first is None else min(first, self.next_refresh)
        return first

    def _expired(self, req: Request, now: float) -> None:
        host, port = req.address
        where = f"handshake server {host}:{port} did not answer"
        session = self._session
        if req.kind is HsKind.LIST:
            self._lists.pop(req.req_id, None)
            self._ctx.error(f"server list request failed: {where}")
        elif req.kind is HsKind.REGISTER:
            session.fail(f"registration failed: {where}", unless_playing=True)
        elif req.kind is HsKind.REFRESH:
            if session.any_connected():
                # Better than the original, which quits: the game goes on peer to peer.
                self._ctx.error(f"registration refresh failed ({where}); the session goes "
                                "on, but new players cannot join")
                self.dropped = True
            else:
                session.fail(f"registration refresh failed: {where}")
        elif req.kind is HsKind.JOIN and req is self._join:
            self._join = None
            player = session.remotes.get(session.server_name or "")
            if (player is not None and player.state is RemoteState.PUNCHING
                    and now < player.deadline):
                # Introduced, but no path yet: the server player may not have heard of
                # us (its introduction lost). Keep asking while we punch.
                self._join = self.tracker.start(HsKind.JOIN, req.fields, req.address, now)
            elif not session.remotes:
                session.fail(f"could not join: {where}")

    # --- answers ---------------------------------------------------------------------

    @property
    def fingerprint(self) -> str | None:
        """The fingerprint of the key of the handshake server this session trusts."""
        address = self.address
        channel = self.tracker.channels.get(address) if address else None
        if channel is None or channel.server_public is None:
            return None
        return fingerprint(channel.server_public)

    def unwrap(self, data: bytes, address: Address, now: float
               ) -> tuple[Kind, bytes, Route] | None:
        """The peer datagram inside a RELAY of one of our relays: (kind, datagram, route);
        None for the last datagrams of a peer that just left."""
        relay_id, data = decode_relay(data)
        route = Route(address, relay_id)
        if address != self.address and not any(
                r.relay_route == route for r in self._session.remotes.values()):
            raise ProtocolError("RELAY not from our handshake server or relay node")
        kind = peek_kind(data)
        if kind < Kind.PUNCH:
            raise ProtocolError(f"{kind.name} cannot travel through a relay")
        session = self._session
        if not any(r.relay_id == relay_id for r in session.remotes.values()):
            if session.recently_departed(route, now):
                return None
            raise ProtocolError("RELAY of no relay of ours")
        return kind, data, route

    def receive(self, kind: Kind, data: bytes, address: Address, now: float) -> None:
        """A COOKIE or SEALED_REPLY from ``address``. Raises ProtocolError when it is not
        for us (unknown id, not sealed by that handshake server)."""
        if kind is Kind.COOKIE:
            try:
                self.tracker.on_cookie(data, address, now)
            except KeyMismatch as exc:
                self._key_mismatch(address, str(exc))
            return
        if kind is not Kind.SEALED_REPLY:
            raise ProtocolError(f"{kind.name} does not come from a handshake server")
        channel = self.tracker.channels.get(address)
        if channel is None:
            raise ProtocolError("sealed reply from a handshake server we never asked")
        hs_kind, rid, fields = channel.open(data)
        if rid == 0:
            self._unsolicited(hs_kind, fields, address, now)
            return
        req = self.tracker.find(rid, address)
        if req is None:
            if self.tracker.answered_before(rid):
                return  # a late copy of an answer we already have (our request was resent)
            raise ProtocolError(f"{hs_kind.name} answers no request of ours")
        self.tracker.answered(req, now)
        self._answer(req, hs_kind, fields, now)

    def _key_mismatch(self, address: Address, why: str) -> None:
        self.tracker.drop(lambda q: q.address == address)
        for rid in [r for r, q in self._lists.items() if q.address == address]:
            del self._lists[rid]
            self._ctx.error(f"server list refused: {why}")
        if address == self.address:
            self._session.fail(why)

    def _unsolicited(self, kind: HsKind, fields: list[Any], address: Address,
                     now: float) -> None:
        if address != self.address or self.dropped:
            raise ProtocolError("unsolicited message from another handshake server")
        if kind is HsKind.INTRODUCE and self._session.role is Role.SERVER and self.registered:
            self._session.punching.introduce(fields, now)
        elif kind is HsKind.RELAY_READY:
            self._session.punching.relay_offered(fields[0], fields[1], now)
        elif kind is HsKind.RELAY_AT:
            self._session.punching.relay_offered(fields[0], fields[1], now,
                                                 (fields[2], fields[3]), fields[4])
        else:
            raise ProtocolError(f"unexpected unsolicited {kind.name}")

    def _answer(self, req: Request, kind: HsKind, fields: list[Any], now: float) -> None:
        session = self._session
        if kind is not HsKind.INTRODUCE:
            self.tracker.finish(req)
        if kind is HsKind.HS_ERROR:
            self._refused(req, fields[0], now)
        elif kind is HsKind.REGISTERED and req.kind is HsKind.REGISTER:
            self.token = fields[0]
            self.public = (fields[1], fields[2])
            self.next_refresh = now + min(self._ctx.config.secs_between_reg_refresh,
                                          fields[3] / 3)
            if not self.registered:
                self.registered = True
                session.on_registered()
        elif kind is HsKind.REFRESHED and req.kind is HsKind.REFRESH:
            self.next_refresh = now + min(self._ctx.config.secs_between_reg_refresh,
                                          fields[0] / 3)
        elif kind is HsKind.UNREGISTERED:
            pass
        elif kind is HsKind.INTRODUCE and req.kind is HsKind.JOIN:
            session.punching.introduce(fields, now)
            # Asked again while we punch (a lost introduction to the server player is
            # repaired so), at the pace of the round trip to the handshake server.
            req.next_send = now + self.tracker.rtt_to(req.address).timeout()
        elif kind is HsKind.RELAY_READY and req.kind is HsKind.RELAY_REQUEST:
            session.punching.relay_offered(fields[0], fields[1], now)
        elif kind is HsKind.RELAY_AT and req.kind in (HsKind.RELAY_REQUEST,
                                                       HsKind.RELAY_MOVE):
            session.punching.relay_offered(fields[0], fields[1], now,
                                           (fields[2], fields[3]), fields[4])
        elif kind is HsKind.LIST_REPLY and req.kind is HsKind.LIST:
            self._list_page(req, fields, now)
        else:
            raise ProtocolError(f"{kind.name} does not answer {req.kind.name}")

    def _refused(self, req: Request, code: int, now: float) -> None:
        text = error_text(code)
        session = self._session
        if req.kind is HsKind.LIST:
            self._lists.pop(req.req_id, None)
            self._ctx.error(f"server list refused: {text}")
        elif req.kind in (HsKind.RELAY_REQUEST, HsKind.RELAY_MOVE):
            log.info("relay refused: %s", text)
        elif req.kind is HsKind.REFRESH and code in (ErrorCode.NOT_REGISTERED,
                                                      ErrorCode.BAD_TOKEN):
            # The handshake server forgot us (restarted, or we were away): register again.
            assert self.address is not None
            self.tracker.start(HsKind.REGISTER, self._register_fields, self.address, now)
        elif req.kind in (HsKind.REGISTER, HsKind.REFRESH):
            session.fail(f"registration refused by the handshake server: {text}",
                         unless_playing=True)
        elif req.kind is HsKind.JOIN and req is self._join:
            self._join = None
            session.fail(f"join refused by the handshake server: {text}")

    def _list_page(self, req: Request, fields: list[Any], now: float) -> None:
        query = self._lists.pop(req.req_id, None)
        if query is None:
            return
        entries, more = fields
        query.servers.extend({"name": n, "password_required": p} for n, p in entries)
        query.pages += 1
        if more and entries and query.pages < MAX_LIST_PAGES:
            nxt = self.tracker.start(HsKind.LIST, [entries[-1][0]], query.address, now)
            self._lists[nxt.req_id] = query
        else:
            names = [s["name"] for s in query.servers]
            self._ctx.emit(ev.ReceivedServerList(names, query.servers))
