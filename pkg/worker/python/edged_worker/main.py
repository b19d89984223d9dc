"""What the bootstrap runs: load the app, report, serve with the class
workerd asked for."""

import faulthandler
import gc
import importlib
import json
import os
import signal
import socket
import traceback

from edged_worker import appkey, events, frames
from edged_worker.events import event
from edged_worker.load import AppNotFound, asgi3, kind, load, mismatch

# pool.class -> the module that has its Worker.
CLASSES = {"sync": "sync", "threads": "threads", "gevent": "gevent", "asgi": "asyncio"}


def set_title(title):
    """Names the process in ps and top, as gunicorn's setproctitle does:
    the kernel shows the process's argument area, rewritten here in place
    (the bootstrap's long -c argument leaves room), and its short name."""
    try:
        import ctypes
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        fields = stat[stat.rindex(b")") + 2:].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end
        size = end - start
        b = title.encode()[:size - 1]
        ctypes.memmove(start, b + b"\0" * (size - len(b)), size)
        ctypes.CDLL(None).prctl(15, b"edged-worker", 0, 0, 0)  # PR_SET_NAME
    except Exception:
        pass  # only cosmetic


def ours(filename):
    """Whether a traceback frame is this package's or the import
    machinery's, not the app's."""
    return filename.startswith("edged_worker/") or "importlib" in filename


def main():
    # workerd sends SIGUSR1 when the heartbeats stop: the C-level handler
    # prints every thread's stack even with the GIL held.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    events.open_pipe(5)
    conf = json.loads(os.environ.pop("EDGED_WORKER"))
    set_title("edged-worker %s %s" % (os.environ.get("EDGED_INSTANCE", ""), conf["module"]))
    if conf.get("class") != "asgi":
        # Before the app is imported, so that its own json.dumps is timed.
        from edged_worker import jsontime
        jsontime.install()
    try:
        app = load(conf["module"], conf["directory"])
    except BaseException as e:
        # Reported once, as an event: workerd logs it.
        if isinstance(e, AppNotFound):
            summary, tb = str(e), ""
        else:
            summary = "".join(traceback.format_exception_only(type(e), e)).strip().splitlines()[-1]
            # The app's frames only: not this package's, not importlib's.
            te = traceback.TracebackException.from_exception(e)
            te.stack = traceback.StackSummary.from_list([f for f in te.stack if not ours(f.filename)])
            # With no frame of the app's, the summary says it all; a
            # syntax error's location is in its own lines.
            tb = "".join(te.format()) if te.stack or isinstance(e, SyntaxError) else ""
        event("import_failed", module=conf["module"], summary=summary, traceback=tb)
        os._exit(3)
    cls = conf.get("class") or "sync"
    how = kind(app)
    wrong = mismatch(conf["module"], how, cls)
    if wrong:
        event("import_failed", module=conf["module"], summary=wrong, traceback="")
        os._exit(3)
    # The app's secret key, judged once: reported to workerd (which logs
    # it, and --check prints it), and in every answer's end frame, for
    # edged to compare the workers' keys.
    report = appkey.judge(app, conf["directory"], conf.get("credentials") or ())
    if report is not None:
        event("app_key", **report)
    frames.set_key_word(appkey.word(report))
    if conf.get("check"):
        # edged --check: the app imports; nothing is served.
        event("ready", pid=os.getpid())
        os._exit(0)
    # systemd gives a service 1024 descriptors (its hard limit is far
    # higher): an asgi or gevent worker holds one for each request and
    # WebSocket in hand, pool.connections of them.
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass
    # What the import made lives as long as the process: out of the
    # collector's sight, it is not walked again at every full collection
    # (measured: 144 -> 103 us of CPU a FastAPI request, as with the
    # collector off).
    gc.collect()
    gc.freeze()
    worker = importlib.import_module("edged_worker." + CLASSES[cls]).Worker
    if cls == "asgi":
        worker(asgi3(app, how), conf, socket.socket(fileno=3), None).run()
        return
    from edged_worker import wsgi
    worker(app, conf, socket.socket(fileno=3), wsgi.Handler).run()
