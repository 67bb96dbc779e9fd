"""The web server in front: mounts at the root and under a prefix, many
blocked waiters at once, and (behind Apache) the worker pool's supervisor.
Every test here runs behind lighttpd and behind Apache unless marked."""

import os
import signal
import stat
import threading
import time

from checks import check_grant, expect
from common import BG, log, wait_for
from markers import fronts, mount, shared, timeout
from procs import children_of, threads, wait_gone


def _outside(s, path):
    """GET of a path as given (no mount prefix): (status, content type)."""
    r = s.request("GET", path, expect_json=False, mount=False)
    return r.status, (r.header("Content-Type") or "").split(";")[0]


def _mount_round_trip(s, name):
    g = s.acquire_ok(name, owner="m", timeout=0)
    st = s.status(name)
    assert st["held"] is True and st["lock"] == name, st.short()
    r = expect(s.get("/locks/", query={"prefix": name}), 200)
    assert [e["lock"] for e in r["locks"]] == [name], r.short()
    s.release_ok(name, g["token"])
    expect(s.get("/healthz"), 200)
    # the name is still decoded and checked by httplock, behind the prefix
    expect(s.request("POST", "/lock/a%2Fb/acquire/"), 400, "bad_request")
    expect(s.request("POST", "/lock/a%00b/acquire/"), 400, "bad_request")
    g = s.acquire_ok("m/x y".replace("/", ":"), timeout=0)
    s.release_ok("m:x y", g["token"])
    expect(s.get("/definitely/not/here"), 404, "not_found")


@shared
def test_mount_root(s):
    """Mounted at "/": every path is httplock's; one under /httplock is
    simply not an endpoint (a JSON 404)."""
    assert s.prefix == ""
    _mount_round_trip(s, "m-root")
    r = s.request("POST", "/httplock/lock/m-root/acquire/", expect_json=False)
    expect(r, 404, "not_found")


@mount("/httplock")
def test_mount_prefix(s):
    """Mounted at /httplock: the API answers under /httplock/ (the server
    sends SCRIPT_NAME "/httplock", httplock strips it from REQUEST_URI),
    and the unprefixed paths are not httplock's (the web server's own 403
    or 404, as JSON: test_urltricks.test_mount_prefix_is_exact has more)."""
    assert s.prefix == "/httplock"
    _mount_round_trip(s, "m-prefix")
    for path in ("/lock/m-prefix/", "/healthz"):
        st, ct = _outside(s, path)
        log("%s outside the mount -> %d %s" % (path, st, ct))
        assert st in (403, 404) and ct == "application/json", (path, st, ct)
    # the mount point itself is within it, but no endpoint
    r = s.request("GET", "", expect_json=False)
    assert r.status in (403, 404), r.short()


def _backend_conns(s):
    """Connected (accepted) sockets of the worker socket: one per backend
    connection.  Behind lighttpd each worker has its own socket (-0, -1)."""
    n = 0
    try:
        with open("/proc/net/unix") as f:
            next(f)
            for line in f:
                parts = line.split()
                if len(parts) >= 8 and parts[5] == "03" and \
                        os.path.basename(parts[7]).startswith("worker.sock"):
                    n += 1
    except OSError:
        return None
    return n


@timeout(60)
def test_200_waiters_fifo(s):
    """200 requests wait on one lock at once (each holds a web server
    thread or connection and a backend connection); all are served in
    arrival order as each holder releases, and the service answers other
    requests meanwhile."""
    n = 200
    name = "w200"
    h = s.acquire_ok(name)
    order = []
    olock = threading.Lock()

    def waiter(i):
        r = s.acquire(name, timeout_s=40, owner="w%03d" % i, ttl=30)
        check_grant(r, name, owner="w%03d" % i)
        with olock:
            order.append((i, r["fence"]))
        s.release_ok(name, r["token"])
        return r

    t0 = time.monotonic()
    bgs = []
    for i in range(n):
        bgs.append(BG(waiter, i))
        s.wait_waiters(name, i + 1, timeout_s=10, bg=bgs)
    t_queued = time.monotonic() - t0
    conns = _backend_conns(s)
    wthreads = {p: threads(p) for p in s.worker_pids()}
    fthreads = sum(threads(p) for p in s.front_pids())
    # others are still served while 200 wait
    t1 = time.monotonic()
    g = s.acquire_ok("w200-other", timeout=0)
    s.release_ok("w200-other", g["token"])
    other_ms = (time.monotonic() - t1) * 1000
    t2 = time.monotonic()
    s.release_ok(name, h["token"])
    for b in bgs:
        b.get(40)
    t_all = time.monotonic() - t2
    log("%s: %d waiters queued in %.1f s; %s backend connections; worker threads %s; "
        "%d threads in the web server's processes" % (
            s.front_name, n, t_queued, conns, sorted(wthreads.values()), fthreads))
    log("an unrelated acquire/release meanwhile took %.0f ms; all %d served in %.0f ms "
        "after the first release (%.1f ms per handoff)" % (other_ms, n, t_all * 1000,
                                                           t_all * 1000 / n))
    order.sort(key=lambda x: x[1])
    got = [i for i, _ in order]
    assert got == list(range(n)), "not served in arrival order: %s" % got[:40]
    fences = [f for _, f in order]
    assert fences == list(range(h["fence"] + 1, h["fence"] + 1 + n)), fences[:10]
    if conns is not None:
        assert conns >= n, "only %d backend connections for %d waiters" % (conns, n)
    assert s.status(name)["held"] is False


# -- the worker pool (Apache's back end) ----------------------------------

@fronts("apache")
@timeout(40)
def test_pool_supervisor(s):
    """httplock-worker -s SOCK -n 2: the socket has the mode and group
    asked for; a worker that dies is restarted; SIGTERM stops the pool
    within a second and removes the socket; a SIGKILLed supervisor takes
    its workers with it."""
    sock = os.path.join(s.rundir, "worker.sock")
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
    if os.geteuid() == 0:
        import grp
        assert st.st_gid == grp.getgrnam("www-data").gr_gid, st.st_gid
    sup = s.pool.pid
    w = s.worker_pids()
    assert len(w) == 2 and children_of(sup) == w, (w, children_of(sup))

    # a worker killed with SIGKILL is restarted (after ~100 ms)
    os.kill(w[0], signal.SIGKILL)
    t0 = time.monotonic()
    new = wait_for(lambda: (lambda c: c if len(c) == 2 and w[0] not in c else None)(
        s.worker_pids()), 5, "the pool to restart the killed worker")
    log("killed worker %d replaced by %d after %.0f ms" % (
        w[0], (set(new) - set(w)).pop(), (time.monotonic() - t0) * 1000))
    assert "killed by signal 9" in s.log_text("pool.log"), s.log_tail("pool.log")
    s.assert_healthy_and_working("pool-after-kill")

    # SIGTERM: the supervisor and its workers exit within a second
    w = s.worker_pids()
    t0 = time.monotonic()
    s.pool.send_signal(signal.SIGTERM)
    s.pool.wait(3)
    left = wait_gone(w, 2)
    el = time.monotonic() - t0
    log("SIGTERM to the supervisor: pool gone after %.0f ms (exit status %d)" % (
        el * 1000, s.pool.returncode))
    assert not left and el < 1.5 and s.pool.returncode == 0, (left, el, s.pool.returncode)
    assert not os.path.exists(sock), "socket left behind"

    # SIGKILL of the supervisor: its workers die with it (PR_SET_PDEATHSIG).
    # start_pool() returns once the socket accepts, which the supervisor
    # may open before it has forked both workers.
    s.start_pool()
    w = wait_for(lambda: (lambda c: c if len(c) == 2 else None)(s.worker_pids()), 5,
                 "the restarted pool's two workers")
    s.assert_healthy_and_working("pool-restarted")
    t0 = time.monotonic()
    s.pool.kill()
    s.pool.wait(3)
    left = wait_gone(w, 3)
    log("SIGKILL to the supervisor: its workers gone after %.0f ms" % (
        (time.monotonic() - t0) * 1000))
    assert not left, "orphaned workers: %s" % left
    s.start_pool()
    # Seen once in ~10 runs: Apache's first connection to the restarted
    # pool was refused (AH02454) though the pool already accepted ours;
    # not understood yet (see the closing note).  The service must be back
    # within a bound; every transient answer is counted and printed.
    transient = []

    def back():
        try:
            return s.get("/healthz").status == 200
        except AssertionError as e:
            transient.append(str(e)[:80])
            return False
    wait_for(back, 5, "the service through the restarted pool")
    log("after the supervisor's SIGKILL and restart: %d transient answers %s" % (
        len(transient), transient))
    s.assert_healthy_and_working("pool-restarted-again")
