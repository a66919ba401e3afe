"""State and helpers shared by the parts of the session state machine (session.py)."""

from __future__ import annotations

import logging
from typing import Any

from . import events as ev
from .channels import ReassemblyBudget
from .config import Config
from .connection import ConnectionConfig
from .delivery import Delivery
from .peers import (
    Address,
    Known,
    ListQuery,
    PeerState,
    RandomBytes,
    Remote,
    Role,
)
from .requests import RequestTracker
from .values import Encoder
from .wire import (
    Kind,
    encode_relay,
)

log = logging.getLogger(__name__)


class SessionState:
    """What every part of the session sees: the state, and the helpers to emit events,
    send datagrams and end the session. The parts are mixins of ``Session``."""

    def __init__(self, config: Config | None = None,
                 random_bytes: RandomBytes | None = None) -> None:
        self.config = config if config is not None else Config()
        if random_bytes is None:
            raise ValueError("Session needs a random_bytes source (os.urandom in production)")
        self._random = random_bytes
        self._out: list[tuple[bytes, Address]] = []
        self._events: list[ev.EngineEvent] = []
        self._tracker = RequestTracker(self._send, int.from_bytes(random_bytes(3), "big") + 1,
                                       self.config.secs_to_await_reply,
                                       self.config.attempts_before_expiration)
        self._lists: dict[int, ListQuery] = {}
        self._budget = ReassemblyBudget(self.config.reassembly_limit_total)
        cfg = self.config
        self._conn_config = ConnectionConfig(
            secs_to_await_reply=cfg.secs_to_await_reply,
            attempts_before_expiration=cfg.attempts_before_expiration,
            secs_between_peer_checks=cfg.secs_between_peer_checks,
            max_message_size=cfg.max_message_size,
            reassembly_limit_per_peer=cfg.reassembly_limit_per_peer,
        )
        self._next_message_id = 1
        self._encoder = Encoder()
        self._blocked_count = 0
        self._blocked_window = 0.0
        self._blocked_in_window = 0
        self._now = 0.0
        self._reset()

    def _reset(self) -> None:
        self.role = Role.NONE
        self._name: str | None = None
        self._server_name: str | None = None
        self._hs: Address | None = None
        self._hs_dropped = False
        self._lan: Address = ("", 0)
        self._key: bytes | None = None  # password key, when the session has a password
        self._password_required = False
        self._token: bytes | None = None
        self._public: Address | None = None
        self._registered = False
        self._next_refresh = 0.0
        self._join_req: int | None = None
        self._remotes: dict[str, Remote] = {}
        self._by_addr: dict[Address, Remote] = {}
        self._known: dict[str, Known] = {}
        # Addresses of peers that just left: their last datagrams (the extra copies of a
        # disconnect, data in flight) are ignored quietly for a moment, not reported.
        self._departed: dict[Address, float] = {}
        self._relay_remotes: dict[bytes, Remote] = {}
        self._relay_ids: dict[Address, bytes] = {}
        self._auth_penalty: dict[str, tuple[int, float]] = {}  # ip -> (failures, until)
        self._peer_names: list[str] = []
        self._connected = False
        self._seq_counters: dict[tuple[str, int], int] = {}
        self._latest_forwarded: dict[tuple[str, int], int] = {}
        self._forwarded: dict[int, object] = {}  # message_id -> message, to other clients
        self._tracker.drop(lambda q: q.kind is not Kind.LIST)

    def _emit(self, event: ev.EngineEvent) -> None:
        self._events.append(event)

    def _block(self, address: Address, now: float) -> None:
        self._blocked_count += 1
        if now - self._blocked_window >= 1.0:
            self._blocked_window = now
            self._blocked_in_window = 0
        if self._blocked_in_window < self.config.max_blocked_events_per_sec:
            self._blocked_in_window += 1
            self._emit(ev.PacketBlocked(address))

    def _send(self, data: bytes, address: Address) -> None:
        relay_id = self._relay_ids.get(address)
        if relay_id is not None and self._hs is not None:
            self._out.append((encode_relay(relay_id, data), self._hs))
        else:
            self._out.append((data, address))

    def _error(self, message: str) -> None:
        log.info("error: %s", message)
        self._emit(ev.Error(message))

    def _terminate(self, reason: str) -> None:
        if self.role is Role.NONE:
            return
        log.info("session ended: %s", reason)
        for remote in self._remotes.values():
            if remote.connection is not None:
                remote.connection.close()
        self._reset()
        self._emit(ev.SessionTerminated(reason))

    def _recently_departed(self, address: Address, now: float) -> bool:
        until = self._departed.get(address)
        if until is None:
            return False
        if until < now:
            del self._departed[address]
            return False
        return True

    def _any_connected(self) -> bool:
        return any(r.state is PeerState.CONNECTED for r in self._remotes.values())

    @staticmethod
    def _packet_data(sender: str, to: str, message: object, message_id: int | None,
                     channel: int | None = None, delivery: Delivery | None = None
                     ) -> dict[str, Any]:
        data: dict[str, Any] = {"from": sender, "to": to, "message": message}
        if message_id is not None:
            data["message_id"] = message_id
        if channel is not None:
            data["channel"] = channel
        if delivery is not None:
            data["delivery"] = delivery
        return data

    # --- implemented by the other parts ----------------------------------------------

    def _on_data(self, data: bytes, address: Address, now: float) -> None:
        raise NotImplementedError

    def _on_introduce(self, fields: list[Any], now: float) -> None:
        raise NotImplementedError

    def _on_relay_ready(self, fields: list[Any], now: float) -> None:
        raise NotImplementedError

    def _peers_changed(self) -> None:
        raise NotImplementedError

    def _punch(self, remote: Remote, now: float, burst: int = 1) -> None:
        raise NotImplementedError

    def _remove(self, remote: Remote, quiet: bool = False) -> None:
        raise NotImplementedError

    def _request(self, kind: Kind, fields: list[Any], address: Address, now: float) -> int:
        raise NotImplementedError

    def _switch_path(self, remote: Remote, address: Address) -> None:
        raise NotImplementedError
