"""Marks on test functions, which run.py reads to choose where a test runs:
on the suite's shared stack (@shared), on a fresh stack with other
configuration (@conf, @mount), behind which front ends (@fronts), on which
builds (@needs), on which store (@needs_store), within what time (@timeout); and @on_own_stack for a test that builds and starts
a stack of its own (another web-server configuration, debug logging).
"""

import functools
import os

from common import log


def shared(fn):
    """The test may run on the suite's shared default stack (it uses lock
    names of its own and does not stop, kill or reconfigure the stack)."""
    fn.hl_shared = True
    return fn


def conf(**overrides):
    """Runs the test on a fresh stack whose httplock.conf has these keys
    changed or added (values are written as given)."""
    def mark(fn):
        fn.hl_conf = {k: str(v) for k, v in overrides.items()}
        return fn
    return mark


def fronts(*names):
    """Runs the test only behind these front ends ("lighttpd", "apache")."""
    def mark(fn):
        fn.hl_fronts = names
        return fn
    return mark


def needs(option):
    """Runs the test only against a build configured with `option` (e.g.
    "--enable-test-hooks"); run.py names the tests it leaves out."""
    def mark(fn):
        fn.hl_needs = option
        return fn
    return mark


def needs_store(kind):
    """Runs the test only on this store: "sqlite" for a test about the
    SQLite file itself (its WAL, its modes, a copy of it, power loss),
    "postgresql" for one that needs the shared store (several hosts).
    The store of a run is PostgreSQL when HTTPLOCK_TEST_PG is set
    (testenv.STORE); run.py names the tests it leaves out."""
    def mark(fn):
        fn.hl_store = kind
        return fn
    return mark


def mount(prefix):
    """Runs the test on a fresh stack mounted at this URL prefix (e.g.
    "/httplock"); Stack.request() and url() add it to every path."""
    def mark(fn):
        fn.hl_mount = prefix
        return fn
    return mark


def timeout(seconds):
    """Per-test time limit (default 60 s), enforced by run.py's watchdog."""
    def mark(fn):
        fn.hl_timeout = seconds
        return fn
    return mark


def on_own_stack(start, after_stop=None):
    """Runs the test as fn(s) on the stack that start(label) builds and
    starts (label: the test's name), then stops it and checks its logs
    (Stack.check_logs) and calls after_stop(s); the stack's tails are
    printed when anything fails, and it is removed in any case (kept with
    HTTPLOCK_KEEP=1 after a failure).  The test is marked @shared so that
    run.py starts no unused stack of its own for it."""
    def mark(fn):
        @functools.wraps(fn)
        def run(_shared_stack):
            s = start(fn.__name__)
            ok = False
            try:
                fn(s)
                s.stop()
                s.check_logs()
                if after_stop is not None:
                    after_stop(s)
                ok = True
            except BaseException:
                log(s.log_tails(20).replace("\n", "\n    "))
                raise
            finally:
                s.cleanup(keep=not ok and bool(os.environ.get("HTTPLOCK_KEEP")))
        return shared(run)
    return mark
