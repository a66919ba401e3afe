"""Keys and proofs. Passwords never leave the machine; only HMACs over fresh nonces do."""

from __future__ import annotations

import hashlib
import hmac

#: scrypt cost (RFC 7914): 2**14 x 8 takes tens of milliseconds and 16 MiB once per
#: session start, which makes each offline guess of a captured exchange cost the same.
SCRYPT_N = 1 << 14
SCRYPT_R = 8
SCRYPT_P = 1


def password_key(password: str, server_name: str) -> bytes:
    """Derive the session password key; the server name salts it (no shared tables)."""
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=b"pygame-p2p/v1/" + server_name.encode("utf-8"),
        n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32,
        maxmem=64 << 20,
    )


def introduction_key(intro_nonce: bytes) -> bytes:
    """Key of a session without a password: the secret the handshake server gave both."""
    return hashlib.blake2b(intro_nonce, digest_size=32, person=b"p2p-intro-key").digest()


def proof(key: bytes, label: bytes, *parts: bytes) -> bytes:
    """HMAC-SHA256 over length-prefixed parts, so no two inputs share an encoding."""
    mac = hmac.new(key, label, hashlib.sha256)
    for part in parts:
        mac.update(len(part).to_bytes(2, "big"))
        mac.update(part)
    return mac.digest()


def intro_mac(intro_nonce: bytes, label: bytes, *parts: bytes) -> bytes:
    """A 16-byte MAC under the introduction secret, which only the two introduced peers
    (and the handshake server) know: it authenticates the handshake's unproven packets."""
    return proof(introduction_key(intro_nonce), label, *parts)[:16]


def punch_id(intro_nonce: bytes) -> bytes:
    """An 8-byte value both introduced peers can compute and strangers cannot."""
    return hashlib.blake2b(intro_nonce, digest_size=8, person=b"p2p-punch").digest()


def verify(expected: bytes, given: bytes) -> bool:
    return hmac.compare_digest(expected, given)
