"""ASGI 3 (and 2, wrapped): the scope built from edged's neutral request,
the receive and send of an HTTP exchange, and the lifespan protocol.

The answer goes back in the same frames as a WSGI app's: buffered by
default, each chunk passed on at once when the app asks for its answer to
be streamed (X-Accel-Buffering: no, text/event-stream), as wsgi.py does."""

import asyncio
import re
import time
import traceback

from edged_worker import frames
from edged_worker.events import event
from edged_worker.wsgi import ERROR_HEAD, ERROR_BODY, INSTANCE

ASGI = {"version": "3.0", "spec_version": "2.3"}
TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
FLUSH_AT = 256 << 10
ERROR_500 = (frames.header(frames.HEAD, len(ERROR_HEAD)) + ERROR_HEAD
             + frames.chunk_header(len(ERROR_BODY)) + ERROR_BODY + frames.END_FRAME)
(F_METHOD, F_SCHEME, F_PROTOCOL, F_TARGET, F_PATH, F_QUERY, F_ROOT, F_SERVER_NAME,
 F_SERVER_PORT, F_CLIENT_ADDR, F_CLIENT_PORT, F_REQUEST_ID) = range(frames.N_FIELDS)
N_FIELDS = frames.N_FIELDS
_VERSIONS = {"HTTP/1.0": "1.0", "HTTP/1.1": "1.1", "HTTP/2.0": "2"}
_NAMES = {}  # header name -> its lower-case bytes, for the names seen so far


def _port(s):
    try:
        return int(s)
    except ValueError:
        return 0


def scope(req, state):
    """The HTTP scope of req (a frames.Request). path is the decoded path
    as text (UTF-8, a byte that is not replaced, as uvicorn does), raw_path
    the path as the client sent it."""
    f = req.fields
    target = f[F_TARGET].encode("latin-1")
    raw_path = target.split(b"?", 1)[0]
    path = f[F_PATH].encode("latin-1").decode("utf-8", "replace")
    names = _NAMES
    headers = []
    it = iter(f)
    for _ in range(N_FIELDS):
        next(it)
    for name, value in zip(it, it):
        n = names.get(name)
        if n is None:
            n = name.lower().encode("latin-1")
            if len(names) < 4096:
                names[name] = n
        headers.append((n, value.encode("latin-1")))
    s = {
        "type": "http",
        "asgi": ASGI,
        "http_version": _VERSIONS.get(f[F_PROTOCOL], "1.1"),
        "method": f[F_METHOD],
        "scheme": f[F_SCHEME],
        "path": path,
        "raw_path": raw_path,
        "query_string": f[F_QUERY].encode("latin-1"),
        "root_path": f[F_ROOT],
        "headers": headers,
        "client": (f[F_CLIENT_ADDR], _port(f[F_CLIENT_PORT])) if f[F_CLIENT_ADDR] else None,
        "server": (f[F_SERVER_NAME], _port(f[F_SERVER_PORT])),
        "state": state.copy(),
    }
    if req.tls_version:
        s["extensions"] = {"tls": {"tls_version": req.tls_version, "cipher_suite": req.cipher,
                                   "server_cert": None, "client_cert_chain": [], "client_cert_name": None,
                                   "client_cert_error": None}}
    return s


def streamed(headers):
    for name, value in headers:
        n = name.lower()
        if n == b"x-accel-buffering" and value.strip().lower() == b"no":
            return True
        if n == b"content-type" and value.lower().startswith(b"text/event-stream"):
            return True
    return False


def head_frame(status, headers):
    """The head frame for an http.response.start, once checked: a
    TypeError or ValueError says what is wrong."""
    if type(status) is not int or not 100 <= status <= 599:
        raise ValueError("http.response.start: status must be an int from 100 to 599, not %r" % (status,))
    parts = [INSTANCE + b"%d" % status]
    for h in headers:
        try:
            name, value = h
        except (TypeError, ValueError):
            raise TypeError("http.response.start: header %r is not a (name, value) pair of bytes" % (h,)) from None
        if type(name) is not bytes or type(value) is not bytes:
            raise TypeError("http.response.start: header %r is not a (name, value) pair of bytes" % (h,))
        if not TOKEN.fullmatch(name):
            raise ValueError("http.response.start: header name %r is not an HTTP token" % (name,))
        if CONTROL.search(value):
            raise ValueError("http.response.start: header %r holds a control character" % (h,))
        parts.append(name)
        parts.append(value)
    h = b"\0".join(parts)
    return frames.header(frames.HEAD, len(h)) + h


class HTTP:
    """One HTTP exchange of an ASGI app over a worker connection (the
    asyncio class's Conn): receive() and send() as ASGI wants them."""

    __slots__ = ("conn", "body_read", "started", "complete", "stream", "sent", "out", "size")

    def __init__(self, conn):
        self.conn = conn
        self.body_read = False  # the last http.request event went out
        self.started = False  # http.response.start came
        self.complete = False  # the last body chunk went out
        self.stream = False
        self.sent = False  # the head is out: a failure now can only abort
        self.out = []  # frames not yet sent
        self.size = 0

    async def receive(self):
        conn = self.conn
        if not self.body_read:
            data, more = await conn.next_chunk()
            self.body_read = not more
            return {"type": "http.request", "body": data, "more_body": more}
        # The whole body is in: what is left to hear of is the client
        # going away (edged hangs up), or the answer being done.
        if not (conn.gone or self.complete):
            await conn.wait_gone_or(self)
        return {"type": "http.disconnect"}

    async def send(self, message):
        t = message["type"]
        if t == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            headers = message.get("headers", ())
            self.out.append(head_frame(message["status"], headers))
            self.started = True
            self.stream = streamed(headers)
            if self.stream:
                await self.flush()
            return
        if t == "http.response.body":
            if not self.started:
                raise RuntimeError("http.response.body sent before http.response.start")
            if self.complete:
                raise RuntimeError("http.response.body sent after the response was complete")
            body = message.get("body", b"")
            if type(body) is not bytes:
                if isinstance(body, (bytearray, memoryview)):
                    body = bytes(body)
                else:
                    raise TypeError("http.response.body: body must be bytes, not %s" % type(body).__name__)
            if body:
                self.out.append(frames.chunk_header(len(body)))
                self.out.append(body)
                self.size += len(body)
            if not message.get("more_body", False):
                self.complete = True
                self.conn.wake()
                return  # the end frame, with the measurements, follows
            if self.stream or self.size >= FLUSH_AT:
                await self.flush()
                if self.stream:
                    self.conn.worker.progress_of(self.conn.task)
            return
        raise RuntimeError("unexpected ASGI message %r in an HTTP exchange" % (t,))

    async def flush(self):
        if self.out:
            data = b"".join(self.out)
            self.sent = True
            self.out.clear()
            self.size = 0
            await self.conn.send(data)


async def serve_http(app, conn, req, state, worker, taken):
    """Runs the app for req on conn and sends its answer."""
    http = HTTP(conn)
    started = time.monotonic_ns()
    try:
        await app(scope(req, state), http.receive, http.send)
        if not http.started:
            raise RuntimeError("the app returned without sending http.response.start")
        if not http.complete:
            raise RuntimeError("the app returned before its response was complete (more_body was still true)")
    except asyncio.CancelledError:
        # Past app.timeout (the heartbeat reported it), or the worker
        # stops: the client has had its 504 or will be told otherwise.
        conn.write(frames.ABORT_FRAME if http.sent else ERROR_500)
        raise
    except Exception:
        if conn.broken:
            return  # edged hung up: its client went away
        failed(req)
        await conn.send(frames.ABORT_FRAME if http.sent else ERROR_500)
        return
    http.out.append(frames.measured(*worker.measured(taken, started, None)))
    await conn.send(b"".join(http.out))


def failed(req):
    f = req.fields
    event("log", level="error", message="app raised", request_id=f[F_REQUEST_ID],
          method=f[F_METHOD], path=f[F_PATH], traceback=traceback.format_exc())


class Lifespan:
    """The lifespan protocol: startup before the worker takes requests,
    shutdown when it stops. An app that raises before it says anything
    does not speak it (as uvicorn's "auto"): the worker goes on."""

    def __init__(self, app):
        self.app = app
        self.state = {}
        self.inbox = asyncio.Queue()
        self.startup = asyncio.get_running_loop().create_future()
        self.shutdown = asyncio.get_running_loop().create_future()
        self.task = None
        self.supported = True

    async def receive(self):
        return await self.inbox.get()

    async def send(self, message):
        t = message["type"]
        if t == "lifespan.startup.complete":
            self.startup.done() or self.startup.set_result(None)
        elif t == "lifespan.startup.failed":
            self.startup.done() or self.startup.set_exception(StartupFailed(message.get("message", "")))
        elif t == "lifespan.shutdown.complete":
            self.shutdown.done() or self.shutdown.set_result(None)
        elif t == "lifespan.shutdown.failed":
            event("log", level="error", message="lifespan shutdown failed", error=message.get("message", ""))
            self.shutdown.done() or self.shutdown.set_result(None)
        else:
            raise RuntimeError("unexpected ASGI message %r in the lifespan protocol" % (t,))

    async def main(self):
        try:
            await self.app({"type": "lifespan", "asgi": ASGI, "state": self.state}, self.receive, self.send)
        except BaseException as e:
            if not self.startup.done():
                self.supported = False
                self.startup.set_result(None)
                tb = traceback.format_exc()
                event("log", level="info", message="the app does not speak the ASGI lifespan protocol: "
                      "no startup or shutdown events", error=repr(e), traceback=tb)
            elif not self.shutdown.done():
                self.shutdown.set_result(None)
                if not isinstance(e, asyncio.CancelledError):
                    event("log", level="error", message="lifespan raised", traceback=traceback.format_exc())
        finally:
            if not self.startup.done():
                self.startup.set_result(None)
                self.supported = False
            if not self.shutdown.done():
                self.shutdown.set_result(None)

    async def start(self):
        """Runs startup; raises StartupFailed when the app says so."""
        self.task = asyncio.get_running_loop().create_task(self.main())
        await self.inbox.put({"type": "lifespan.startup"})
        await self.startup

    async def stop(self, timeout):
        if not self.supported or self.task is None or self.task.done():
            return
        await self.inbox.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(asyncio.shield(self.shutdown), timeout)
        except asyncio.TimeoutError:
            event("log", level="warn", message="lifespan shutdown did not complete in time", timeout=timeout)


class StartupFailed(Exception):
    """The app sent lifespan.startup.failed."""


# -- WebSockets ---------------------------------------------------------------

CONNECTING, OPEN, CLOSED = range(3)


def ws_scope(req, state):
    """The websocket scope of req: the HTTP scope's keys less the method,
    the scheme ws or wss, the subprotocols the client offered."""
    s = scope(req, state)
    del s["method"]
    s["type"] = "websocket"
    s["scheme"] = "wss" if s["scheme"] == "https" else "ws"
    subprotocols = []
    for name, value in s["headers"]:
        if name == b"sec-websocket-protocol":
            subprotocols += [p.strip() for p in value.decode("latin-1").split(",") if p.strip()]
    s["subprotocols"] = subprotocols
    s.setdefault("extensions", {})["websocket.http.response"] = {}
    return s


def accept_frame(subprotocol, headers):
    if subprotocol is None:
        subprotocol = ""
    if type(subprotocol) is not str or (subprotocol and not TOKEN.fullmatch(subprotocol.encode("latin-1", "replace"))):
        raise ValueError("websocket.accept: subprotocol %r is not a token" % (subprotocol,))
    parts = [INSTANCE + subprotocol.encode("latin-1")]
    for h in headers:
        try:
            name, value = h
        except (TypeError, ValueError):
            raise TypeError("websocket.accept: header %r is not a (name, value) pair of bytes" % (h,)) from None
        if type(name) is not bytes or type(value) is not bytes or not TOKEN.fullmatch(name) or CONTROL.search(value):
            raise ValueError("websocket.accept: header %r is not a token and a value without control characters" % (h,))
        if name.lower() == b"sec-websocket-protocol":
            continue  # edged answers it, from subprotocol
        parts.append(name)
        parts.append(value)
    payload = b"\0".join(parts)
    return frames.header(frames.ACCEPT, len(payload)) + payload


class WebSocket:
    """One WebSocket of an ASGI app over its worker connection: edged has
    done the handshake's checks and speaks RFC 6455 to the client; the
    app's events become ACCEPT, MESSAGE and CLOSE frames, and back."""

    __slots__ = ("conn", "state", "connected", "http", "closed_code")

    def __init__(self, conn):
        self.conn = conn
        self.state = CONNECTING
        self.connected = False  # websocket.connect went to the app
        self.http = None  # the app's own HTTP answer instead, once begun
        self.closed_code = None

    async def receive(self):
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        if self.state == CLOSED and self.closed_code is not None:
            return {"type": "websocket.disconnect", "code": self.closed_code}
        kind, data = await self.conn.next_message()
        if kind == frames.CLOSE:
            self.state = CLOSED
            self.closed_code = data
            return {"type": "websocket.disconnect", "code": data}
        if kind == "text":
            return {"type": "websocket.receive", "text": data.decode("utf-8")}
        return {"type": "websocket.receive", "bytes": data}

    async def send(self, message):
        t = message["type"]
        conn = self.conn
        if t == "websocket.accept":
            if self.state != CONNECTING or self.http is not None:
                raise RuntimeError("websocket.accept after the WebSocket was accepted, closed or answered")
            await conn.send(accept_frame(message.get("subprotocol"), message.get("headers", ())))
            self.state = OPEN
            # Open, it may last for hours: no longer a request that can hang.
            conn.worker.held_open()
        elif t == "websocket.send":
            if self.state != OPEN:
                raise RuntimeError("websocket.send on a WebSocket that is not open")
            text, data = message.get("text"), message.get("bytes")
            if text is not None:
                await conn.send(frames.message(text.encode("utf-8"), True))
            elif data is not None:
                await conn.send(frames.message(bytes(data), False))
            else:
                raise ValueError("websocket.send with neither text nor bytes")
        elif t == "websocket.close":
            if self.state == CONNECTING and self.http is None:
                # Refused before accepting: a 403, as the spec says.
                await conn.send(refusal(403))
            elif self.state == OPEN:
                await conn.send(frames.close(int(message.get("code", 1000)), message.get("reason") or ""))
            self.state = CLOSED
            if self.closed_code is None:
                self.closed_code = int(message.get("code", 1000))
        elif t in ("websocket.http.response.start", "websocket.http.response.body"):
            if self.state != CONNECTING:
                raise RuntimeError("%s after the WebSocket was accepted or closed" % t)
            if self.http is None:
                self.http = HTTP(conn)
            await self.http.send(dict(message, type=t.replace("websocket.", "", 1)))
            if self.http.complete:
                await conn.send(b"".join(self.http.out) + frames.END_FRAME)
                self.http.out.clear()
                self.state = CLOSED
        else:
            raise RuntimeError("unexpected ASGI message %r on a WebSocket" % (t,))

    def server_close(self, code):
        """Closes from the worker's side (it stops: 1012): the client is
        told, the app hears websocket.disconnect."""
        if self.state == OPEN:
            self.conn.worker.loop.create_task(self.conn.send(frames.close(code)))
        self.state = CLOSED
        self.closed_code = code
        self.conn.wake()


def refusal(status):
    h = INSTANCE + b"%d" % status
    return frames.header(frames.HEAD, len(h)) + h + frames.END_FRAME


async def serve_websocket(app, conn, req, state, worker):
    """Runs the app for the WebSocket req opens, until it ends."""
    ws = WebSocket(conn)
    worker.sessions.add(ws)
    try:
        await app(ws_scope(req, state), ws.receive, ws.send)
    except Exception:
        if conn.broken:
            return
        failed(req)
        state, ws.state = ws.state, CLOSED
        if state == CONNECTING and ws.http is None:
            await conn.send(ERROR_500)
        elif state == OPEN:
            await conn.send(frames.close(1011))
        return
    finally:
        worker.sessions.discard(ws)
    if ws.state == CONNECTING and ws.http is None:
        await conn.send(refusal(403))  # returned without accepting
    elif ws.state == CONNECTING:
        conn.write(frames.ABORT_FRAME)  # an HTTP answer left unfinished
    elif ws.state == OPEN:
        await conn.send(frames.close(1000))
