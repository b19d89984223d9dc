"""A FastAPI app for the tests and the README's ASGI section:
module = "fastapiapp:app", pool.class = "asgi"."""

import asyncio
import os

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

app = FastAPI()
STATE = {}


@app.on_event("startup")
async def startup():
    STATE["ready"] = True  # a database pool would open here


@app.get("/hello")
async def hello():
    return {"message": "hello"}


@app.get("/items/{item_id}")
async def item(item_id: int, q: str = ""):
    return {"item_id": item_id, "q": q, "ready": STATE.get("ready", False), "pid": os.getpid()}


@app.post("/echo")
async def echo(request: Request):
    body = await request.body()
    return {"len": len(body), "client": request.client.host, "scheme": request.url.scheme,
            "forwarded_for": request.headers.get("x-forwarded-for"), "root_path": request.scope.get("root_path")}


@app.get("/events")
async def events():
    async def gen():
        for i in range(3):
            yield "data: %d\n\n" % i
            await asyncio.sleep(0.05)
    return StreamingResponse(gen(), media_type="text/event-stream")


@app.get("/boom")
async def boom():
    raise RuntimeError("boom")


@app.websocket("/ws")
async def echo_ws(websocket: WebSocket):
    """Echoes each text message back; held open until the client goes."""
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass
