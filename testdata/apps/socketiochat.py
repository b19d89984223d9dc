"""A Flask-SocketIO chat on the gevent class (python3-flask-socketio, and
python3-gevent-websocket, which engineio checks for): module =
"socketiochat:app", pool.class = "gevent". With several workers, the
WebSocket transport only: engineio keeps a session in the process that
made it, and long-polling's requests go to any worker."""

from flask import Flask
from flask_socketio import SocketIO, emit

app = Flask(__name__)
socketio = SocketIO(app, async_mode="gevent", transports=["websocket"])


@socketio.on("chat")
def chat(message):
    emit("chat", "said: " + message, broadcast=True)


@app.route("/")
def index():
    return "chat"
