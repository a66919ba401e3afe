"""Fuzz protocol v2 from every seat an attacker can take.

    python -m tools.fuzz --datagrams 1000000            # coverage-guided (atheris)
    python -m tools.fuzz --engine mutate --datagrams N  # seeded, pure Python

On a fake network (tests/fakenet.py) real sessions connect normally, with and without a
password. Then some of them turn hostile, *with the keys they legitimately hold*:

- a malicious client: a real Session that joined a host; its own Connection (the keys
  ``client_to_server``, its packet counter) seals arbitrary plaintext to the host: acks,
  message items of every shape, engine messages of the system channel (peer lists,
  forwards, BYE, FORWARD_FAILED, path challenges and responses with odd tokens),
  fragments and cancel notices with odd numbering, msgpack oddities (1000-deep nests,
  maps keyed by lists, huge declared lengths), numpy extensions with odd dtypes and shapes;
  it replays and skips packet numbers, moves to new addresses and answers (or fails) the
  host's path challenges. The host also has an honest client, which must keep working.
- a malicious host: the same, with ``server_to_client``, against a client.
- a malicious handshake server: its key seals arbitrary replies to a session's channel.
- strangers and spoofers: mutations of recorded datagrams of every kind (sealed
  handshake-server channel, PUNCH, HELLO, CHALLENGE, AUTH, WELCOME, REJECT, DATA, RELAY),
  from strangers' addresses and from the peers' and the handshake server's own.
- the handshake server's side: ``HandshakeCore.receive`` with mutated datagrams, and with
  arbitrary *sealed* bodies from peers that did a real cookie round trip.

Each input is one small program decoded from bytes (tests/malicious.py): atheris mutates
those bytes under coverage guidance, the mutate engine draws them from a seeded generator.
After every input the victim's ``handle_timer`` runs too. Findings: anything raised out of
``receive_datagram``, ``handle_timer`` or ``HandshakeCore.receive``; every exception their
safety nets swallowed (``internal_errors``: still a bug), with the input that caused it
and its traceback; and a victim that no longer works: at the end (and whenever a victim is
replaced) the honest pair must still exchange a reliable message.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from framework.protocol import events as ev
from framework.protocol.addresses import Address
from framework.protocol.config import Config
from framework.protocol.connection import Connection
from framework.protocol.crypto import AEAD_NONCE_SIZE, Aead, KeyPair, channel_keys
from framework.protocol.delivery import Delivery
from framework.protocol.errors import MessageTooLarge, NotConnected, ProtocolError
from framework.protocol.hschannel import ServerKeys
from framework.protocol.peers import RemoteState
from framework.protocol.session import Phase, Session
from framework.protocol.wire import (
    REQUEST_SIZE,
    HsKind,
    Kind,
    decode_cookie,
    encode_cookie_request,
    encode_relay,
    header,
    peek_kind,
    sealed_reply_head,
    sealed_request_head,
)
from server.core import HandshakeCore, ServerConfig
from tests.fakenet import HS, FakeNet, seeded_bytes
from tests.malicious import (
    CHECK_CHANNEL,
    Reader,
    enc,
    gen_bytes,
    gen_hs_body,
    gen_int,
    gen_numpy,
    gen_plaintext,
    gen_system,
    gen_value,
    mutate,
)

#: Inputs between two ticks of the whole fake network (10 ms of fake time each).
PUMP_EVERY = 8
TICK = 0.01
#: Inputs between two health checks (one scenario's victim at a time).
CHECK_EVERY = 2048
CORPUS_LIMIT = 4000
REPLY_KINDS = (HsKind.INTRODUCE, HsKind.RELAY_READY, HsKind.REGISTERED, HsKind.REFRESHED,
               HsKind.HS_ERROR, HsKind.LIST_REPLY, HsKind.UNREGISTERED)
REQUEST_KINDS = (HsKind.REGISTER, HsKind.REFRESH, HsKind.UNREGISTER, HsKind.JOIN,
                 HsKind.LIST, HsKind.RELAY_REQUEST)


@dataclass
class Finding:
    """One distinct bug: where it happened, and the first input that showed it."""

    what: str  # raised | internal_error | hs_internal_error | invariant
    lane: str
    where: str
    traceback: str
    input_hex: str
    count: int = 1

    def as_dict(self) -> dict[str, object]:
        return {"what": self.what, "lane": self.lane, "where": self.where,
                "count": self.count, "input_hex": self.input_hex,
                "traceback": self.traceback}


def _where(tb: TracebackType | None, exc: BaseException) -> str:
    frames = traceback.extract_tb(tb)
    ours = [f for f in frames if "/framework/" in f.filename or "/server/" in f.filename]
    f = (ours or frames)[-1] if frames else None
    at = f"{f.filename.rsplit('/', 2)[-2]}/{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" \
        if f else "?"
    return f"{type(exc).__name__} at {at}"


class Attacker:
    """One side of a live session, turned hostile: a real Session that connected, now
    paused, whose Connection (its keys, its packet counter) the harness drives."""

    def __init__(self, harness: Harness, real: Session, victim: Session) -> None:
        self.h = harness
        self.real = real
        self.victim = victim
        self.name = real.name or ""
        victim_name = victim.name or ""
        remote = real.remotes[victim_name]
        assert remote.connection is not None and remote.handshake is not None
        self.conn: Connection = remote.connection
        self.home = harness.net.addr(real)
        self.aliases: set[Address] = {self.home}
        self.sent: deque[bytes] = deque(maxlen=64)
        self.token: bytes | None = None  # the last path challenge the victim sent us
        self.next_mid = 1_000_000
        self.check_seq = 0  # the stream of the health checks (CHECK_CHANNEL, ordered)
        harness.net.paused.add(self.home)  # from now on, only the harness speaks for it

    def alive(self) -> bool:
        r = self.victim.remotes.get(self.name)
        return (self.victim.phase is not Phase.IDLE and r is not None
                and r.state is RemoteState.CONNECTED and r.connection is not None)

    @property
    def address(self) -> Address:
        r = self.victim.remotes.get(self.name)
        if r is not None and r.route is not None and not r.route.relayed:
            return r.route.address
        return self.home

    def seal(self, plaintext: bytes) -> bytes:
        # The attacker's own packet protection: it holds these keys and this counter. Its
        # Connection's packet sequence moves along, so that its own acks stay meaningful.
        data = self.conn._protection.seal(plaintext)
        builder = self.conn._builder
        builder._seq = (builder._seq + 1) & 0xFFFF
        self.sent.append(data)
        return data

    def skip(self, n: int) -> None:
        self.conn._protection.next_number += n
        builder = self.conn._builder
        builder._seq = (builder._seq + n) & 0xFFFF

    def absorb(self, data: bytes, to: Address) -> None:
        """A datagram the victim sent to one of our addresses: open it as we would."""
        try:
            delivered = self.conn.receive(data, self.h.net.now)
        except ProtocolError:
            return
        for d in delivered:
            v = d.value
            if (d.channel == 15 and type(v) is list and len(v) == 2 and v[0] == 6
                    and type(v[1]) is bytes):
                self.token = v[1]
            elif type(v) is str and v.startswith("check:"):
                self.h.seen.add(v)

    def flush(self) -> list[bytes]:
        return self.conn.poll(self.h.net.now)


class Scenario:
    """A victim session and the attacker holding the keys of its peer."""

    def __init__(self, harness: Harness, role: str, password: str | None, tag: str) -> None:
        self.h = harness
        self.role = role  # the victim's: "host" or "client"
        self.password = password
        self.tag = tag
        self.label = f"{'client->host' if role == 'host' else 'host->client'}/" \
                     f"{'password' if password else 'open'}"
        self.generation = 0
        self.renewals = 0
        self.checks_passed = 0
        self.checks_failed = 0
        self.reported = False
        #: Reliable messages the host sent its honest client along the way: (when, text).
        self.stream: list[tuple[float, str]] = []
        self.streamed = 0
        self.victim: Session
        self.honest: Session | None = None
        self.attacker: Attacker
        self.build()

    def build(self) -> None:
        h = self.h
        self.generation += 1
        self.reported = False
        self.stream = []
        g = self.generation
        if self.role == "host":
            host = h.start_host(f"{self.tag}h{g}", self.password)
            honest = h.join(host, f"{self.tag}ok{g}", self.password)
            mal = h.join(host, f"{self.tag}m{g}", self.password)
            if not h.net.run(15, lambda: honest.is_connected() and mal.is_connected()
                             and len(host.get_peers()) == 2):
                raise RuntimeError(f"{self.label}: could not set up the session to fuzz")
            self.victim, self.honest = host, honest
            self.attacker = Attacker(h, mal, host)
        else:
            evil = h.start_host(f"{self.tag}e{g}", self.password)
            vic = h.join(evil, f"{self.tag}v{g}", self.password)
            if not h.net.run(15, lambda: vic.is_connected() and len(evil.get_peers()) == 1):
                raise RuntimeError(f"{self.label}: could not set up the session to fuzz")
            self.victim, self.honest = vic, None
            self.attacker = Attacker(h, evil, vic)

    def new_attacker(self) -> None:
        """The host threw the last malicious client out (it may): another one joins."""
        h = self.h
        self.generation += 1
        mal = h.join(self.victim, f"{self.tag}m{self.generation}", self.password)
        host = self.victim
        if not h.net.run(15, lambda: mal.is_connected() and mal.name in host.get_peers()):
            raise RuntimeError(f"{self.label}: a new attacker could not join")
        h.retire(self.attacker.real)
        self.attacker = Attacker(h, mal, host)

    def upkeep(self) -> None:
        honest_ok = self.honest is None or (
            self.honest.is_connected() and (self.honest.name or "") in self.victim.remotes)
        if self.attacker.alive() and honest_ok:
            return
        h = self.h
        self.renewals += 1
        if self.role == "host" and self.victim.phase is Phase.HOSTING and honest_ok:
            self.new_attacker()
            return
        if self.role == "host":
            if not self.reported:
                self.report_honest()
        elif self.victim.phase is not Phase.IDLE:
            h.invariant(f"{self.label}: the client dropped the host but stayed "
                        f"{self.victim.phase.value}")
        # A client may end its session legitimately (the host said BYE): a fresh pair.
        self.retire_all()
        self.build()

    def watch(self) -> None:
        """After every input: a host never loses its honest client to an attacker."""
        if self.honest is not None and not self.reported and (
                (self.honest.name or "") not in self.victim.remotes
                or not self.honest.is_connected() or self.victim.phase is not Phase.HOSTING):
            self.report_honest()

    def report_honest(self) -> None:
        self.reported = True
        h = self.h
        h.invariant(f"{self.label}: the host lost its honest client (or one of them ended)",
                    f"host {self.victim.phase.value}, honest "
                    f"{self.honest.phase.value if self.honest else '-'}; host said "
                    f"{h.ended.get(id(self.victim))}; honest said {h.ended.get(id(self.honest))}")

    def send_stream(self) -> None:
        """Host victim: one more reliable message to the honest client; none may be lost,
        whatever the attacker makes the host pass on to that client."""
        if self.honest is None or self.reported or not self.victim.is_connected():
            return
        self.streamed += 1
        text = f"check:{self.tag}:stream:{self.streamed}"
        try:
            self.victim.send(self.honest.name or "", text, Delivery.RELIABLE_ORDERED,
                             CHECK_CHANNEL)
        except NotConnected:
            return
        self.stream.append((self.h.net.now, text))

    def check_stream(self) -> None:
        """Every message of the stream sent over two seconds ago has arrived."""
        h = self.h
        old = [t for when, t in self.stream if when < h.net.now - 2.0]
        lost = [t for t in old if t not in h.seen]
        self.stream = [(w, t) for w, t in self.stream if w >= h.net.now - 2.0]
        if lost and not self.reported:
            h.invariant(f"{self.label}: the honest client lost reliable messages of the host",
                        f"{len(lost)} of {len(old)} lost, e.g. {lost[:3]}")

    def retire_all(self) -> None:
        for s in (self.victim, self.honest, self.attacker.real):
            if s is not None:
                self.h.retire(s)

    def sessions(self) -> list[Session]:
        return [s for s in (self.victim, self.honest) if s is not None]


class HsAttacker:
    """A peer of the fuzzed HandshakeCore: a real cookie round trip, then sealed bodies."""

    def __init__(self, harness: Harness, address: Address, seed: int) -> None:
        self.h = harness
        self.address = address
        self._random = seeded_bytes(seed)
        self.key = KeyPair.generate(self._random)
        self.cookie = b""
        self.request: Aead | None = None
        self.rid = 0

    def learn(self, data: bytes) -> None:
        _, cookie, public = decode_cookie(data)
        if self.request is None:
            req, _ = channel_keys(self.key.exchange(public), self.key.public, public)
            self.request = Aead(req)
        self.cookie = cookie

    def ensure(self) -> None:
        if self.request is None:
            for reply, _ in self.h.hs_receive(encode_cookie_request(1), self.address):
                if peek_kind(reply) is Kind.COOKIE:
                    self.learn(reply)

    def send(self, body: bytes, rid: int | None = None) -> None:
        self.ensure()
        if self.request is None:
            return
        if rid is None:
            self.rid += 1
            rid = self.rid
        nonce = self._random(AEAD_NONCE_SIZE)
        head = sealed_request_head(rid & 0xFFFFFFFF, self.cookie, self.key.public, nonce)
        data = head + self.request.seal(nonce, body, head)
        for reply, _ in self.h.hs_receive(data, self.address):
            if peek_kind(reply) is Kind.COOKIE:
                self.learn(reply)  # our cookie went stale: the next request uses the new one


class Harness:
    """The fake network, the scenarios, the fuzzed handshake server, and the findings."""

    def __init__(self, seed: int = 1) -> None:
        self.seed = seed
        self.net = FakeNet(seed=seed)
        self.corpus: list[bytes] = []
        self.recording = True
        self.scenarios: list[Scenario] = []
        self.net.filter = self._route
        self._hosts = 0
        self.inputs = 0
        self.lane_counts: dict[str, int] = {}
        self.findings: dict[tuple[str, str], Finding] = {}
        self.internal_errors = 0
        self.raised = 0
        self.invariants = 0
        self.seen: set[str] = set()
        self.ended: dict[int, str] = {}  # id(session) -> its last errors and end
        self._lane = "setup"
        self._input = b""
        self._checks = 0
        for role, password, tag in (("host", "pw", "hp"), ("host", None, "ho"),
                                    ("client", "pw", "cp"), ("client", None, "co")):
            self.scenarios.append(Scenario(self, role, password, tag))
        asker = self.add()
        self.net.call(asker, "request_server_list", HS)
        self.net.run(1)
        self.retire(asker)
        # The handshake server to fuzz: its own core, rate limits out of the way.
        self.hs = HandshakeCore(ServerConfig(requests_per_sec_per_ip=1e9, request_burst=1e9),
                                seeded_bytes(seed + 7), KeyPair.generate(seeded_bytes(seed + 8)))
        self.hs.on_internal_error = self._hs_error_hook()
        self.hs_peers = [HsAttacker(self, (f"198.19.0.{i + 1}", 5000 + i), seed * 100 + i)
                         for i in range(4)]
        host, joiner = self.hs_peers[0], self.hs_peers[1]
        host.send(enc([int(HsKind.REGISTER), 1, "fuzzhost", [], False, 60.0, 0,
                       bytes(REQUEST_SIZE)]), 1)
        joiner.send(enc([int(HsKind.JOIN), 1, "fuzzhost", "fuzzjoin", [], bytes(REQUEST_SIZE)]),
                    1)
        self.evil_hs = ServerKeys(self.net.hs_key, seeded_bytes(seed + 9))
        self.recording = False
        self.lanes: list[tuple[str, Callable[[Reader], None]]] = [
            ("peer-data", self.lane_peer_data),
            ("peer-data", self.lane_peer_data),
            ("peer-data", self.lane_peer_data),
            ("peer-system", self.lane_peer_system),
            ("peer-system", self.lane_peer_system),
            ("peer-connection", self.lane_peer_connection),
            ("peer-forward", self.lane_peer_forward),
            ("peer-raw-plaintext", self.lane_peer_raw),
            ("peer-numbers", self.lane_peer_numbers),
            ("peer-path", self.lane_peer_path),
            ("peer-path", self.lane_peer_path),
            ("stranger", self.lane_stranger),
            ("stranger", self.lane_stranger),
            ("hs-raw", self.lane_hs_raw),
            ("hs-sealed", self.lane_hs_sealed),
            ("hs-sealed", self.lane_hs_sealed),
            ("evil-hs", self.lane_evil_hs),
        ]

    # --- the fake network ---------------------------------------------------------------

    def _route(self, data: bytes, src: Address, dst: Address) -> bool:
        """The fake network's filter: records datagrams while ``recording``, and hands
        what a victim sends to an attacker's address to that attacker."""
        if self.recording and len(self.corpus) < CORPUS_LIMIT:
            self.corpus.append(data)
        for scn in self.scenarios:
            atk = scn.attacker
            if dst in atk.aliases and src == self.net.addr(scn.victim):
                atk.absorb(data, dst)
                return False
        return True

    def add(self, config: Config | None = None) -> Session:
        """A session at a fresh address, with randomness of its own."""
        self._hosts += 1
        i = self._hosts
        address = (f"198.18.{i // 250}.{i % 250 + 1}", 40000 + i % 20000)
        s = Session(config or Config(), seeded_bytes(self.seed * 100_003 + i * 7919))
        self.net.place(s, address)
        s.ctx.on_internal_error = self._error_hook()
        return s

    def retire(self, s: Session) -> None:
        a = self.net.addr(s)
        self.net.sessions.pop(a, None)
        self.net.events.pop(a, None)
        self.net.paused.discard(a)

    def start_host(self, name: str, password: str | None) -> Session:
        host = self.add()
        self.net.call(host, "init_server", HS, self.net.addr(host), name, password)
        if not self.net.run(5, host.is_connected):
            raise RuntimeError(f"could not register {name!r}")
        return host

    def join(self, host: Session, name: str, password: str | None) -> Session:
        client = self.add()
        self.net.call(client, "init_client", HS, self.net.addr(client), name, host.name or "",
                      password)
        return client

    def pump(self) -> None:
        """Let the attackers speak (acks, resends), then tick everyone."""
        for scn in self.scenarios:
            atk = scn.attacker
            for s in scn.sessions():
                self._scan(s.events(), s)
            if atk.alive():
                for data in atk.flush():
                    self.feed(scn.victim, data, atk.address)
                # One datagram the victim surely accepts: its window follows our counter,
                # however many rejected ones we sealed (32768 in a row would lose it).
                self.feed(scn.victim, atk.seal(b"\x00" * 6 + b"\x90"), atk.address)
        self._step()
        for scn in self.scenarios:
            scn.upkeep()
            scn.send_stream()

    def _step(self) -> None:
        try:
            self.net.step(TICK)
        except Exception as exc:  # a handle_timer or receive_datagram raised: a finding
            self.record("raised", exc, exc.__traceback__)
        for a, evs in self.net.events.items():
            self._scan(evs, self.net.sessions.get(a))
            evs.clear()

    def _scan(self, evs: list[ev.EngineEvent], s: Session | None) -> None:
        for e in evs:
            if isinstance(e, ev.ReceivedReliableMessageFromPeer):
                m = e.packet_data.get("message")
                if type(m) is str and m.startswith("check:"):
                    self.seen.add(m)
            elif isinstance(e, ev.SessionTerminated | ev.PeerTimeout | ev.Error
                                 | ev.PeerConnectionFailed) \
                    and s is not None:
                self.ended[id(s)] = f"{self.ended.get(id(s), '')} {e!r}"[-300:]

    # --- findings -------------------------------------------------------------------------

    def record(self, what: str, exc: BaseException, tb: TracebackType | None) -> None:
        where = _where(tb, exc)
        if what == "raised":
            self.raised += 1
        key = (what, where)
        f = self.findings.get(key)
        if f is not None:
            f.count += 1
            return
        text = "".join(traceback.format_exception(type(exc), exc, tb))
        self.findings[key] = Finding(what, self._lane, where, text, self._input.hex())

    def invariant(self, message: str, detail: str = "") -> None:
        self.invariants += 1
        key = ("invariant", message)
        if key in self.findings:
            self.findings[key].count += 1
        else:
            self.findings[key] = Finding("invariant", self._lane, message, detail,
                                         self._input.hex())

    def _error_hook(self) -> Callable[[Address, float], None]:
        def hook(address: Address, now: float) -> None:
            self.internal_errors += 1
            _, exc, tb = sys.exc_info()
            if exc is not None:
                self.record("internal_error", exc, tb)
        return hook

    def _hs_error_hook(self) -> Callable[[Exception, float], None]:
        def hook(exc: Exception, now: float) -> None:
            self.internal_errors += 1
            self.record("hs_internal_error", exc, exc.__traceback__)
        return hook

    # --- feeding --------------------------------------------------------------------------

    def feed(self, victim: Session, data: bytes, src: Address) -> None:
        """One datagram to a session, then its timers: neither may raise."""
        now = self.net.now
        try:
            victim.receive_datagram(data, src, now)
            if self.inputs % 2 == 0:
                # As a game does between its receive and its tick: a host sends its honest
                # client a message, batched with whatever the datagram made it send.
                for scn in self.scenarios:
                    if scn.victim is victim:
                        scn.send_stream()
            victim.handle_timer(now)
        except Exception as exc:
            self.record("raised", exc, exc.__traceback__)

    def hs_receive(self, data: bytes, src: Address) -> list[tuple[bytes, Address]]:
        try:
            return self.hs.receive(data, src, self.net.now)
        except Exception as exc:
            self.record("raised", exc, exc.__traceback__)
            return []

    def one_input(self, data: bytes) -> None:
        """Run one fuzz input: its first byte picks the lane, the rest drives it."""
        self.inputs += 1
        self._input = data
        r = Reader(data)
        name, lane = self.lanes[r.below(len(self.lanes))]
        self._lane = name
        self.lane_counts[name] = self.lane_counts.get(name, 0) + 1
        try:
            lane(r)
        except Exception as exc:  # in the harness's own code, or raised by the engine
            self.record("raised", exc, exc.__traceback__)
        for scn in self.scenarios:
            scn.watch()
        if self.inputs % PUMP_EVERY == 0:
            self._lane = f"{name} (then the network ticked)"
            self.pump()
        if self.inputs % CHECK_EVERY == 0:
            self._lane = f"{name} (then a health check)"
            self.check_honest(self.scenarios[self.inputs // CHECK_EVERY % len(self.scenarios)])

    # --- lanes ----------------------------------------------------------------------------

    def _scenario(self, r: Reader) -> Scenario:
        return r.pick(self.scenarios)

    def _source(self, r: Reader, scn: Scenario) -> Address:
        """Mostly the attacker's own address; sometimes one that is not."""
        atk = scn.attacker
        k = r.below(16)
        if k < 12:
            return atk.address
        if k == 12 and scn.honest is not None:
            return self.net.addr(scn.honest)
        if k == 13:
            return HS
        if k == 14:
            return (atk.address[0], r.pick((1, 65535, atk.address[1] + 1)))
        return ("192.0.2.66", 666)

    def lane_peer_data(self, r: Reader) -> None:
        """An authenticated DATA datagram with arbitrary (mostly well-formed) items."""
        scn = self._scenario(r)
        atk = scn.attacker
        data = atk.seal(gen_plaintext(r, atk.token))
        self.feed(scn.victim, data, self._source(r, scn))

    def lane_peer_system(self, r: Reader) -> None:
        """Engine messages of the system channel, in each delivery mode."""
        scn = self._scenario(r)
        atk = scn.attacker
        items: list[Any] = []
        for _ in range(1 + r.below(3)):
            mode = r.below(4)
            flags = mode | 15 << 4
            msg = gen_system(r, atk.token)
            if type(msg) is list and len(msg) > 1 and msg[0] in (2, 4) and r.below(2):
                # to (or about) a real player of the session: the honest client
                msg[1 if msg[0] == 2 else 2] = scn.honest.name if scn.honest else scn.label
            seq = r.below(4) if r.below(4) else gen_int(r)
            if mode == 0:
                items.append([flags, msg])
            elif mode == 1:
                items.append([flags, seq, msg])
            else:
                items.append([flags, seq, r.below(50), msg])
        plain = b"\x00\x00\x00\x00\x00\x00" + enc(items)
        self.feed(scn.victim, atk.seal(plain), self._source(r, scn))

    def lane_peer_forward(self, r: Reader) -> None:
        """Through the host to its honest client: FORWARD with odd payloads, ids, modes."""
        scn = r.pick(self.scenarios[:2])
        atk = scn.attacker
        to = scn.honest.name if scn.honest is not None and r.below(4) else atk.name
        k = r.below(4)
        payload = enc(gen_value(r)) if k == 0 else gen_bytes(r) if k == 1 else \
            r.pick((b"\xc1", b"", b"\x00\x00", b"\x91", enc("ok") + b"\x00", bytes(1100)))
        mode = r.below(4) if r.below(6) else gen_int(r)
        msg = [2, to, mode, r.below(15), gen_int(r), payload]
        items = [[0xF0, msg] for _ in range(1 + r.below(3))]
        self.feed(scn.victim, atk.seal(b"\x00" * 6 + enc(items)), atk.address)

    def lane_peer_connection(self, r: Reader) -> None:
        """Arbitrary payloads through the attacker's own Connection: batching, reliable
        streams in step with the victim's, fragmentation of large messages."""
        scn = self._scenario(r)
        atk = scn.attacker
        now = self.net.now
        for _ in range(1 + r.below(3)):
            mode = Delivery(r.below(4))
            channel = 15 if r.below(2) else r.below(14)
            k = r.below(4)
            if k == 0:
                payload = enc(gen_system(r, atk.token))
            elif k == 1:
                payload = enc(gen_value(r))
            elif k == 2:
                payload = gen_bytes(r)
            else:  # a large message, fragmented: decodable or not
                payload = enc([5, "x" * r.pick((1200, 3000, 20000))]) if r.below(2) \
                    else r.take(r.pick((1100, 1101, 2300)))
            try:
                atk.conn.send(mode, channel, payload, atk.next_mid)
            except MessageTooLarge:
                continue
            atk.next_mid += 1
        src = self._source(r, scn)
        for data in atk.conn.poll(now):
            self.feed(scn.victim, data, src)

    def lane_peer_raw(self, r: Reader) -> None:
        """Arbitrary plaintext bytes under valid keys."""
        scn = self._scenario(r)
        atk = scn.attacker
        self.feed(scn.victim, atk.seal(r.rest(r.pick((0, 6, 7, 40, 1150)))),
                  self._source(r, scn))

    def lane_peer_numbers(self, r: Reader) -> None:
        """Packet-number games: replays, skips, tampering, relayed copies."""
        scn = self._scenario(r)
        atk = scn.attacker
        k = r.below(5)
        if k == 0 and atk.sent:
            data = r.pick(list(atk.sent))
        elif k == 1:
            atk.skip(r.pick((1, 2, 31, 32, 33, 100, 1023, 1024, 1025, 20000, 0x7000)))
            # a valid one right after (a skip plus the rejected ones since the last valid one
            # past 0x8000 would leave the window: the receiver could not tell)
            self.feed(scn.victim, atk.seal(b"\x00" * 6 + b"\x90"), atk.address)
            data = atk.seal(gen_plaintext(r, atk.token))
        elif k == 2:
            d = bytearray(atk.seal(gen_plaintext(r, atk.token)))
            d[r.below(len(d))] ^= 1 << r.below(8)
            data = bytes(d)
        elif k == 3:
            inner = atk.seal(gen_plaintext(r, atk.token))
            self.feed(scn.victim, encode_relay(r.take(8), inner), HS)
            return
        else:
            data = atk.seal(gen_plaintext(r, atk.token))
            self.feed(scn.victim, data, atk.address)
        self.feed(scn.victim, data, self._source(r, scn))

    def lane_peer_path(self, r: Reader) -> None:
        """Authenticated data from a new address, and an answer to the challenge (right,
        wrong, odd, or from elsewhere): a peer moving, or pretending to."""
        scn = self._scenario(r)
        atk = scn.attacker
        ip, port = atk.address
        k = r.below(4)
        if k == 0:
            src: Address = (ip, 30000 + r.below(64))
        elif k == 1:
            src = (f"198.20.0.{1 + r.below(4)}", 7000 + r.below(4))
        elif k == 2:
            src = atk.home
        else:
            src = (ip, port)
        atk.aliases.add(src)
        atk.token = None
        # Big enough, or not, for the victim to afford a challenge (never more bytes to an
        # unvalidated address than it sent).
        padding = [0x00, bytes(r.pick((0, 100, 300, 900)))]
        self.feed(scn.victim, atk.seal(gen_plaintext(r, None) if r.one_in(3)
                                       else b"\x00" * 6 + enc([[0xF0, [0]], padding])), src)
        for data, to in scn.victim.take_datagrams():
            if to in atk.aliases:
                atk.absorb(data, to)
            else:
                self.net.sim.send(data, (self.net.addr(scn.victim), to), self.net.now)
        token: Any = atk.token
        a = r.below(6)
        if a == 1:
            token = r.take(8)
        elif a == 2:
            token = gen_value(r, 1)
        elif a == 3:
            token = gen_numpy(r) if r.below(2) or token is None else token + b"\x00"
        answer_from = src if r.below(4) else self._source(r, scn)
        plain = b"\x00" * 6 + enc([[0xF0, [7, token]]])
        if r.one_in(3):
            plain = b"\x00" * 6 + enc([[0xF0, [7, token]], [0xF0, [6, r.take(8)]]])
        self.feed(scn.victim, atk.seal(plain), answer_from)

    def lane_stranger(self, r: Reader) -> None:
        """A recorded datagram, mutated, from a stranger or spoofing someone known."""
        data = mutate(r, r.pick(self.corpus), self.corpus)
        scn = self._scenario(r)
        victim = scn.victim if r.below(4) or scn.honest is None else scn.honest
        k = r.below(6)
        src: Address
        if k == 0:
            src = (f"192.0.2.{r.byte()}", 1 + r.below(65535))
        elif k == 1:
            src = HS
            if r.below(2):
                data = header(Kind.RELAY) + r.take(8) + data
        elif k == 2 and scn.honest is not None:
            src = self.net.addr(scn.honest)
        elif k == 3:
            src = self.net.addr(victim)
        else:
            src = scn.attacker.address
        self.feed(victim, data[:1400], src)

    def lane_hs_raw(self, r: Reader) -> None:
        """The handshake server, given mutated datagrams from anyone."""
        data = mutate(r, r.pick(self.corpus), self.corpus)
        k = r.below(3)
        src = (f"192.0.2.{r.byte()}", 1 + r.below(65535)) if k == 0 else \
            r.pick(self.hs_peers).address
        self.hs_receive(data, src)

    def lane_hs_sealed(self, r: Reader) -> None:
        """The handshake server, given arbitrary bodies sealed under a real channel."""
        peer = r.pick(self.hs_peers)
        rid = peer.rid + 1 if r.below(4) else r.pick((0, 1, 0xFFFFFFFF))
        body = gen_hs_body(r, REQUEST_KINDS, rid)
        peer.send(body, rid if r.below(8) else rid + 1)

    def lane_evil_hs(self, r: Reader) -> None:
        """A handshake server gone bad: its key seals arbitrary replies to a session."""
        scn = self._scenario(r)
        victim = scn.victim
        channel = victim.rendezvous.tracker.channels.get(HS)
        if channel is None:
            return
        pending = list(victim.rendezvous.tracker.pending)
        rid = r.pick(pending) if pending and r.below(2) else 0
        body = gen_hs_body(r, REPLY_KINDS, rid)
        _, reply = self.evil_hs.channel(channel.share)
        nonce = r.take(AEAD_NONCE_SIZE)
        head = sealed_reply_head(nonce)
        self.feed(victim, head + reply.seal(nonce, body, head), HS)

    # --- health ---------------------------------------------------------------------------

    def check_honest(self, scn: Scenario, seconds: float = 3.0) -> bool:
        """The victim still exchanges a reliable message both ways with its peer: the
        honest client (a host victim) or the key holder (a client victim)."""
        self._checks += 1
        n = self._checks
        victim, atk = scn.victim, scn.attacker
        scn.check_stream()
        if not victim.is_connected():
            return False
        there, back = f"check:{n}:to-peer", f"check:{n}:to-victim"
        answer = b""
        try:
            if scn.honest is not None:
                if not scn.honest.is_connected():
                    return False
                scn.honest.send(victim.name or "", back, Delivery.RELIABLE_ORDERED,
                                CHECK_CHANNEL)
                victim.send(scn.honest.name or "", there, Delivery.RELIABLE_ORDERED,
                            CHECK_CHANNEL)
            else:
                victim.send(atk.name, there, Delivery.RELIABLE_ORDERED, CHECK_CHANNEL)
                # Sealed alone (its Connection batches with the junk it keeps resending):
                # the next message of a stream only these checks use.
                item = [int(Delivery.RELIABLE_ORDERED) | CHECK_CHANNEL << 4, atk.check_seq,
                        atk.next_mid, back]
                atk.check_seq = (atk.check_seq + 1) & 0xFFFF
                atk.next_mid += 1
                answer = b"\x00" * 6 + enc([item])
        except NotConnected:
            scn.checks_failed += 1
            if not scn.reported:
                self.invariant(f"{scn.label}: the victim lost its peer")
            return False
        end = self.net.now + seconds
        while self.net.now < end and not {there, back} <= self.seen:
            if answer and back not in self.seen and atk.alive():
                self.feed(victim, atk.seal(answer), atk.address)  # resent until it arrives
            self.pump()
        ok = {there, back} <= self.seen
        if ok:
            scn.checks_passed += 1
        else:
            scn.checks_failed += 1
            self.invariant(f"{scn.label}: the victim no longer exchanges reliable messages")
        return ok

    def check_all(self) -> bool:
        self._lane = "final health check"
        self._input = b""
        return all([self.check_honest(scn) for scn in self.scenarios])

    def victims_errors(self) -> dict[str, int]:
        out = {}
        for scn in self.scenarios:
            for s in (scn.victim, scn.honest):
                if s is not None:
                    out[f"{scn.label}:{s.name}"] = s.internal_errors
        out["handshake-server"] = self.hs.stats.internal_errors
        return out

    def progress(self) -> str:
        """One line on the state the campaign holds (to see that it stays bounded)."""
        import resource  # noqa: PLC0415

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        in_flight = sum(s.attacker.conn.in_flight() for s in self.scenarios)
        budget = sum(s.victim.ctx.budget.used for s in self.scenarios)
        return (f"{self.inputs} inputs, {len(self.findings)} findings, peak rss {rss} MB, "
                f"sessions {len(self.net.sessions)}, queued {len(self.net.sim._queue)}, "
                f"attackers' in flight {in_flight}, victims' reassembly {budget} B, "
                f"hs registrations {len(self.hs.registrations)}, seen {len(self.seen)}")

    def summary(self) -> dict[str, object]:
        return {
            "inputs": self.inputs,
            "lanes": dict(sorted(self.lane_counts.items())),
            "crashes": self.raised,
            "internal_errors": self.internal_errors,
            "invariant_failures": self.invariants,
            "distinct_findings": len(self.findings),
            "scenarios": {s.label: {"attackers_replaced": s.renewals,
                                    "generation": s.generation,
                                    "victim_blocked": s.victim.blocked_count,
                                    "health_checks_passed": s.checks_passed,
                                    "health_checks_failed": s.checks_failed}
                          for s in self.scenarios},
            "hs_stats": {"received": self.hs.stats.received, "dropped": self.hs.stats.dropped,
                         "internal_errors": self.hs.stats.internal_errors,
                         "registrations": len(self.hs.registrations)},
            "fake_seconds": round(self.net.now, 2),
        }


# --- engines ----------------------------------------------------------------------------

_SIZES = (4, 16, 48, 96, 200, 400, 800, 1400)


def gen_input(rng: random.Random) -> bytes:
    """One input of the mutate engine: random bytes, which the lanes decode."""
    return rng.randbytes(rng.choice(_SIZES))


def run_mutate(h: Harness, count: int, seed: int, report: Callable[[str], None],
               seconds: float = math.inf) -> None:
    rng = random.Random(seed)
    start = time.monotonic()
    for n in range(count):
        h.one_input(gen_input(rng))
        if n % 10_000 == 9_999:
            elapsed = time.monotonic() - start
            report(f"{elapsed:.0f} s: {h.progress()}")
            if elapsed > seconds:
                break


def run_atheris(h: Harness, count: int, seed: int, done: Callable[[], None],
                stop_on_finding: bool) -> None:  # pragma: no cover - tool path
    import os  # noqa: PLC0415

    import atheris  # noqa: PLC0415 - optional, only for this mode

    seen = [0]

    def one(data: bytes) -> None:
        h.one_input(data)
        if h.inputs % 5000 == 0:
            print(h.progress(), file=sys.stderr, flush=True)
        if stop_on_finding and len(h.findings) > seen[0]:
            seen[0] = len(h.findings)
            f = list(h.findings.values())[-1]
            raise RuntimeError(f"{f.what} {f.where} (lane {f.lane})\n{f.traceback}")
        if h.inputs >= count:
            h.check_all()
            done()  # libFuzzer would go on (its runs count its own corpus too): stop here
            os._exit(1 if h.findings else 0)

    corpus_dir = "/tmp/p2p-fuzz-v2-corpus"
    os.makedirs(corpus_dir, exist_ok=True)
    rng = random.Random(seed)
    for i in range(256):
        path = os.path.join(corpus_dir, f"seed{i}")
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(gen_input(rng))
    atheris.instrument_all()
    atheris.Setup([sys.argv[0], f"-runs={count + 1000}", "-max_len=1400",
                   "-print_final_stats=1", f"-seed={seed}", "-artifact_prefix=/tmp/p2p-fuzz-v2-",
                   corpus_dir], one)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datagrams", type=int, default=1_000_000,
                        help="fuzz inputs to run (each is one or a few datagrams)")
    parser.add_argument("--engine", choices=["atheris", "mutate"], default="atheris")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=math.inf,
                        help="mutate engine: stop after this long")
    parser.add_argument("--stop-on-finding", action="store_true",
                        help="atheris: crash at the first finding (libFuzzer saves the input)")
    parser.add_argument("--findings", help="write the findings here as JSON")
    args = parser.parse_args(argv)
    # The harness prints every finding with its traceback: no log line for each one too.
    logging.getLogger("framework").setLevel(logging.CRITICAL)
    logging.getLogger("server").setLevel(logging.CRITICAL)
    h = Harness(args.seed)
    start = time.monotonic()

    def done() -> None:
        elapsed = time.monotonic() - start
        out = {"engine": args.engine, "seconds": round(elapsed, 1),
               "inputs_per_sec": round(h.inputs / max(elapsed, 1e-9)), **h.summary()}
        print(json.dumps(out), flush=True)
        for f in h.findings.values():
            print(f"\n=== {f.what}: {f.where} (x{f.count}, lane {f.lane})\n"
                  f"input: {f.input_hex}\n{f.traceback}", file=sys.stderr, flush=True)
        if args.findings:
            with open(args.findings, "w") as fh:
                json.dump([f.as_dict() for f in h.findings.values()], fh, indent=1)

    if args.engine == "atheris":
        try:
            import atheris  # noqa: F401, PLC0415
        except ImportError:
            print("atheris is not installed (pip install atheris): using --engine mutate",
                  file=sys.stderr)
            args.engine = "mutate"
    if args.engine == "atheris":
        run_atheris(h, args.datagrams, args.seed, done, args.stop_on_finding)
    else:
        run_mutate(h, args.datagrams, args.seed, lambda s: print(s, file=sys.stderr),
                   args.seconds)
        h.check_all()
        done()
    return 0 if not h.findings else 1


if __name__ == "__main__":
    sys.exit(main())
