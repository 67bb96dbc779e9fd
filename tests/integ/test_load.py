"""Mutual exclusion under load: many clients, few locks."""

import threading
import time

from stack import CycleLog, check_no_overlap, cycle_client, log, timeout


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
