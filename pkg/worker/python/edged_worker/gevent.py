"""The gevent class: one greenlet per request, up to pool.connections at
once. boot.py has patched the standard library before anything else was
imported, as gunicorn's gevent worker does."""

import os
import signal

import gevent
import gevent.pool
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
        so the rest wait in the shared queue for another worker."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        gevent.signal_handler(signal.SIGTERM, self.stop)
        event("ready", pid=os.getpid())
        self.start_heartbeat()
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
