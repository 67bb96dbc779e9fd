#!/usr/bin/python3
"""Concurrent "AJAX views" updating one session, with and without httplock.

A web application runs many worker processes.  Two AJAX requests from one
browser can be served by two of them at once; each loads the session, works
a little, changes it and saves it -- and the later save throws away the
earlier one's change.  This script plays that out: --views processes (the
"views") start together, each reads a JSON session file, sleeps 5-20 ms
("begins processing"), records its visit and bumps a counter, and writes
the file back.

    session_views.py             # each view holds lock "session:<id>"
    session_views.py --no-lock   # no lock: updates get lost

It prints one line, e.g.

    views=20 updates_expected=20 updates_kept=20 lost=0

and exits 0 if every view ran and kept its update, 1 otherwise (a view
failed, e.g. the server could not be reached, or an update was lost: so
--no-lock usually exits 1, which is the race it shows).  The server is
$HTTPLOCK_URL (default http://127.0.0.1:8080/).
"""

import argparse
import json
import multiprocessing
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from httplock_client import lock  # noqa: E402


def load_session(path):
    with open(path) as f:
        return json.load(f)


def save_session(path, session):
    # Write a new file and rename it over the old one, as session stores do,
    # so that a reader never sees half a file.  (This does not prevent lost
    # updates; only the lock does.)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w") as f:
        json.dump(session, f)
    os.replace(tmp, path)


def view(path, view_id, before_save=None):
    """One AJAX view: a read-modify-write of the session."""
    session = load_session(path)
    time.sleep(random.uniform(0.005, 0.020))     # "begins processing"
    session["visited"][view_id] = time.time()
    session["counter"] += 1
    if before_save is not None:
        before_save()
    save_session(path, session)


def run_view(path, view_id, session_id, use_lock, wait, start_line):
    """The body of one view process."""
    # Start all views at the same moment, like a burst of AJAX requests.
    start_line.wait(timeout=30)
    if not use_lock:
        view(path, view_id)
        return
    # The fix: hold the session's lock around the read-modify-write.  Every
    # process and machine that uses the same lock name takes turns.
    with lock("session:%s" % session_id, timeout=wait, ttl=10, owner=view_id) as lease:
        # lease.check raises LeaseLost rather than save over someone else's
        # work if the lease ran out while we were busy.
        view(path, view_id, before_save=lease.check)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-lock", action="store_true", help="run the views without the lock")
    ap.add_argument("--views", type=int, default=20, help="concurrent views (default 20)")
    ap.add_argument("--session", default="42", help="session id; the lock is session:<id>")
    ap.add_argument("--wait", type=float, default=30.0,
                    help="seconds a view waits for the lock (default 30)")
    ap.add_argument("--file", help="the session file (default: one in the temporary directory)")
    args = ap.parse_args()

    path = args.file or os.path.join(tempfile.gettempdir(), "httplock-session-%s.json" % args.session)
    save_session(path, {"visited": {}, "counter": 0})   # a fresh session

    start_line = multiprocessing.Barrier(args.views)
    procs = []
    for i in range(args.views):
        p = multiprocessing.Process(target=run_view, args=(
            path, "view-%d" % i, args.session, not args.no_lock, args.wait, start_line))
        p.start()
        procs.append(p)
    failed = 0
    for p in procs:
        p.join()
        failed += p.exitcode != 0

    session = load_session(path)
    kept = len(session["visited"])
    print("views=%d updates_expected=%d updates_kept=%d lost=%d counter=%d failed=%d mode=%s" % (
        args.views, args.views, kept, args.views - kept, session["counter"], failed,
        "nolock" if args.no_lock else "lock"))
    return 0 if failed == 0 and kept == args.views else 1


if __name__ == "__main__":
    sys.exit(main())
