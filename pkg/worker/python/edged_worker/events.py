"""Events to workerd: one JSON object a line on fd 5, "event" naming it.

  ready          {pid}: the app is imported, requests are taken
  stats          {served, busy, skipped}: every second; also the
                 heartbeat (skipped: requests edged had hung up on)
  hung           {method, path, seconds, timeout, traceback, greenlet,
                 request_id}: a request ran past its timeout (the process
                 ends, or, for a greenlet, only that greenlet)
  recycle        {served}: pool.max_requests reached, the process ends
  import_failed  {module, summary, traceback}: the app did not load
  log            {level, message, ...}: the worker's own events
"""

import json
import os
import threading

# The pipe to workerd, opened by open_pipe(): events sent before that, or
# with no workerd, go nowhere.
PIPE = None
_LOCK = threading.Lock()


def open_pipe(fd=5):
    global PIPE
    PIPE = os.fdopen(fd, "w", buffering=1, encoding="utf-8", errors="replace")


def event(kind, **fields):
    fields["event"] = kind
    line = json.dumps(fields)
    with _LOCK:
        try:
            PIPE.write(line + "\n")
        except (AttributeError, OSError, ValueError):
            pass


def flush():
    try:
        PIPE.flush()
    except (AttributeError, OSError, ValueError):
        pass
