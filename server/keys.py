"""The handshake server's long-term key, kept in a file across restarts.

Players may pin the key's fingerprint; a handshake server that made a new key at every start would
break every pin, so the key lives in a file, created on first start, readable by its
owner only (0600). The format is text, versioned, so that it can change later:

    pygame-p2p handshake-server key v1
    <64 hex digits: the X25519 private key>
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from framework.protocol.crypto import KEY_SIZE, KeyPair

HEADER = "pygame-p2p handshake-server key v1"

log = logging.getLogger("server")


class KeyFileError(Exception):
    """The key file exists but is not a key file of ours: refuse to start rather than
    silently making a new key (which would break every player's pinned fingerprint)."""


def default_path() -> Path:
    """``$XDG_STATE_HOME/pygame-p2p/handshake-server.key`` (~/.local/state by default)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "pygame-p2p" / "handshake-server.key"


def load(path: Path) -> KeyPair:
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        # Whoever reads it can impersonate the handshake server to every player who pinned it.
        log.warning("the key file %s can be read by other users: chmod 600 it", path)
    text = path.read_text(encoding="ascii", errors="replace")
    lines = text.splitlines()
    if len(lines) != 2 or lines[0].strip() != HEADER:
        raise KeyFileError(f"{path} is not a handshake-server key file (the first line "
                           f"must be {HEADER!r}, the second the key in hex)")
    try:
        private = bytes.fromhex(lines[1].strip())
    except ValueError:
        private = b""
    if len(private) != KEY_SIZE:
        raise KeyFileError(f"{path}: the key must be {2 * KEY_SIZE} hex digits")
    return KeyPair(private)


def save(path: Path, key: KeyPair) -> None:
    """Write ``key`` to a new file that only its owner can read (never overwrites)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(f"{HEADER}\n{key.private_bytes().hex()}\n")


def load_or_create(path: Path | str | None = None) -> KeyPair:
    """The key in ``path`` (default: :func:`default_path`), made there on first use."""
    path = Path(path) if path is not None else default_path()
    if path.exists():
        return load(path)
    key = KeyPair.generate(os.urandom)
    try:
        save(path, key)
    except FileExistsError:  # another process made it first: use that one
        return load(path)
    return key
