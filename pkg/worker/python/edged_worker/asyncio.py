"""The asgi class: an asyncio loop (uvloop where the interpreter can
import it) that hosts an ASGI app, up to pool.connections requests at
once. The loop takes the next request off the shared queue only while it
has room, so the rest wait there for another worker."""

import asyncio
import collections
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback

from edged_worker import asgi, base, frames
from edged_worker.events import event

# A body held unread past this pauses reading from edged.
HELD_MAX = 1 << 20
DONTWAIT = socket.MSG_DONTWAIT


class Conn:
    """One connection from edged: the request frame and its body frames,
    then the app's answer. Straight on the socket, without a transport:
    under load the request is in the socket by the time the worker takes
    the connection, so one read without waiting gets it, and the answer
    goes out in one write; the loop watches the socket only when it must
    wait (a request still arriving, a big body, a client's hang-up the
    app listens for, an answer edged is slow to take)."""

    __slots__ = ("worker", "sock", "fd", "taken", "buf", "req", "body_left", "in_frame", "chunks", "held",
                 "body_done", "gone", "waiters", "task", "reading", "closed", "broken", "inbox", "held_in", "writing", "wqueue", "blocking")

    def __init__(self, worker, fd):
        self.worker = worker
        self.fd = fd
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fd)
        self.taken = time.time_ns()
        self.buf = b""  # bytes not yet parsed
        self.req = None
        self.body_left = 0  # body bytes still to come
        self.in_frame = 0  # payload bytes left in the current body frame
        self.chunks = collections.deque()
        self.held = 0  # bytes in chunks
        self.body_done = False
        self.gone = False  # edged hung up: the client went away
        self.waiters = []
        self.task = None
        self.reading = False
        self.closed = False
        self.broken = False  # a write to edged failed
        self.inbox = None  # a session's messages from edged
        self.held_in = 0  # bytes of them not yet received by the app
        self.writing = False  # a task is writing a frame
        self.wqueue = None  # the tasks waiting for their turn to write
        self.blocking = True  # the socket's mode: non-blocking once a write must wait

    # -- reading -------------------------------------------------------------

    def readable(self):
        """Reads what is there, without waiting (the loop's callback, and
        the first read)."""
        try:
            data = self.sock.recv(1 << 16, DONTWAIT)
        except BlockingIOError:
            self.read(True)
            return
        except OSError:
            data = b""
        if not data:
            self.hang_up()
            return
        try:
            self.received(data)
        except frames.FrameError as e:
            event("log", level="warn", message="connection to edged failed", error=str(e))
            self.close()
        except OSError:
            self.close()  # edged hung up while the worker answered (expired)

    def read(self, on):
        """Has the loop watch the socket for reading, or not."""
        if on != self.reading and not self.closed:
            self.reading = on
            if on:
                self.worker.loop.add_reader(self.fd, self.readable)
            else:
                self.worker.loop.remove_reader(self.fd)

    def hang_up(self):
        self.gone = True
        self.read(False)
        self.wake()
        if self.task is None:
            self.close()  # nothing began: nothing to answer

    def received(self, data):
        if self.req is None:
            self.buf += data
            if not self.read_request():
                self.read(True)
                return
            data, self.buf = self.buf, b""
            if self.req is None:  # expired
                return
        if self.req.session:
            self.feed_session(data)
            return
        self.feed(data)
        if self.task is None:
            if self.body_done or self.req.body_len > frames.MEMORY_BODY:
                self.start()
            else:
                self.read(True)
        elif not self.body_done and self.held <= HELD_MAX:
            self.read(True)
        else:
            self.read(False)

    def read_request(self):
        """Whether the request frame is in; the body's first bytes stay in
        buf. A request past its deadline is answered and dropped."""
        buf = self.buf
        need = frames.request_end(buf)
        if not need:
            return False
        req = frames.parse_request(buf, need)
        self.buf = buf[need:]
        if req.deadline and time.time_ns() > req.deadline:
            self.write(frames.EXPIRED_FRAME)
            self.close()
            return True
        self.req = req
        self.body_left = req.body_len
        self.body_done = req.body_len == 0
        return True

    def feed(self, data):
        """Takes the body's frames apart into chunks."""
        while data and self.body_left > 0:
            if self.in_frame == 0:
                data = self.buf + data
                if len(data) < frames.HEADER_LEN:
                    self.buf = data
                    return
                self.buf = b""
                n = frames.check_header(data, 0, frames.BODY)
                if n == 0 or n > self.body_left:
                    raise frames.FrameError("body frame of %d bytes with %d to come" % (n, self.body_left))
                self.in_frame = n
                data = data[frames.HEADER_LEN:]
                continue
            piece = data[:self.in_frame]
            data = data[len(piece):]
            self.in_frame -= len(piece)
            self.body_left -= len(piece)
            self.chunks.append(piece)
            self.held += len(piece)
        if self.body_left == 0:
            self.body_done = True
        self.wake()

    def feed_session(self, data):
        """Takes a session's MESSAGE and CLOSE frames apart into the inbox;
        reading stops while the app has HELD_MAX bytes of them unread."""
        if self.inbox is None:
            self.inbox = collections.deque()
            self.buf = bytearray(self.buf)
        buf = self.buf
        buf += data
        at = 0
        while len(buf) - at >= frames.HEADER_LEN:
            version, kind, flags, n = frames.HEADER.unpack_from(buf, at)
            if version != frames.VERSION or kind not in (frames.MESSAGE, frames.CLOSE):
                raise frames.FrameError("frame of type %d, version %d in a session" % (kind, version))
            if len(buf) - at < frames.HEADER_LEN + n:
                break
            payload = bytes(buf[at + frames.HEADER_LEN:at + frames.HEADER_LEN + n])
            at += frames.HEADER_LEN + n
            if kind == frames.CLOSE:
                self.inbox.append((frames.CLOSE, frames.CLOSE_CODE.unpack_from(payload)[0] if n >= 2 else 1005))
            else:
                self.inbox.append(("text" if flags & frames.FLAG_TEXT else "bytes", payload))
                self.held_in += n
        del buf[:at]
        if self.task is None:
            self.start()
        self.read(self.held_in <= HELD_MAX)
        self.wake()

    async def next_message(self):
        """The next message from edged: ("text" or "bytes", data), or
        (CLOSE, code) once it closes or hangs up (1006)."""
        while not self.inbox and not self.gone:
            self.read(True)
            await self.wait()
        if self.inbox:
            m = self.inbox.popleft()
            if m[0] != frames.CLOSE:
                self.held_in -= len(m[1])
                if self.held_in <= HELD_MAX // 2:
                    self.read(True)
            return m
        return frames.CLOSE, 1006

    def start(self):
        w = self.worker
        if w.gone(self.fd):
            with w.lock:
                w.skipped += 1
            self.close()
            return
        self.read(False)
        self.task = w.loop.create_task(self.run())

    async def run(self):
        w = self.worker
        f = self.req.fields
        w.begin(f[frames.F_METHOD], f[frames.F_PATH], f[frames.F_REQUEST_ID])
        try:
            if self.req.session:
                await asgi.serve_websocket(w.app, self, self.req, w.state, w)
            else:
                await asgi.serve_http(w.app, self, self.req, w.state, w, self.taken)
        except (asyncio.CancelledError, OSError):
            pass  # ended past app.timeout, or edged hung up
        finally:
            w.end()
            self.close()

    def close(self):
        if not self.closed:
            self.read(False)
            self.closed = True
            self.sock.close()
            self.worker.released()

    # -- what asgi.HTTP uses --------------------------------------------------

    async def next_chunk(self):
        """The next piece of the body and whether more follows."""
        while not self.chunks and not self.body_done and not self.gone:
            self.read(True)
            await self.wait()
        if self.chunks:
            data = self.chunks.popleft()
            self.held -= len(data)
            if not self.body_done and self.held <= HELD_MAX // 2:
                self.read(True)
            return data, bool(self.chunks) or not self.body_done
        return b"", False

    async def wait_gone_or(self, http):
        """Waits until edged hangs up (the client went away) or the answer
        is complete."""
        while not (self.gone or http.complete):
            self.read(True)
            await self.wait()

    def wait(self):
        fut = self.worker.loop.create_future()
        self.waiters.append(fut)
        return fut

    def wake(self):
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def write(self, data):
        """Writes what the socket takes now; returns the rest."""
        try:
            n = self.sock.send(data, DONTWAIT)
        except BlockingIOError:
            n = 0
        except OSError:
            self.broken = True
            raise
        return data[n:] if n < len(data) else b""

    async def send(self, data):
        """Writes all of data, whole, waiting for edged to take it: one
        frame at a time however many tasks write (a broadcast and the
        worker's own close of a WebSocket, say), in turn."""
        if self.writing:
            fut = self.worker.loop.create_future()
            if self.wqueue is None:
                self.wqueue = collections.deque()
            self.wqueue.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self.next_writer()  # handed the turn as it was cancelled
                raise
        else:
            self.writing = True
        try:
            rest = self.write(data)
            if rest:
                await self.write_rest(rest)
        finally:
            self.next_writer()

    def next_writer(self):
        """Hands the turn to write to the next task waiting for it."""
        while self.wqueue:
            fut = self.wqueue.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.writing = False

    async def write_rest(self, data):
        if not data:
            return
        if self.blocking:
            self.sock.setblocking(False)
            self.blocking = False
        try:
            await self.worker.loop.sock_sendall(self.sock, data)
        except asyncio.CancelledError:
            # Part of a frame may be out: nothing more can follow it.
            self.broken = True
            self.close()
            raise
        except OSError:
            self.broken = True
            raise


class Worker(base.Worker):

    multithread = True
    websockets = True

    def __init__(self, *args):
        super().__init__(*args)
        self.loop = None
        self.loop_thread = None
        self.loop_alive = time.monotonic()
        self.room = 0  # requests the worker may take still
        self.state = {}  # the lifespan's state, copied into each scope
        self.watching = False
        self.stopped = None

    def task_key(self):
        return asyncio.current_task(self.loop)

    def current_task(self):
        return asyncio.current_task(self.loop)

    def cpu_clock(self):
        return None  # one thread runs every task

    def progress_of(self, task):
        with self.lock:
            req = self.inflight.get(task)
            if req is not None:
                req.started = time.monotonic()

    def stack_of(self, key, req):
        """Where a task waits: the chain of awaits from its coroutine."""
        frames_ = []
        coro = req.task.get_coro() if req.task is not None else None
        while coro is not None:
            f = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if f is not None:
                frames_.append((f, f.f_lineno))
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        if not frames_:
            return "(no stack)"
        return "".join(traceback.format_list(traceback.StackSummary.extract(frames_)))

    def hung(self, key, req):
        if time.monotonic() - self.loop_alive > 2:
            # The loop itself is stuck in a call that does not await:
            # no task can be ended alone, the process ends.
            frame = sys._current_frames().get(self.loop_thread)
            stack = "".join(traceback.format_stack(frame)) if frame is not None else "(no stack)"
            self.report_hung(key, req, stack, task=False)
            from edged_worker import events
            events.flush()
            os._exit(70)
        self.report_hung(key, req, self.stack_of(key, req), task=True)
        with self.lock:
            self.inflight.pop(key, None)
        self.loop.call_soon_threadsafe(req.task.cancel)

    def gone(self, fd):
        p = select.poll()
        p.register(fd, select.POLLRDHUP)
        return bool(p.poll(0))

    def stop(self, *_):
        self.stopping = True
        self.watch_queue(False)
        # The WebSockets are told the worker restarts (1012), spread over
        # a few seconds so that their clients do not all come back at
        # once.
        sessions = list(self.sessions)
        spread = min(3.0, self.graceful / 2)
        for i, ws in enumerate(sessions):
            self.loop.call_later(spread * i / len(sessions), ws.server_close, 1012)
        if self.stopped is not None and not self.stopped.done():
            self.stopped.set_result(None)

    def watch_queue(self, on):
        """Has the loop take requests off the shared queue, or not."""
        if on != self.watching:
            self.watching = on
            if on:
                self.loop.add_reader(self.listener.fileno(), self.take)
            else:
                self.loop.remove_reader(self.listener.fileno())

    def take(self):
        """Takes the requests waiting in the queue, while there is room."""
        accept = self.listener._accept
        while self.room > 0 and not self.stopping:
            try:
                fd, _ = accept()
            except (BlockingIOError, InterruptedError):
                return  # another worker took it
            except OSError as e:
                event("log", level="error", message="accept failed", error=str(e))
                os._exit(1)
            self.room -= 1
            if self.room == 0:
                self.watch_queue(False)
            Conn(self, fd).readable()

    def released(self):
        """A connection is done: its room is free again."""
        self.room += 1
        if self.room == 1 and not self.stopping:
            self.watch_queue(True)

    def run(self):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            import uvloop
            loop = uvloop.new_event_loop()
        except ImportError:
            loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        self.loop_thread = threading.get_ident()
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        code = loop.run_until_complete(self.main())
        os._exit(code)

    def tick(self):
        self.loop_alive = time.monotonic()
        self.loop.call_later(0.5, self.tick)

    async def main(self):
        self.tick()
        lifespan = asgi.Lifespan(self.app)
        try:
            await lifespan.start()
        except asgi.StartupFailed as e:
            event("import_failed", module=self.conf_module, summary="the app's lifespan startup failed: %s" % (e or "(no message)"),
                  traceback="")
            return 3
        self.state = lifespan.state
        self.room = self.connections
        self.listener.setblocking(False)
        self.stopped = self.loop.create_future()
        event("ready", pid=os.getpid())
        self.start_heartbeat()
        if not self.stopping:
            self.watch_queue(True)
            await self.stopped
        # Stopping: what the worker holds finishes (workerd ends it
        # after pool.graceful_timeout), then the app's shutdown.
        while True:
            with self.lock:
                busy = self.busy
            if not busy:
                break
            await asyncio.sleep(0.05)
        await lifespan.stop(5)
        return 0
