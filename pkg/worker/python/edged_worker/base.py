"""What every worker class shares: the accept loop on the shared queue,
reading a request's frames, the heartbeat, the requests in flight (keyed
by task_key(), the thread, greenlet or task that serves each) and what
happens to one that hangs."""

import os
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback

from edged_worker import events, frames, legacy
from edged_worker.events import event

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
# How long a free thread waits for a request before it looks whether the
# worker is stopping.
ACCEPT_WAIT_MS = 250
MEMORY_BODY = frames.MEMORY_BODY
# The largest request (frame and body) known given up by edged's GONE
# frame alone: edged writes it after the whole request, without waiting,
# and after one this size the socket's buffer (about 200 KiB of buffer
# memory) still has room for it.
GONE_MARKED = 128 << 10


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


class InFlight:
    """A request being served, for the heartbeat's look for hung ones and
    for wsgi.errors' request ids."""

    __slots__ = ("started", "method", "path", "task", "rid", "line_start", "session")

    def __init__(self, method, path, task, rid, session=False):
        self.started = time.monotonic()
        self.method = method
        self.path = path
        self.task = task  # what hung() can end alone (a greenlet), or None
        self.rid = rid
        self.line_start = True  # the last wsgi.errors write ended a line
        self.session = session  # a WebSocket: held as long as it is open, never hung


class Worker:
    """The base of the worker classes. A class gives run() (how requests
    are taken: threads, greenlets) and may change task_key(), cpu_clock()
    and hung()."""

    # Whether requests may run at once in this process (wsgi.multithread).
    multithread = False
    # Whether the class holds WebSockets (a greenlet or a task each).
    websockets = False

    def __init__(self, app, conf, listener, handler):
        self.app = app
        self.listener = listener
        self.threads = conf.get("threads", 1)
        self.connections = conf.get("connections", 1000)
        self.max_requests = conf.get("max_requests", 0)
        self.conf_module = conf.get("module", "")
        self.graceful = conf.get("graceful_timeout", 30)
        self.pid = os.getpid()
        self.rss_kib = 0
        self.rss_at = 0.0
        # A request still running this long after it began is hung: the
        # process reports where it is stuck and exits, and workerd starts a
        # new one (gunicorn's --timeout, with the stack trace it lacks).
        self.timeout = conf.get("timeout", 0)
        self.inflight = {}  # task_key() -> InFlight
        self.lock = threading.Lock()
        self.busy = 0
        self.served = 0
        self.skipped = 0  # requests edged had hung up on, not run
        # For the hang-up check (gone), which must not wait.
        self.poll = select.poll
        self.stopping = False
        # Written to when the worker should stop taking requests: it wakes
        # every thread waiting for the next one.
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.handler = handler(app, self) if handler is not None else None
        self.sessions = set()  # the WebSockets open
        self.cpu_mark = threading.local()  # .ns: see cpu_clock()

    # -- what a class may change -------------------------------------------

    def task_key(self):
        """What tells apart the requests served at once: the thread."""
        return threading.get_ident()

    def current_task(self):
        """What hung() may end alone for the request being served, or None."""
        return None

    def cpu_clock(self):
        """The CPU clock of the request's thread when its previous request
        was measured (or now, for its first), or None where one thread runs
        every request (its CPU cannot be told apart). Read once a request,
        at its end: the clock is a system call, not a vDSO read, and
        between two requests a thread only takes the next one, so a
        request's CPU is the thread's since the last, its reading and
        answering included."""
        last = getattr(self.cpu_mark, "ns", None)
        return time.thread_time_ns() if last is None else last

    def hung(self, key, req):
        """A request ran past its timeout: report where it is stuck, and
        end the process (a thread cannot be ended alone)."""
        self.report_hung(key, req)
        events.flush()
        os._exit(70)

    def run(self):
        raise NotImplementedError

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

    def blocking_listener(self):
        """Sets the shared socket up for threads that block in accept():
        the settings are the same for every worker (and systemd)."""
        self.listener.setblocking(True)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, ACCEPT_WAIT_MS * 1000))

    def serve_threads(self):
        """What the thread classes do before their threads take requests:
        SIGTERM stops, the shared socket is set for blocking accepts, the
        worker says it is ready, the heartbeat starts."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self.stop)
        self.blocking_listener()
        event("ready", pid=os.getpid())
        self.start_heartbeat()

    def start_heartbeat(self):
        threading.Thread(target=self.heartbeat, daemon=True).start()

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
                oldest = min(((k, r) for k, r in self.inflight.items() if not r.session),
                             key=lambda kv: kv[1].started, default=None)
            event("stats", served=served, busy=busy, skipped=skipped)
            if oldest is not None and self.timeout and time.monotonic() - oldest[1].started > self.timeout:
                self.hung(*oldest)
            time.sleep(1)

    def stack_of(self, key, req):
        """Where the request's thread or greenlet is."""
        task = req.task
        if task is not None:
            frame = getattr(task, "gr_frame", None)
        else:
            frame = sys._current_frames().get(key)
        return "".join(traceback.format_stack(frame)) if frame is not None else "(no stack)"

    def report_hung(self, key, req, stack=None, task=None):
        """The hung event: task says whether the request alone is ended
        (a greenlet, a task), not the process."""
        if stack is None:
            stack = self.stack_of(key, req)
        if task is None:
            task = req.task is not None
        event("hung", method=req.method, path=req.path, seconds=round(time.monotonic() - req.started, 1),
              timeout=self.timeout, traceback=stack, greenlet=task, request_id=req.rid)

    def begin(self, method, path, rid, session=False):
        info = InFlight(method, path, self.current_task(), rid, session)
        with self.lock:
            self.busy += 1
            self.inflight[self.task_key()] = info

    def held_open(self):
        """The request being served is now a long-lived exchange (an
        accepted WebSocket): the hung-request watch leaves it alone."""
        with self.lock:
            req = self.inflight.get(self.task_key())
            if req is not None:
                req.session = True

    def progress(self):
        """A streamed response that sends a chunk is not hung."""
        with self.lock:
            req = self.inflight.get(self.task_key())
            if req is not None:
                req.started = time.monotonic()

    def end(self):
        with self.lock:
            self.inflight.pop(self.task_key(), None)
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
        while len(buf) < frames.HEADER_LEN:
            data = recv(1 << 16)
            if not data:
                return
            buf += data
        if legacy.looks_legacy(buf):
            # Not a request frame of this version: maybe one of the
            # version before, from an edged that an upgrade has not yet
            # restarted.
            while len(buf) < legacy.SEEN_AT:
                data = recv(1 << 16)
                if not data:
                    return
                buf += data
            if legacy.is_legacy(buf):
                legacy.serve(self, conn, buf, taken)
                return
        need = frames.request_end(buf)
        while not need:
            data = recv(1 << 16)
            if not data:
                return
            buf += data
            need = frames.request_end(buf)
        req = frames.parse_request(buf, need)
        session = req.session
        if req.deadline and time.time_ns() > req.deadline:
            # It waited in the queue past limits.queue_timeout: edged has
            # answered 503 (or is about to); running it now helps no one.
            conn.sendall(frames.EXPIRED_FRAME)
            return
        if session:
            if self.gone(conn):
                with self.lock:
                    self.skipped += 1
                return
            self.handler.serve_session(conn, req, buf[need:])
            return
        whole = req.body_len <= MEMORY_BODY
        total = need + (frames.HEADER_LEN + req.body_len if req.body_len else 0)
        if whole:
            # The rest of the request (edged sends a body of this size in
            # one frame), each read asking for room for a GONE frame
            # after it, and one copy to join the pieces.
            if len(buf) < total:
                parts = [buf]
                have = len(buf)
                while have < total:
                    data = recv(total - have + frames.HEADER_LEN)
                    if not data:
                        return
                    parts.append(data)
                    have += len(data)
                buf = b"".join(parts)
        body = frames.Body(recv, buf[need:], req.body_len)
        data = body.read_all() if whole else None
        # The request is read (a big body's first part): looked at before
        # any work is spent on it, since under a flood of reset requests
        # most are given up. A request of up to GONE_MARKED read whole
        # came with edged's GONE frame if edged had written one by the
        # last read (it writes it before it looks whether a worker took
        # the request): no system call is needed to know. A bigger one is
        # polled for edged's hang-up: its GONE frame may not have found
        # room in the socket's buffer.
        if (frames.is_gone(body.raw) if whole and total <= GONE_MARKED else self.gone(conn)):
            # Its client went away while it waited in the queue: edged
            # has answered for it, and running it now helps no one.
            with self.lock:
                self.skipped += 1
            return
        self.handler.serve(conn, req, data, body, taken)

    def gone(self, conn):
        """Whether edged has hung up on conn: it shuts down its side of a
        request whose client went away before a worker took it, and may
        close it, but the connection waits in the queue all the same.
        Looked at once, without waiting, when a request over GONE_MARKED
        is read (a body the app reads as it comes, its first part), and
        for a WebSocket: one poll() system call. A poll object
        made for each call costs no more than one kept for each thread
        (register, poll, unregister), and is shared with no one."""
        p = self.poll()
        # POLLHUP and POLLERR come unasked.
        p.register(conn.fileno(), select.POLLRDHUP)
        return bool(p.poll(0))

    def measured(self, taken, started, cpu):
        """This request's measurements, for the end frame: when it was
        taken, the app's wall and CPU time, the pid and RSS."""
        wall = time.monotonic_ns() - started
        if cpu is not None:
            now = time.thread_time_ns()
            self.cpu_mark.ns = now
            cpu = now - cpu
        else:
            cpu = -1
        now = time.monotonic()
        if now - self.rss_at >= 1.0:
            self.rss_at = now
            try:
                with open("/proc/self/statm", "rb") as f:
                    self.rss_kib = int(f.read().split()[1]) * PAGE_KIB
            except (OSError, ValueError, IndexError):
                pass
        return taken, wall, cpu, self.pid, self.rss_kib
