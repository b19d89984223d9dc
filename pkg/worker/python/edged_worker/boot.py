"""Run by workerd's bootstrap with MODULES, this package's sources by
module name: makes them importable from memory, as the single file used
to be, so that a worker needs nothing on disk but the interpreter and the
app, and runs the worker.

The gevent class must patch the standard library before anything that
gevent patches is imported, here or by the app: that happens first."""

import json
import os
import sys


def _class():
    try:
        return json.loads(os.environ.get("EDGED_WORKER", "{}")).get("class", "")
    except ValueError:
        return ""


if _class() == "gevent":
    try:
        from gevent import monkey
    except ImportError as e:
        line = json.dumps({"event": "import_failed", "module": "gevent",
                           "summary": "pool.class = \"gevent\" needs gevent, which this Python cannot import (%s): "
                                      "install it (Debian: apt install python3-gevent; a virtualenv: pip install gevent)" % e})
        os.write(5, (line + "\n").encode())
        os._exit(3)
    # As gunicorn's gevent worker does: everything the app may block on
    # (sockets, sleep, locks, threads) yields to the other greenlets.
    monkey.patch_all()

from importlib.machinery import ModuleSpec  # noqa: E402  (after the patch)


class MemoryFinder:
    """Finds this package's modules in MODULES: name -> (file, source).
    The file name ("edged_worker/wsgi.py") is what tracebacks show, and
    get_source lets them show the lines."""

    def __init__(self, modules):
        self.modules = modules

    def find_spec(self, name, path=None, target=None):
        if name not in self.modules:
            return None
        filename, _ = self.modules[name]
        spec = ModuleSpec(name, self, origin=filename, is_package=filename.endswith("__init__.py"))
        spec.has_location = True
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        filename, source = self.modules[module.__name__]
        module.__file__ = filename
        exec(compile(source, filename, "exec"), module.__dict__)

    def get_source(self, name):
        return self.modules[name][1]

    def get_filename(self, name):
        return self.modules[name][0]


sys.meta_path.insert(0, MemoryFinder(MODULES))  # noqa: F821  (given by the bootstrap)

from edged_worker import main  # noqa: E402

main.main()
