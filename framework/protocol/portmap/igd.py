"""The UPnP IGD mapping client, sans I/O: discover the gateway with SSDP, read its
description, ask its external address, AddPortMapping with a lease (renewed at half of it),
DeletePortMapping on close.

Outputs: SSDP datagrams for 239.255.255.250:1900 (``datagrams_to_send``) and one HTTP
request at a time (``http_request``); the shell answers each with ``http_response(resp)``,
or ``http_response(None)`` when the connection failed or took longer than HTTP_TIMEOUT.
"""

from __future__ import annotations

import enum
import logging
import random
from collections import deque

from .client import Drop
from .common import (
    Address,
    Exchange,
    MappingDeleted,
    MappingEstablished,
    MappingEvent,
    MappingFailed,
    MappingLost,
    MappingState,
    Schedule,
)
from .upnp import (
    HttpRequest,
    HttpResponse,
    SoapCall,
    SoapFault,
    decode_soap,
    decode_ssdp_response,
    encode_get,
    encode_msearch,
    find_control_url,
    split_url,
)

log = logging.getLogger(__name__)

#: Searches at 0, 0.5 and 1.5 s; no usable answer by 3 s means no IGD here.
SSDP_SCHEDULE = Schedule(initial=0.5, maximum=2.0, attempts=3, give_up=3.0)
#: The shell gives up on one HTTP exchange after this long.
HTTP_TIMEOUT = 3.0
CONFLICT = 718  # ConflictInMappingEntry
PERMANENT_ONLY = 725  # OnlyPermanentLeasesSupported
MAX_CONFLICTS = 4
#: A renewal that fails is retried this often while the lease still runs.
RENEW_RETRY = 5.0


class Step(enum.Enum):
    DISCOVER = "discover"
    DESCRIBE = "describe"
    ADDRESS = "address"
    ADD = "add"
    IDLE = "idle"  #: mapped, waiting to renew
    DELETE = "delete"


class UpnpClient:
    """Maps ``internal_port`` (UDP) of ``client_ip`` through the LAN's IGD."""

    protocol = "upnp"

    def __init__(
        self, client_ip: str, internal_port: int, *, gateway: str | None = None,
        lifetime: int = 3600, external_port: int = 0, description: str = "pygame-p2p",
        rng: random.Random | None = None,
    ) -> None:
        self.client_ip = client_ip
        self.internal_port = internal_port
        self.gateway = gateway
        self.lease = lifetime
        self.want_port = external_port or internal_port
        self.description = description
        self.state = MappingState.IDLE
        self.step = Step.IDLE
        self.external: Address | None = None
        self.lifetime = 0.0
        self.dropped = 0
        self.failure: str | None = None
        self._rng = rng or random.Random()
        self._search: Exchange | None = None
        self._device: str | None = None  # the responder's IP, where every URL must point
        self._service = ""
        self._control: tuple[str, int, str] | None = None
        self._external_ip: str | None = None
        self._conflicts = 0
        self._http: HttpRequest | None = None
        self._http_busy = False
        self._inflight = Step.IDLE  # the step whose request the shell is running
        self._location = ""
        self._renew_at: float | None = None
        self._expires_at: float | None = None
        self._datagrams: list[bytes] = []
        self._events: deque[MappingEvent] = deque()

    # ---- API

    def start(self, now: float) -> None:
        if self.state is not MappingState.IDLE:
            return
        self._set(MappingState.REQUESTING, Step.DISCOVER)
        self._search = Exchange(encode_msearch(), SSDP_SCHEDULE, now, self._rng)
        self.handle_timer(now)

    def close(self, now: float) -> None:
        """DeletePortMapping if a mapping exists or is being made; MappingDeleted follows."""
        if self.state is MappingState.MAPPED or (
            self.state is MappingState.REQUESTING and self.step is Step.ADD
        ):
            self._renew_at = self._expires_at = None
            self._set(MappingState.DELETING, Step.DELETE)
            self._call(SoapCall("DeletePortMapping", (
                ("NewRemoteHost", ""), ("NewExternalPort", str(self.want_port)),
                ("NewProtocol", "UDP"))))
        elif self.state in (MappingState.IDLE, MappingState.FAILED, MappingState.REQUESTING):
            self._search = None
            self._http = None
            self._set(MappingState.CLOSED, Step.IDLE)

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        """An SSDP answer (unicast to our search socket). Never raises."""
        if self.step is not Step.DISCOVER or (self.gateway and addr[0] != self.gateway):
            self._drop("SSDP datagram from %s not awaited", addr)
            return
        try:
            _st, location = decode_ssdp_response(data)
            host, port, path = split_url(location, addr[0])
        except Drop as why:
            self._drop("%s", why)
            return
        self._search = None
        self._device = addr[0]
        self._location = location
        self.step = Step.DESCRIBE
        self._http = HttpRequest(host, port, encode_get(host, port, path))

    def http_request(self) -> HttpRequest | None:
        """The next HTTP exchange to run, once (None when there is none)."""
        req, self._http = self._http, None
        if req is not None:
            self._http_busy = True
            self._inflight = self.step
        return req

    def http_response(self, response: HttpResponse | None, now: float) -> None:
        """The answer to the last ``http_request`` (None: failed or timed out)."""
        self._http_busy = False
        step = self._inflight
        if step is not self.step:
            return  # close() came while this ran; its DeletePortMapping is queued
        try:
            if response is None:
                raise Drop("no HTTP answer")
            if step is Step.DESCRIBE:
                if response.status != 200:
                    raise Drop(f"HTTP {response.status} for the description")
                self._service, url = find_control_url(response.body, self._location)
                assert self._device is not None
                self._control = split_url(url, self._device)
                self.step = Step.ADDRESS
                self._call(SoapCall("GetExternalIPAddress"))
            elif step is Step.ADDRESS:
                ip = decode_soap(response, "GetExternalIPAddress").get("NewExternalIPAddress")
                if not ip:
                    raise Drop("the gateway has no external address")
                self._external_ip = ip
                self._add()
            elif step is Step.ADD:
                decode_soap(response, "AddPortMapping")
                self._mapped(now)
            elif step is Step.DELETE:
                decode_soap(response, "DeletePortMapping")
                self._deleted(True)
            else:
                self._drop("HTTP answer in step %s", step.value)
        except SoapFault as fault:
            self._on_fault(fault, step, now)
        except Drop as why:
            if step is Step.DELETE:
                self._deleted(False)
            else:
                self._fail(f"UPnP {step.value}: {why}", now)

    def handle_timer(self, now: float) -> None:
        if self._search is not None:
            if self._search.expired(now):
                self._search = None
                self._fail("no UPnP IGD answered the search", now)
            elif self._search.due(now):
                self._search.mark_sent(now)
                self._datagrams.append(self._search.payload)
        if self._renew_at is not None and now >= self._renew_at and not self._http_busy:
            self._renew_at = None
            self.step = Step.ADD
            self._add()
        if self._expires_at is not None and now >= self._expires_at:
            self._lose("the lease ran out without a renewal")

    def datagrams_to_send(self) -> list[bytes]:
        out, self._datagrams = self._datagrams, []
        return out

    def get_timer(self) -> float | None:
        times = [t for t in (self._renew_at, self._expires_at) if t is not None]
        if self._search is not None:
            times.append(self._search.deadline())
        return min(times) if times else None

    def next_event(self) -> MappingEvent | None:
        return self._events.popleft() if self._events else None

    # ---- internals

    def _set(self, state: MappingState, step: Step) -> None:
        log.debug("upnp %s: %s/%s -> %s/%s", self.internal_port, self.state.value,
                  self.step.value, state.value, step.value)
        self.state, self.step = state, step

    def _drop(self, fmt: str, *args: object) -> None:
        self.dropped += 1
        log.debug("upnp: dropped: " + fmt, *args)

    def _call(self, call: SoapCall) -> None:
        assert self._control is not None
        host, port, path = self._control
        self._http = HttpRequest(host, port, call.encode(host, port, path, self._service))

    def _add(self) -> None:
        self.step = Step.ADD
        self._call(SoapCall("AddPortMapping", (
            ("NewRemoteHost", ""), ("NewExternalPort", str(self.want_port)),
            ("NewProtocol", "UDP"), ("NewInternalPort", str(self.internal_port)),
            ("NewInternalClient", self.client_ip), ("NewEnabled", "1"),
            ("NewPortMappingDescription", self.description),
            ("NewLeaseDuration", str(self.lease)))))

    def _mapped(self, now: float) -> None:
        assert self._external_ip is not None
        self.lifetime = float(self.lease)
        if self.lease:
            self._renew_at = now + self.lease / 2
            self._expires_at = now + self.lease
        self.step = Step.IDLE
        if self.state is MappingState.REQUESTING:
            self._set(MappingState.MAPPED, Step.IDLE)
        external = (self._external_ip, self.want_port)
        if external != self.external:
            self.external = external
            self._events.append(MappingEstablished(self.protocol, external, self.lifetime))

    def _on_fault(self, fault: SoapFault, step: Step, now: float) -> None:
        if step is Step.ADD and fault.code == CONFLICT and self._conflicts < MAX_CONFLICTS \
                and self.state is MappingState.REQUESTING:
            self._conflicts += 1
            self.want_port = self._rng.randrange(20000, 60000)
            log.info("upnp: external port taken, trying %d", self.want_port)
            self._add()
        elif step is Step.ADD and fault.code == PERMANENT_ONLY and self.lease:
            self.lease = 0  # deleted on close, never renewed
            self._add()
        elif step is Step.DELETE:
            self._deleted(False)
        else:
            self._fail(f"UPnP {step.value}: {fault}", now)

    def _fail(self, reason: str, now: float) -> None:
        if self.state is MappingState.MAPPED:
            if self._expires_at is not None and now + RENEW_RETRY < self._expires_at:
                self.step = Step.IDLE
                self._renew_at = now + RENEW_RETRY
                return
            self._lose(reason)
            return
        self.failure = reason
        self._search = None
        self._set(MappingState.FAILED, Step.IDLE)
        self._events.append(MappingFailed(self.protocol, reason))

    def _lose(self, reason: str) -> None:
        self._renew_at = self._expires_at = None
        self.external = None
        self.failure = reason
        self._set(MappingState.FAILED, Step.IDLE)
        self._events.append(MappingLost(self.protocol, reason))

    def _deleted(self, confirmed: bool) -> None:
        self.external = None
        self._set(MappingState.CLOSED, Step.IDLE)
        self._events.append(MappingDeleted(self.protocol, confirmed))
