"""The handshake server's cache of peers' channel keys, compact.

``hschannel.ServerKeys`` caches two ChaCha20Poly1305 objects per peer key: about 4.8 kB
each (measured: OpenSSL cipher contexts), so its 65,536 entries could hold ~300 MB, and
anyone with a cookie can add entries. This keeps the two 32-byte keys instead (~0.3 kB an
entry) and builds the cipher objects when needed (~1.7 µs each, against ~65 µs for the
X25519 and HKDF a miss costs).
"""

from __future__ import annotations

from collections import OrderedDict

from framework.protocol.crypto import Aead, CryptoError, KeyPair, RandomBytes, channel_keys
from framework.protocol.errors import ProtocolError
from framework.protocol.hschannel import ServerKeys


class CompactServerKeys(ServerKeys):
    def __init__(self, static: KeyPair, random_bytes: RandomBytes,
                 capacity: int = 65_536) -> None:
        super().__init__(static, random_bytes, capacity)
        self._max = capacity
        self._keys: OrderedDict[bytes, tuple[bytes, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def channel(self, share: bytes) -> tuple[Aead, Aead]:
        keys = self._keys.get(share)
        if keys is not None:
            self._keys.move_to_end(share)
        else:
            try:
                shared = self.static.exchange(share)
            except CryptoError as exc:
                raise ProtocolError("unusable ephemeral key") from exc
            keys = self._keys[share] = channel_keys(shared, share, self.static.public)
            if len(self._keys) > self._max:
                self._keys.popitem(last=False)
        return Aead(keys[0]), Aead(keys[1])
