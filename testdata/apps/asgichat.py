"""A chat room as a plain ASGI app: the page at /, the WebSocket at /ws.
Every message a client sends goes to every client of this worker (run it
on one worker, or put the room in a shared store). module =
"asgichat:app", pool.class = "asgi"."""

import json

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>chat</title></head>
<body>
<ul id="log"></ul>
<script>
const log = document.getElementById("log");
const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws", ["chat"]);
ws.onopen = () => { document.body.dataset.state = "open:" + ws.protocol; ws.send("hello from the browser"); };
ws.onmessage = (e) => { const li = document.createElement("li"); li.textContent = e.data; log.appendChild(li); };
ws.onclose = (e) => { document.body.dataset.state = "closed:" + e.code; };
</script>
</body></html>
"""

ROOM = set()


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html; charset=utf-8")]})
        await send({"type": "http.response.body", "body": PAGE})
        return
    await receive()  # websocket.connect
    if scope["path"] != "/ws":
        await send({"type": "websocket.close", "code": 1008})
        return
    sub = "chat" if "chat" in scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": sub})
    ROOM.add(send)
    try:
        while True:
            m = await receive()
            if m["type"] == "websocket.disconnect":
                return
            text = m.get("text")
            if text is None:
                await send({"type": "websocket.send", "bytes": m["bytes"]})  # binary: echoed to its sender
                continue
            if text == "who":
                await send({"type": "websocket.send", "text": json.dumps({"client": scope["client"][0], "scheme": scope["scheme"]})})
                continue
            if text.startswith("close "):
                await send({"type": "websocket.close", "code": int(text.split()[1]), "reason": "asked to"})
                return
            for peer in list(ROOM):
                try:
                    await peer({"type": "websocket.send", "text": "said: " + text})
                except Exception:
                    ROOM.discard(peer)
    finally:
        ROOM.discard(send)
