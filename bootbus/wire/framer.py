"""The incremental framer: bytes and fds in, parsed messages out.

Owns: cutting a byte stream into frames, the 128 MiB bound or a lower
configured one (checked from the first 16 bytes, before anything is buffered
beyond them), validating each header and body, handing each message the fds
its UNIX_FDS field announces, and header prediction: once a peer's reads have
held one frame of the same header twice in a row, a read that repeats it is
recognised without a parse (``repeated``, see message.Repeat). Its buffer and
fd queue are plain data so a snapshot can carry a half-read message across
re-exec; the prediction is a cache, rebuilt after one. Never reads a socket
and never closes an fd: fds it rejects are returned to the caller.
"""

from .errors import FramingError, MarshalError, SignatureError
from .limits import FIXED_HEADER_SIZE, MAX_MESSAGE_SIZE, MAX_UNIX_FDS_PER_MESSAGE
from .marshal import check_simple_body
from .message import Message, Repeat, next_frame

MAX_QUEUED_FDS = 4 * MAX_UNIX_FDS_PER_MESSAGE  # fds received ahead of the message that uses them
# The longest header (fixed part, fields, padding) a framer keeps a copy of to predict
# the next one: ordinary headers take 100-400 bytes; a peer's odd huge one is not
# worth holding per connection.
MAX_PREDICTED_HEADER = 1024


class Framer:
    """Accumulates input; :meth:`feed` returns every message completed by it.

    After a protocol violation ``error`` is set and the framer refuses input;
    the messages completed before the violation are still returned.
    """

    __slots__ = ("buf", "fds", "error", "max_size", "max_fds", "repeat", "alone")

    def __init__(self, buf: bytes = b"", fds: list[int] | None = None) -> None:
        self.buf = bytearray(buf)
        self.fds: list[int] = list(fds or ())  # a list: a deque costs 600 bytes per peer
        self.error: FramingError | None = None
        # a configuration may lower these (max_message_size, max_message_unix_fds)
        self.max_size = MAX_MESSAGE_SIZE
        self.max_fds = MAX_UNIX_FDS_PER_MESSAGE
        # the header the next read is expected to repeat: the last one that came alone in
        # two reads in a row (a cache, not state: a snapshot drops it, and it is learnt
        # again), and the header (its cache entry) of the last frame that came alone
        self.repeat: Repeat | None = None
        self.alone: object = None

    def feed(self, data: bytes, fds: list[int] | tuple[int, ...] = ()) -> list[Message]:
        if self.error is not None:
            raise self.error
        if fds:
            self.fds.extend(fds)
        buf = self.buf
        if not buf and len(data) >= FIXED_HEADER_SIZE:
            view: bytes | bytearray = data  # common case: frame straight from the read buffer
        else:
            buf += data
            view = buf
        messages: list[Message] = []
        pos = 0
        available = len(view)
        try:
            if len(self.fds) > MAX_QUEUED_FDS:
                raise FramingError(f"more than {MAX_QUEUED_FDS} fds queued without a message")
            while available - pos >= FIXED_HEADER_SIZE:
                msg = next_frame(view, pos, self.max_size)
                if msg is None:
                    break
                pos += len(msg.raw)
                # The whole body must be valid: libdbus drops its own connection when a
                # bus hands it an invalid message, so one bad sender would cut off its
                # receivers. Bodies of ``ay`` or ``s`` are checked without building
                # their value (most traffic, forwarded untouched); other parsed values
                # stay cached on the message for the driver and match rules.
                if msg.signature and not check_simple_body(msg.signature, msg.raw,
                                                           msg.endian, msg.body_offset):
                    msg.args()
                if msg.unix_fds:
                    self._attach_fds(msg)
                elif (pos == available and len(msg.raw) == pos  # it came alone
                      and msg.body_offset <= MAX_PREDICTED_HEADER):
                    if msg.fields is self.alone:  # twice in a row: expect it again
                        self.repeat = Repeat(msg)  # (not before: a peer that alternates
                    self.alone = msg.fields  # headers would pay for a Repeat per frame)
                messages.append(msg)
        except (MarshalError, SignatureError) as exc:  # only the body's checks raise these
            self.error = FramingError(f"invalid message body: {exc}")
            pos = available
        except FramingError as exc:
            self.error = exc
            pos = available
        if view is buf:
            del buf[:pos]
        elif pos < available:
            buf += data[pos:]
        return messages

    def repeated(self, data: bytes) -> Message | None:
        """The message in ``data`` if it is one whole valid frame that repeats the
        header expected (see Repeat); else None, and ``data`` is for feed()."""
        repeat = self.repeat
        if repeat is None or self.buf or len(data) < FIXED_HEADER_SIZE or self.error:
            return None
        msg = repeat.match(data, self.max_size)  # (a repeated header announces no fds)
        if msg is not None:
            self.alone = msg.fields  # it came alone too, as feed() would have noted
        return msg

    def _attach_fds(self, msg: Message) -> None:
        count = msg.unix_fds
        if count > self.max_fds:
            raise FramingError(f"message announces {count} fds, more than {self.max_fds}")
        if count > len(self.fds):
            raise FramingError(f"message announces {count} fds but {len(self.fds)} arrived")
        msg.fds = self.fds[:count]
        del self.fds[:count]

    def take_fds(self) -> list[int]:
        """Remove and return the fds not attached to any message (to close them)."""
        fds = list(self.fds)
        self.fds.clear()
        return fds

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held in the buffer."""
        return len(self.buf)
