"""The WSGI app python_test.go runs in a real worker. The X-Test request
header (HTTP_X_TEST) picks what it does."""

import hashlib
import json
import os
import time
import sys
import threading

CLOSED = []          # ids of response iterables whose close() was called
FILES = []           # files handed to wsgi.file_wrapper
BARRIER = threading.Barrier(4)


def respond(start_response, obj, status="200 OK"):
    body = json.dumps(obj).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def echo(environ, start_response):
    inp = environ["wsgi.input"]
    how = environ.get("HTTP_X_READ", "all")
    out = {"pid": os.getpid(), "input_type": type(inp).__name__}
    if how == "all":
        data = inp.read()
        out["tail"] = len(inp.read())
    elif how == "pieces":
        # read(n) of odd sizes, then the rest, then nothing.
        parts = [inp.read(7), inp.read(70000), inp.read(0), inp.read(-1), inp.read(10)]
        out["sizes"] = [len(p) for p in parts]
        data = b"".join(parts)
    elif how == "lines":
        first = inp.readline(5)
        lines = [first] + [line for line in inp]
        out["lines"] = [len(line) for line in lines]
        data = b"".join(lines)
    elif how == "readlines":
        lines = inp.readlines()
        out["lines"] = [len(line) for line in lines]
        data = b"".join(lines)
    else:  # "none": leave the body for the worker to drain
        data = b""
    out["body_len"] = len(data)
    out["body_sha256"] = hashlib.sha256(data).hexdigest()
    out["environ"] = {k: v for k, v in environ.items() if type(v) is str}
    out["wsgi"] = {
        "version": list(environ["wsgi.version"]),
        "multithread": environ["wsgi.multithread"],
        "multiprocess": environ["wsgi.multiprocess"],
        "run_once": environ["wsgi.run_once"],
        "errors": hasattr(environ["wsgi.errors"], "write"),
    }
    return respond(start_response, out)


class Closing:
    """A response iterable that records its close()."""

    def __init__(self, ident, fail):
        self.ident = ident
        self.fail = fail

    def __iter__(self):
        yield b"one,"
        if self.fail:
            raise RuntimeError("failing mid-iteration")
        yield b"two"

    def close(self):
        CLOSED.append(self.ident)


def app(environ, start_response):
    mode = environ.get("HTTP_X_TEST", "echo")
    if mode == "echo":
        return echo(environ, start_response)
    if mode == "pid":
        return respond(start_response, {"pid": os.getpid()})
    if mode == "wait":  # 200 ms asleep: wall time, next to no CPU
        time.sleep(0.2)
        return respond(start_response, {"waited": True})
    if mode == "spin":  # 200 ms of CPU
        end = time.thread_time() + 0.2
        while time.thread_time() < end:
            pass
        return respond(start_response, {"spun": True})
    if mode == "exc_info":
        start_response("200 OK", [("X-First", "1")])
        try:
            raise ValueError("replace the response")
        except ValueError:
            start_response("503 Oops", [("X-Second", "2")], sys.exc_info())
        return [b"handled"]
    if mode == "exc_info_after_send":
        write = start_response("200 OK", [("X-First", "1")])
        write(b"x" * (300 << 10))  # over FLUSH_AT: the head is on the wire
        try:
            raise ValueError("too late to replace the response")
        except ValueError:
            start_response("500 Oops", [], sys.exc_info())
        return [b"never"]
    if mode == "start_twice":
        start_response("200 OK", [])
        start_response("201 Created", [])
        return [b"never"]
    if mode == "raise_early":
        raise RuntimeError("before start_response")
    if mode == "raise_mid":
        size = int(environ.get("HTTP_X_SIZE", "0"))

        def gen():
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"a" * size
            raise RuntimeError("after yielding data")
        return gen()
    if mode == "write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"a")
        write(b"")
        write(b"bc")
        write(b"x" * (300 << 10))
        return [b"d", b"", b"ef"]
    if mode == "close":
        start_response("200 OK", [])
        return Closing(environ["QUERY_STRING"], environ.get("HTTP_X_FAIL") == "1")
    if mode == "closed":
        return respond(start_response, CLOSED)
    if mode == "file":
        f = open(os.path.join(os.path.dirname(__file__), "blob.bin"), "rb")
        FILES.append(f)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f, 1000)
    if mode == "files_closed":
        return respond(start_response, [f.closed for f in FILES])
    if mode == "header":
        # X-Value (and X-Name, the header's name) are JSON strings, so that
        # they can hold any character.
        name = json.loads(environ.get("HTTP_X_NAME", '"X-Value"'))
        start_response("200 OK", [(name, json.loads(environ["HTTP_X_VALUE"]))])
        return [b"ok"]
    if mode == "status":
        start_response(json.loads(environ["HTTP_X_VALUE"]), [])
        return [b"ok"]
    if mode == "big":
        # A big answer, the request body left unread.
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [b"x" * int(environ["HTTP_X_SIZE"])]
    if mode == "big_then_read":
        # Part of the answer goes out before the app reads the body.
        def gen():
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"x" * int(environ["HTTP_X_SIZE"])
            data = environ["wsgi.input"].read()
            yield ("\n%d %s" % (len(data), hashlib.sha256(data).hexdigest())).encode()
        return gen()
    if mode == "mutate":
        # Headers changed after start_response checked them.
        headers = [("X-A", "1")]
        start_response("200 OK", headers)
        headers.append(("X-B", "5 \u20ac"))
        return [b"ok"]
    if mode == "inject" or mode == "inject_stream":
        # A header added after start_response, its value holding the
        # wire's field separator: unless the head is checked as it goes
        # out, the rest reaches the client as a header of its own.
        # Streamed, the head goes out with the first chunk.
        headers = [("Content-Type", "text/plain")]
        if mode == "inject_stream":
            headers.append(("X-Accel-Buffering", "no"))
        start_response("200 OK", headers)
        headers.append(("X-A", "v\0Set-Cookie\0injected=1"))
        return [b"x"]
    if mode == "record":
        # Leaves its X-Id in ran.log: the test tells from it what ran.
        with open(os.path.join(os.path.dirname(__file__), "ran.log"), "a") as f:
            f.write(environ["HTTP_X_ID"] + "\n")
        return respond(start_response, {"ran": environ["HTTP_X_ID"]})
    if mode == "barrier":
        # Passes only when four requests are in the app at once.
        BARRIER.wait(timeout=10)
        return respond(start_response, {"thread": threading.current_thread().name,
                                        "multithread": environ["wsgi.multithread"]})
    start_response("404 Not Found", [])
    return [b"no such mode " + mode.encode("latin-1")]


def fuzz_app(environ, start_response):
    """The app FuzzWorkerFrame runs: whatever the environ, a plain answer."""
    data = environ["wsgi.input"].read()
    keys = sorted(k for k in environ if type(k) is str)
    body = ("%d %d\n" % (len(keys), len(data))).encode() + "\n".join(keys).encode("utf-8", "replace")
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Keys", str(len(keys)))])
    return [body]
