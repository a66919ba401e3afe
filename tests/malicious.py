"""Hostile inputs for the v2 fuzz harness: decoded from bytes, built as an attacker would.

Everything here is driven by a :class:`Reader` over one fuzz input, so the same code
serves atheris (which mutates the bytes under coverage guidance) and the seeded mutation
engine (which draws them at random). The values are *authenticated-peer* material: message
items, engine messages of the system channel, msgpack oddities and numpy extensions that a
peer holding valid keys may put in a DATA datagram, and bodies of sealed handshake-server
datagrams.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, TypeVar

from framework.protocol.constants import (
    FRAGMENT_SIZE,
    MAX_DATAGRAM,
    RELIABLE_WINDOW,
    SYSTEM_CHANNEL,
)
from framework.protocol.delivery import CHANNEL_SHIFT, FLAG_CANCEL, FLAG_FRAGMENT
from framework.protocol.wire import ACKS, HsKind

T = TypeVar("T")

#: The user channel the harness keeps for its own health checks: generated items never
#: use it, so "the honest pair still exchanges a reliable message" tests the connection,
#: not whether the fuzzed streams happen to be in step.
CHECK_CHANNEL = 14


class Reader:
    """Choices drawn from the bytes of one fuzz input; zeros once they run out."""

    __slots__ = ("_data", "_pos", "budget")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0
        #: Bytes the generated values may still add up to: a datagram holds 1200, and a
        #: fuzzer that learns to pick the largest choice every time must not build
        #: gigabytes (nested repeats would).
        self.budget = 64 * 1024

    def spend(self, n: int) -> bool:
        """Take ``n`` bytes of the budget; False (and nothing taken) when it is short."""
        if n > self.budget:
            return False
        self.budget -= n
        return True

    def byte(self) -> int:
        pos = self._pos
        if pos < len(self._data):
            self._pos = pos + 1
            return self._data[pos]
        return 0

    def take(self, n: int) -> bytes:
        n = max(0, n)
        chunk = self._data[self._pos:self._pos + n]
        self._pos += len(chunk)
        return chunk + bytes(n - len(chunk))

    def below(self, n: int) -> int:
        if n <= 1:
            return 0
        if n <= 256:
            return self.byte() % n
        return int.from_bytes(self.take(4), "big") % n

    def one_in(self, n: int) -> bool:
        return self.below(n) == 0

    def pick(self, seq: Sequence[T]) -> T:
        return seq[self.below(len(seq))]

    def rest(self, limit: int = MAX_DATAGRAM) -> bytes:
        chunk = self._data[self._pos:self._pos + limit]
        self._pos += len(chunk)
        return chunk

    @property
    def exhausted(self) -> bool:
        return self._pos >= len(self._data)


# --- a msgpack writer that can also write what msgpack's own Packer refuses ------------


class Raw(bytes):
    """Bytes written into a value's encoding as they are (deep nests, bad maps...)."""


def enc(v: Any) -> bytes:
    """msgpack encoding of ``v``; ``Raw`` parts go in verbatim."""
    if isinstance(v, Raw):
        return bytes(v)
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        return _enc_int(v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode("utf-8", "surrogatepass")
        n = len(b)
        head = (bytes([0xA0 | n]) if n < 32 else b"\xd9" + bytes([n]) if n < 256
                else b"\xda" + n.to_bytes(2, "big") if n < 65536
                else b"\xdb" + n.to_bytes(4, "big"))
        return head + b
    if isinstance(v, bytes | bytearray):
        n = len(v)
        head = (b"\xc4" + bytes([n]) if n < 256 else b"\xc5" + n.to_bytes(2, "big")
                if n < 65536 else b"\xc6" + n.to_bytes(4, "big"))
        return head + bytes(v)
    if isinstance(v, Ext):
        n = len(v.data)
        fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
        code = v.code.to_bytes(1, "big", signed=True)
        if n in fixed:
            return bytes([fixed[n]]) + code + v.data
        if n < 256:
            return b"\xc7" + bytes([n]) + code + v.data
        if n < 65536:
            return b"\xc8" + n.to_bytes(2, "big") + code + v.data
        return b"\xc9" + n.to_bytes(4, "big") + code + v.data
    if isinstance(v, list | tuple):
        n = len(v)
        head = (bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big")
                if n < 65536 else b"\xdd" + n.to_bytes(4, "big"))
        return head + b"".join(enc(x) for x in v)
    if isinstance(v, dict):
        n = len(v)
        head = (bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")
                if n < 65536 else b"\xdf" + n.to_bytes(4, "big"))
        return head + b"".join(enc(k) + enc(x) for k, x in v.items())
    if isinstance(v, Pairs):
        n = len(v.items)
        head = (bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")
                if n < 65536 else b"\xdf" + n.to_bytes(4, "big"))
        return head + b"".join(enc(k) + enc(x) for k, x in v.items)
    raise TypeError(type(v).__name__)


def _enc_int(v: int) -> bytes:
    if 0 <= v < 128:
        return bytes([v])
    if -32 <= v < 0:
        return (v & 0xFF).to_bytes(1, "big")
    if v >= 0:
        for code, size in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)):
            if v < 1 << (8 * size):
                return bytes([code]) + v.to_bytes(size, "big")
        return b"\xcf" + (v & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")
    for code, size in ((0xD0, 1), (0xD1, 2), (0xD2, 4), (0xD3, 8)):
        if v >= -(1 << (8 * size - 1)):
            return bytes([code]) + v.to_bytes(size, "big", signed=True)
    return b"\xd3" + (v & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")


class Ext:
    """A msgpack extension value (code, data)."""

    __slots__ = ("code", "data")

    def __init__(self, code: int, data: bytes) -> None:
        self.code = code
        self.data = data


class Pairs:
    """A msgpack map given as pairs, so that keys may be lists, maps or repeats."""

    __slots__ = ("items",)

    def __init__(self, items: list[tuple[Any, Any]]) -> None:
        self.items = items


# --- values -----------------------------------------------------------------------------

EDGE_INTS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 15, 16, 31, 32, -1, -32, -33, 127, 128, 255, 256,
             0x7FFF, 0x8000, 0xFFFF, 0x10000, 1023, 1024, 1025, 954, 955, 956, 1100,
             2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1,
             -(2 ** 31), -(2 ** 63))
EDGE_FLOATS = (0.0, -0.0, 1.5, -1.0, 1e300, -1e300, 5e-324, float("inf"), float("-inf"),
               float("nan"), 1e6, 999999.9)
NAMES = ("host", "alice", "bob", "hostpw", "hostopen", "mal1", "vic1", "evil1", "x" * 32,
         "x" * 33, "", " ", "_HANDSHAKE_SERVER", "HOST", "hоst", "a\u200bb", "\x00",
         "é" * 40, "\ud800", "ǅ", "ﬀ" * 30, "Ⅻ", "a" * 200)
IPS = ("198.51.100.10", "203.0.113.1", "192.168.1.20", "10.0.0.1", "127.0.0.1", "::1",
       "fe80::1", "2001:db8::1", "0.0.0.0", "255.255.255.255", "1.2.3", "example.com",
       "::ffff:1.2.3.4", "fe80::1%eth0", "x" * 45, "")
DTYPES = ("<i4", ">f8", "b1", "|u1", "<c16", "<f2", "<i8", ">u2", "O", "V8", "<U4", "S3",
          "<M8[s]", "<m8[D]", "i4,i4", "(2,)i4", "[('a','<i4')]", "float128", "g", "xyz",
          "", "<i0", "i" * 300, "<f8\x00", "int", "bool", "c8", "<M8", "e", "?", "=i4")


def gen_name(r: Reader) -> Any:
    if r.one_in(8):
        return gen_value(r, 3)
    return r.pick(NAMES)


def gen_int(r: Reader) -> int:
    k = r.below(4)
    if k == 0:
        return r.pick(EDGE_INTS)
    if k == 1:
        return r.below(256)
    if k == 2:
        return int.from_bytes(r.take(8), "big", signed=r.one_in(2))
    return r.below(70000)


def gen_bytes(r: Reader) -> bytes:
    k = r.below(5)
    if k == 0:
        return r.take(r.pick((0, 1, 7, 8, 9, 16, 32, 33)))
    if k == 1:
        return r.take(r.below(64))
    if k == 2:
        n = r.pick((0, 1, 100, 1100, 1101, 5000))
        return bytes(n if r.spend(n) else 0)
    if k == 3:
        return enc(gen_value(r, 1))  # bytes that are msgpack themselves
    return r.take(8)


def gen_numpy(r: Reader, depth: int = 0) -> Ext:
    nested = depth < 4  # an extension inside an extension inside...: a few levels only
    dtype = r.pick(DTYPES)
    k = r.below(6)
    shape: Any
    if k == 0:
        shape = []
    elif k == 1:
        shape = [r.below(5) for _ in range(r.below(4))]
    elif k == 2:
        shape = [r.pick(EDGE_INTS) for _ in range(r.below(4) + 1)]
    elif k == 3:
        shape = [1] * (15 + r.below(4))
    elif k == 4:
        shape = [0, r.pick(EDGE_INTS)]
    else:
        shape = gen_value(r, max(depth + 1, 3)) if nested else None
    sizes = {"1": 1, "2": 2, "4": 4, "8": 8, "6": 16}
    item = sizes.get(dtype[-1:], 4)
    count = 1
    if isinstance(shape, list) and all(type(n) is int and 0 <= n < 1 << 20 for n in shape):
        for n in shape:
            count *= n
    raw = bytes(min(count * item, 4096)) if r.below(3) else gen_bytes(r)
    parts: Any = [dtype, shape, raw]
    if r.one_in(8) and nested:
        parts = gen_value(r, max(depth + 1, 2))
    code = 1 if r.below(6) else r.pick((0, -1, 2, 127, -128))
    body = enc(parts) if r.below(8) else r.take(r.below(40))
    if not r.spend(len(body)):
        body = body[:64]
    return Ext(code, body)


def deep(depth: int, kind: int) -> Raw:
    """A value nested ``depth`` deep (lists, maps or both)."""
    if kind == 0:
        return Raw(b"\x91" * depth + b"\xc0")
    if kind == 1:
        return Raw(b"\x81\xa1k" * depth + b"\xc0")
    return Raw(b"\x92\x81\xa1k" * (depth // 2) + b"\xc0" + b"\xc0" * (depth // 2))


def gen_value(r: Reader, depth: int = 0) -> Any:
    """Any value a peer may send, from the ordinary to the hostile."""
    k = r.below(18 if depth < 3 else 10)
    if k == 0 or not r.spend(8):
        return None
    if k == 1:
        return r.one_in(2)
    if k == 2:
        return gen_int(r)
    if k == 3:
        return r.pick(EDGE_FLOATS)
    if k == 4:
        return gen_name(r) if depth < 3 else r.pick(NAMES)
    if k == 5:
        return gen_bytes(r)
    if k == 6:
        return gen_numpy(r, depth + 1)
    if k == 7:
        return Ext(r.pick((1, 0, -1, 5)), r.take(r.below(24)))
    if k == 8:
        n = r.pick((0, 31, 32, 200, 201, 255, 256, 1000))
        return "s" * (n if r.spend(n) else 1)
    if k == 9:
        n = r.pick((2, 31, 32, 33, 100, 511, 600, 1000, 2000))
        return deep(n if r.spend(4 * n) else 2, r.below(3))
    if k in (10, 11, 12):
        return [gen_value(r, depth + 1) for _ in range(r.below(5))]
    if k == 13:
        return {r.pick(("a", "b", "from", "message")): gen_value(r, depth + 1)
                for _ in range(r.below(4))}
    if k == 14:
        # keys msgpack accepts but Python may not hash: lists, maps, floats, repeats
        key = r.pick(([1], {"a": 1}, 1.5, None, b"k", "k", 7, Raw(b"\x90")))
        return Pairs([(key, gen_value(r, depth + 1)), (key, 0)][: 1 + r.below(2)])
    if k == 15:
        return Raw(r.take(r.below(12)))  # arbitrary bytes where a value should be
    if k == 16:  # one scalar many times (a nested value repeated would grow as a power)
        one = gen_value(r, 3)
        n = r.pick((16, 100, 300))
        return [one] * (n if r.spend(n * len(enc(one))) else 2)
    return Raw(r.pick((b"\xdd\xff\xff\xff\xff", b"\xdf\x7f\xff\xff\xff", b"\xc6\xff\xff\xff\xff",
                       b"\xdb\x00\x00\x10\x00", b"\xc1", b"\xd9\x05ab", b"\xa2\xff\xfe",
                       b"\xc9\x00\x00\x00\x01\x01", b"\xd4\x01")))


# --- engine messages of the system channel ------------------------------------------------


def gen_peer_list(r: Reader) -> Any:
    k = r.below(5)
    if k == 0:
        return [[gen_name(r), r.pick(IPS), gen_int(r)] for _ in range(r.below(6))]
    if k == 1:
        return [[f"p{i}", "198.51.100.7", 1000 + i] for i in range(r.pick((255, 256, 257)))]
    if k == 2:
        return [gen_value(r, 2) for _ in range(r.below(5))]
    if k == 3:
        return deep(r.pick((30, 1000)), 0)
    return [["alice", "198.51.100.10", 40010], ["bob", "::1", 1],
            [r.pick(NAMES), r.pick(IPS), r.pick(EDGE_INTS)]]


def gen_system(r: Reader, token: bytes | None = None) -> Any:
    """An engine message on the system channel: [kind, ...]."""
    kind = r.below(10)
    if kind == 0:
        return [0] if r.below(2) else [0, gen_value(r, 1)]
    if kind == 1:
        return [1, gen_peer_list(r)]
    if kind in (2, 3):
        payload = enc(gen_value(r, 1)) if r.below(3) else gen_bytes(r)
        mode = r.below(4) if r.below(4) else gen_int(r)
        channel = r.below(16) if r.below(4) else gen_int(r)
        msg = [kind, gen_name(r), mode, channel, gen_int(r), payload]
        if r.one_in(6):
            msg[r.below(6)] = gen_value(r, 2)
        if r.one_in(8):
            msg = msg[: r.below(7)]
        return msg
    if kind == 4:
        return [4, gen_int(r) if r.below(3) else gen_value(r, 2), gen_name(r)]
    if kind == 5:
        reason: Any = r.pick(("quit", "", "x" * 200, "x" * 201))
        if r.below(3) == 0:
            reason = gen_value(r, 1)
        return [5, reason]
    if kind in (6, 7):
        t: Any
        c = r.below(6)
        if c == 0 and token is not None:
            t = token
        elif c == 1:
            t = r.take(8)
        elif c == 2:
            t = gen_numpy(r)
        elif c == 3:
            t = gen_value(r, 2)
        else:
            t = r.take(r.pick((0, 7, 9, 16)))
        return [kind, t]
    if kind == 8:
        return [r.pick((8, 255, -1, 2 ** 63, 1.0, "1", True)), gen_value(r, 2)]
    return gen_value(r, 1)


# --- DATA plaintext -----------------------------------------------------------------------


def gen_flags(r: Reader, mode: int | None = None) -> int:
    channel = SYSTEM_CHANNEL if r.below(2) else r.below(16)
    if channel == CHECK_CHANNEL:
        channel = 13
    m = r.below(4) if mode is None else mode
    flags = m | channel << CHANNEL_SHIFT
    if r.one_in(10):
        flags |= r.pick((FLAG_FRAGMENT, FLAG_CANCEL, FLAG_FRAGMENT | FLAG_CANCEL))
    return flags


def gen_item(r: Reader, token: bytes | None = None) -> Any:
    """One message item, usually well formed enough to reach the code behind the parser."""
    k = r.below(12)
    flags = gen_flags(r)
    system = flags >> CHANNEL_SHIFT == SYSTEM_CHANNEL
    value = gen_system(r, token) if system and r.below(4) else gen_value(r)
    seq = r.below(8) if r.below(3) else r.pick((0, 1, RELIABLE_WINDOW - 1, RELIABLE_WINDOW,
                                                 0x7FFF, 0x8000, 0xFFFF, 0x10000, -1))
    mid = r.below(100) if r.below(3) else r.pick((0, 2 ** 63 - 1, 2 ** 63, -1))
    if k <= 2:
        return [flags & ~0x0F | 0, value] if r.below(4) else [flags, value]
    if k <= 4:
        return [flags & ~0x0F | 1, seq, value]
    if k <= 7:
        return [flags & ~0x0F | r.pick((2, 3)), seq, mid, value]
    if k <= 9:
        count = r.pick((1, 2, 3, 955, 956, 0)) if r.below(3) else r.below(6) + 1
        index = r.below(count + 1) if count > 0 else r.pick((0, -1))
        chunk = r.take(r.pick((1, 50, FRAGMENT_SIZE, FRAGMENT_SIZE + 1, 0)))
        if r.one_in(3):
            chunk = enc(value)[:FRAGMENT_SIZE] or b"\xc0"
        f = flags & ~0x0F | r.pick((2, 3)) | FLAG_FRAGMENT
        return [f, seq, mid, index, count, chunk]
    if k == 10:
        count = r.below(6) + 1 if r.below(3) else r.pick((955, 956, 0))
        f = flags & ~0x0F | r.pick((2, 3)) | FLAG_CANCEL
        return [f, seq, mid, r.below(count + 1), count]
    return gen_value(r, 1)


def gen_plaintext(r: Reader, token: bytes | None = None) -> bytes:
    """The plaintext of a DATA datagram: acks, then an array of items."""
    ack = r.below(1 << 16) if r.one_in(3) else r.below(64)
    bits = int.from_bytes(r.take(4), "big") if r.below(2) else 0
    head = ACKS.pack(ack, bits)
    k = r.below(10)
    if k == 0:
        return head[: r.below(ACKS.size + 1)]
    if k == 1:
        return head + enc(gen_value(r))
    if k == 2:
        return head + r.rest(r.below(1100))
    items = [gen_item(r, token) for _ in range(1 + r.below(4) if r.below(6) else r.below(40))]
    for it in items:  # never on the health checks' channel, even by chance
        if (type(it) is list and it and type(it[0]) is int
                and it[0] >> CHANNEL_SHIFT == CHECK_CHANNEL):
            it[0] ^= 0x30
    body = enc(items)
    if r.one_in(12):
        body += r.take(r.below(8))  # extra bytes after the array
    if r.one_in(12):
        body = body[: r.below(len(body) + 1)]  # cut short
    return head + body[:MAX_DATAGRAM]


# --- sealed handshake-server bodies -------------------------------------------------------


def gen_candidates(r: Reader) -> Any:
    k = r.below(4)
    if k == 0:
        return [[r.pick(IPS), gen_int(r), r.below(4)] for _ in range(r.below(6))]
    if k == 1:
        return [["198.51.100.99", 41000, 0], ["192.168.9.9", 5000, 1],
                ["198.51.100.99", 41001, 2]]
    if k == 2:
        return gen_value(r, 2)
    return []


def gen_hs_body(r: Reader, kinds: Sequence[int], rid: int) -> bytes:
    """[hs_kind, req_id, *fields]: near the schema of its kind, or far from it."""
    kind = r.pick(kinds) if r.below(6) else gen_int(r)
    if r.one_in(5):
        rid = gen_int(r)
    fields: list[Any]
    if kind == HsKind.REGISTER:
        fields = [gen_name(r), gen_candidates(r), r.one_in(2), r.pick((10.0, 60, 0, 1e6, -1)),
                  gen_int(r), bytes(r.pick((0, 300)))]
    elif kind == HsKind.REFRESH or kind == HsKind.UNREGISTER:
        fields = [gen_name(r), r.take(16), b""]
    elif kind == HsKind.JOIN:
        fields = [gen_name(r), gen_name(r), gen_candidates(r), b""]
    elif kind == HsKind.LIST:
        fields = [r.pick(("", "a", "host", "zzz")) if r.below(3) else gen_name(r), b""]
    elif kind == HsKind.RELAY_REQUEST:
        fields = [gen_name(r), gen_name(r), b""]
    elif kind == HsKind.INTRODUCE:
        fields = [gen_name(r), gen_candidates(r), r.one_in(2), r.take(32),
                  r.pick((0, 0.001, 30.0, 999999.0, 1e6))]
    elif kind == HsKind.RELAY_READY:
        fields = [r.take(8), gen_name(r)]
    elif kind == HsKind.REGISTERED:
        fields = [r.take(16), r.pick(IPS), gen_int(r), r.pick((0, 10.0, 1e5))]
    elif kind == HsKind.LIST_REPLY:
        fields = [[[gen_name(r), r.one_in(2)] for _ in range(r.below(70))], r.one_in(2)]
    elif kind == HsKind.HS_ERROR:
        fields = [gen_int(r)]
    elif kind == HsKind.REFRESHED:
        fields = [r.pick((0, 3.0, 1e5, -1.0))]
    else:
        fields = [gen_value(r, 1) for _ in range(r.below(5))]
    if r.one_in(6) and fields:
        fields[r.below(len(fields))] = gen_value(r, 1)
    if r.one_in(10):
        fields = fields[: r.below(len(fields) + 1)]
    if r.one_in(12):
        return r.rest(r.below(600))
    return enc([kind, rid, *fields])


# --- mutating recorded datagrams ------------------------------------------------------------


def mutate(r: Reader, data: bytes, corpus: Sequence[bytes]) -> bytes:
    """Bit flips, byte changes, cuts, splices, insertions: a stranger's or spoofer's edits."""
    d = bytearray(data)
    for _ in range(r.pick((0, 1, 1, 2, 3, 8))):
        op = r.below(8)
        if op == 0 and d:
            d[r.below(len(d))] ^= 1 << r.below(8)
        elif op == 1 and d:
            d[r.below(len(d))] = r.pick((0, 0xFF, 0x7F, 0x80, 0xC0, 0xDC, r.byte()))
        elif op == 2 and d:
            del d[r.below(len(d)):]
        elif op == 3:
            i = r.below(len(d) + 1)
            d[i:i] = r.take(1 + r.below(16))
        elif op == 4 and corpus:
            other = r.pick(corpus)
            d += other[r.below(len(other) + 1):]
        elif op == 5 and len(d) > 4:
            i = 4 + r.below(len(d) - 4)
            del d[i:i + r.below(33)]
        elif op == 6 and len(d) > 3:
            d[3] = r.pick((1, 2, 3, 4, 5, 32, 33, 34, 35, 36, 37, 38, 39, 40, 0))
        else:
            i = r.below(len(d) + 1)
            d[i:i] = bytes([r.pick((0xDD, 0xDF, 0xC6, 0xDB, 0xC7))]) + bytes(4) + b"\xff"
    return bytes(d[:1400])
