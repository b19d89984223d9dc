"""A Flask app for the tests and the bench (python3-flask from Debian)."""

import hashlib
import os
import time
from wsgiref.validate import validator

from flask import Flask, Response, abort, jsonify, request

app = Flask(__name__)


@app.get("/hello")
def hello():
    return jsonify(message="hello", worker=os.environ.get("EDGED_INSTANCE", ""))


@app.post("/echo")
def echo():
    data = request.get_json(force=False, silent=False)
    return jsonify(got=data, length=request.content_length)


@app.post("/upload")
def upload():
    out = {}
    for name, f in request.files.items():
        b = f.read()
        out[name] = {"filename": f.filename, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
    return jsonify(files=out, form=request.form.to_dict())


@app.post("/slurp")
def slurp():
    body = request.get_data()
    return jsonify(size=len(body), sha256=hashlib.sha256(body).hexdigest())


@app.post("/length")
def length():
    # The bench's POST: reads the whole body, answers only its size.
    return jsonify(length=len(request.get_data()))


@app.get("/stream")
def stream():
    n = int(request.args.get("n", "10"))

    def gen():
        for i in range(n):
            yield "chunk %d\n" % i

    return Response(gen(), mimetype="text/plain")


@app.route("/big", methods=["GET", "POST"])
def big():
    # Answers without reading the request body.
    return Response(b"x" * int(request.args.get("n", "1048576")), mimetype="application/octet-stream")


@app.get("/boom")
def boom():
    raise RuntimeError("boom: the app failed on purpose")


@app.get("/chatty")
def chatty():
    # What apps do: print, log through logging, and write stderr.
    print("a line from print()")
    print("two lines\nfrom one print()")
    app.logger.warning("a warning from the app's logger")
    import sys
    sys.stderr.write("straight to stderr\n")
    return "said\n"


@app.get("/spin")
def spin():
    # CPU, as serialising a large JSON answer costs it.
    end = time.thread_time() + float(request.args.get("ms", "20")) / 1000
    n = 0
    while time.thread_time() < end:
        n += 1
    return jsonify(spins=n)


@app.get("/sleep")
def sleep():
    time.sleep(float(request.args.get("s", "0.1")))
    return "slept\n"


@app.get("/environ")
def environ():
    env = {k: v for k, v in request.environ.items() if isinstance(v, str)}
    return jsonify(env)


@app.get("/drip")
def drip():
    # Five chunks 300 ms apart, asked to be passed on as they come.
    def gen():
        for i in range(5):
            yield "drip %d\n" % i
            time.sleep(0.3)

    return Response(gen(), mimetype="text/plain", headers={"X-Accel-Buffering": "no"})


@app.get("/events")
def events():
    # Server-sent events: streamed without being asked twice.
    def gen():
        for i in range(5):
            yield "data: %d\n\n" % i
            time.sleep(0.3)

    return Response(gen(), mimetype="text/event-stream")


@app.get("/whoami")
def whoami():
    return jsonify(worker=os.environ.get("EDGED_INSTANCE", ""), pid=os.getpid())


@app.get("/gone")
def gone():
    abort(410)


validated = validator(app)
