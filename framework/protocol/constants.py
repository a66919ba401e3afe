"""Every protocol constant, in one place.

Numbers that come from measurements or standards say where they come from.
"""

from __future__ import annotations

from typing import Final

#: Two bytes that open every datagram of this protocol ("P2" for pygame p2p).
PROTOCOL_ID: Final = b"P2"
#: Bumped whenever the wire format changes incompatibly; peers of other versions are ignored.
PROTOCOL_VERSION: Final = 2

#: No datagram is ever larger than this. 1200 bytes fits any path MTU seen on the
#: internet today without IP fragmentation (the same figure QUIC uses, RFC 9000 14.1).
MAX_DATAGRAM: Final = 1200

#: Reserved peer name of the handshake server (the Godot Holepunch API's _HS_SERVER_NAME).
HS_SERVER_NAME: Final = "_HANDSHAKE_SERVER"

#: Default UDP port of the handshake server (the original's SERVER_PORT).
DEFAULT_HANDSHAKE_PORT: Final = 5160

#: Longest player or game name, in characters.
MAX_NAME_LENGTH: Final = 32

#: Number of user channels (0 .. USER_CHANNELS-1); channel SYSTEM_CHANNEL carries engine traffic.
USER_CHANNELS: Final = 15
SYSTEM_CHANNEL: Final = 15

#: Messages of one reliable stream that may be unacknowledged at once. It also bounds
#: the receiver's buffer for that stream. Must stay below half the 16-bit sequence space.
RELIABLE_WINDOW: Final = 1024

#: Size of a reliable message's piece when it is split into fragments.
FRAGMENT_SIZE: Final = 1100


#: Lower bound of the retransmission timeout. RFC 6298 says 1 s for TCP; games on a
#: frame clock need much less, and 50 ms is still above a 60 FPS frame plus jitter.
MIN_RTO: Final = 0.05

#: Wait for the first answer of an exchange whose round trip is not measured yet (a cookie
#: request, a HELLO through the relay), doubled on each retry: about QUIC's initial RTT
#: (333 ms, RFC 9002 6.2.2). A lost first datagram costs this, not a second; a path
#: slower than this gets a few small extra datagrams.
INITIAL_TIMEOUT: Final = 0.3

#: Registration token length (secret shared by the handshake server and the registrant).
TOKEN_SIZE: Final = 16

#: How many punch datagrams one burst sends to each candidate address, and how far apart
#: the bursts are. RakNet sends bursts too; several datagrams make one lost packet harmless.
PUNCH_BURST: Final = 3
PUNCH_INTERVAL: Final = 0.2

#: How many copies of a disconnect notice are sent (it is not retransmitted).
DISCONNECT_COPIES: Final = 3

#: A join token (the handshake server's introduction of two players), in bytes.
JOIN_TOKEN_SIZE: Final = 32

#: Clients a server player may be connecting to at once (introduced, not yet confirmed),
#: and how many of them one network (IPv4 address, IPv6 /64) may hold.
MAX_PENDING_JOINS: Final = 8
MAX_PENDING_PER_PREFIX: Final = 2

#: Password guesses: each handshake with a password spends one token of its network's
#: bucket (refunded when the password is right), which holds GUESS_BURST and refills one
#: every GUESS_INTERVAL seconds. A player behind the same address as a guesser waits,
#: and is told to; never turned away.
GUESS_BURST: Final = 4
GUESS_INTERVAL: Final = 5.0
#: Networks whose guesses are tracked at once (the least recently seen are forgotten).
GUESS_NETWORKS: Final = 4096

#: While a peer is reached through the relay, try the direct path again this often.
DIRECT_RETRY_INTERVAL: Final = 5.0

#: Seconds the last datagrams of a peer that just left are ignored quietly, and how many
#: such paths are remembered at most (more at once means a flood: forget them all).
DEPARTED_GRACE: Final = 2.0
MAX_DEPARTED: Final = 256

#: Pages of the handshake server's game list a peer follows at most.
MAX_LIST_PAGES: Final = 64

#: Candidate addresses of one player in an introduction: its public address, LAN and
#: mapped ones. Four keeps the largest introduction smaller than the padded request.
MAX_CANDIDATES: Final = 4

#: Games in one page of the handshake server's list at most (the page is also bounded in bytes).
MAX_LIST_ENTRIES: Final = 64

#: Size of a relay's id, which a RELAY datagram carries in clear before the peer datagram.
RELAY_ID_SIZE: Final = 8

#: Size of each end's key of a relay on a relay node (it authenticates RELAY_BIND).
RELAY_KEY_SIZE: Final = 16
#: Seconds between RELAY_BINDs to a relay node until one is acknowledged, then between
#: renewals (a NAT that rebinds our port is followed at the latest after this).
RELAY_BIND_INTERVAL: Final = 0.25
RELAY_REBIND_INTERVAL: Final = 10.0
#: A session on a relay node that heard nothing from its peer for this long asks the
#: handshake server where the relay is now (RELAY_MOVE), at most once per
#: RELAY_MOVE_INTERVAL: a relay node that died is replaced within a few seconds.
RELAY_SILENCE: Final = 1.0
RELAY_MOVE_INTERVAL: Final = 2.0

#: Size of a punch nonce: enough that a guessed PUNCH_ACK never matches one of ours.
PUNCH_NONCE_SIZE: Final = 8

#: Size of a path challenge's token (RFC 9000 uses 8 bytes for PATH_CHALLENGE data too).
PATH_TOKEN_SIZE: Final = 8

# --- one connection: acks, loss recovery, congestion (recovery.py, acks.py, builder.py) ---

#: Sent packets remembered for their acks, and received packet numbers remembered for
#: duplicates and extra acks: a ring of this many (also the reliable window's size, so a
#: packet whose slot is reused is long settled).
SENT_BUFFER: Final = 1024

#: A datagram that carried only unreliable messages is acknowledged within this time,
#: riding on our own traffic if there is any; reliable messages and pings are
#: acknowledged at the next poll. Lone acks for a stream of inputs would otherwise double
#: the datagrams a game sends.
ACK_DELAY: Final = 0.1

#: How often an active connection asks for a prompt ack, to keep the round-trip time fresh
#: when no reliable traffic flows.
RTT_PROBE_INTERVAL: Final = 1.0

#: A message still unacknowledged this long after it last went out rides again in the
#: spare room of the next datagram (two frames at 60 FPS).
REDUNDANCY_GAP: Final = 0.03
#: Copies looked at per stream when filling spare room, and the least room worth filling
#: (a copy of a small reliable message is about this size): bounds the work per datagram.
REDUNDANCY_SCAN: Final = 32
REDUNDANCY_MIN_ROOM: Final = 24

#: A packet is lost once this many later packets have been acknowledged (RFC 9002 6.1.1).
PACKET_THRESHOLD: Final = 3

#: Packets whose fate the loss figure covers.
LOSS_WINDOW: Final = 256

#: Congestion window in packets carrying reliable messages: where it starts, the most and
#: the least it may be. It grows by one per acknowledged packet up to CWND_SLOW_GROWTH (as
#: slow start does), slowly after that, and halves on a loss (RFC 5681's reaction).
INITIAL_CWND: Final = 64
MAX_CWND: Final = 1024
MIN_CWND: Final = 8
CWND_SLOW_GROWTH: Final = 256

#: Bytes below ITEM_ROOM that a packet of new reliable messages is reckoned to carry
#: when the congestion window is turned into bytes (items rarely fill a datagram exactly).
CWND_PACKET_SLACK: Final = 64

#: Doublings of the retransmission timeout at most (RFC 6298 5.5 backs off without a
#: bound; 2**16 times the RTO is far past secs_to_await_reply, which caps it anyway).
MAX_BACKOFF: Final = 16

# --- a session's parts ------------------------------------------------------------------

#: Punch nonces remembered per remote (to recognise the answers to our own punches): a
#: burst to each of four candidates every PUNCH_INTERVAL for a few seconds fits.
MAX_PUNCHES: Final = 64

#: Unvalidated addresses tracked per peer at once (RFC 9000 9.3 leaves the number to the
#: endpoint; a NAT rebinding needs one, a flood of spoofed ones must not grow memory).
MAX_PROBED: Final = 4

#: Messages sent to other clients remembered for a failure notice (the newest ones).
FORWARD_MEMORY: Final = 1024

#: Longest leaving reason passed on to the game.
MAX_REASON: Final = 200

#: A request whose handshake server keeps answering with a new cookie gives up asking
#: after this many cookies.
MAX_COOKIE_TRIES: Final = 3

#: Packet numbers remembered behind the highest one received (RFC 6479's window; 1024
#: covers a whole reliable window of datagrams arriving out of order).
REPLAY_WINDOW: Final = 1024

#: Seconds between two log lines about internal errors (a flood of them is one line);
#: every one is counted. For a session and for the handshake server alike.
INTERNAL_ERROR_LOG_INTERVAL: Final = 1.0

# --- the peer's socket (framework/peer.py) ------------------------------------------------

#: Upper bound of datagrams read in one tick, so a flood cannot freeze a frame.
MAX_READS_PER_TICK: Final = 4096
#: Receive buffer we ask the kernel for: a burst of a few hundred full datagrams.
SOCKET_BUFFER: Final = 1 << 20

# --- the handshake server's loop (server/server.py) ---------------------------------------

#: Datagrams handled before the loop looks at the clock again, and at most per wake-up
#: (so that expiry and stop() still run under a flood).
SERVER_BATCH: Final = 256
SERVER_MAX_PER_WAKEUP: Final = 8192
#: Seconds between two sweeps of expired registrations, introductions and relays.
SERVER_EXPIRY_INTERVAL: Final = 1.0
#: Seconds between two log lines of the counters (the per-request lines are DEBUG).
SERVER_STATS_INTERVAL: Final = 300.0
