"""The threads class: pool.threads threads, each taking its own requests
off the shared queue."""

import os
import threading

from edged_worker import base


class Worker(base.Worker):

    multithread = True

    def run(self):
        self.serve_threads()
        ts = [threading.Thread(target=self.take_requests, daemon=True) for _ in range(self.threads)]
        for t in ts:
            t.start()
        for t in ts:
            while t.is_alive():
                # Joined with a timeout so that SIGTERM still reaches the
                # handler in this thread.
                t.join(0.5)
        os._exit(0)
