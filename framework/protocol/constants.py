"""Every protocol constant, in one place.

Numbers that come from measurements or standards say where they come from.
"""

from __future__ import annotations

#: Two bytes that open every datagram of this protocol ("P2" for pygame p2p).
PROTOCOL_ID = b"P2"
#: Bumped whenever the wire format changes incompatibly; peers of other versions are ignored.
PROTOCOL_VERSION = 2

#: No datagram is ever larger than this. 1200 bytes fits any path MTU seen on the
#: internet today without IP fragmentation (the same figure QUIC uses, RFC 9000 14.1).
MAX_DATAGRAM = 1200

#: Reserved peer name of the handshake server (the seed's _HS_SERVER_NAME).
HS_SERVER_NAME = "_HANDSHAKE_SERVER"

#: Default UDP port of the handshake server (the original's SERVER_PORT).
DEFAULT_HANDSHAKE_PORT = 5160

#: Longest peer / server name, in characters.
MAX_NAME_LENGTH = 32

#: Number of user channels (0 .. USER_CHANNELS-1); channel SYSTEM_CHANNEL carries engine traffic.
USER_CHANNELS = 15
SYSTEM_CHANNEL = 15

#: Messages of one reliable stream that may be unacknowledged at once. It also bounds
#: the receiver's buffer for that stream. Must stay below half the 16-bit sequence space.
RELIABLE_WINDOW = 1024

#: Size of a reliable message's piece when it is split into fragments.
FRAGMENT_SIZE = 1100


#: Lower bound of the retransmission timeout. RFC 6298 says 1 s for TCP; games on a
#: frame clock need much less, and 50 ms is still above a 60 FPS frame plus jitter.
MIN_RTO = 0.05

#: Nonces used in the challenge-response and in punching.
NONCE_SIZE = 16

#: Registration token length (secret shared by the handshake server and the registrant).
TOKEN_SIZE = 16

#: How many punch datagrams one burst sends to each candidate address, and how far apart
#: the bursts are. RakNet sends bursts too; several datagrams make one lost packet harmless.
PUNCH_BURST = 3
PUNCH_INTERVAL = 0.2

#: How many copies of a disconnect notice are sent (it is not retransmitted).
DISCONNECT_COPIES = 3

#: Servers in one page of the server list: keeps every list reply smaller than a datagram.
SERVER_LIST_PAGE = 24

#: A join token (the handshake server's introduction of two players), in bytes.
JOIN_TOKEN_SIZE = 32

#: Clients a server player may be connecting to at once (introduced, not yet confirmed),
#: and how many of them one network (IPv4 address, IPv6 /64) may hold.
MAX_PENDING_JOINS = 8
MAX_PENDING_PER_PREFIX = 2

#: Password guesses: each handshake with a password spends one token of its network's
#: bucket (refunded when the password is right), which holds GUESS_BURST and refills one
#: every GUESS_INTERVAL seconds. A player behind the same address as a guesser waits,
#: and is told to; never turned away.
GUESS_BURST = 4
GUESS_INTERVAL = 5.0

#: While a peer is reached through the relay, try the direct path again this often.
DIRECT_RETRY_INTERVAL = 5.0

#: Seconds the last datagrams of a peer that just left are ignored quietly.
DEPARTED_GRACE = 2.0

#: Pages of a server list a peer follows at most.
MAX_LIST_PAGES = 64
