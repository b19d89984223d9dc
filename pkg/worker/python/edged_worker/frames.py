"""The frame format between edged and this worker (pkg/wire on edged's
side, whose numbers these are; a test holds the two to each other).

Every frame:  <u8 version><u8 type><u16 flags><u32 length> payload
edged sends:  REQUEST, then the body as BODY frames
the worker:   HEAD, BODY..., END (empty, or with what it measured);
              ABORT when the app failed after the head; EXPIRED instead
              of a head when the request waited past its deadline
A REQUEST's payload: <u64 deadline><u64 body length><u16 TLS version>
<u16 cipher suite><u32 0>, then REQUEST_FIELDS and the header list
(name, value, ...) as NUL-separated latin-1 strings.
Hang-up: edged shuts down its side of a request whose client went away:
a worker that finds it so once it has read the request closes the
connection without running the app.
"""

import struct

VERSION = 2

REQUEST = 1
BODY = 2
HEAD = 3
END = 4
ABORT = 5
EXPIRED = 6
# edged → worker, after a whole request: its client went away before a
# worker took it; a worker that reads it with the request does not run it.
GONE = 10
# A long-lived exchange (a WebSocket): a REQUEST with FLAG_SESSION opens
# it; the worker answers ACCEPT ("WORKER\0SUBPROTOCOL\0Name\0Value...")
# or refuses with an HTTP answer; then MESSAGE (FLAG_TEXT: text, else
# binary) and CLOSE (<u16 code> reason) both ways.
ACCEPT = 7
MESSAGE = 8
CLOSE = 9
FLAG_SESSION = 1
FLAG_TEXT = 1
CLOSE_CODE = struct.Struct("<H")

HEADER = struct.Struct("<BBHI")
HEADER_LEN = HEADER.size
REQUEST_FIXED = struct.Struct("<QQHHI")
MAX_HEAD = 1 << 20
MAX_CHUNK = 1 << 30
# The end frame with what the worker measured: when it took the request
# (Unix ns), the app's wall and CPU time (ns; CPU -1 where one thread runs
# every greenlet), the process's pid and RSS (KiB).
MEASURED = struct.Struct("<BBHIqqqII")
STATS_LEN = MEASURED.size - HEADER_LEN

# Up to this size a body is read whole before the app starts: edged's
# pkg/upstream counts on it (FullBodyAt) to tell whether the app can have
# seen a request whose connection broke.
MEMORY_BODY = 1 << 20

REQUEST_FIELDS = (
    "method", "scheme", "protocol", "target", "path", "query", "root",
    "server_name", "server_port", "client_addr", "client_port", "request_id",
)
N_FIELDS = len(REQUEST_FIELDS)
(F_METHOD, F_SCHEME, F_PROTOCOL, F_TARGET, F_PATH, F_QUERY, F_ROOT,
 F_SERVER_NAME, F_SERVER_PORT, F_CLIENT_ADDR, F_CLIENT_PORT, F_REQUEST_ID) = range(N_FIELDS)

_pack = HEADER.pack


def header(kind, n, flags=0):
    return _pack(VERSION, kind, flags, n)


def chunk_header(n):
    return _pack(VERSION, BODY, 0, n)


GONE_FRAME = header(GONE, 0)
END_FRAME = header(END, 0)
ABORT_FRAME = header(ABORT, 0)
EXPIRED_FRAME = header(EXPIRED, 0)


def message(data, text):
    """A MESSAGE frame carrying data (bytes)."""
    return _pack(VERSION, MESSAGE, FLAG_TEXT if text else 0, len(data)) + data


def close(code, reason=""):
    """A CLOSE frame; the reason (str or UTF-8 bytes) cut to the 123
    bytes a close frame has room for, between characters."""
    b = reason.encode("utf-8") if isinstance(reason, str) else bytes(reason)
    if len(b) > 123:
        b = b[:123].decode("utf-8", "ignore").encode("utf-8")
    return _pack(VERSION, CLOSE, 0, 2 + len(b)) + CLOSE_CODE.pack(code) + b


# The end frame's flags: the app key's report (appkey.word), the same for
# every answer of the process.
_key_word = 0


def set_key_word(w):
    global _key_word
    _key_word = w


def measured(taken, wall, cpu, pid, rss):
    return MEASURED.pack(VERSION, END, _key_word, STATS_LEN, taken, wall, cpu, pid, rss)


class FrameError(Exception):
    """A frame from edged broke the format (another release's edged?)."""


def check_header(buf, at, kind):
    """The length of the frame of type kind whose header is at buf[at:]."""
    version, got, _, n = HEADER.unpack_from(buf, at)
    if version != VERSION:
        raise FrameError("frame version %d, this worker speaks %d: edged and workerd are of different "
                         "releases (restart both)" % (version, VERSION))
    if got != kind:
        raise FrameError("frame of type %d where %d was due" % (got, kind))
    return n


def request_end(buf):
    """Where the request frame that begins buf ends, once buf holds it
    all; 0 while it does not yet. A frame that breaks the format is a
    FrameError."""
    if len(buf) < HEADER_LEN:
        return 0
    n = check_header(buf, 0, REQUEST)
    if n > MAX_HEAD or n < REQUEST_FIXED.size:
        raise FrameError("request frame of %d bytes" % n)
    end = HEADER_LEN + n
    return end if len(buf) >= end else 0


def parse_request(buf, end):
    """The request whose frame is buf[:end] (see request_end)."""
    return Request(buf, HEADER_LEN, end, bool(HEADER.unpack_from(buf, 0)[2] & FLAG_SESSION))


class Request:
    """One request as edged sends it: the neutral facts and the header
    list, which wsgi.py (or asgi.py) turns into what the app wants."""

    __slots__ = ("fields", "deadline", "body_len", "tls_version", "cipher", "session")

    def __init__(self, buf, start, end, session=False):
        """The request whose payload is buf[start:end]; session: it opens
        a long-lived exchange."""
        self.session = session
        self.deadline, self.body_len, self.tls_version, self.cipher, _ = REQUEST_FIXED.unpack_from(buf, start)
        fields = buf[start + REQUEST_FIXED.size:end].decode("latin-1").split("\0")
        if len(fields) < N_FIELDS or (len(fields) - N_FIELDS) % 2:
            raise FrameError("request frame with %d strings: want %d fields, then name and value pairs"
                             % (len(fields), N_FIELDS))
        self.fields = fields



class Body:
    """The request body as it arrives in BODY frames on a connection:
    pieces of payload, however the frames cut it. rest is what was read
    past the request frame; left the body bytes still to come."""

    __slots__ = ("recv", "raw", "left", "in_frame")

    def __init__(self, recv, rest, length):
        self.recv = recv
        self.raw = rest
        self.left = length
        self.in_frame = 0  # payload bytes left in the current frame

    def piece(self, most=1 << 16):
        """Up to most bytes of the body, b"" when it is all read; raises
        OSError when edged hung up mid-body."""
        if self.left <= 0:
            return b""
        if self.in_frame == 0:
            while len(self.raw) < HEADER_LEN:
                data = self.recv(1 << 16)
                if not data:
                    raise OSError("edged closed the connection mid-body")
                self.raw += data
            n = check_header(self.raw, 0, BODY)
            if n == 0 or n > self.left:
                raise FrameError("body frame of %d bytes with %d to come" % (n, self.left))
            self.in_frame = n
            self.raw = self.raw[HEADER_LEN:]
        want = min(most, self.in_frame)
        if self.raw:
            data, self.raw = self.raw[:want], self.raw[want:]
        else:
            data = self.recv(want)
            if not data:
                raise OSError("edged closed the connection mid-body")
        self.in_frame -= len(data)
        self.left -= len(data)
        return data

    def read_all(self):
        """The whole rest of the body."""
        if self.left <= 0:
            return b""  # what follows (raw) is not the body's
        if self.in_frame == 0 and len(self.raw) >= HEADER_LEN + self.left:
            # The usual case: one frame, all of it read with the request.
            n = check_header(self.raw, 0, BODY)
            if n == self.left:
                data = self.raw[HEADER_LEN:HEADER_LEN + n]
                self.raw = self.raw[HEADER_LEN + n:]
                self.left = 0
                return data
        chunks = []
        while self.left > 0:
            chunks.append(self.piece(1 << 20))
        return b"".join(chunks)


def is_gone(rest):
    """Whether what came after a request is edged's GONE frame."""
    return rest[:HEADER_LEN] == GONE_FRAME
