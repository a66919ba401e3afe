"""The sealed channel between a peer and a handshake server, both ends.

The handshake server has a long-term X25519 key; its fingerprint is what players may pin. A peer
makes one ephemeral key per handshake server and seals every request to the server's
key (Noise NK's first message, ``e, es``): only that handshake server can read it, and
only it can seal the replies, so a spoofed introduction or relay offer is dropped. Before
any of that, a COOKIE round trip proves the peer receives at its address (return
routability) and tells it the handshake server's key; a pinned fingerprint makes the first
answer trustworthy, without one the first key seen is kept (trust on first use).

AEAD nonces: requests carry 12 random bytes; every reply gets 12 fresh random bytes, so
two replies never share a nonce under one key even when a request is replayed.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from .crypto import AEAD_NONCE_SIZE, Aead, CryptoError, KeyPair, RandomBytes, channel_keys
from .crypto import fingerprint as key_fingerprint
from .errors import ProtocolError
from .wire import (
    HsKind,
    decode_hs_body,
    encode_hs_body,
    sealed_reply_head,
    sealed_request_head,
    split_sealed_reply,
    split_sealed_request,
)


class KeyMismatch(Exception):
    """The handshake server's key is not the pinned one (or changed mid-session)."""


class ServerChannel:
    """A peer's end: one ephemeral key, the handshake server's key once known, its cookie."""

    def __init__(self, random_bytes: RandomBytes, pinned: str | None = None) -> None:
        self._random = random_bytes
        self._key = KeyPair.generate(random_bytes)
        self.pinned = pinned
        self.server_public: bytes | None = None
        self.cookie = b""
        self._request: Aead | None = None
        self._reply: Aead | None = None

    @property
    def share(self) -> bytes:
        return self._key.public

    @property
    def ready(self) -> bool:
        return self._request is not None and bool(self.cookie)

    def learn(self, cookie: bytes, server_public: bytes) -> None:
        """Take a COOKIE's contents. KeyMismatch when the key is not the one we trust."""
        if self.server_public is None:
            if self.pinned is not None and key_fingerprint(server_public) != self.pinned:
                raise KeyMismatch(f"the handshake server's key {key_fingerprint(server_public)}"
                                  f" is not the pinned {self.pinned}")
            try:
                shared = self._key.exchange(server_public)
            except CryptoError as exc:
                raise KeyMismatch("the handshake server sent an unusable key") from exc
            req, rep = channel_keys(shared, self._key.public, server_public)
            self._request, self._reply = Aead(req), Aead(rep)
            self.server_public = server_public
        elif server_public != self.server_public:
            raise KeyMismatch("the handshake server's key changed")
        self.cookie = cookie

    def seal(self, kind: HsKind, req_id: int, fields: list[Any], size: int) -> bytes:
        assert self._request is not None, "no key yet: ask for a cookie first"
        nonce = self._random(AEAD_NONCE_SIZE)
        head = sealed_request_head(req_id, self.cookie, self._key.public, nonce)
        body = encode_hs_body(kind, req_id, fields, size)
        return head + self._request.seal(nonce, body, head)

    def open(self, data: bytes) -> tuple[HsKind, int, list[Any]]:
        """Open a sealed reply; ProtocolError if it is not from this handshake server."""
        if self._reply is None:
            raise ProtocolError("sealed reply before we know the handshake server's key")
        nonce, head, ciphertext = split_sealed_reply(data)
        try:
            plaintext = self._reply.open(nonce, ciphertext, head)
        except CryptoError as exc:
            raise ProtocolError("sealed reply that this handshake server did not seal") from exc
        return decode_hs_body(plaintext)


class ServerKeys:
    """The handshake server's end: its static key, and the channel keys of peers it has heard from
    (an X25519 exchange costs ~40 µs; the least recently used are forgotten)."""

    def __init__(self, static: KeyPair, random_bytes: RandomBytes,
                 capacity: int = 65_536) -> None:
        self.static = static
        self.fingerprint = key_fingerprint(static.public)
        self._random = random_bytes
        self._capacity = capacity
        self._cache: OrderedDict[bytes, tuple[Aead, Aead]] = OrderedDict()

    def channel(self, share: bytes) -> tuple[Aead, Aead]:
        """(request, reply) ciphers of the peer whose ephemeral key is ``share``."""
        pair = self._cache.get(share)
        if pair is not None:
            self._cache.move_to_end(share)
            return pair
        try:
            shared = self.static.exchange(share)
        except CryptoError as exc:
            raise ProtocolError("unusable ephemeral key") from exc
        req, rep = channel_keys(shared, share, self.static.public)
        pair = (Aead(req), Aead(rep))
        self._cache[share] = pair
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
        return pair

    def decrypt_request(self, data: bytes) -> tuple[HsKind, int, list[Any], bytes]:
        """(kind, req_id, fields, share) of a sealed request; ProtocolError otherwise."""
        req_id, _cookie, share, nonce, head, ciphertext = split_sealed_request(data)
        request, _ = self.channel(share)
        try:
            plaintext = request.open(nonce, ciphertext, head)
        except CryptoError as exc:
            raise ProtocolError("sealed request that does not open") from exc
        kind, inner_id, fields = decode_hs_body(plaintext)
        if inner_id != req_id:
            raise ProtocolError("sealed request id does not match its header")
        return kind, req_id, fields, share

    def seal_reply(self, share: bytes, kind: HsKind, req_id: int, fields: list[Any]) -> bytes:
        """A reply (or an unsolicited message) to the peer whose channel is ``share``."""
        _, reply = self.channel(share)
        nonce = self._random(AEAD_NONCE_SIZE)
        head = sealed_reply_head(nonce)
        return head + reply.seal(nonce, encode_hs_body(kind, req_id, fields), head)
