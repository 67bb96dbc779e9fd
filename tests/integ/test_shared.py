"""Shared hosting: with coord_autostart = yes the harness starts no
coordinator; the first worker whose waiter finds none starts one
(fcgi/autostart.c), a single one whatever the number of waiters and worker
processes, again after it is killed, and it exits by itself when idle
(-i, coord_idle_exit).  Every path is inside the stack's own directory.
Behind lighttpd and Apache (the pool's workers start it there)."""

import os
import signal
import time

from checks import check_grant, expect
from common import BG, log, wait_for
from markers import conf, timeout
from procs import wait_gone

# poll_interval 1: a waiter that cannot reach a coordinator looks again
# after 1 s (and tries to reach it again then), so a handoff well under
# that shows the coordinator's WAKE.
AUTO = dict(coord_autostart="yes", poll_interval="1")


def _one_coord(s, timeout_s=5.0, other_than=None):
    """Waits until exactly one auto-started coordinator (not other_than)
    runs and its socket answers (/healthz says so); returns its pid."""
    def pred():
        pids = s.auto_coords()
        assert len(pids) <= 1, "more than one coordinator: %s" % pids
        if len(pids) != 1 or pids[0] == other_than:
            return None
        return pids[0] if s.health()["coordinator"] == "ok" else None
    return wait_for(pred, timeout_s, "one auto-started coordinator")


def _registered(s, n, timeout_s=30.0):
    wait_for(lambda: s.coord_waiters() == n, timeout_s,
             "%d waiter(s) registered with the coordinator" % n)


def _handoff(s, name, holder, waiter):
    """Releases `holder` and returns the ms until `waiter` was granted."""
    t0 = time.monotonic()
    s.release_ok(name, holder["token"])
    g = waiter.get(10)
    check_grant(g, name)
    return g, (waiter.t_done - t0) * 1000


@conf(**AUTO)
@timeout(90)
def test_autostart_first_waiter(s):
    """No coordinator at start; the first waiting acquire starts exactly
    one, which then wakes waiters at once; SIGKILLed, the next wait starts
    a new one."""
    assert s.coord is None and s.auto_coords() == [], s.auto_coords()
    assert s.health()["coordinator"] == "down"
    for p in ("run/coord.sock.lock", "run/coord.sock.spawn"):
        assert not os.path.exists(os.path.join(s.dir, p)), p
    name = "sh-first"
    h = s.acquire_ok(name)
    # a plain acquire and release do not need (nor start) a coordinator
    assert s.auto_coords() == []
    w = BG(s.acquire, name, timeout=20)
    pid = _one_coord(s)
    log("coordinator %d started by the first waiter" % pid)
    _registered(s, 1)
    g, ms = _handoff(s, name, h, w)
    log("handoff through the auto-started coordinator: %.1f ms" % ms)
    assert ms < 500, "handoff took %.0f ms: not woken by the coordinator" % ms
    assert s.auto_coords() == [pid]

    # SIGKILL it: the waiter falls back to polling, and (once its worker's
    # 3 s rate limit allows) starts a new one.
    w = BG(s.acquire, name, timeout=30)
    _registered(s, 1)
    os.kill(pid, signal.SIGKILL)
    assert wait_gone([pid], 5) == []
    t0 = time.monotonic()
    pid2 = _one_coord(s, 10, other_than=pid)
    log("coordinator %d started %.1f s after %d was killed" % (
        pid2, time.monotonic() - t0, pid))
    _registered(s, 1)
    g2, ms = _handoff(s, name, g, w)
    log("handoff through the new coordinator: %.1f ms" % ms)
    assert ms < 500, "handoff took %.0f ms" % ms
    s.release_ok(name, g2["token"])
    assert s.auto_coords() == [pid2]


@conf(**AUTO)
@timeout(90)
def test_autostart_herd(s):
    """40 waiters on 4 locks in both worker processes at once, with no
    coordinator: one coordinator is started, never two."""
    names = ["sh-herd-%d" % i for i in range(4)]
    holders = [s.acquire_ok(n) for n in names]

    def cycle(n):
        r = s.acquire(n, timeout=30)
        if r.status == 200:
            expect(s.release(n, r["token"]), 200)
        return r
    ws = [BG(cycle, names[i % 4]) for i in range(40)]
    seen = set()
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        pids = s.auto_coords()
        assert len(pids) <= 1, "two coordinators at once: %s" % pids
        seen.update(pids)
        time.sleep(0.01)
    assert len(seen) == 1, "coordinators seen: %s" % sorted(seen)
    pid = _one_coord(s)
    _registered(s, 40)
    log("40 waiters in %d worker processes, one coordinator (%d)" % (
        len(s.worker_pids()), pid))
    t0 = time.monotonic()
    for n, h in zip(names, holders):
        s.release_ok(n, h["token"])
    for w in ws:
        expect(w.get(10), 200)
    log("40 handoffs in %.0f ms" % ((time.monotonic() - t0) * 1000))
    assert s.auto_coords() == [pid]


@conf(coord_idle_exit="1", **AUTO)
@timeout(60)
def test_autostart_idle_exit(s):
    """Started with -i 1, the coordinator exits about 1 s after its last
    waiter and lease are gone, and removes its socket; the next wait starts
    another."""
    name = "sh-idle"
    h = s.acquire_ok(name)
    w = BG(s.acquire, name, timeout=20)
    pid = _one_coord(s)
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        argv = f.read().split(b"\0")
    assert b"-i" in argv and argv[argv.index(b"-i") + 1] == b"1.000", argv
    _registered(s, 1)
    g, _ = _handoff(s, name, h, w)
    s.release_ok(name, g["token"])
    t0 = time.monotonic()
    left = wait_gone([pid], 10)
    idle = time.monotonic() - t0
    log("idle coordinator exited %.2f s after the last release (-i 1)" % idle)
    assert left == [], "coordinator %d still running after 10 s idle" % pid
    assert 0.5 <= idle < 5.0, "exited after %.2f s" % idle
    assert not os.path.exists(s.coord_sock)
    # and the next waiter brings one back
    h = s.acquire_ok(name)
    w = BG(s.acquire, name, timeout=20)
    _one_coord(s, 10, other_than=pid)
    _registered(s, 1)
    g, ms = _handoff(s, name, h, w)
    s.release_ok(name, g["token"])
