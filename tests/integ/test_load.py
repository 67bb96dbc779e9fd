"""Mutual exclusion under load: many clients, few locks."""

import threading
import time

from checks import check_grant, check_no_overlap
from common import log
from markers import conf, timeout
from traffic import cycle_client, CycleLog, queue_fifo_waiters


@timeout(150)
def test_sixteen_clients_fifty_cycles(s):
    names = ["load-1", "load-2", "load-3"]
    clog = CycleLog()
    cycles = 50
    clients = []
    t0 = time.monotonic()
    for i in range(16):
        # client i starts on lock i % 3 and then goes round all three
        order = names[i % 3:] + names[:i % 3]
        t = threading.Thread(target=cycle_client, daemon=True,
                             args=(s, order, cycles, 0.001, clog, i))
        t.start()
        clients.append(t)
    for t in clients:
        t.join(max(1.0, 130 - (time.monotonic() - t0)))
    el = time.monotonic() - t0
    if clog.errors:
        raise clog.errors[0]
    assert not any(t.is_alive() for t in clients), "clients still running after %.0f s (%d cycles)" % (
        el, clog.done)
    assert clog.done == 16 * cycles, "%d of %d cycles" % (clog.done, 16 * cycles)
    per_lock = check_no_overlap(clog.records)
    log("%d cycles in %.2f s: %.0f cycles/s; per lock %s; no overlapping holders" % (
        clog.done, el, clog.done / el, per_lock))
    for n in names:
        st = s.status(n)
        assert st["held"] is False and st["waiters"] == 0, st.short()
    # fences of each lock grow by one per grant: no grant went to nobody
    for n in names:
        fences = sorted(r[1] for r in clog.records if r[0] == n)
        assert fences[-1] - fences[0] == len(fences) - 1, \
            "%s: %d grants seen but fences span %d..%d (grants nobody received?)" % (
                n, len(fences), fences[0], fences[-1])


@conf(threads=8, max_threads=8)
@timeout(150)
def test_waiters_hold_no_thread(s):
    """150 waiters on one lock with 8 threads per worker: a waiting acquire
    is parked without a thread, so all of them queue, the release still gets
    through, and they are served in arrival order."""
    name = "parked"
    n = 150
    h = s.acquire_ok(name, owner="holder")
    t0 = time.monotonic()
    bgs, order = queue_fifo_waiters(s, name, n, timeout_s=60)
    queued = time.monotonic() - t0
    threads = s.worker_threads()
    # Per worker: 8 pool threads, the parking thread, main().
    assert threads and max(threads.values()) <= 8 + 2, threads
    st = s.status(name)
    assert st["waiters"] == n and st["holders"][0]["owner"] == "holder", st.short()
    t1 = time.monotonic()
    s.release_ok(name, h["token"])
    for b in bgs:
        check_grant(b.get(60), name)
    el = time.monotonic() - t1
    log("%d waiters queued in %.2f s with %s threads per worker; "
        "served in %.0f ms" % (n, queued, sorted(threads.values()), el * 1000))
    assert [i for i, _ in order] == list(range(n)), "not FIFO: %s" % [i for i, _ in order]
    fences = [f for _, f in order]
    assert fences == sorted(fences) and len(set(fences)) == n, fences
    st = s.status(name)
    assert st["held"] is False and st["waiters"] == 0, st.short()
