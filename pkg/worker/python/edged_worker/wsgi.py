"""PEP 3333: the environ built from edged's neutral request, wsgi.input
over the body's frames, and the app's answer sent back as frames."""

import io
import os
import re
import sys
import tempfile
import threading
import time
import traceback

from edged_worker import frames, jsontime
from edged_worker.frames import MEMORY_BODY
from edged_worker.events import event

# Who answers: edged logs the worker that served each request.
INSTANCE = os.environ.get("EDGED_INSTANCE", "").encode("latin-1") + b"\0"
# What an app that raised before answering gets.
ERROR_HEAD = INSTANCE + b"500 Internal Server Error\0Content-Type\0text/plain; charset=utf-8"
ERROR_BODY = b"Internal Server Error\n"


class Framing:
    """How an answer goes on the wire: the frames of frames.VERSION.
    (legacy.py has those of the version before, for an upgrade.)"""

    chunk_header = staticmethod(frames.chunk_header)
    abort = frames.ABORT_FRAME
    measured = staticmethod(frames.measured)
    error_500 = (frames.header(frames.HEAD, len(ERROR_HEAD)) + ERROR_HEAD
                 + frames.chunk_header(len(ERROR_BODY)) + ERROR_BODY + frames.END_FRAME)

    @staticmethod
    def head(h, flags=0):
        return frames.header(frames.HEAD, len(h), flags) + h


FRAMING = Framing()
# What edged accepts in a response head (pkg/wire): checked here as well
# (head_fields), so that an app that breaks a rule gets a 500 with its
# traceback logged rather than a head edged has to refuse. edged reads no
# more of the status than its code, which HTTP has from 100 to 599.
STATUS = re.compile(r"[1-5][0-9][0-9] ")
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
FLUSH_AT = 256 << 10

(F_METHOD, F_SCHEME, F_PROTOCOL, F_TARGET, F_PATH, F_QUERY, F_ROOT, F_SERVER_NAME,
 F_SERVER_PORT, F_CLIENT_ADDR, F_CLIENT_PORT, F_REQUEST_ID) = range(frames.N_FIELDS)
N_FIELDS = frames.N_FIELDS

# Header name -> environ key, for the names seen so far (bounded).
_KEYS = {"Content-Type": "CONTENT_TYPE", "Content-Length": "CONTENT_LENGTH"}
_KEYS_MAX = 4096


def environ_key(name):
    key = _KEYS.get(name)
    if key is None:
        key = "HTTP_" + name.upper().replace("-", "_")
        if len(_KEYS) < _KEYS_MAX:
            _KEYS[name] = key
    return key


def environ(base, req):
    """The WSGI environ of req (a frames.Request) over base: PEP 3333's
    keys, SCRIPT_NAME split off the path at the site's root, and each
    header as HTTP_NAME, repeated ones joined with "," ("; " for
    cookies)."""
    f = req.fields
    env = base.copy()
    env["REQUEST_METHOD"] = f[F_METHOD]
    path, root = f[F_PATH], f[F_ROOT]
    if root and (path == root or path.startswith(root) and path[len(root)] == "/"):
        env["SCRIPT_NAME"] = root
        path = path[len(root):]
    env["PATH_INFO"] = path
    env["QUERY_STRING"] = f[F_QUERY]
    env["RAW_URI"] = env["REQUEST_URI"] = f[F_TARGET]
    env["SERVER_PROTOCOL"] = f[F_PROTOCOL]
    env["SERVER_NAME"] = f[F_SERVER_NAME]
    env["SERVER_PORT"] = f[F_SERVER_PORT]
    env["REMOTE_ADDR"] = f[F_CLIENT_ADDR]
    if f[F_CLIENT_PORT]:
        env["REMOTE_PORT"] = f[F_CLIENT_PORT]
    env["wsgi.url_scheme"] = f[F_SCHEME]
    keys = _KEYS
    it = iter(f)
    for _ in range(N_FIELDS):
        next(it)
    for name, value in zip(it, it):
        key = keys.get(name) or environ_key(name)
        if key in env:
            env[key] += ("; " if key == "HTTP_COOKIE" else ",") + value
        else:
            env[key] = value
    return env


class Input:
    """wsgi.input over the rest of a request body still in the socket
    (a frames.Body)."""

    def __init__(self, body):
        self.source = body
        self.buf = b""
        self.left = body.left  # bytes not yet in buf
        self.spool = None  # the rest of the body, once taken off the socket

    def _recv(self):
        if self.spool is not None:
            data = self.spool.read(min(self.left, 1 << 16))
        else:
            data = self.source.piece()
        if not data:
            raise OSError("edged closed the connection mid-body")
        self.left -= len(data)
        return data

    def _fill(self, want):
        while len(self.buf) < want and self.left > 0:
            self.buf += self._recv()

    def take(self):
        """Moves the unread rest of the body off the socket before the
        response goes out: edged sends the whole body before it reads the
        response, so a response that fills the socket while the body waits
        would leave both ends blocked. The app can still read it all."""
        if self.spool is not None or self.left == 0:
            return
        spool = tempfile.SpooledTemporaryFile(max_size=MEMORY_BODY)
        while self.source.left > 0:
            spool.write(self.source.piece())
        spool.seek(0)
        self.spool = spool

    def read(self, size=-1):
        if size is None or size < 0:
            self._fill(len(self.buf) + self.left)
            size = len(self.buf)
        else:
            self._fill(size)
        out, self.buf = self.buf[:size], self.buf[size:]
        return out

    def readline(self, size=-1):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0 or self.left == 0 or (size is not None and 0 <= size <= len(self.buf)):
                break
            self._fill(len(self.buf) + 1)
        end = i + 1 if i >= 0 else len(self.buf)
        if size is not None and 0 <= size < end:
            end = size
        out, self.buf = self.buf[:end], self.buf[end:]
        return out

    def readlines(self, hint=-1):
        lines, total = [], 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def drain(self):
        self.buf = b""
        if self.spool is not None:
            self.spool.close()
            self.left = 0
        while self.left > 0:
            self._recv()


class FileWrapper:
    """wsgi.file_wrapper: iterates a file in blocks."""

    def __init__(self, filelike, blksize=1 << 16):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        read, size = self.filelike.read, self.blksize
        while True:
            data = read(size)
            if not data:
                return
            yield data


# A line of the app's output that begins with this, then a request id and
# RID_END, was written for that request: workerd puts the id in the line's
# event (request_id) and drops the mark. Kept in step with pkg/worker's
# output.go.
RID_MARK = "\x1erid:"
RID_END = "\x1e"


class Errors:
    """wsgi.errors: text written here reaches the worker's log, each line
    marked with the id of the request being served where there is one
    (Flask's logger writes here during a request)."""

    def __init__(self, worker):
        self.worker = worker  # where the requests in flight are

    def _mark(self, s):
        w = self.worker
        req = w.inflight.get(w.task_key())
        if req is None or not req.rid or not s:
            return s
        mark = RID_MARK + req.rid + RID_END
        if req.line_start:  # the last write ended a line
            s = mark + s
        req.line_start = s.endswith("\n")
        body = s[:-1] if req.line_start else s
        return body.replace("\n", "\n" + mark) + ("\n" if req.line_start else "")

    def write(self, s):
        sys.stderr.write(self._mark(s))

    def writelines(self, seq):
        for s in seq:
            self.write(s)

    def flush(self):
        sys.stderr.flush()


def streamed(headers):
    """Whether the app asked for its response to be passed on as it comes
    rather than buffered: nginx's X-Accel-Buffering: no, or server-sent
    events. edged applies the same rule to the head it reads. Headers
    that are not (str, str) pairs say no: head_fields refuses them, and
    says why, when the head goes out."""
    try:
        for name, value in headers:
            n = name.lower()
            if n == "x-accel-buffering" and value.strip().lower() == "no":
                return True
            if n == "content-type" and value.lower().startswith("text/event-stream"):
                return True
    except (TypeError, ValueError, AttributeError):
        pass
    return False


def latin1(s):
    """Whether s encodes as latin-1, as PEP 3333 wants of status and headers."""
    if s.isascii():
        return True
    try:
        s.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def head_fields(status, headers):
    """The fields of the head frame for status and headers, once they are
    checked: an AssertionError says what edged would refuse, or what would
    change meaning on the wire, where NUL separates the fields."""
    if type(status) is not str or not STATUS.match(status):
        raise AssertionError("status must be a str like '200 OK', its code from 100 to 599, not %r" % (status,))
    if "\0" in status or "\n" in status or "\r" in status:
        raise AssertionError("status %r holds a control character" % (status,))
    if not latin1(status):
        raise AssertionError("status %r is not latin-1" % (status,))
    if type(headers) is not list:
        raise AssertionError("headers must be a list of (name, value) tuples")
    fields = [status]
    for h in headers:
        if type(h) is not tuple or len(h) != 2 or type(h[0]) is not str or type(h[1]) is not str:
            raise AssertionError("header %r is not a (str, str) tuple" % (h,))
        name, value = h
        if not TOKEN.fullmatch(name):
            raise AssertionError("header name %r is not an HTTP token" % (name,))
        if CONTROL.search(value):
            raise AssertionError("header %r holds a control character" % (h,))
        if not latin1(value):
            raise AssertionError("header %r is not latin-1" % (h,))
        fields.append(name)
        fields.append(value)
    return fields


class Response:
    """One request's answer as the app gives it (start_response, write,
    the iterable's chunks), sent to edged as frames: the head, then the
    body in chunks, gathered up to FLUSH_AT, or each at once when the app
    asked for its answer to be streamed."""

    __slots__ = ("worker", "framing", "sendall", "body", "status", "headers", "sent", "stream", "out", "size")

    def __init__(self, worker, conn, body, framing=FRAMING):
        self.worker = worker
        self.framing = framing
        self.sendall = conn.sendall
        self.body = body  # the Input still in the socket, or None
        self.status = None  # set by start_response, with headers
        self.headers = None
        self.sent = False  # the head is out: a failure now can only abort
        self.stream = False
        self.out = []  # frames not yet sent
        self.size = 0  # body bytes in out

    def start_response(self, status, headers, exc_info=None):
        if exc_info:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called twice without exc_info")
        # Checked when the head goes out (head_first), not here: the app
        # may still change its list, and checking twice would double the
        # cost of the check on every request.
        self.status = status
        self.headers = headers
        self.stream = streamed(headers)
        return self.write

    def write(self, data):
        """The writable start_response returns (PEP 3333's legacy API)."""
        if self.status is None:
            raise AssertionError("write() called before start_response()")
        if type(data) is not bytes:
            raise TypeError("write() takes bytes, not %s" % type(data).__name__)
        if data:
            self.add(data)

    def add(self, data):
        self.out.append(self.framing.chunk_header(len(data)))
        self.out.append(data)
        self.size += len(data)
        if self.size >= FLUSH_AT:
            self.flush()
        elif self.stream:
            # The app asked for its response to be streamed: each chunk
            # goes out as it comes, and edged passes it on.
            self.flush()
            self.worker.progress()

    def head_first(self):
        """Puts the head frame before what is gathered, once. The status
        and headers are checked here, the list as it is now: a header the
        app added after start_response is held to the same rules."""
        if not self.sent:
            h = INSTANCE + "\0".join(head_fields(self.status, self.headers)).encode("latin-1")
            self.out.insert(0, self.framing.head(h, jsontime.flags()))
            self.sent = True

    def flush(self, done=False):
        self.head_first()
        if self.out:
            if self.body is not None:
                # Take the request body off the socket first (see
                # Input.take); once the app is done, just drop it.
                if done:
                    self.body.drain()
                else:
                    self.body.take()
            self.sendall(b"".join(self.out))
            self.out.clear()
            self.size = 0


class Handler:
    """Serves requests to a WSGI app for a worker."""

    def __init__(self, app, worker):
        self.app = app
        self.worker = worker
        self.base = {
            "wsgi.version": (1, 0),
            "wsgi.errors": Errors(worker),
            "wsgi.multithread": worker.multithread,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            "SCRIPT_NAME": "",
        }

    def serve(self, conn, req, data, body, taken):
        """Runs the app for req and sends its answer on conn. data is the
        whole body when the worker read it before the app starts (up to
        MEMORY_BODY), else None and body the frames.Body still in the
        socket."""
        drain = None if data is not None else Input(body)
        env = environ(self.base, req)
        env["wsgi.input"] = io.BytesIO(data) if drain is None else drain
        f = req.fields
        self.run(conn, env, drain, taken, f[F_METHOD], f[F_PATH], f[F_REQUEST_ID])

    def run(self, conn, env, drain, taken, method, path, rid, framing=FRAMING):
        """Runs the app with env, its request counted in flight."""
        w = self.worker
        w.begin(method, path, rid)
        jsontime.reset()
        try:
            self.respond(conn, env, drain, taken, framing)
        finally:
            try:
                if drain is not None:
                    drain.drain()  # raises if edged hung up mid-body
            finally:
                w.end()

    def serve_session(self, conn, req, rest):
        """A WebSocket: accepted for the app at once (as gevent-websocket
        does, before the app runs), which then talks through
        environ["wsgi.websocket"] until it returns."""
        w = self.worker
        if not w.websockets:
            h = INSTANCE + b"400 Bad Request"
            conn.sendall(frames.header(frames.HEAD, len(h)) + h + frames.END_FRAME)
            return
        env = environ(self.base, req)
        env["wsgi.input"] = io.BytesIO(b"")
        ws = WebSocket(conn, env, rest)
        env["wsgi.websocket"] = ws
        env["wsgi.websocket_version"] = "13"
        a = INSTANCE
        conn.sendall(frames.header(frames.ACCEPT, len(a)) + a)
        f = req.fields
        w.begin(f[F_METHOD], f[F_PATH], f[F_REQUEST_ID], True)
        w.sessions.add(ws)
        result = None
        try:
            result = self.app(env, lambda status, headers, exc_info=None: (lambda data: None))
            for _ in result or ():
                pass  # what the app answers after a WebSocket goes nowhere
        except Exception:
            failed(env)
            ws.close(1011)
        finally:
            w.sessions.discard(ws)
            if result is not None and hasattr(result, "close"):
                try:
                    result.close()
                except Exception:
                    failed(env)
            ws.close(1000)
            w.end()

    def respond(self, conn, environ, body=None, taken=0, framing=FRAMING):
        w = self.worker
        r = Response(w, conn, body, framing)
        result = None
        started = time.monotonic_ns()
        cpu = w.cpu_clock()
        try:
            result = self.app(environ, r.start_response)
            for data in result:
                if type(data) is not bytes:
                    raise TypeError("the app yielded %s, not bytes" % type(data).__name__)
                if data:
                    if r.status is None:
                        raise AssertionError("the app yielded body data before calling start_response()")
                    r.add(data)
            if r.status is None:
                raise AssertionError("the app returned without calling start_response()")
            # Built here, not in the final flush, so that headers the app
            # spoilt after start_response still give a 500.
            r.head_first()
        except Exception:
            failed(environ)
            r.out.clear()
            r.sendall(framing.abort if r.sent else framing.error_500)
            return
        finally:
            if result is not None and hasattr(result, "close"):
                try:
                    result.close()
                except Exception:
                    failed(environ)
        r.out.append(framing.measured(*w.measured(taken, started, cpu)))
        r.flush(done=True)


class WebSocket:
    """environ["wsgi.websocket"] for the gevent class, as gevent-websocket
    gives it (what Flask-SocketIO's gevent driver, engineio, uses):
    receive() -> str, bytes or None once closed; send(message, binary);
    close(code, message); version, path, origin, protocol. edged has done
    the handshake and speaks RFC 6455 to the client: these are whole
    messages, in frames, over the request's own connection."""

    def __init__(self, conn, environ, rest):
        self.conn = conn
        self.environ = environ
        self.buf = rest
        self.closed = False
        self.close_code = None
        self.lock = threading.Lock()  # a frame at a time: a greenlet's lock under gevent
        self.version = "13"
        self.path = environ.get("PATH_INFO", "")
        self.origin = environ.get("HTTP_ORIGIN")
        self.protocol = None

    def _frame(self):
        """The next frame from edged: (type, flags, payload), or None when
        the connection ends."""
        while len(self.buf) < frames.HEADER_LEN:
            data = self.conn.recv(1 << 16)
            if not data:
                return None
            self.buf += data
        version, kind, flags, n = frames.HEADER.unpack_from(self.buf)
        if version != frames.VERSION or kind not in (frames.MESSAGE, frames.CLOSE):
            raise frames.FrameError("frame of type %d, version %d in a session" % (kind, version))
        need = frames.HEADER_LEN + n
        while len(self.buf) < need:
            data = self.conn.recv(max(1 << 16, need - len(self.buf)))
            if not data:
                return None
            self.buf += data
        payload, self.buf = self.buf[frames.HEADER_LEN:need], self.buf[need:]
        return kind, flags, payload

    def receive(self):
        if self.closed:
            return None
        try:
            f = self._frame()
        except OSError:
            f = None
        if f is None or f[0] == frames.CLOSE:
            self.closed = True
            self.close_code = frames.CLOSE_CODE.unpack_from(f[2])[0] if f is not None and len(f[2]) >= 2 else 1006
            return None
        kind, flags, payload = f
        if flags & frames.FLAG_TEXT:
            return payload.decode("utf-8")
        return payload

    def send(self, message, binary=None):
        if self.closed:
            raise OSError("the WebSocket is closed")
        if binary is None:
            binary = not isinstance(message, str)
        data = message.encode("utf-8") if isinstance(message, str) else bytes(message)
        with self.lock:
            self.conn.sendall(frames.message(data, not binary))

    def close(self, code=1000, message=b""):
        if self.closed:
            return
        self.closed = True
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        try:
            with self.lock:
                self.conn.sendall(frames.close(code, message or ""))
        except OSError:
            pass

    def server_close(self, code):
        """Closes from the worker's side (it stops: 1012)."""
        self.close(code)


def failed(environ):
    event("log", level="error", message="app raised",
          request_id=environ.get("HTTP_X_REQUEST_ID", ""),
          method=environ.get("REQUEST_METHOD", ""),
          path=environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
          traceback=traceback.format_exc())
