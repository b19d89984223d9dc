"""The sample app `make run` serves: standard library only.

It shows which worker answered, so reloading the page shows the pool at
work, and has a few routes the tests use.
"""

import json
import os
import socket
import time


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/":
        body = PAGE.format(
            pid=os.getpid(),
            worker=os.environ.get("EDGED_INSTANCE", "?"),
            host=socket.gethostname(),
            method=environ["REQUEST_METHOD"],
            client=environ.get("REMOTE_ADDR", ""),
            scheme=environ["wsgi.url_scheme"],
            proto=environ.get("SERVER_PROTOCOL", ""),
            now=time.strftime("%Y-%m-%d %H:%M:%S"),
        ).encode()
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [body]
    if path == "/whoami":
        body = json.dumps({"pid": os.getpid(), "worker": os.environ.get("EDGED_INSTANCE", ""),
                           "host": socket.gethostname(), "client": environ.get("REMOTE_ADDR", "")}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/secret-check":
        # Says whether the credential arrived, never what it holds.
        state = "present" if os.environ.get("APP_SECRET") else "missing"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [("APP_SECRET %s\n" % state).encode()]
    if path == "/sleep":
        time.sleep(float(environ.get("QUERY_STRING") or "0.1"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slept\n"]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>edged sample app</title>
<link rel="stylesheet" href="/static/style.css"></head>
<body><main>
<h1>edged is serving your WSGI app</h1>
<p>This page came from worker <b>{worker}</b> (Python pid {pid}) on {host}.
Reload to see the pool share the work.</p>
<table>
<tr><th>request</th><td>{method} over {proto}, {scheme}</td></tr>
<tr><th>client</th><td>{client}</td></tr>
<tr><th>time</th><td>{now}</td></tr>
</table>
<p>Static files such as <a href="/static/hello.txt">/static/hello.txt</a> are served by edged itself.</p>
</main></body></html>
"""
