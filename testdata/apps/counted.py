"""A WSGI app (standard library only) that notes every request it runs,
for the tests that count what reached the app: GET /sleep?s=0.2&n=ID
appends ID to the file COUNTED_LOG names, then sleeps s seconds."""

import os
import time

LOG = os.environ.get("COUNTED_LOG", os.devnull)


def app(environ, start_response):
    params = dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (params.get("n", "-") + "\n").encode())
    finally:
        os.close(fd)
    time.sleep(float(params.get("s", "0")))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]
