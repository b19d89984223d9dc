"""The Python side of workerd: hosts the app in one interpreter.

workerd starts the interpreter with three descriptors:
  fd 3  the listening Unix socket every worker of the pool shares: the
        kernel's accept queue is the queue of requests, and a worker takes
        the next one only when it has a free thread (or greenlet)
  fd 4  (read by the bootstrap) this package's sources, which it loads
        from memory (boot.py)
  fd 5  a pipe to workerd for events, one JSON object per line (events.py)

It never parses HTTP: edged opens one connection per request and sends the
request as neutral facts, in frames (frames.py), from which wsgi.py builds
the WSGI environ. The modules:
  frames    the frame format, its numbers defined once on this side
  events    the event pipe to workerd
  load      finding the app's callable from app.module
  wsgi      PEP 3333: the environ, wsgi.input, the answer as frames
  base      the worker: the accept loop, the heartbeat, requests in flight
            keyed by task_key(), hung requests
  sync, threads, gevent
            one module per worker class
  main      what the bootstrap runs
What the app prints goes to stdout and stderr, which workerd reads too.
"""
