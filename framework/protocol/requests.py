"""Requests to handshake servers: ids, retries, cookies and padding.

A request is resent every ``secs_to_await_reply`` until answered, and expires after
``attempts_before_expiration`` sends. Requests that make the server keep state (REGISTER,
JOIN, RELAY_REQUEST) carry the server's cookie for our address: the first one goes out
without it, the server answers COOKIE, and the request is sent again at once with it.
Every request is padded so that no answer is larger than what asked for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .wire import COOKIE_KINDS, Kind, encode_control, request_size

Address = tuple[str, int]


@dataclass
class Request:
    """One request in flight."""

    req_id: int
    kind: Kind
    fields: list[Any]
    address: Address
    attempts: int = 0
    next_send: float = 0.0
    cookie_tries: int = 0


def encode_request(kind: Kind, req_id: int, fields: list[Any], cookie: bytes = b"") -> bytes:
    """Encode a request with its cookie (where the kind takes one) and its padding."""
    body = [req_id, *fields]
    if kind in COOKIE_KINDS:
        body.append(cookie)
    bare = len(encode_control(kind, [*body, b""]))
    pad = max(0, request_size(kind) - bare)
    # A bin field's header grows with its length (2 bytes up to 255, then 3).
    pad = max(0, pad - (1 if pad > 253 else 0))
    return encode_control(kind, [*body, bytes(pad)])


class RequestTracker:
    """Requests in flight, by id; the owner decides what an answer or an expiry means."""

    def __init__(self, send: Callable[[bytes, Address], None], first_id: int,
                 wait: float, attempts: int) -> None:
        self._send = send
        self._next = first_id
        self._wait = wait
        self._attempts = attempts
        self.pending: dict[int, Request] = {}
        self._answered: dict[int, None] = {}  # recent ids, to tell late copies from junk
        self._cookies: dict[Address, bytes] = {}

    def start(self, kind: Kind, fields: list[Any], address: Address, now: float) -> Request:
        rid = self._next
        self._next = (self._next % 0xFFFFFFFE) + 1
        req = Request(rid, kind, fields, address)
        self.pending[rid] = req
        self._transmit(req, now)
        return req

    def _transmit(self, req: Request, now: float) -> None:
        req.attempts += 1
        req.next_send = now + self._wait
        cookie = self._cookies.get(req.address, b"")
        self._send(encode_request(req.kind, req.req_id, req.fields, cookie), req.address)

    def got_cookie(self, req_id: int, address: Address, cookie: bytes, now: float) -> bool:
        """The server wants its cookie: remember it and resend at once. False if unknown."""
        req = self.pending.get(req_id)
        if req is None or req.address != address or req.kind not in COOKIE_KINDS:
            return False
        if req.cookie_tries >= 3:
            return True  # the server keeps refusing: let the retries run out
        req.cookie_tries += 1
        self._cookies[address] = cookie
        req.attempts -= 1  # a cookie round trip is not a failed attempt
        self._transmit(req, now)
        return True

    def find(self, req_id: int, address: Address) -> Request | None:
        req = self.pending.get(req_id)
        return req if req is not None and req.address == address else None

    def finish(self, req: Request) -> None:
        self.pending.pop(req.req_id, None)
        self._answered[req.req_id] = None
        if len(self._answered) > 64:
            del self._answered[next(iter(self._answered))]

    def answered_before(self, req_id: int) -> bool:
        return req_id in self._answered

    def drop(self, predicate: Callable[[Request], bool]) -> None:
        for rid in [r for r, q in self.pending.items() if predicate(q)]:
            del self.pending[rid]

    def run(self, now: float) -> list[Request]:
        """Resend what is due; return (and forget) the requests that expired."""
        expired = []
        for req in list(self.pending.values()):
            if now < req.next_send:
                continue
            if req.attempts >= self._attempts:
                del self.pending[req.req_id]
                expired.append(req)
            else:
                self._transmit(req, now)
        return expired

    def next_time(self) -> float | None:
        return min((q.next_send for q in self.pending.values()), default=None)
