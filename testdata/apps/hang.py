"""A test app that can hang the interpreter itself: /gil calls libc's
sleep() through ctypes.PyDLL, which keeps the GIL, so no Python thread of
the process runs until it returns. Tests only; never serve it."""

import ctypes


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/gil":
        ctypes.PyDLL(None).sleep(600)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]
