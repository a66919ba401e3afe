"""The engine's settings: the Godot Holepunch API's constants plus the simulator and the
limits. (The Godot Holepunch API is the original this engine is a Python form of.)"""

from __future__ import annotations

from dataclasses import dataclass

from .simulator import SimSettings


@dataclass
class Config:
    """Engine settings. The first five are the Godot Holepunch API's constants, with the
    same meaning."""

    #: Seconds between peer checks (heartbeats) to a quiet peer.
    secs_between_peer_checks: float = 15.0
    #: Seconds the handshake server keeps our registration without a refresh.
    secs_reg_valid: float = 60.0
    #: Seconds between registration refreshes sent to the handshake server.
    secs_between_reg_refresh: float = 15.0
    #: Longest wait for a reply before one attempt counts as failed and is resent.
    secs_to_await_reply: float = 1.0
    #: Failed attempts before a packet expires and its consequence happens.
    attempts_before_expiration: int = 5
    #: Emit PACKET_SENT / PACKET_RECEIVED for every datagram (floods the queue at 60 FPS).
    emit_packet_events: bool = False
    #: Post each event to pygame's queue as well as returning it from ``Peer.tick()``.
    #: A game that reads ``tick()``'s list sets this to False and sees every event once;
    #: one that reads ``pygame.event.get()`` keeps the default and ignores the list.
    post_events: bool = True
    #: Ask this machine's router for a port mapping (PCP, NAT-PMP or UPnP IGD) when a
    #: session starts, offer the mapped address to the other players, renew it, and
    #: remove it on close(). Off by default: it talks to your router and opens a port.
    port_mapping: bool = False
    #: A host registered with a handshake server also answers discovery and joins from
    #: its local network (players there find it with ``request_lan_server_list()``).
    #: Answers go only to private, link-local and loopback addresses and are never
    #: larger than what they answer; a game with a password keeps it on the LAN.
    lan_discovery: bool = True
    #: UDP port LAN hosts listen on for discovery queries (every host on a machine
    #: shares it); a LAN with several games to keep apart may use another.
    lan_port: int = 5161
    #: Where LAN list queries go: IPv4 broadcast addresses. None: the broadcast address
    #: of each of this machine's IPv4 interfaces on a local network, and 255.255.255.255.
    lan_broadcast: tuple[str, ...] | None = None

    # --- network simulator (all off by default) ---
    #: Fraction of outgoing datagrams dropped.
    sim_loss: float = 0.0
    #: Seconds of extra one-way delay on outgoing datagrams.
    sim_latency: float = 0.0
    #: Up to this many seconds of random extra delay.
    sim_jitter: float = 0.0
    #: Fraction of outgoing datagrams sent twice.
    sim_duplicate: float = 0.0
    #: Fraction of outgoing datagrams held back so that later ones overtake them.
    sim_reorder: float = 0.0
    #: Seed of the simulator's random generator.
    sim_seed: int = 0

    # --- limits ---
    #: Largest reliable message, in encoded bytes (1 MiB of data plus msgpack framing).
    max_message_size: int = (1 << 20) + 1024
    #: Fragment bytes one peer may have us buffer while reassembling.
    reassembly_limit_per_peer: int = 4 << 20
    #: Fragment bytes buffered across all peers.
    reassembly_limit_total: int = 32 << 20
    #: Clients a server player accepts at once.
    max_clients: int = 16
    #: Seconds a punch (and the handshake after it) may take before the peer is given up.
    #: None: attempts_before_expiration * secs_to_await_reply.
    punch_timeout: float | None = None
    #: Ask the handshake server to relay when hole punching finds no path in time.
    use_relay: bool = True
    #: Seconds of punching without a path before asking for the relay. None (and 0): at
    #: once, so a session starts on whichever of the relay and a punched path answers
    #: first, and a relayed session moves to the direct path when that opens.
    relay_after: float | None = None
    #: PACKET_BLOCKED events per second at most (all blocked datagrams are still counted).
    max_blocked_events_per_sec: int = 20

    def __post_init__(self) -> None:
        for name in ("secs_between_peer_checks", "secs_reg_valid", "secs_between_reg_refresh",
                     "secs_to_await_reply"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Config.{name} must be positive")
        if self.attempts_before_expiration < 1:
            raise ValueError("Config.attempts_before_expiration must be at least 1")
        if not 0 < self.lan_port < 65536:
            raise ValueError("Config.lan_port must be a port number (1-65535)")
        if self.max_clients < 1:
            raise ValueError("Config.max_clients must be at least 1")
        self.simulation  # noqa: B018 - validates the simulator fields

    @property
    def simulation(self) -> SimSettings:
        return SimSettings(loss=self.sim_loss, latency=self.sim_latency, jitter=self.sim_jitter,
                           duplicate=self.sim_duplicate, reorder=self.sim_reorder,
                           seed=self.sim_seed)

    @property
    def peer_timeout(self) -> float:
        """Silence after which a peer is given up: a peer check, then every attempt."""
        checks = self.attempts_before_expiration * self.secs_to_await_reply
        return self.secs_between_peer_checks + checks

    @property
    def relay_delay(self) -> float:
        return self.relay_after if self.relay_after is not None else 0.0

    @property
    def handshake_timeout(self) -> float:
        if self.punch_timeout is not None:
            return self.punch_timeout
        return self.attempts_before_expiration * self.secs_to_await_reply
