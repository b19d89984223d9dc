"""The gevent class: one greenlet per request, up to pool.connections at
once. boot.py has patched the standard library before anything else was
imported, as gunicorn's gevent worker does."""

import os
import signal
import struct
from contextvars import Context
from fcntl import ioctl
from termios import FIONBIO

import gevent
from gevent.hub import Waiter
from gevent.lock import BoundedSemaphore
from gevent.monkey import get_original

from edged_worker import base
from edged_worker.events import event


class HungRequest(Exception):
    """Raised in a greenlet whose request ran past app.timeout."""


class Worker(base.Worker):

    multithread = True
    websockets = True  # environ["wsgi.websocket"], for Flask-SocketIO

    def __init__(self, *args):
        super().__init__(*args)
        self.acceptor = None  # the greenlet that takes requests
        # The hang-up check (gone) must not wait: gevent's own poll would
        # go through its loop, and knows no POLLRDHUP.
        self.poll = get_original("select", "poll")

    def task_key(self):
        return gevent.getcurrent()

    def current_task(self):
        return gevent.getcurrent()

    def cpu_clock(self):
        return None  # one thread runs every greenlet

    def hung(self, key, req):
        # A greenlet can be ended alone: the others go on.
        self.report_hung(key, req)
        with self.lock:
            self.inflight.pop(key, None)
        req.task.kill(HungRequest("request ran past app.timeout"), block=False)

    def stop(self, *_):
        super().stop()
        # The WebSockets are told the worker restarts (1012), spread over
        # a few seconds so that their clients do not all come back at
        # once.
        sessions = list(self.sessions)
        spread = min(3.0, self.graceful / 2)
        for i, ws in enumerate(sessions):
            gevent.spawn_later(spread * i / len(sessions), ws.server_close, 1012)
        if self.acceptor is not None:
            # Parked in accept() or waiting for a free slot: no request
            # is in its hands, so ending it loses none. It is the main
            # greenlet, a plain greenlet without kill(): gevent.kill
            # throws GreenletExit into it from the hub.
            gevent.kill(self.acceptor)

    def run(self):
        """The acceptor takes the next request only while a slot is free,
        so the rest wait in the shared queue for another worker, and hands
        it to a server greenlet that is idle, or to a new one when none
        is. Server greenlets are kept and reused: a new greenlet costs
        this Python a fresh frame stack (a 16 KiB mmap, and a munmap when
        it ends, which flushes every CPU's TLB), twice a request's system
        calls."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        gevent.signal_handler(signal.SIGTERM, self.stop)
        event("ready", pid=os.getpid())
        self.start_heartbeat()
        hub = gevent.get_hub()
        self.slots = BoundedSemaphore(self.connections)
        self.idle = []  # the Waiters of server greenlets with nothing to do
        self.acceptor = gevent.getcurrent()
        accept = self.listener._accept
        ready = hub.loop.io(self.listener.fileno(), 1)
        held = False  # whether the acceptor holds a slot for the next request
        try:
            while not self.stopping:
                self.slots.acquire()
                held = True
                if self.stopping:
                    break
                while True:
                    try:
                        fd, _ = accept()
                        break
                    except BlockingIOError:
                        hub.wait(ready)
                    except InterruptedError:
                        pass
                held = False
                try:
                    ioctl(fd, FIONBIO, NONBLOCKING)
                except OSError:
                    os.close(fd)
                    self.slots.release()
                    continue
                if self.idle:
                    hub.loop.run_callback(self.idle.pop().switch, fd)
                else:
                    gevent.spawn(self.server, fd)
        except gevent.GreenletExit:
            pass
        except OSError as e:
            event("log", level="error", message="accept failed", error=str(e))
            os._exit(1)
        self.acceptor = None
        if held:
            self.slots.release()
        # What is in flight finishes: every slot comes back.
        for _ in range(self.connections):
            self.slots.acquire()
        os._exit(0)

    def server(self, fd):
        """Serves the request on fd, then waits for the next one the
        acceptor hands it, until the worker stops."""
        while True:
            conn = FdConn(fd)
            try:
                # A context of its own, as a new greenlet had: what one
                # request leaves in a ContextVar never reaches the next.
                # A kill for its request (HungRequest, an Exception) is
                # caught inside serve().
                Context().run(self.serve, conn)
            finally:
                conn.close()
                self.slots.release()
            if self.stopping:
                return
            waiter = Waiter()
            self.idle.append(waiter)
            try:
                fd = waiter.get()
            except HungRequest:
                # A kill meant for the request just served came after it
                # ended: this greenlet leaves, a new one takes its place.
                if waiter in self.idle:
                    self.idle.remove(waiter)
                return


# ioctl(FIONBIO): the accepted descriptor made non-blocking in one system
# call (a socket object would cost three: getsockname, getsockopt, ioctl).
NONBLOCKING = struct.pack("i", 1)


class FdConn(base.FdConn):
    """base.FdConn for a greenlet: the descriptor is non-blocking, and a
    read or write that would block waits in gevent's loop, so the other
    greenlets run meanwhile. The loop's watchers are made only when one
    is needed: edged writes a request whole before a worker takes it, and
    most answers fit in the socket's buffer."""

    __slots__ = ("readable", "writable")

    def __init__(self, fd):
        self.fd = fd
        self.readable = self.writable = None

    def recv(self, n):
        while True:
            try:
                return os.read(self.fd, n)
            except BlockingIOError:
                pass
            if self.readable is None:
                self.readable = gevent.get_hub().loop.io(self.fd, 1)
            gevent.get_hub().wait(self.readable)

    def sendall(self, data):
        view = memoryview(data)
        n = 0
        while n < len(view):
            try:
                n += os.write(self.fd, view[n:])
                continue
            except BlockingIOError:
                pass
            if self.writable is None:
                self.writable = gevent.get_hub().loop.io(self.fd, 2)
            gevent.get_hub().wait(self.writable)

    def close(self):
        for w in (self.readable, self.writable):
            if w is not None:
                w.close()
        os.close(self.fd)
