"""Bounds on what one connection and one user may hold in the bus, and what each user holds.

Owns: every bound a configuration's ``<limit>`` can change, as a named default
here and as one bus's effective value in :class:`Limits`; and
:class:`UserUsage`, the running sums over one uid's peers of what they hold in
the bus: queued outgoing bytes and fds, match rules, owned and queued names,
and calls awaiting a reply. The sums are derived state: the router keeps them
exact on every path (delivery, queue drain, match removal, name release and
transfer, reply, NoReply, disconnect) and rebuilds them after a re-exec; they
are never stored in a snapshot. Never touches a socket, a file or a clock, and
decides nothing itself: the router, the driver and the server compare usage
with the bounds.

Per-user bounds exist because each per-connection bound multiplies by the
connections a user may open (2048): one user's connections, each within
bounds, could otherwise hold hundreds of GiB of queued output or millions of
match rules. Each per-user bound is a small multiple of its per-connection
bound, so one connection reaching its own bound behaves exactly as before.
Root and the bus's own uid are exempt from the per-user bounds (their usage is
still counted), as they are from the per-user connection quotas: the quotas
protect users from each other, and root owns the bus anyway. The
per-connection bounds apply to everyone.
"""

from ..wire.limits import MAX_MESSAGE_SIZE, MAX_UNIX_FDS_PER_MESSAGE

# -- per connection (dbus-daemon's names for them in parentheses) ---------------------
# dbus-daemon's session bus allows 50000, its system bus 128 (max_replies_per_connection):
# 128 is too few for a busy system service's client, so bootbus sits between.
MAX_PENDING_REPLIES_PER_PEER = 8192
MAX_MATCH_RULES_PER_PEER = 4096  # dbus-daemon: 512 (system) .. 50000 (session)
MAX_NAMES_PER_PEER = 512  # max_names_per_connection, dbus-daemon's default
MAX_OUTGOING_BYTES_PER_PEER = 128 * 1024 * 1024  # max_outgoing_bytes (dbus-daemon: 127 MiB)
# fds held for one peer's unsent messages: four full messages' worth. Tiny messages
# carrying 253 fds each would otherwise exhaust the bus's fds long before the byte cap.
MAX_OUTGOING_FDS_PER_PEER = 4 * MAX_UNIX_FDS_PER_MESSAGE  # max_outgoing_unix_fds (64)

# -- per user (dbus-daemon has none of these; dbus-broker has per-user quotas) -----------
# Two connections' full output queues: one stuck reader is handled by the
# per-connection bound as before, and a user cannot hold more than 256 MiB of the
# bus's memory however many connections it opens (2048 x 128 MiB otherwise).
MAX_OUTGOING_BYTES_PER_USER = 2 * MAX_OUTGOING_BYTES_PER_PEER
# Two connections' worth of queued fds (2024): fds are the scarcest thing the bus
# holds (the daemon's RLIMIT_NOFILE counts them with every connection).
MAX_OUTGOING_FDS_PER_USER = 2 * MAX_OUTGOING_FDS_PER_PEER
# 16384 rules: dbus-broker's per-user default (max_matches), four connections at
# the per-connection bound; every broadcast is matched against the rules, so
# they cost every user time as well as memory (~1 KiB each).
MAX_MATCH_RULES_PER_USER = 4 * MAX_MATCH_RULES_PER_PEER
# Four connections at max_names_per_connection: services own a few names each.
MAX_NAMES_PER_USER = 4 * MAX_NAMES_PER_PEER
# Two connections at the per-connection bound: an expected reply is held until the
# callee answers or disconnects (bootbus has no reply timeout).
MAX_PENDING_REPLIES_PER_USER = 2 * MAX_PENDING_REPLIES_PER_PEER

# -- connections (the server's bounds) ---------------------------------------------------
AUTH_TIMEOUT = 30.0  # seconds (auth_timeout); dbus-daemon's system bus uses 30 s too
MAX_INCOMPLETE_CONNECTIONS = 1024  # all users together (dbus-daemon: 64, shared by all)
# Per user, so that one user's flood of never-authenticating connections cannot
# lock everyone else out, which dbus-daemon's single shared limit allows.
MAX_INCOMPLETE_PER_USER = 32
# max_connections_per_user (dbus-daemon: 256); 2048 is dbus-daemon's
# max_completed_connections, which bootbus does not bound separately.
MAX_CONNECTIONS_PER_USER = 2048

# -- bus activation (the io layer's activator) -------------------------------------------
ACTIVATION_TIMEOUT = 25.0  # seconds; dbus-daemon's service_start_timeout (25000 ms)
MAX_PENDING_ACTIVATIONS = 512  # dbus-daemon's max_pending_service_starts


class Limits:
    """One bus's effective bounds: the defaults above, or the configuration's ``<limit>``s.

    Replaced whole when the configuration is reloaded; what peers already hold
    is kept, new operations are checked against the new bounds.
    """

    __slots__ = ("max_outgoing_bytes", "max_outgoing_fds", "max_match_rules", "max_names",
                 "max_replies", "max_outgoing_bytes_per_user", "max_outgoing_fds_per_user",
                 "max_match_rules_per_user", "max_names_per_user", "max_replies_per_user",
                 "max_message_size", "max_message_fds", "auth_timeout",
                 "max_incomplete_connections", "max_incomplete_per_user",
                 "max_connections_per_user", "activation_timeout", "max_pending_activations")

    def __init__(self) -> None:
        self.max_outgoing_bytes = MAX_OUTGOING_BYTES_PER_PEER
        self.max_outgoing_fds = MAX_OUTGOING_FDS_PER_PEER
        self.max_match_rules = MAX_MATCH_RULES_PER_PEER
        self.max_names = MAX_NAMES_PER_PEER
        self.max_replies = MAX_PENDING_REPLIES_PER_PEER
        self.max_outgoing_bytes_per_user = MAX_OUTGOING_BYTES_PER_USER
        self.max_outgoing_fds_per_user = MAX_OUTGOING_FDS_PER_USER
        self.max_match_rules_per_user = MAX_MATCH_RULES_PER_USER
        self.max_names_per_user = MAX_NAMES_PER_USER
        self.max_replies_per_user = MAX_PENDING_REPLIES_PER_USER
        self.max_message_size = MAX_MESSAGE_SIZE
        self.max_message_fds = MAX_UNIX_FDS_PER_MESSAGE
        self.auth_timeout = AUTH_TIMEOUT
        self.max_incomplete_connections = MAX_INCOMPLETE_CONNECTIONS
        self.max_incomplete_per_user = MAX_INCOMPLETE_PER_USER
        self.max_connections_per_user = MAX_CONNECTIONS_PER_USER
        self.activation_timeout = ACTIVATION_TIMEOUT
        self.max_pending_activations = MAX_PENDING_ACTIVATIONS

    def as_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in self.__slots__}


class UserUsage:
    """What one uid's peers hold in the bus, summed over them (derived state)."""

    __slots__ = ("uid", "exempt", "peers", "out_bytes", "out_fds", "matches", "names",
                 "replies", "shed")

    def __init__(self, uid: int, exempt: bool) -> None:
        self.uid = uid
        self.exempt = exempt  # root or the bus's own uid: counted, never refused
        self.peers = 0  # connections, in any state
        self.out_bytes = 0  # bytes queued for its peers, not yet written
        self.out_fds = 0  # fds held for its peers' queued messages
        self.matches = 0  # match rules of its peers (not monitors' rules)
        self.names = 0  # well-known names its peers own or queue for
        self.replies = 0  # calls its peers made that await a reply
        self.shed: object = None  # the peer last disconnected for the user's output bound

    @classmethod
    def detached(cls) -> "UserUsage":
        """The usage of a peer no bus has attached yet (counts only for that peer)."""
        return cls(-1, True)

    def totals(self) -> tuple[int, int, int, int, int, int]:
        return (self.peers, self.out_bytes, self.out_fds, self.matches, self.names,
                self.replies)

    def __repr__(self) -> str:
        return (f"<UserUsage uid={self.uid} peers={self.peers} out={self.out_bytes}B/"
                f"{self.out_fds}fds matches={self.matches} names={self.names} "
                f"replies={self.replies}>")
