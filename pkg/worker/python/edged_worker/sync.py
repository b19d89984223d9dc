"""The sync class: one request at a time, in the main thread."""

import os
import signal

from edged_worker import base
from edged_worker.events import event


class Worker(base.Worker):

    def run(self):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self.stop)
        self.blocking_listener()
        event("ready", pid=os.getpid())
        self.start_heartbeat()
        self.take_requests()
        os._exit(0)
