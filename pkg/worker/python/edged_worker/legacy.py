"""Frame version 1, which edged spoke before typed frames, kept so that
an upgrade from such a release fails no request: the packages restart the
workers first, and until edged itself restarts, the edged still running
sends these. Such an edged built the WSGI environ itself:

Request:   <u32 env_len><u64 body_len><u64 deadline> env body
           env is NUL-separated latin-1 "KEY\\0VALUE\\0...", REQUEST_METHOD
           first
Response:  <u32 n> head, <u32 n> chunk..., then <u32 0>, or 0xFFFFFFFD and
           the measurements; 0xFFFFFFFF when the app failed after the
           head; 0xFFFFFFFE instead of a head when the deadline passed
"""

import io
import struct
import time

from edged_worker import frames, wsgi

REQ = struct.Struct("<IQQ")
U32 = struct.Struct("<I")
MEASURED = struct.Struct("<IqqqII")
END = U32.pack(0)
EXPIRED = U32.pack(0xFFFFFFFE)
# Where such a request shows itself: its environ's first key.
MARK = b"REQUEST_METHOD\0"
SEEN_AT = REQ.size + len(MARK)


def looks_legacy(buf):
    """Whether buf (8 bytes or more) may begin a request of version 1:
    anything that does not begin as this version's request frame."""
    return not (buf[0] == frames.VERSION and buf[1] == frames.REQUEST) or len(buf) >= SEEN_AT and is_legacy(buf)


def is_legacy(buf):
    return buf[REQ.size:SEEN_AT] == MARK


class Framing(wsgi.Framing):
    chunk_header = staticmethod(U32.pack)
    abort = U32.pack(0xFFFFFFFF)
    error_500 = (U32.pack(len(wsgi.ERROR_HEAD)) + wsgi.ERROR_HEAD
                 + U32.pack(len(wsgi.ERROR_BODY)) + wsgi.ERROR_BODY + END)

    @staticmethod
    def measured(taken, wall, cpu, pid, rss):
        return MEASURED.pack(0xFFFFFFFD, taken, wall, cpu, pid, rss)

    @staticmethod
    def head(h, flags=0):
        return U32.pack(len(h)) + h


FRAMING = Framing()


class RawBody:
    """A body that follows the request as plain bytes, as wsgi.Input
    reads a frames.Body."""

    __slots__ = ("recv", "raw", "left")

    def __init__(self, recv, rest, length):
        self.recv = recv
        self.raw = rest
        self.left = length

    def piece(self, most=1 << 16):
        if self.left <= 0:
            return b""
        if self.raw:
            data, self.raw = self.raw[:min(most, self.left)], self.raw[min(most, self.left):]
        else:
            data = self.recv(min(most, self.left))
            if not data:
                raise OSError("edged closed the connection mid-body")
        self.left -= len(data)
        return data

    def read_all(self):
        chunks = []
        while self.left > 0:
            chunks.append(self.piece(1 << 20))
        return b"".join(chunks)


def serve(worker, conn, buf, taken):
    """Serves the version 1 request that begins buf."""
    recv = conn.recv
    env_len, body_len, deadline = REQ.unpack_from(buf)
    if deadline and time.time_ns() > deadline:
        conn.sendall(EXPIRED)
        return
    need = REQ.size + env_len
    while len(buf) < need:
        data = recv(max(1 << 16, need - len(buf)))
        if not data:
            return
        buf += data
    body = RawBody(recv, buf[need:], body_len)
    data = body.read_all() if body_len <= frames.MEMORY_BODY else None
    if worker.gone(conn):
        with worker.lock:
            worker.skipped += 1
        return
    parts = buf[REQ.size:need].decode("latin-1").split("\0")
    if len(parts) % 2:
        raise ValueError("bad request frame: odd number of environ fields")
    handler = worker.handler
    env = handler.base.copy()
    it = iter(parts)
    env.update(zip(it, it))
    drain = None if data is not None else wsgi.Input(body)
    env["wsgi.input"] = io.BytesIO(data) if drain is None else drain
    handler.run(conn, env, drain, taken, env.get("REQUEST_METHOD", ""),
                env.get("SCRIPT_NAME", "") + env.get("PATH_INFO", ""), env.get("HTTP_X_REQUEST_ID", ""), FRAMING)
