"""Requests to handshake servers: ids, retries, cookies, sealing and padding.

A request is resent after a probe timeout that follows the measured round trip to that
server (rtt.py: ``secs_to_await_reply`` until the first answer) and expires after
``attempts_before_expiration`` sends and as many ``secs_to_await_reply``. A handshake
server's channel needs its key and a cookie
for our address first: until it has them a request goes out as a COOKIE_REQUEST, the
COOKIE answer carries both, and the request is sealed and sent again at once. A COOKIE
for a request already sealed means the cookie went stale: it is renewed the same way.
Every sealed request is padded so that no answer is larger than what asked for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .addresses import Address
from .constants import MAX_COOKIE_TRIES
from .context import Context
from .crypto import RandomBytes
from .errors import ProtocolError
from .hschannel import ServerChannel
from .rtt import RttEstimate
from .wire import HsKind, decode_cookie, encode_cookie_request, request_size


@dataclass
class Request:
    """One request in flight."""

    req_id: int
    kind: HsKind
    fields: list[Any]
    address: Address
    attempts: int = 0
    next_send: float = 0.0
    cookie_tries: int = 0
    first_sent: float = 0.0
    sent_at: float = 0.0  # the last send
    resent: bool = False  # sent more than once since its last answer: no RTT sample


class RequestTracker:
    """Requests in flight, by id, and the channel to each handshake server asked."""

    def __init__(self, ctx: Context, random_bytes: RandomBytes) -> None:
        self._ctx = ctx
        self._random = random_bytes
        self._next = int.from_bytes(random_bytes(3), "big") + 1
        self.pending: dict[int, Request] = {}
        self._answered: dict[int, None] = {}  # recent ids, to tell late copies from junk
        self.channels: dict[Address, ServerChannel] = {}
        self.rtt: dict[Address, RttEstimate] = {}

    def open_channel(self, address: Address, pinned: str | None) -> ServerChannel:
        """A fresh channel (a new ephemeral key) to the handshake server at ``address``."""
        channel = ServerChannel(self._random, pinned)
        self.channels[address] = channel
        return channel

    def channel_for(self, address: Address, pinned: str | None) -> ServerChannel:
        """The channel to ``address``, reused when it trusts the same key."""
        channel = self.channels.get(address)
        if channel is None or (pinned is not None and channel.pinned != pinned):
            channel = self.open_channel(address, pinned)
        return channel

    def start(self, kind: HsKind, fields: list[Any], address: Address, now: float) -> Request:
        rid = self._next
        self._next = (self._next % 0xFFFFFFFE) + 1
        req = Request(rid, kind, fields, address)
        self.pending[rid] = req
        self._transmit(req, now)
        return req

    def rtt_to(self, address: Address) -> RttEstimate:
        est = self.rtt.get(address)
        if est is None:
            est = self.rtt[address] = RttEstimate(self._ctx.config.secs_to_await_reply)
        return est

    def _transmit(self, req: Request, now: float, fresh: bool = False) -> None:
        if req.attempts == 0:
            req.first_sent = now
        req.resent = req.sent_at > 0 and not fresh
        req.sent_at = now
        req.next_send = now + self.rtt_to(req.address).timeout(req.attempts)
        req.attempts += 1
        channel = self.channels[req.address]
        if channel.ready:
            data = channel.seal(req.kind, req.req_id, req.fields, request_size(req.kind))
        else:
            data = encode_cookie_request(req.req_id)
        self._ctx.send(data, req.address)

    def on_cookie(self, data: bytes, address: Address, now: float) -> Request:
        """A COOKIE: learn the handshake server's key and cookie, resend at once. Raises
        ProtocolError when it answers nothing of ours, KeyMismatch for a wrong key."""
        rid, cookie, public = decode_cookie(data)
        req = self.pending.get(rid)
        if req is None or req.address != address:
            raise ProtocolError("COOKIE for no request of ours")
        self.channels[address].learn(cookie, public)
        self.answered(req, now)
        if req.cookie_tries < MAX_COOKIE_TRIES:
            req.cookie_tries += 1
            req.attempts -= 1  # a cookie round trip is not a failed attempt
            self._transmit(req, now, fresh=True)
        return req

    def answered(self, req: Request, now: float) -> None:
        """An answer to ``req`` arrived: a round-trip sample, unless it was resent."""
        if not req.resent and req.sent_at > 0:
            self.rtt_to(req.address).sample(now - req.sent_at)

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
            cfg = self._ctx.config
            # Retries follow the round trip; a request is given up only after all its
            # attempts *and* the whole time budget, so fast retries never make a short
            # outage fatal.
            if req.attempts < cfg.attempts_before_expiration:
                self._transmit(req, now)
                continue
            give_up = req.first_sent + cfg.attempts_before_expiration * cfg.secs_to_await_reply
            if now >= give_up:
                del self.pending[req.req_id]
                expired.append(req)
            else:
                req.next_send = give_up  # every attempt made: wait out the budget
        return expired

    def next_time(self) -> float | None:
        return min((q.next_send for q in self.pending.values()), default=None)
