"""UPnP IGD: SSDP, the bounded HTTP parser, safe XML, SOAP, and the client on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from framework.protocol.portmap import upnp
from framework.protocol.portmap.client import Drop
from framework.protocol.portmap.common import (
    MappingDeleted,
    MappingEstablished,
    MappingFailed,
    MappingState,
)
from framework.protocol.portmap.igd import UpnpClient
from framework.protocol.portmap.upnp import HttpResponse, HttpResponseParser

GW = "10.0.0.1"
SSDP_ANSWER = (
    "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\n"
    f"ST: {upnp.IGD_DEVICE}\r\nUSN: uuid:x::{upnp.IGD_DEVICE}\r\n"
    f"LOCATION: http://{GW}:5000/rootDesc.xml\r\n\r\n"
).encode()
DESCRIPTION = b"""<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><device><deviceList><device><deviceList>
<device><serviceList>
<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>
<controlURL>/ctl/IPConn</controlURL></service>
</serviceList></device></deviceList></device></deviceList></device></root>"""


def soap_ok(action: str, **out: str) -> HttpResponse:
    args = "".join(f"<{k}>{v}</{k}>" for k, v in out.items())
    body = (f'<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/'
            f'envelope/"><s:Body><u:{action}Response xmlns:u="x">{args}</u:{action}Response>'
            "</s:Body></s:Envelope>").encode()
    return HttpResponse(200, {}, body)


def soap_fault(code: int) -> HttpResponse:
    body = (b'<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/'
            b'envelope/"><s:Body><s:Fault><detail><UPnPError xmlns="urn:schemas-upnp-org:'
            b'control-1-0"><errorCode>' + str(code).encode() + b"</errorCode><errorDescription>"
            b"Conflict</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>")
    return HttpResponse(500, {}, body)


def state(c: Any) -> MappingState:
    """The client's state, read fresh (no narrowing across calls)."""
    return MappingState(c.state)


def events(c: UpnpClient) -> list[object]:
    out: list[object] = []
    while (e := c.next_event()) is not None:
        out.append(e)
    return out


def discovered(now: float = 0.0) -> UpnpClient:
    c = UpnpClient("10.0.0.2", 4000, gateway=GW, lifetime=3600)
    c.start(now)
    assert c.datagrams_to_send() == [upnp.encode_msearch()]
    c.receive_datagram(SSDP_ANSWER, (GW, 1900), now + 0.01)
    return c


def mapped() -> UpnpClient:
    c = discovered()
    c.http_request()
    c.http_response(HttpResponse(200, {}, DESCRIPTION), 0.02)
    c.http_request()
    c.http_response(soap_ok("GetExternalIPAddress", NewExternalIPAddress="100.63.0.1"), 0.03)
    c.http_request()
    c.http_response(soap_ok("AddPortMapping"), 0.04)
    return c


def test_msearch_and_ssdp_answer() -> None:
    msg = upnp.encode_msearch().decode()
    assert msg.startswith("M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n")
    assert 'MAN: "ssdp:discover"' in msg and f"ST: {upnp.IGD_DEVICE}" in msg
    assert msg.endswith("\r\n\r\n")
    assert upnp.decode_ssdp_response(SSDP_ANSWER) == (
        upnp.IGD_DEVICE, f"http://{GW}:5000/rootDesc.xml")
    with pytest.raises(Drop):
        upnp.decode_ssdp_response(b"NOTIFY * HTTP/1.1\r\n\r\n")


def test_full_exchange() -> None:
    c = discovered()
    req = c.http_request()
    assert req is not None and (req.host, req.port) == (GW, 5000)
    assert req.data.startswith(b"GET /rootDesc.xml HTTP/1.1\r\n")
    assert c.http_request() is None  # one at a time
    c.http_response(HttpResponse(200, {}, DESCRIPTION), 0.1)
    req = c.http_request()
    assert req is not None and req.data.startswith(b"POST /ctl/IPConn HTTP/1.1\r\n")
    assert b'SOAPAction: "urn:schemas-upnp-org:service:WANIPConnection:1#GetExternal' in req.data
    c.http_response(soap_ok("GetExternalIPAddress", NewExternalIPAddress="100.63.0.1"), 0.2)
    req = c.http_request()
    assert req is not None
    for part in (b"<NewExternalPort>4000</NewExternalPort>", b"<NewProtocol>UDP</NewProtocol>",
                 b"<NewInternalClient>10.0.0.2</NewInternalClient>",
                 b"<NewLeaseDuration>3600</NewLeaseDuration>"):
        assert part in req.data
    c.http_response(soap_ok("AddPortMapping"), 0.3)
    assert events(c) == [MappingEstablished("upnp", ("100.63.0.1", 4000), 3600.0)]
    assert c.get_timer() == 0.3 + 1800
    c.handle_timer(1800.3)
    req = c.http_request()
    assert req is not None and b"#AddPortMapping" in req.data  # the lease renewed
    c.http_response(soap_ok("AddPortMapping"), 1800.4)
    c.close(1900.0)
    req = c.http_request()
    assert req is not None and b"#DeletePortMapping" in req.data
    c.http_response(soap_ok("DeletePortMapping"), 1900.1)
    assert state(c) is MappingState.CLOSED
    assert events(c) == [MappingDeleted("upnp", True)]


def test_conflict_tries_another_port() -> None:
    c = discovered()
    c.http_request()
    c.http_response(HttpResponse(200, {}, DESCRIPTION), 0.02)
    c.http_request()
    c.http_response(soap_ok("GetExternalIPAddress", NewExternalIPAddress="100.63.0.1"), 0.03)
    c.http_request()
    c.http_response(soap_fault(718), 0.04)
    req = c.http_request()
    assert req is not None and b"#AddPortMapping" in req.data
    assert b"<NewExternalPort>4000</NewExternalPort>" not in req.data
    c.http_response(soap_ok("AddPortMapping"), 0.05)
    assert state(c) is MappingState.MAPPED and c.external and c.external[1] != 4000


def test_close_while_adding_still_deletes() -> None:
    c = discovered()
    c.http_request()
    c.http_response(HttpResponse(200, {}, DESCRIPTION), 0.02)
    c.http_request()
    c.http_response(soap_ok("GetExternalIPAddress", NewExternalIPAddress="100.63.0.1"), 0.03)
    assert c.http_request() is not None  # AddPortMapping under way
    c.close(0.04)
    c.http_response(soap_ok("AddPortMapping"), 0.05)  # its late answer is ignored
    req = c.http_request()
    assert req is not None and b"#DeletePortMapping" in req.data


def test_no_answer_to_the_search_fails_within_seconds() -> None:
    c = UpnpClient("10.0.0.2", 4000, gateway=GW)
    c.start(0.0)
    sent = len(c.datagrams_to_send())
    t = 0.0
    while state(c) is MappingState.REQUESTING:
        timer = c.get_timer()
        assert timer is not None
        t = timer
        c.handle_timer(t)
        sent += len(c.datagrams_to_send())
    assert sent == 3 and t == 3.0
    assert isinstance(events(c)[0], MappingFailed)


def test_answers_from_elsewhere_or_pointing_elsewhere_are_dropped() -> None:
    c = UpnpClient("10.0.0.2", 4000, gateway=GW)
    c.start(0.0)
    c.receive_datagram(SSDP_ANSWER, ("10.0.0.9", 1900), 0.1)  # not our gateway
    c.receive_datagram(SSDP_ANSWER.replace(GW.encode(), b"192.0.2.7"), (GW, 1900), 0.1)
    c.receive_datagram(b"garbage", (GW, 1900), 0.1)
    assert c.dropped == 3 and c.http_request() is None


def test_description_with_foreign_control_url_fails() -> None:
    c = discovered()
    c.http_request()
    c.http_response(HttpResponse(200, {}, DESCRIPTION.replace(
        b"/ctl/IPConn", b"http://192.0.2.7/ctl")), 0.1)
    assert state(c) is MappingState.FAILED


def test_xml_with_dtd_or_entities_is_refused() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'
    with pytest.raises(Drop):
        upnp.parse_xml(bomb)
    with pytest.raises(Drop):
        upnp.parse_xml(b"<x>" + b"a" * upnp.MAX_HTTP + b"</x>")


def test_control_url_from_urlbase() -> None:
    desc = DESCRIPTION.replace(b"<device>", b"<URLBase>http://10.0.0.1:6000/</URLBase><device>",
                               1)
    st_, url = upnp.find_control_url(desc, "http://10.0.0.1:5000/rootDesc.xml")
    assert st_ == "urn:schemas-upnp-org:service:WANIPConnection:1"
    assert url == "http://10.0.0.1:6000/ctl/IPConn"


def test_http_parser_content_length_chunked_and_limits() -> None:
    p = HttpResponseParser()
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    assert p.feed(raw[:10]) is None
    resp = p.feed(raw[10:])
    assert resp == HttpResponse(200, {"content-length": "5"}, b"hello")
    p = HttpResponseParser()
    assert p.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n") \
        is None
    assert p.eof().body == b"abc"
    p = HttpResponseParser()
    with pytest.raises(Drop):
        p.feed(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * (upnp.MAX_HTTP + 1))
    with pytest.raises(Drop):
        HttpResponseParser().feed(b"SSH-2.0\r\n\r\n")
    with pytest.raises(Drop):
        HttpResponseParser().eof()


def test_soap_fault_code() -> None:
    with pytest.raises(upnp.SoapFault) as info:
        upnp.decode_soap(soap_fault(718), "AddPortMapping")
    assert info.value.code == 718


def test_soap_arguments_are_escaped() -> None:
    data = upnp.SoapCall("AddPortMapping", (("NewPortMappingDescription", "<&>"),)).encode(
        GW, 5000, "/ctl", "urn:x")
    assert b"&lt;&amp;&gt;" in data
    head, body = data.split(b"\r\n\r\n", 1)
    assert f"Content-Length: {len(body)}".encode() in head


@given(st.binary(max_size=300))
def test_random_http_and_ssdp_never_raise_past_drop(data: bytes) -> None:
    c = mapped()
    c.receive_datagram(data, (GW, 1900), 1.0)
    p = HttpResponseParser()
    try:
        resp = p.feed(data) or p.eof()
        upnp.decode_soap(resp, "AddPortMapping")
    except (Drop, upnp.SoapFault):
        pass
