"""UPnP IGD wire formats, sans I/O: SSDP search and answers, a bounded HTTP/1.1 response
parser, the device description, and SOAP calls and answers of WANIPConnection.

Written here rather than taken from a library: ``miniupnpc`` (C bindings) blocks in its
calls and ``async-upnp-client`` needs an asyncio loop; neither fits an engine ticked once
per frame. XML comes from the LAN gateway only and is parsed with ``xml.etree`` after a
size cap and a refusal of any DTD or entity declaration (defusedxml is not a dependency).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from .client import Drop

SSDP_ADDR = ("239.255.255.250", 1900)
IGD_DEVICE = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
#: Connection services that can map ports, most wanted first.
WAN_SERVICES = (
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
)
MAX_SSDP = 2048
MAX_HTTP = 64 * 1024
MAX_HEADER = 8 * 1024
_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


# --------------------------------------------------------------------------- SSDP


def encode_msearch(st: str = IGD_DEVICE, mx: int = 1) -> bytes:
    """An SSDP M-SEARCH (UPnP Device Architecture 1.1 §1.3.2)."""
    return (
        "M-SEARCH * HTTP/1.1\r\n"
        f"HOST: {SSDP_ADDR[0]}:{SSDP_ADDR[1]}\r\n"
        'MAN: "ssdp:discover"\r\n'
        f"MX: {mx}\r\n"
        f"ST: {st}\r\n\r\n"
    ).encode("ascii")


def _headers(lines: list[bytes]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep:
            raise Drop("header line without a colon")
        out[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return out


def decode_ssdp_response(data: bytes) -> tuple[str, str]:
    """(ST, LOCATION) of a search answer; raises Drop for anything else."""
    if len(data) > MAX_SSDP:
        raise Drop(f"SSDP answer of {len(data)} bytes")
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    if not head[0].startswith(b"HTTP/1.1 200"):
        raise Drop(f"SSDP status line {head[0][:40]!r}")
    hdrs = _headers([h for h in head[1:] if h])
    if "location" not in hdrs or "st" not in hdrs:
        raise Drop("SSDP answer without ST or LOCATION")
    return hdrs["st"], hdrs["location"]


# --------------------------------------------------------------------------- HTTP


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request to make: connect to (host, port), send ``data``, read the answer."""

    host: str
    port: int
    data: bytes


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def split_url(url: str, gateway: str) -> tuple[str, int, str]:
    """(host, port, path) of an http URL on ``gateway``; raises Drop for any other host, so
    a LAN device cannot make us connect elsewhere."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname != gateway:
        raise Drop(f"URL {url[:80]!r} is not http on the gateway {gateway}")
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise Drop(f"URL {url[:80]!r}: {exc}") from None
    path = parts.path or "/"
    return gateway, port, path + (f"?{parts.query}" if parts.query else "")


def encode_get(host: str, port: int, path: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
            "User-Agent: pygame-p2p UPnP/1.1\r\n\r\n").encode("ascii")


class HttpResponseParser:
    """Collects one HTTP/1.1 response (Content-Length, chunked, or until close), at most
    ``MAX_HTTP`` bytes. ``feed`` returns the response once complete; raises Drop when the
    answer is malformed or too big."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._head: tuple[int, dict[str, str]] | None = None
        self._body_at = 0

    def feed(self, data: bytes) -> HttpResponse | None:
        self._buf += data
        if len(self._buf) > MAX_HTTP:
            raise Drop(f"HTTP answer over {MAX_HTTP} bytes")
        if self._head is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEADER:
                    raise Drop("HTTP header too long")
                return None
            lines = bytes(self._buf[:end]).split(b"\r\n")
            m = re.match(rb"HTTP/1\.[01] (\d{3})", lines[0])
            if not m:
                raise Drop(f"HTTP status line {lines[0][:40]!r}")
            self._head = (int(m.group(1)), _headers(lines[1:]))
            self._body_at = end + 4
        length = self._head[1].get("content-length")
        if length is not None and "chunked" not in self._head[1].get("transfer-encoding", ""):
            if not length.isdigit():
                raise Drop(f"Content-Length {length[:20]!r}")
            if len(self._buf) - self._body_at >= int(length):
                return self._done(bytes(self._buf[self._body_at:self._body_at + int(length)]))
        return None

    def eof(self) -> HttpResponse:
        """The server closed the connection: the response as it stands."""
        if self._head is None:
            raise Drop("connection closed before the HTTP header ended")
        body = bytes(self._buf[self._body_at:])
        if "chunked" in self._head[1].get("transfer-encoding", ""):
            body = _dechunk(body)
        elif "content-length" in self._head[1]:
            raise Drop("connection closed before the body ended")
        return self._done(body)

    def _done(self, body: bytes) -> HttpResponse:
        assert self._head is not None
        return HttpResponse(self._head[0], self._head[1], body)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while True:
        line, sep, rest = data.partition(b"\r\n")
        if not sep:
            raise Drop("truncated chunk size")
        try:
            size = int(line.split(b";")[0], 16)
        except ValueError:
            raise Drop("bad chunk size") from None
        if size == 0:
            return bytes(out)
        if len(rest) < size + 2:
            raise Drop("truncated chunk")
        out += rest[:size]
        data = rest[size + 2:]


# --------------------------------------------------------------------------- XML


def parse_xml(data: bytes) -> ET.Element:
    """A small XML document from the gateway, refusing DTDs and entities."""
    if len(data) > MAX_HTTP:
        raise Drop("XML too big")
    if _DTD.search(data):
        raise Drop("XML with a DTD or entity declaration")
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise Drop(f"bad XML: {exc}") from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(elem: ET.Element, name: str) -> str | None:
    for child in elem:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return None


def find_control_url(description: bytes, location: str) -> tuple[str, str]:
    """(service type, absolute control URL) of the best WAN connection service."""
    root = parse_xml(description)
    base = next((e.text.strip() for e in root.iter() if _local(e.tag) == "URLBase"
                 and e.text and e.text.strip()), location)
    found: dict[str, str] = {}
    for elem in root.iter():
        if _local(elem.tag) == "service":
            st, url = _child_text(elem, "serviceType"), _child_text(elem, "controlURL")
            if st in WAN_SERVICES and url and st not in found:
                found[st] = urljoin(base, url)
    for st in WAN_SERVICES:
        if st in found:
            return st, found[st]
    raise Drop("no WANIPConnection or WANPPPConnection service in the description")


# --------------------------------------------------------------------------- SOAP


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True, slots=True)
class SoapCall:
    action: str
    args: tuple[tuple[str, str], ...] = field(default=())

    def encode(self, host: str, port: int, path: str, service: str) -> bytes:
        args = "".join(f"<{k}>{_xml_escape(v)}</{k}>" for k, v in self.args)
        body = (
            '<?xml version="1.0"?>\r\n'
            '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
            's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">'
            f'<s:Body><u:{self.action} xmlns:u="{service}">{args}</u:{self.action}>'
            "</s:Body></s:Envelope>\r\n"
        ).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            'Content-Type: text/xml; charset="utf-8"\r\n'
            f'SOAPAction: "{service}#{self.action}"\r\n'
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode("ascii")
        return head + body


class SoapFault(Exception):
    """The gateway answered the call with a UPnP error (e.g. 718 ConflictInMappingEntry)."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(f"UPnP error {code}: {description}")
        self.code = code


def decode_soap(response: HttpResponse, action: str) -> dict[str, str]:
    """The out arguments of ``action``; raises SoapFault or Drop."""
    root = parse_xml(response.body) if response.body else None
    if response.status != 200:
        code = next((e.text for e in root.iter() if _local(e.tag) == "errorCode"), None) \
            if root is not None else None
        desc = next((e.text for e in root.iter() if _local(e.tag) == "errorDescription"),
                    None) if root is not None else None
        if code and code.strip().isdigit():
            raise SoapFault(int(code), (desc or "").strip()[:100])
        raise Drop(f"HTTP {response.status} to {action}")
    if root is None:
        raise Drop(f"empty answer to {action}")
    for elem in root.iter():
        if _local(elem.tag) == f"{action}Response":
            return {_local(c.tag): (c.text or "").strip() for c in elem}
    raise Drop(f"no {action}Response in the answer")
