"""Where the handshake server keeps its state: the interfaces of its stores.

The default stores are the in-memory objects of ``registry.py``, ``introductions.py``,
``relays.py`` and ``framework.protocol.limits.Buckets``, used as they are: a server run
without ``--redis`` pays nothing for this seam beyond the calls it always made. A
deployment of several server processes passes a :class:`Stores` whose members keep
their state in Redis (``server/cluster.py``); the handlers see the same methods either
way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from framework.protocol.addresses import Address
from framework.protocol.wire import ErrorCode

from .candidates import Candidate
from .config import Reply
from .introductions import Introduction
from .registry import Registration
from .relays import Relay


class StoreError(Exception):
    """The shared store cannot answer now (Redis down or slow). The request is dropped
    (the peer resends, as after a lost datagram) and counted; never a crash."""


class RegistryStore(Protocol):
    #: The registrations held in this process (empty when they live elsewhere).
    @property
    def by_name(self) -> Mapping[str, Registration]: ...

    def live(self, name: str, now: float) -> Registration | None: ...

    def register(self, name: str, source: Address, candidates: list[Candidate],
                 password_required: bool, secs: float, share: bytes, now: float,
                 generation: int = 0) -> tuple[Registration, bool] | ErrorCode: ...

    def owned(self, name: str, token: bytes, source: Address, now: float
              ) -> Registration | None: ...

    def refresh(self, reg: Registration, share: bytes, now: float) -> None: ...

    def drop(self, reg: Registration) -> None: ...

    def after(self, name: str, now: float) -> Iterator[Registration]: ...

    def expire(self, now: float) -> list[Registration]: ...

    def count(self, now: float) -> int: ...


class IntroductionStore(Protocol):
    def live(self, server: str, user: str, now: float) -> Introduction | None: ...

    def join(self, server: str, user: str, client: Address, candidates: list[Candidate],
             share: bytes, now: float) -> tuple[Introduction, bool, bool] | ErrorCode: ...

    def expire(self, now: float) -> None: ...


class RelayStore(Protocol):
    @property
    def by_id(self) -> Mapping[bytes, Relay]: ...

    def open(self, server_end: Address, client_end: Address, client_prefix: str,
             now: float, nodes: tuple[str, str] = ("", ""),
             names: tuple[str, str] = ("", ""), client_share: bytes = b"") -> Relay | None: ...

    def relocate(self, relay_id: bytes, key: bytes, now: float
                 ) -> tuple[Relay, int, bool] | None: ...

    def forward(self, data: bytes, source: Address, now: float) -> list[Reply]: ...

    def expire(self, now: float) -> None: ...


class RateStore(Protocol):
    def take(self, key: str, now: float, cost: float = 1.0) -> bool: ...

    def __len__(self) -> int: ...


class Router(Protocol):
    """Hands a datagram to the node that talks to its addressee (a host's NAT only lets
    in datagrams from the address the host itself sends to)."""

    @property
    def node(self) -> str: ...

    def deliver(self, node: str, reply: Reply) -> bool:
        """True if ``node`` took the datagram; False: send it from here."""
        ...


@dataclass
class Stores:
    """The stores a core uses, and what a deployment of several nodes shares."""

    registry: RegistryStore
    intros: IntroductionStore
    relays: RelayStore
    rate: RateStore
    #: Secret of the stateless cookies (the same on every node that shares a port).
    cookie_secret: bytes
    #: Cookie windows follow this clock when given (wall time, the same on every
    #: machine); the core's own clock otherwise.
    cookie_clock: Callable[[], float] | None = None
    router: Router | None = None
