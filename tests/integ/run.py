#!/usr/bin/python3
"""Runs httplock's integration tests against the real stack.

    run.py [--dir DIR] [SUBSTRING...]

Discovers test_* functions in tests/integ/test_*.py (or DIR/test_*.py:
tests/fault/run.sh runs the fault-injection suite this way, on the same
harness) in file order, runs
those whose "module.function" name contains any SUBSTRING (all without
arguments), each on a fresh stack unless marked @shared (those share one
default stack), prints "PASS name (N ms)" or "FAIL name: reason" with the
traceback and the server log tails, and ends with "N passed, N failed".
Exit status 0 iff nothing failed.

Environment (set by `make check`; defaults fit the source tree):
HTTPLOCK_SRCDIR, HTTPLOCK_BUILDDIR, LIGHTTPD, APACHE2.  HTTPLOCK_FRONT=
lighttpd (default) or apache chooses the web server in front; tests marked
@fronts(...) run only behind those.  HTTPLOCK_TEST_PG=postgresql://USER@HOST:PORT
(a server, no database) runs every stack on a PostgreSQL database of its
own there instead of SQLite; tests marked @needs_store(...) run only on
that store.  HTTPLOCK_KEEP=1 keeps the temporary
directories of failed tests.  HTTPLOCK_SUITE_TIMEOUT=SECONDS replaces
the whole run's limit (default 280, 420 on PostgreSQL).
"""

import importlib
import os
import signal
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True     # the source tree may be read-only

import stack as stackmod  # noqa: E402
import pgdb  # noqa: E402
from testenv import FRONT, FRONTS, PG_SERVER, STORE, configured_with  # noqa: E402

DEFAULT_TEST_TIMEOUT = 60.0
# The PostgreSQL run makes a database per stack and runs test_multihost:
# about 230 s where SQLite takes 180 s on a loaded 2-CPU machine.
SUITE_TIMEOUT = float(os.environ.get("HTTPLOCK_SUITE_TIMEOUT") or
                      (280.0 if STORE == "sqlite" else 420.0))
# What each result line names besides the test: the front end, and the
# store when it is not the default.
TAG = FRONT if STORE == "sqlite" else "%s, %s" % (FRONT, STORE)
TEST_DIR = HERE     # where test_*.py are discovered (--dir)

_out_lock = threading.Lock()


def out(line):
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def discover(filters):
    tests = []
    files = sorted(f for f in os.listdir(TEST_DIR) if f.startswith("test_") and f.endswith(".py"))
    for f in files:
        modname = f[:-3]
        try:
            mod = importlib.import_module(modname)
        except Exception:
            tests.append((modname + ".<import>", None, traceback.format_exc()))
            continue
        fns = [v for k, v in vars(mod).items()
               if k.startswith("test_") and callable(v) and getattr(v, "__module__", "") == modname]
        fns.sort(key=lambda fn: fn.__code__.co_firstlineno)
        for fn in fns:
            full = "%s.%s" % (modname, fn.__name__)
            if filters and not any(s in full for s in filters):
                continue
            if FRONT not in getattr(fn, "hl_fronts", FRONTS):
                continue
            need = getattr(fn, "hl_needs", None)
            if need is not None and not configured_with(need):
                out("SKIP %s [%s]: needs a build configured with %s" % (full, TAG, need))
                continue
            store = getattr(fn, "hl_store", None)
            if store is not None and store != STORE:
                out("SKIP %s [%s]: needs the %s store" % (full, TAG, store))
                continue
            tests.append((full, fn, None))
    return tests


class Watchdog:
    """Kills the stack of a test that runs past its limit, so that its
    blocked requests fail and the test ends."""

    def __init__(self, seconds, stack):
        self.fired = False
        self.stack = stack
        self.timer = threading.Timer(seconds, self.fire)
        self.timer.daemon = True
        self.timer.start()

    def fire(self):
        self.fired = True
        if self.stack is not None:
            try:
                self.stack.force_kill()
            except Exception:
                pass

    def cancel(self):
        self.timer.cancel()


def suite_guard():
    """Whatever happens, the suite ends before SUITE_TIMEOUT seconds and
    leaves no process behind."""
    def fire():
        out("FAIL suite: the suite ran past %.0f s; killing everything" % SUITE_TIMEOUT)
        stackmod.kill_everything()
        out("%d passed, %d failed" % (RESULTS["passed"], RESULTS["failed"] + 1))
        os._exit(1)
    t = threading.Timer(SUITE_TIMEOUT, fire)
    t.daemon = True
    t.start()


RESULTS = {"passed": 0, "failed": 0}


def report_fail(name, reason, tb, stack):
    RESULTS["failed"] += 1
    first = reason.strip().splitlines()[0] if reason.strip() else "failed"
    if len(first) > 500:
        first = first[:500] + "..."
    lines = ["FAIL %s [%s]: %s" % (name, TAG, first)]
    if tb:
        lines.append(tb.rstrip())
    if stack is not None:
        tails = stack.log_tails(30)
        if tails:
            lines.append(tails.rstrip())
        if os.environ.get("HTTPLOCK_KEEP"):
            lines.append("(kept %s)" % stack.dir)
    out("\n".join("    " + l if i else l for i, l in enumerate("\n".join(lines).splitlines())))


def run_one(name, fn, shared_stack_box):
    """Runs one test; returns True on success."""
    shared = getattr(fn, "hl_shared", False) and not getattr(fn, "hl_conf", None) \
        and not getattr(fn, "hl_mount", None)
    limit = getattr(fn, "hl_timeout", DEFAULT_TEST_TIMEOUT)
    s = None
    own = not shared
    t0 = time.monotonic()
    dog = None
    ok = False
    try:
        try:
            if shared:
                s = shared_stack_box.get("stack")
                if s is not None:
                    try:
                        s.health()
                    except Exception:
                        shared_stack_box.pop("stack", None)
                        s.cleanup()
                        s = None
                if s is None:
                    s = stackmod.Stack(label="shared")
                    shared_stack_box["stack"] = s
                    s.start()
            else:
                s = stackmod.Stack(getattr(fn, "hl_conf", None), label=name,
                                   mount=getattr(fn, "hl_mount", None) or "/")
                s.start()
            dog = Watchdog(limit, s)
            fn(s)
            dog.cancel()
            if own:
                s.stop()
            s.check_logs()
            ok = True
        except BaseException as e:  # noqa: report everything, go on
            if dog is not None:
                dog.cancel()
            if isinstance(e, KeyboardInterrupt):
                raise
            reason = "%s: %s" % (type(e).__name__, e) if not isinstance(e, AssertionError) else str(e)
            if dog is not None and dog.fired:
                reason = "timed out after %.0f s (stack killed); then %s" % (limit, reason)
            if isinstance(e, stackmod.StackError):
                tb = ""
            else:
                tb = traceback.format_exc()
            report_fail(name, reason, tb, s)
            if shared and s is not None:
                # Do not let a broken shared stack poison the next tests.
                shared_stack_box.pop("stack", None)
                keep = bool(os.environ.get("HTTPLOCK_KEEP"))
                s.cleanup(keep=keep)
            return False
    finally:
        if own and s is not None:
            s.cleanup(keep=not ok and bool(os.environ.get("HTTPLOCK_KEEP")))
    RESULTS["passed"] += 1
    out("PASS %s [%s] (%d ms)" % (name, TAG, (time.monotonic() - t0) * 1000))
    return True


def stop_shared(box):
    s = box.pop("stack", None)
    if s is None:
        return
    try:
        s.stop()
        s.check_logs()
    except Exception as e:
        report_fail("shared-stack.stop", str(e), traceback.format_exc(), s)
    finally:
        s.cleanup()


def main(argv):
    def on_term(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_term)
    global TEST_DIR
    filters = argv[1:]
    if filters[:1] == ["--dir"] and len(filters) >= 2:
        TEST_DIR = os.path.abspath(filters[1])
        filters = filters[2:]
        sys.path.insert(0, TEST_DIR)
    suite_guard()
    if PG_SERVER:
        # One clear failure rather than one per stack.
        try:
            ver = pgdb.query(pgdb.db_uri(PG_SERVER, "postgres"), "SHOW server_version")[0][0]
        except (pgdb.PgError, OSError) as e:
            out("FAIL suite: HTTPLOCK_TEST_PG=%s: %s" % (PG_SERVER, e))
            out("0 passed, 1 failed")
            return 1
        out("(stores: a database per stack on PostgreSQL %s at %s)" % (ver, PG_SERVER))
    tests = discover(filters)
    # Shared-stack tests first, then the ones with a stack of their own.
    shared = [t for t in tests if t[1] is not None and getattr(t[1], "hl_shared", False)
              and not getattr(t[1], "hl_conf", None) and not getattr(t[1], "hl_mount", None)]
    rest = [t for t in tests if t not in shared]
    box = {}
    t_suite = time.monotonic()
    try:
        for name, fn, err in shared:
            run_one(name, fn, box)
        stop_shared(box)
        for name, fn, err in rest:
            if fn is None:
                report_fail(name, "cannot import test module", err, None)
                continue
            run_one(name, fn, box)
    except KeyboardInterrupt as e:
        out("FAIL interrupted: %s" % (e,))
        RESULTS["failed"] += 1
    finally:
        stackmod.kill_everything()
    if not tests:
        out("no tests matched %s" % (filters,))
    out("(suite took %.1f s behind %s on %s)" % (time.monotonic() - t_suite, FRONT, STORE))
    out("%d passed, %d failed" % (RESULTS["passed"], RESULTS["failed"]))
    return 0 if RESULTS["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
