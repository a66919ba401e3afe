"""Cryptographic primitives, all from proven libraries, in one place.

- X25519 key agreement and ChaCha20-Poly1305 AEAD from ``cryptography`` (pyca), with
  HKDF-SHA256 (RFC 5869) for every key derivation, as in WireGuard and Noise.
- SPAKE2 (the ``spake2`` package, which magic-wormhole uses) for passwords: a run tests
  one guess, and nothing it leaves on the wire lets anyone test another offline.
- Keyed BLAKE2b for short MACs and cookies.

Nothing here reads a clock or the operating system's randomness: callers pass a
``random_bytes`` function (``os.urandom`` in production, a seeded one in tests).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from spake2 import SPAKE2_A, SPAKE2_B
from spake2.ed25519_basic import NotOnCurve
from spake2.spake2 import SPAKEError

RandomBytes = Callable[[int], bytes]

KEY_SIZE: Final = 32
PUBLIC_KEY_SIZE: Final = 32
AEAD_TAG_SIZE: Final = 16
AEAD_NONCE_SIZE: Final = 12
MAC_SIZE: Final = 16
#: SPAKE2 messages on the Ed25519 group: one side byte and a 32-byte element.
PAKE_MESSAGE_SIZE: Final = 33

_NONCE: Final = struct.Struct("!4xQ")  # 96-bit AEAD nonce from a 64-bit counter (as WireGuard)


class CryptoError(Exception):
    """A check failed: bad tag, bad key share, wrong confirmation. The remote's fault."""


def lp(*parts: bytes) -> bytes:
    """Length-prefixed concatenation, so that no two lists of parts share an encoding."""
    return b"".join(len(p).to_bytes(2, "big") + p for p in parts)


def mac(key: bytes, label: bytes, *parts: bytes) -> bytes:
    """A 16-byte keyed BLAKE2b MAC over a label and length-prefixed parts."""
    return hashlib.blake2b(label + lp(*parts), key=key, digest_size=MAC_SIZE).digest()


def verify(expected: bytes, given: bytes) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(expected, given)


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = KEY_SIZE) -> bytes:
    return HKDF(algorithm=SHA256(), length=length, salt=salt, info=info).derive(ikm)


def hash_parts(label: bytes, *parts: bytes) -> bytes:
    """SHA-256 over a label and length-prefixed parts (a transcript hash)."""
    return hashlib.sha256(label + lp(*parts)).digest()


# --- X25519 -------------------------------------------------------------------------


class KeyPair:
    """An X25519 key pair (ephemeral for sessions, long-term for the handshake server)."""

    __slots__ = ("_private", "public")

    def __init__(self, private: bytes) -> None:
        if len(private) != KEY_SIZE:
            raise ValueError("an X25519 private key is 32 bytes")
        self._private = X25519PrivateKey.from_private_bytes(private)
        self.public = self._private.public_key().public_bytes_raw()

    @classmethod
    def generate(cls, random_bytes: RandomBytes) -> KeyPair:
        return cls(random_bytes(KEY_SIZE))

    def private_bytes(self) -> bytes:
        return self._private.private_bytes_raw()

    def exchange(self, peer_public: bytes) -> bytes:
        """The shared secret with ``peer_public``; CryptoError for a bad or weak share."""
        if type(peer_public) is not bytes or len(peer_public) != PUBLIC_KEY_SIZE:
            raise CryptoError("a public key is 32 bytes")
        try:
            shared = self._private.exchange(X25519PublicKey.from_public_bytes(peer_public))
        except ValueError as exc:  # an all-zero result: a low-order point (RFC 7748 6.1)
            raise CryptoError("weak public key") from exc
        return shared


def fingerprint(public: bytes) -> str:
    """A key's fingerprint as people read it: 128 bits of SHA-256, in groups of four."""
    digest = hashlib.sha256(b"pygame-p2p key\x00" + public).hexdigest()[:32]
    return "-".join(digest[i:i + 4] for i in range(0, 32, 4))


def normalize_fingerprint(text: str) -> str:
    """Accept a fingerprint with or without dashes, in any case; ValueError if malformed."""
    bare = text.strip().lower().replace("-", "").replace(":", "")
    if len(bare) != 32 or any(c not in "0123456789abcdef" for c in bare):
        raise ValueError(f"not a key fingerprint: {text!r} (32 hex digits expected)")
    return "-".join(bare[i:i + 4] for i in range(0, 32, 4))


# --- AEAD ---------------------------------------------------------------------------


class Aead:
    """ChaCha20-Poly1305 under one key. Nonces are 64-bit counters or 12 random bytes."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)

    def seal(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        return self._aead.encrypt(nonce, plaintext, aad)

    def open(self, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        try:
            return self._aead.decrypt(nonce, ciphertext, aad)
        except InvalidTag as exc:
            raise CryptoError("bad authentication tag") from exc

    def seal_counter(self, counter: int, plaintext: bytes, aad: bytes) -> bytes:
        return self._aead.encrypt(_NONCE.pack(counter), plaintext, aad)

    def open_counter(self, counter: int, ciphertext: bytes, aad: bytes) -> bytes:
        try:
            return self._aead.decrypt(_NONCE.pack(counter), ciphertext, aad)
        except InvalidTag as exc:
            raise CryptoError("bad authentication tag") from exc


# --- the peer handshake's key schedule ------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """What a finished handshake gives both sides."""

    client_to_server: bytes
    server_to_client: bytes
    #: Key confirmation: the server player's and the client's.
    server_confirm: bytes
    client_confirm: bytes


def handshake_transcript(client: str, server: str, token: bytes, client_share: bytes,
                         client_pake: bytes, server_share: bytes, server_pake: bytes
                         ) -> bytes:
    """Hash of everything both sides said: a changed byte gives other keys."""
    return hash_parts(b"pygame-p2p v2 handshake", client.encode(), server.encode(), token,
                      client_share, client_pake, server_share, server_pake)


def session_keys(dh: bytes, pake_key: bytes, token: bytes, transcript: bytes) -> SessionKeys:
    """HKDF over the ephemeral Diffie-Hellman result, the PAKE's key (empty without a
    password) and the join token, salted with the transcript (Noise's chaining idea)."""
    okm = hkdf(lp(dh, pake_key, token), salt=transcript, info=b"p2p session keys", length=128)
    c2s, s2c, sc, cc = okm[:32], okm[32:64], okm[64:96], okm[96:]
    return SessionKeys(c2s, s2c, mac(sc, b"server confirm", transcript),
                       mac(cc, b"client confirm", transcript))


class Pake:
    """One side of a SPAKE2 run. The identities bind it to this game and these names."""

    __slots__ = ("_side", "message")

    def __init__(self, password: str, client: str, server: str, is_client: bool,
                 random_bytes: RandomBytes) -> None:
        pw = hash_parts(b"pygame-p2p v2 password", password.encode())
        ida, idb = client.encode(), b"server:" + server.encode()
        side = SPAKE2_A if is_client else SPAKE2_B
        self._side = side(pw, idA=ida, idB=idb, entropy_f=random_bytes)
        self.message: bytes = self._side.start()

    def finish(self, peer_message: bytes) -> bytes:
        """The shared key; CryptoError if the other side's message is malformed."""
        if type(peer_message) is not bytes or len(peer_message) != PAKE_MESSAGE_SIZE:
            raise CryptoError("a SPAKE2 message is 33 bytes")
        try:
            key: bytes = self._side.finish(peer_message)
        except (SPAKEError, NotOnCurve, ValueError, TypeError, AssertionError) as exc:
            raise CryptoError(f"bad SPAKE2 message: {type(exc).__name__}") from exc
        return key


# --- the handshake server's channel -------------------------------------------------


def channel_keys(shared: bytes, peer_share: bytes, server_public: bytes) -> tuple[bytes, bytes]:
    """Keys of one peer's channel to the handshake server (Noise NK's first message:
    the peer's ephemeral share against the handshake server's static key): requests, replies."""
    okm = hkdf(shared, salt=hash_parts(b"pygame-p2p v2 channel", peer_share, server_public),
               info=b"p2p channel keys", length=64)
    return okm[:32], okm[32:]
