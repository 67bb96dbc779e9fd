"""Mutual-exclusion traffic the concurrency tests share: a queue of
waiters granted one after the other (queue_fifo_waiters), and clients
that cycle acquire / hold / release over a set of locks and record each
critical section (cycle_client into a CycleLog), for
checks.check_no_overlap to judge.
"""

import threading
import time

from common import BG


def queue_fifo_waiters(stack, name, n, timeout_s=30):
    """Queues n blocking acquires of `name` one after the other (each
    seen in the queue before the next is sent).  Each releases as soon as
    it is granted and records (its index, its fence) in `order`, in grant
    order.  Returns (the BGs, order)."""
    order = []
    order_lock = threading.Lock()

    def waiter(i):
        r = stack.acquire(name, owner="w%d" % i, timeout_s=timeout_s)
        if r.status != 200:
            return r
        with order_lock:
            order.append((i, r["fence"]))
        rr = stack.release(name, r["token"])
        return r if rr.status == 200 else rr

    bgs = []
    for i in range(n):
        bgs.append(BG(waiter, i))
        stack.wait_waiters(name, i + 1, bg=bgs)
    return bgs, order


class CycleLog:
    """What cycle_client threads record: (lock, fence, t_enter, t_leave,
    client) a critical section, the count done, the errors, the acquires'
    round trips."""

    def __init__(self):
        self.lock = threading.Lock()
        self.records = []    # (lock, fence, t_enter, t_leave, client)
        self.done = 0
        self.errors = []
        self.waits = []      # ms from acquire sent to granted

    def add(self, rec, wait_ms=None):
        with self.lock:
            self.records.append(rec)
            self.done += 1
            if wait_ms is not None:
                self.waits.append(wait_ms)


def cycle_client(stack, names, cycles, hold_s, clog, client_id, stop_evt=None, wait_s=None):
    """Runs `cycles` acquire / hold / release cycles over names (round
    robin), recording enter/leave times (monotonic) and fences, and each
    acquire's round trip in clog.waits (ms).  wait_s: the acquires'
    timeout (default none: the server's max_wait, within the client's
    20 s)."""
    for i in range(cycles):
        if stop_evt is not None and stop_evt.is_set():
            return
        name = names[i % len(names)]
        try:
            if wait_s is None:
                r = stack.acquire(name, owner="c%d" % client_id)
            else:
                r = stack.acquire(name, owner="c%d" % client_id, timeout=wait_s,
                                  timeout_s=wait_s + 30)
            if r.status != 200:
                raise AssertionError("client %d cycle %d: %s" % (client_id, i, r.short()))
            t_enter = time.monotonic()
            if hold_s:
                time.sleep(hold_s)
            t_leave = time.monotonic()
            rr = stack.release(name, r["token"])
            if rr.status != 200:
                raise AssertionError("client %d cycle %d: release: %s" % (client_id, i, rr.short()))
            clog.add((name, r["fence"], t_enter, t_leave, client_id), r.ms)
        except BaseException as e:
            with clog.lock:
                clog.errors.append(e)
            return
