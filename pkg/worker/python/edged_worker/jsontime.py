"""The CPU time each request spends encoding JSON, for doctor's
cpu-routes check: json.dumps (which Flask's and Django's JSON answers
call) is timed on the thread's CPU clock. The time goes to edged in the
head frame's flags, in units of 100 microseconds.

The wrapper costs two clock reads per call; a greenlet cannot switch
inside json.dumps, so under gevent the thread's clock is the request's.
"""

import json
import threading
import time

UNIT_NS = 100_000  # a flags unit: 100 us
_dumps = json.dumps
_clock = time.thread_time_ns
# A greenlet's own under gevent: imported after the patching (boot.py).
_local = threading.local()


def dumps(*args, **kwargs):
    start = _clock()
    try:
        return _dumps(*args, **kwargs)
    finally:
        _local.ns = getattr(_local, "ns", 0) + _clock() - start


dumps.__doc__ = _dumps.__doc__
dumps.__wrapped__ = _dumps


def install():
    """Times json.dumps from now on: for the app imported after."""
    json.dumps = dumps


def reset():
    _local.ns = 0


def flags():
    """The request's JSON time so far, as head flags."""
    return min(getattr(_local, "ns", 0) // UNIT_NS, 0xFFFF)
