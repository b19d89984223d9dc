"""The time each request spends encoding JSON, for doctor's cpu-routes
check: json.dumps (which Flask's and Django's JSON answers call) is
timed. The time goes to edged in the head frame's flags, in units of 100
microseconds.

The clock is the monotonic one, read through the vDSO (about 0.1 us a
call pair): the thread's CPU clock is a system call, and two of them
cost 5 us a call, a third of the Python side's whole budget. json.dumps
neither sleeps nor yields (a greenlet cannot switch inside it), so its
wall time is CPU time, but for the moments the machine gave the CPU to
another: doctor compares it with the route's wall time, which has those
moments too.
"""

import json
import threading
import time

UNIT_NS = 100_000  # a flags unit: 100 us
_dumps = json.dumps
_clock = time.perf_counter_ns
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
