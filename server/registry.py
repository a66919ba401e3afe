"""Registered games: who holds which name, and the names in order for the list.

A live name belongs to the address that registered it. A name that looks like another
live name (the same ``names.skeleton``) is refused, so "ARENA" (or "arena" with a
Cyrillic e) cannot pass for "arena" in the list. Registrations are capped in total and
per network prefix.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from framework.protocol.addresses import Address
from framework.protocol.constants import TOKEN_SIZE
from framework.protocol.crypto import verify
from framework.protocol.limits import prefix_of
from framework.protocol.names import skeleton
from framework.protocol.wire import ErrorCode

from .candidates import Candidate
from .config import ServerConfig


@dataclass(slots=True)
class Registration:
    name: str
    public: Address
    prefix: str
    #: What the name looks like: its keys in the look-alike index.
    looks: tuple[str, ...]
    #: What a joining client is told: PUBLIC (as seen here), then LAN, then MAPPED.
    candidates: list[Candidate]
    token: bytes
    password_required: bool
    #: The host's channel (its ephemeral key): introductions to it are sealed to this.
    share: bytes
    expires: float
    valid: float  # seconds granted, renewed by each refresh
    #: The host's count of candidate changes: an older REGISTER arriving late (a resend,
    #: a network copy) renews the registration but never brings back older candidates.
    generation: int = 0
    #: The server process (node) the host talks to, in a deployment of several; an
    #: introduction to the host leaves from there. Empty for a single process.
    node: str = ""


def looks_of(name: str) -> tuple[str, ...]:
    """Look-alike keys of a name: ``names.skeleton`` of the name and of its case-folded
    form. One alone misses look-alikes: ``skeleton`` maps "O" to the digit "0" before it
    folds case, so "HELLO" ("he110") and "hello" ("he11o") differ; folding first loses
    "I" ~ "l" ("Il" and "ll"). A name sharing either key with another is refused."""
    return tuple({skeleton(name), skeleton(name.casefold())})


class Registry:
    """Registrations by name, by skeleton, counted by prefix, and sorted for the list."""

    def __init__(self, config: ServerConfig, random_bytes: Callable[[int], bytes]) -> None:
        self._config = config
        self._random = random_bytes
        self.by_name: dict[str, Registration] = {}
        self._by_look: dict[str, str] = {}
        self._per_prefix: Counter[str] = Counter()
        #: Every registered name, kept sorted (bisect.insort: a pointer memmove, which
        #: stays in microseconds at the 100,000-registration cap).
        self._sorted: list[str] = []

    def live(self, name: str, now: float) -> Registration | None:
        reg = self.by_name.get(name)
        return reg if reg is not None and reg.expires > now else None

    def register(self, name: str, source: Address, candidates: list[Candidate],
                 password_required: bool, secs: float, share: bytes, now: float,
                 generation: int = 0) -> tuple[Registration, bool] | ErrorCode:
        """A new registration (True), the same one renewed (same address: same token),
        or why not. ``name`` is in normal form already (the wire's schema)."""
        cfg = self._config
        valid = min(max(float(secs), cfg.min_reg_valid), cfg.max_reg_valid)
        reg = self.by_name.get(name)
        if reg is not None and reg.expires > now:
            if reg.public != source:
                return ErrorCode.NAME_TAKEN
            # The same host again (our answer was lost, its candidates changed, or it
            # moved to a new channel key: a new session, whose generations start over).
            if share != reg.share or generation >= reg.generation:
                reg.candidates = candidates
                reg.generation = generation
            reg.password_required = password_required
            reg.share = share
            reg.valid = valid
            reg.expires = now + valid
            return reg, False
        if reg is not None:
            self.drop(reg)
        looks = looks_of(name)
        for look in looks:
            other = self.by_name.get(self._by_look.get(look, ""))
            if other is not None:
                if other.expires > now:
                    return ErrorCode.LOOK_ALIKE
                self.drop(other)
        prefix = prefix_of(source[0])
        if (len(self.by_name) >= cfg.max_registrations
                or self._per_prefix[prefix] >= cfg.max_registrations_per_ip):
            return ErrorCode.TOO_MANY
        reg = Registration(name, source, prefix, looks, candidates, self._random(TOKEN_SIZE),
                           password_required, share, now + valid, valid, generation)
        self.by_name[name] = reg
        for look in looks:
            self._by_look[look] = name
        self._per_prefix[prefix] += 1
        bisect.insort(self._sorted, name)
        return reg, True

    def owned(self, name: str, token: bytes, source: Address, now: float
              ) -> Registration | None:
        """The registration if ``source`` holds it *and* knows its token (knowing the
        name, which the list shows, is not enough)."""
        reg = self.by_name.get(name)
        if reg is None or reg.expires <= now or reg.public != source:
            return None
        return reg if verify(reg.token, token) else None

    def refresh(self, reg: Registration, share: bytes, now: float) -> None:
        """A REFRESH from the holder: the same validity again, and introductions go to
        the channel the host uses now."""
        reg.expires = now + reg.valid
        reg.share = share

    def count(self, now: float) -> int:
        """Registrations held (some may have expired since the last sweep)."""
        return len(self.by_name)

    def drop(self, reg: Registration) -> None:
        if self.by_name.get(reg.name) is not reg:
            return
        del self.by_name[reg.name]
        for look in reg.looks:
            if self._by_look.get(look) == reg.name:
                del self._by_look[look]
        self._per_prefix[reg.prefix] -= 1
        if self._per_prefix[reg.prefix] <= 0:
            del self._per_prefix[reg.prefix]
        i = bisect.bisect_left(self._sorted, reg.name)
        if i < len(self._sorted) and self._sorted[i] == reg.name:
            del self._sorted[i]

    def after(self, name: str, now: float) -> Iterator[Registration]:
        """Live registrations whose names sort strictly after ``name``, in order."""
        names = self._sorted
        for i in range(bisect.bisect_right(names, name), len(names)):
            reg = self.by_name[names[i]]
            if reg.expires > now:
                yield reg

    def expire(self, now: float) -> list[Registration]:
        gone = [r for r in self.by_name.values() if r.expires <= now]
        for reg in gone:
            self.drop(reg)
        return gone
