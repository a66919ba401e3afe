"""Talking to the handshake server: registration, refresh, join, server list, relay requests."""

from __future__ import annotations

import logging
from typing import Any

from . import events as ev
from .errors import ProtocolError
from .peers import (
    Address,
    PeerState,
    Role,
)
from .requests import Request, encode_request
from .state import SessionState
from .wire import (
    ErrorCode,
    Kind,
    decode_control,
)

log = logging.getLogger(__name__)


class Rendezvous(SessionState):
    """Requests to the handshake server and what its answers mean."""

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
