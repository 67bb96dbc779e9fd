"""What every test uses and that needs nothing of the stack: log() prints a
measurement under the test's line, wait_for() polls a condition until a
time limit, BG runs a call in a background thread and keeps its outcome.
"""

import sys
import threading
import time


def log(msg):
    """Prints a measurement or note from a test (indented under its line)."""
    sys.stdout.write("    %s\n" % msg)
    sys.stdout.flush()


def wait_for(pred, timeout_s, what, interval=0.02):
    """Polls pred() until it returns a true value (which is returned) or
    timeout_s elapses (AssertionError naming `what`)."""
    deadline = time.monotonic() + timeout_s
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except AssertionError:
            raise
        except Exception as e:  # keep polling through transient errors
            last_exc = e
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s%s" % (
                timeout_s, what, "" if last_exc is None else " (last error: %r)" % (last_exc,)))
        time.sleep(interval)


class BG(threading.Thread):
    """Runs fn(*args) in a daemon thread; keeps its result or exception and
    the monotonic time it finished."""

    def __init__(self, fn, *args, **kw):
        super().__init__(daemon=True)
        self.fn, self.args, self.kw = fn, args, kw
        self.result = None
        self.exc = None
        self.t_start = None
        self.t_done = None
        self.start()

    def run(self):
        self.t_start = time.monotonic()
        try:
            self.result = self.fn(*self.args, **self.kw)
        except BaseException as e:  # noqa
            self.exc = e
        self.t_done = time.monotonic()

    def done(self):
        return self.t_done is not None

    def get(self, timeout_s):
        """The result, re-raising the thread's exception; AssertionError if it
        did not finish within timeout_s."""
        self.join(timeout_s)
        if self.is_alive():
            raise AssertionError("background request still running after %.1f s" % timeout_s)
        if self.exc is not None:
            raise self.exc
        return self.result
