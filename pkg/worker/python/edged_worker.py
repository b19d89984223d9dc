"""The Python side of workerd: runs a WSGI application (PEP 3333).

workerd starts this program with three descriptors:
  fd 3  the listening Unix socket every worker of the pool shares: the
        kernel's accept queue is the queue of requests, and a worker takes
        the next one only when it has a free thread
  fd 4  (read by the bootstrap) this source
  fd 5  a pipe to workerd for events, one JSON object per line

It never parses HTTP: edged opens one connection per request and sends
the WSGI environ already built, then reads the response back as frames.

Request frame:   <u32 env_len><u64 body_len><u64 deadline> env body
                 env is NUL-separated latin-1 "key\\0value\\0..." pairs;
                 deadline is when, in Unix nanoseconds, the request stops
                 being worth starting (0: never)
Ping:            env_len = body_len = 0, answered with a 204 head
Hang-up:         edged shuts down its side of a request whose client went
                 away: a worker that finds it so once it has read the
                 frame closes the connection without running the app
Response frames: <u32 n> head    ("WORKER\\0200 OK\\0Name\\0Value\\0...")
                 <u32 n> chunk   (repeated, n > 0)
                 <u32 0>         end of body
                 <u32 0xFFFFFFFF> the app failed after the head was sent
                 <u32 0xFFFFFFFE> (instead of a head) the request waited
                                  past its deadline and was not run
Events to workerd, one JSON object a line on fd 5, "event" naming it:
  ready          {pid}: the app is imported, requests are taken
  stats          {served, busy, skipped}: every second; also the
                 heartbeat (skipped: requests edged had hung up on)
  hung           {method, path, seconds, timeout, traceback, greenlet}:
                 a request ran past its timeout (the process ends, or,
                 for a greenlet, only that greenlet)
  recycle        {served}: pool.max_requests reached, the process ends
  import_failed  {module, summary, traceback}: the app did not load
  log            {level, message, ...}: the worker's own events
What the app prints goes to stdout and stderr, which workerd reads too.
"""

import json
import os


def _gevent_class():
    """Whether workerd asked for the gevent class. It must be known before
    the modules that gevent patches are imported, here or by the app."""
    try:
        return json.loads(os.environ.get("EDGED_WORKER", "{}")).get("class") == "gevent"
    except ValueError:
        return False


if __name__ == "__edged_worker__" and _gevent_class():
    try:
        from gevent import monkey
    except ImportError as e:
        line = json.dumps({"event": "import_failed", "module": "gevent",
                           "summary": "pool.class = \"gevent\" needs gevent, which this Python cannot import (%s): "
                                      "install it (Debian: apt install python3-gevent; a virtualenv: pip install gevent)" % e})
        os.write(5, (line + "\n").encode())
        os._exit(3)
    # As gunicorn's gevent worker does: everything the app may block on
    # (sockets, sleep, locks, threads) yields to the other greenlets.
    monkey.patch_all()

import ast
import faulthandler
import importlib
import io
import re
import select
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback

REQ = struct.Struct("<IQQ")
U32 = struct.Struct("<I")
# The end frame with what the worker measured: 0xFFFFFFFD, when it took
# the request (Unix ns), the app's wall and CPU time (ns; CPU -1 where one
# thread runs every greenlet), the process's pid and RSS (KiB).
MEASURED = struct.Struct("<IqqqII")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
END = U32.pack(0)
ABORT = U32.pack(0xFFFFFFFF)
EXPIRED = U32.pack(0xFFFFFFFE)
# Who answers: edged logs the worker that served each request.
INSTANCE = os.environ.get("EDGED_INSTANCE", "").encode("latin-1") + b"\0"
# The answer to a ping (a frame with no environ and no body).
_PONG_HEAD = INSTANCE + b"204 No Content"
PONG = U32.pack(len(_PONG_HEAD)) + _PONG_HEAD + END
# What an app that raised before answering gets.
_ERROR_HEAD = INSTANCE + b"500 Internal Server Error\0Content-Type\0text/plain; charset=utf-8"
_ERROR_BODY = b"Internal Server Error\n"
ERROR_500 = U32.pack(len(_ERROR_HEAD)) + _ERROR_HEAD + U32.pack(len(_ERROR_BODY)) + _ERROR_BODY + END
# What edged accepts in a response head (pkg/wire): checked here as well
# (head_fields), so that an app that breaks a rule gets a 500 with its
# traceback logged rather than a head edged has to refuse. edged reads no
# more of the status than its code, which HTTP has from 100 to 599.
STATUS = re.compile(r"[1-5][0-9][0-9] ")
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
FLUSH_AT = 256 << 10
# How long a free thread waits for a request before it looks whether the
# worker is stopping.
ACCEPT_WAIT_MS = 250
MEMORY_BODY = 1 << 20

# The pipe to workerd (fd 5), opened by main(): events sent before that,
# or with no workerd, go nowhere.
EVENTS = None
EVENTS_LOCK = threading.Lock()


def event(kind, **fields):
    fields["event"] = kind
    line = json.dumps(fields)
    with EVENTS_LOCK:
        try:
            EVENTS.write(line + "\n")
        except (AttributeError, OSError, ValueError):
            pass


class Input:
    """wsgi.input over the rest of a request body still in the socket."""

    def __init__(self, sock, head, length):
        self.sock = sock
        self.buf = head
        self.left = length - len(head)
        self.spool = None  # the rest of the body, once taken off the socket

    def _recv(self):
        if self.spool is not None:
            data = self.spool.read(min(self.left, 1 << 16))
        else:
            data = self.sock.recv(min(self.left, 1 << 16))
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
        left = self.left
        while left > 0:
            data = self.sock.recv(min(left, 1 << 16))
            if not data:
                raise OSError("edged closed the connection mid-body")
            spool.write(data)
            left -= len(data)
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


class FdConn:
    """One connection from edged, as the few socket methods the worker
    uses, straight on the descriptor: a socket object costs a system call
    (getsockname) and more to make, once per request."""

    __slots__ = ("fd",)

    def __init__(self, fd):
        self.fd = fd

    def fileno(self):
        return self.fd

    def recv(self, n):
        return os.read(self.fd, n)

    def sendall(self, data):
        n = os.write(self.fd, data)
        if n < len(data):
            view = memoryview(data)
            while n < len(data):
                n += os.write(self.fd, view[n:])


class HungRequest(Exception):
    """Raised in a greenlet whose request ran past app.timeout."""


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

    def __init__(self):
        self.worker = None  # set by Worker: where the request ids are

    def _mark(self, s):
        w = self.worker
        req = w.inflight.get(threading.get_ident()) if w is not None else None
        if not req or not req[4] or not s:
            return s
        mark = RID_MARK + req[4] + RID_END
        if req[5]:  # the last write ended a line
            s = mark + s
        req[5] = s.endswith("\n")
        body = s[:-1] if req[5] else s
        return body.replace("\n", "\n" + mark) + ("\n" if req[5] else "")

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

    __slots__ = ("worker", "sendall", "body", "status", "headers", "sent", "stream", "out", "size")

    def __init__(self, worker, conn, body):
        self.worker = worker
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
        self.out.append(U32.pack(len(data)))
        self.out.append(data)
        self.size += len(data)
        if self.size >= FLUSH_AT:
            self.flush()
        elif self.stream:
            # The app asked for its response to be streamed: each chunk
            # goes out as it comes, and edged passes it on.
            self.flush()
            self.worker._progress()

    def head_first(self):
        """Puts the head frame before what is gathered, once. The status
        and headers are checked here, the list as it is now: a header the
        app added after start_response is held to the same rules."""
        if not self.sent:
            h = INSTANCE + "\0".join(head_fields(self.status, self.headers)).encode("latin-1")
            self.out.insert(0, U32.pack(len(h)) + h)
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


class Worker:
    def __init__(self, app, conf, listener):
        self.app = app
        self.listener = listener
        self.threads = conf["threads"]  # 1 for the sync class
        self.gevent = conf.get("class") == "gevent"
        self.connections = conf.get("connections", 1000)
        self.acceptor = None  # the greenlet that takes requests (gevent)
        self.current = None  # the greenlet running this code (gevent)
        if self.gevent:
            from gevent import getcurrent
            self.current = getcurrent
        self.max_requests = conf.get("max_requests", 0)
        self.pid = os.getpid()
        self.rss_kib = 0
        self.rss_at = 0.0
        # A request still running this long after it began is hung: the
        # process reports where it is stuck and exits, and workerd starts a
        # new one (gunicorn's --timeout, with the stack trace it lacks).
        self.timeout = conf.get("timeout", 0)
        # thread ident -> [started, method, path, greenlet or None,
        #                  request id, the last wsgi.errors write ended a line]
        self.inflight = {}
        self.errors = Errors()
        self.errors.worker = self
        self.base = {
            "wsgi.version": (1, 0),
            "wsgi.errors": self.errors,
            "wsgi.multithread": self.threads > 1 or self.gevent,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            "SCRIPT_NAME": "",
        }
        self.lock = threading.Lock()
        self.busy = 0
        self.served = 0
        self.skipped = 0  # requests edged had hung up on, not run
        # For the hang-up check (gone), which must not wait: gevent's own
        # poll would go through its loop, and knows no POLLRDHUP.
        self.poll = select.poll
        if self.gevent:
            from gevent.monkey import get_original
            self.poll = get_original("select", "poll")
        self.stopping = False
        # Written to when the worker should stop taking requests: it wakes
        # every thread waiting for the next one.
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # -- lifecycle ---------------------------------------------------------

    def stop(self, *_):
        # The SIGTERM handler. It runs between two bytecodes of the main
        # thread, which may hold self.lock or have just taken a connection
        # off the queue, so it only sets the flag and wakes the threads:
        # each finishes what it has and takes nothing new.
        self.stopping = True
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass
        if self.acceptor is not None:
            # Parked in accept() or waiting for a free slot: no request
            # is in its hands, so ending it loses none. It is the main
            # greenlet, a plain greenlet without kill(): gevent.kill
            # throws GreenletExit into it from the hub.
            import gevent
            gevent.kill(self.acceptor)

    def run(self):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if self.gevent:
            self.run_greenlets()
            return
        signal.signal(signal.SIGTERM, self.stop)
        # The socket is shared with the other workers (and systemd): the
        # settings are the same for every worker.
        self.listener.setblocking(True)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, ACCEPT_WAIT_MS * 1000))
        event("ready", pid=os.getpid())
        threading.Thread(target=self.heartbeat, daemon=True).start()
        if self.threads == 1:
            self.take_requests()
        else:
            ts = [threading.Thread(target=self.take_requests, daemon=True) for _ in range(self.threads)]
            for t in ts:
                t.start()
            for t in ts:
                while t.is_alive():
                    # Joined with a timeout so that SIGTERM still reaches
                    # the handler in this thread.
                    t.join(0.5)
        os._exit(0)

    def run_greenlets(self):
        """The gevent class: one greenlet per request, up to connections at
        once. The acceptor takes the next request only while a slot is
        free, so the rest wait in the shared queue for another worker."""
        import gevent
        import gevent.pool
        gevent.signal_handler(signal.SIGTERM, self.stop)
        event("ready", pid=os.getpid())
        threading.Thread(target=self.heartbeat, daemon=True).start()
        pool = gevent.pool.Pool(self.connections)
        self.acceptor = gevent.getcurrent()
        try:
            while not self.stopping:
                pool.wait_available()
                if self.stopping:
                    break
                conn, _ = self.listener.accept()
                pool.spawn(self.serve_and_close, conn)
        except gevent.GreenletExit:
            pass
        self.acceptor = None
        pool.join()
        os._exit(0)

    def serve_and_close(self, conn):
        try:
            self.serve(conn)
        finally:
            conn.close()

    def take_requests(self):
        """Takes one request at a time off the shared queue until the
        worker stops. A thread asks for the next connection only when it
        is free, so a request never waits behind a busy worker while
        another is idle; and under load the next connection is already
        waiting, so the thread does not sleep between requests.

        The accept blocks: the kernel then wakes exactly one waiting
        thread per connection, and while every thread is busy nothing
        waits on the socket, so edged's connect wakes no one. A receive
        timeout on the socket (ACCEPT_WAIT) lets a thread notice a stop
        when no request comes."""
        accept = self.listener._accept
        # A poll object of this thread's own: one poll() at a time may
        # use a poll object, and idle threads wait at the same time.
        idle_wait = select.poll()
        idle_wait.register(self.listener.fileno(), select.POLLIN)
        idle_wait.register(self.wake_r, select.POLLIN)
        while not self.stopping:
            try:
                fd, _ = accept()
            except BlockingIOError:
                # The receive timeout passed with no request, or another
                # holder made the socket non-blocking: wait for a request
                # or a stop.
                idle_wait.poll(ACCEPT_WAIT_MS)
                continue
            except InterruptedError:
                continue
            except OSError as e:
                event("log", level="error", message="accept failed", error=str(e))
                os._exit(1)
            try:
                self.serve(FdConn(fd))
            finally:
                os.close(fd)

    def heartbeat(self):
        """Tells workerd every second that the interpreter still runs, and
        how much it has done: workerd keeps systemd's watchdog and status
        line from these."""
        while True:
            with self.lock:
                served, busy, skipped = self.served, self.busy, self.skipped
                oldest = min(self.inflight.items(), key=lambda kv: kv[1][0], default=None)
            event("stats", served=served, busy=busy, skipped=skipped)
            if oldest is not None and self.timeout and time.monotonic() - oldest[1][0] > self.timeout:
                self.hung(*oldest)
            time.sleep(1)

    def hung(self, ident, info):
        started, method, path, task, rid = info[:5]
        frame = task.gr_frame if task is not None else sys._current_frames().get(ident)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "(no stack)"
        event("hung", method=method, path=path, seconds=round(time.monotonic() - started, 1),
              timeout=self.timeout, traceback=stack, greenlet=task is not None, request_id=rid)
        if task is not None:
            # A greenlet can be ended alone: the others go on.
            with self.lock:
                self.inflight.pop(ident, None)
            task.kill(HungRequest("request ran past app.timeout"), block=False)
            return
        EVENTS.flush()
        os._exit(70)

    def _begin(self, environ):
        task = self.current() if self.current is not None else None
        with self.lock:
            self.busy += 1
            self.inflight[threading.get_ident()] = [
                time.monotonic(), environ.get("REQUEST_METHOD", ""),
                environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), task,
                environ.get("HTTP_X_REQUEST_ID", ""), True]

    def _progress(self):
        """A streamed response that sends a chunk is not hung."""
        with self.lock:
            req = self.inflight.get(threading.get_ident())
            if req is not None:
                req[0] = time.monotonic()

    def _end(self):
        with self.lock:
            self.inflight.pop(threading.get_ident(), None)
            self.busy -= 1
            self.served += 1
            # The request that reaches max_requests starts the stop: every
            # thread finishes what it has and takes nothing new. The event
            # goes out under the lock, so that workerd hears why before
            # the process ends.
            if not self.stopping and self.max_requests and self.served >= self.max_requests:
                event("recycle", served=self.served)
                self.stop()

    # -- one request from edged ----------------------------------------------

    def serve(self, conn):
        """Serves the one request on conn."""
        try:
            self.serve_request(conn)
        except (BrokenPipeError, ConnectionResetError):
            pass  # edged hung up: its client went away
        except Exception as e:  # the connection broke; edged decides
            event("log", level="warn", message="connection to edged failed", error=repr(e))

    def serve_request(self, conn):
        taken = time.time_ns()
        recv = conn.recv
        buf = recv(1 << 16)
        while len(buf) < 20:
            data = recv(1 << 16)
            if not data:
                return
            buf += data
        env_len, body_len, deadline = REQ.unpack_from(buf)
        if env_len == 0 and body_len == 0:
            conn.sendall(PONG)
            return
        if deadline and time.time_ns() > deadline:
            # It waited in the queue past limits.queue_timeout: edged has
            # answered 503 (or is about to); running it now helps no one.
            conn.sendall(EXPIRED)
            return
        need = 20 + env_len
        while len(buf) < need:
            data = recv(max(1 << 16, need - len(buf)))
            if not data:
                return
            buf += data
        rest = buf[need:]
        body = drain = None
        if body_len <= len(rest):
            body = rest[:body_len]
        elif body_len <= MEMORY_BODY:
            chunks = [rest]
            have = len(rest)
            while have < body_len:
                data = recv(min(body_len - have, 1 << 20))
                if not data:
                    return
                chunks.append(data)
                have += len(data)
            body = b"".join(chunks)
        # The request is read (a big body's first part): looked at before
        # any work is spent on it, since under a flood of reset requests
        # most are given up.
        if self.gone(conn):
            # Its client went away while it waited in the queue: edged
            # has answered for it, and running it now helps no one.
            with self.lock:
                self.skipped += 1
            return
        parts = buf[20:need].decode("latin-1").split("\0")
        if len(parts) % 2:
            raise ValueError("bad request frame: odd number of environ fields")
        environ = self.base.copy()
        it = iter(parts)
        environ.update(zip(it, it))
        if body is not None:
            environ["wsgi.input"] = io.BytesIO(body)
        else:
            drain = Input(conn, rest, body_len)
            environ["wsgi.input"] = drain
        self._begin(environ)
        try:
            self.respond(conn, environ, drain, taken)
        finally:
            try:
                if drain is not None:
                    drain.drain()  # raises if edged hung up mid-body
            finally:
                self._end()

    def gone(self, conn):
        """Whether edged has hung up on conn: it shuts down its side of a
        request whose client went away before a worker took it, and may
        close it, but the connection waits in the queue all the same.
        Looked at once, without waiting, when the request is read (for a
        big body, its first part): one poll() system call. A poll object
        made for each call costs no more than one kept for each thread
        (register, poll, unregister), and is shared with no one."""
        p = self.poll()
        # POLLHUP and POLLERR come unasked.
        p.register(conn.fileno(), select.POLLRDHUP)
        return bool(p.poll(0))

    def respond(self, conn, environ, body=None, taken=0):
        r = Response(self, conn, body)
        result = None
        started = time.monotonic_ns()
        cpu = None if self.gevent else time.thread_time_ns()
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
            self.failed(environ)
            r.out.clear()
            r.sendall(ABORT if r.sent else ERROR_500)
            return
        finally:
            if result is not None and hasattr(result, "close"):
                try:
                    result.close()
                except Exception:
                    self.failed(environ)
        r.out.append(self.measured(taken, started, cpu))
        r.flush(done=True)

    def measured(self, taken, started, cpu):
        """The end frame, with this request's measurements."""
        wall = time.monotonic_ns() - started
        cpu = -1 if cpu is None else time.thread_time_ns() - cpu
        now = time.monotonic()
        if now - self.rss_at >= 1.0:
            self.rss_at = now
            try:
                with open("/proc/self/statm", "rb") as f:
                    self.rss_kib = int(f.read().split()[1]) * PAGE_KIB
            except (OSError, ValueError, IndexError):
                pass
        return MEASURED.pack(0xFFFFFFFD, taken, wall, cpu, self.pid, self.rss_kib)

    def failed(self, environ):
        event("log", level="error", message="app raised",
              request_id=environ.get("HTTP_X_REQUEST_ID", ""),
              method=environ.get("REQUEST_METHOD", ""),
              path=environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
              traceback=traceback.format_exc())


class AppNotFound(Exception):
    """app.module names nothing callable: the message says what to write."""


def load(spec, directory):
    """Imports the WSGI callable spec names, as gunicorn reads it:
    "module" (its "application"), "module:name", "module:obj.attr", or a
    factory called with literal arguments, "module:create_app('x', k=1)".
    The call is parsed, never eval'ed."""
    sys.path.insert(0, directory)
    os.chdir(directory)
    module, _, expr = spec.partition(":")
    expr = expr or "application"
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError:
        raise AppNotFound("%r is not a name or a call of one" % expr) from None
    call = None
    if isinstance(tree, ast.Call):
        call, tree = tree, tree.func
    names = []
    while isinstance(tree, ast.Attribute):
        names.insert(0, tree.attr)
        tree = tree.value
    if not isinstance(tree, ast.Name):
        raise AppNotFound("%r is not a name or a call of one" % expr)
    names.insert(0, tree.id)
    args, kwargs = [], {}
    if call is not None:
        try:
            args = [ast.literal_eval(a) for a in call.args]
            for k in call.keywords:
                if k.arg is None:
                    raise ValueError("**")
                kwargs[k.arg] = ast.literal_eval(k.value)
        except ValueError:
            raise AppNotFound("the arguments of %s must be Python literals (strings, numbers, "
                              "True/False/None, lists, dicts)" % expr) from None
    obj = importlib.import_module(module)
    for i, name in enumerate(names):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise AppNotFound("module %s has no %s: name the WSGI callable, as in %s:app or %s:create_app()"
                              % (module, ".".join(names[:i + 1]), module, module)) from None
    if call is not None:
        if not callable(obj):
            raise AppNotFound("%s:%s is %s, not a factory to call" % (module, ".".join(names), type(obj).__name__))
        obj = obj(*args, **kwargs)
    if not callable(obj):
        raise AppNotFound("%s gave %s, not a WSGI callable" % (spec, type(obj).__name__))
    return obj


def set_title(title):
    """Names the process in ps and top, as gunicorn's setproctitle does:
    the kernel shows the process's argument area, rewritten here in place
    (the bootstrap's long -c argument leaves room), and its short name."""
    try:
        import ctypes
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        fields = stat[stat.rindex(b")") + 2:].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end
        size = end - start
        b = title.encode()[:size - 1]
        ctypes.memmove(start, b + b"\0" * (size - len(b)), size)
        ctypes.CDLL(None).prctl(15, b"edged-worker", 0, 0, 0)  # PR_SET_NAME
    except Exception:
        pass  # only cosmetic


def main():
    # workerd sends SIGUSR1 when the heartbeats stop: the C-level handler
    # prints every thread's stack even with the GIL held.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    global EVENTS
    EVENTS = os.fdopen(5, "w", buffering=1, encoding="utf-8", errors="replace")
    conf = json.loads(os.environ.pop("EDGED_WORKER"))
    set_title("edged-worker %s %s" % (os.environ.get("EDGED_INSTANCE", ""), conf["module"]))
    try:
        app = load(conf["module"], conf["directory"])
    except BaseException as e:
        # Reported once, as an event: workerd logs it.
        if isinstance(e, AppNotFound):
            summary, tb = str(e), ""
        else:
            summary = "".join(traceback.format_exception_only(type(e), e)).strip().splitlines()[-1]
            # The app's frames only: not this file's, not importlib's.
            te = traceback.TracebackException.from_exception(e)
            te.stack = traceback.StackSummary.from_list(
                [f for f in te.stack if f.filename != "edged_worker.py" and "importlib" not in f.filename])
            # With no frame of the app's, the summary says it all; a
            # syntax error's location is in its own lines.
            tb = "".join(te.format()) if te.stack or isinstance(e, SyntaxError) else ""
        event("import_failed", module=conf["module"], summary=summary, traceback=tb)
        os._exit(3)
    if conf.get("check"):
        # edged --check: the app imports; nothing is served.
        event("ready", pid=os.getpid())
        os._exit(0)
    Worker(app, conf, socket.socket(fileno=3)).run()


# Run by workerd's bootstrap, which names the module so; imported under
# any other name (by a test, say), it only defines.
if __name__ == "__edged_worker__":
    main()
