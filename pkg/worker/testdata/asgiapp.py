"""ASGI apps for the asgi class's tests: plain ASGI 3, no framework. The
X-Test header picks what the app does."""

import asyncio
import hashlib
import json
import os

STARTED = []


def header(scope, name):
    for n, v in scope["headers"]:
        if n == name:
            return v.decode("latin-1")
    return ""


async def respond(send, obj, status=200, headers=()):
    body = json.dumps(obj).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")] + list(headers)})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive):
    chunks, events = [], 0
    while True:
        m = await receive()
        events += 1
        assert m["type"] == "http.request", m
        chunks.append(m["body"])
        if not m.get("more_body"):
            return b"".join(chunks), events


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                scope["state"]["started_by"] = "lifespan"
                STARTED.append(os.getpid())
                await send({"type": "lifespan.startup.complete"})
            elif m["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    mode = header(scope, b"x-test") or "echo"
    if mode == "echo":
        body, events = await read_body(receive)
        s = {k: v for k, v in scope.items() if k not in ("headers", "state", "raw_path", "query_string", "extensions")}
        s["raw_path"] = scope["raw_path"].decode("latin-1")
        s["query_string"] = scope["query_string"].decode("latin-1")
        s["headers"] = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]]
        await respond(send, {"scope": s, "state": scope.get("state"), "extensions": scope.get("extensions"),
                             "body_len": len(body), "body_sha256": hashlib.sha256(body).hexdigest(),
                             "events": events, "pid": os.getpid()})
    elif mode == "stream":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        for i in range(3):
            await send({"type": "http.response.body", "body": b"data: %d\n\n" % i, "more_body": True})
            await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b""})
    elif mode == "raise_early":
        raise RuntimeError("before http.response.start")
    elif mode == "raise_mid":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a" * (300 << 10), "more_body": True})
        raise RuntimeError("after sending part of the body")
    elif mode == "no_response":
        return
    elif mode == "bad_header":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-bad", b"a\r\nb")]})
        await send({"type": "http.response.body", "body": b"never"})
    elif mode == "sleep":
        await asyncio.sleep(float(header(scope, b"x-seconds") or "0.2"))
        await respond(send, {"slept": True})
    elif mode == "block":
        import time
        time.sleep(float(header(scope, b"x-seconds") or "0.2"))
        await respond(send, {"blocked": True})
    elif mode == "disconnect":
        # Reads the body, then waits to hear the client went away.
        await read_body(receive)
        m = await receive()
        await respond(send, {"then": m["type"]})
    else:
        await respond(send, {"mode": mode}, status=404)


class Legacy:
    """An ASGI 2 app: a class made from the scope."""

    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        if self.scope["type"] != "http":
            return
        await respond(send, {"asgi2": True, "path": self.scope["path"]})


async def failing_startup(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database at db:5432"})
        return
    await respond(send, {})


async def no_lifespan(scope, receive, send):
    if scope["type"] != "http":
        raise ValueError("only http")
    await respond(send, {"ok": True})


def wsgi_app(environ, start_response):
    start_response("200 OK", [])
    return [b"wsgi"]


async def ws_echo(scope, receive, send):
    """Echoes a WebSocket's messages; answers HTTP with 200."""
    if scope["type"] == "lifespan":
        return
    if scope["type"] == "http":
        await respond(send, {})
        return
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        m = await receive()
        if m["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": m.get("text"), "bytes": m.get("bytes")})
