"""Several httplock hosts on one PostgreSQL database (HTTPLOCK_TEST_PG).

Each host is a Stack of its own (web server, workers, coordinator, port)
whose httplock.conf names the same `store`; the hosts start at once, as
hosts behind a load balancer would, and the first to arrive makes the
schema.  A host's key in the store includes its coordinator's socket, so
stacks on one machine are different hosts to the store, as on separate
machines: each has its row in httplock.hosts, and one host's waiters are
woken by another host's releases through the store (LISTEN/NOTIFY).
Checked:

- a lock released on host A goes to waiters parked on hosts B and C in
  the order they queued, with fences increasing;
- 16 clients spread over three hosts cycling over three locks: no two
  critical sections overlap, fences increase in grant order;
- a lease that ends on host A is handed to a waiter parked on host B,
  not before its end;
- a lock's status, the listing and /healthz's store are the same from
  every host;
- kill -9 of a whole host: the others go on at once, its grant ends with
  its lease, the queue moves on;
- PostgreSQL restarted under load (a private server, tests/pgcluster.py):
  clients that retry with their request_id (acquire) or token (release)
  ride through; 503 unavailable while it is down, never a hang; no two
  holders, no grant lost.

The bounds on cross-host latency are wide (a lost notification falls
back to the waiter's own looks); the figures are printed.
"""

import functools
import os
import statistics
import sys
import threading
import time

import pgdb
from checks import check_grant, check_no_overlap, expect, is_num
from common import BG, log, wait_for
from markers import needs_store, shared
from stack import Stack
from testenv import PG_SERVER
from traffic import CycleLog, cycle_client

LETTERS = "ABC"
# Bound on a handoff to a waiter parked on another host.  Woken through
# the store it takes milliseconds; with the notification lost it finds
# its grant at its own next look, within 1 s when it is first in line
# and 5 s otherwise (fcgi/wait.c, SAFETY_POLL_MS): slack on top of that.
CROSS_HOST_LOOK_MS = 7000


def _pgcluster():
    """tests/pgcluster.py's PgCluster, or None when it is not there."""
    top = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    if top not in sys.path:
        sys.path.insert(0, top)
    try:
        from pgcluster import PgCluster
    except ImportError:
        return None
    return PgCluster


class Hosts:
    """n stacks ("hosts" A, B, C) on one store: a database made on
    `server` (default HTTPLOCK_TEST_PG) for them alone.  conf: more
    httplock.conf keys, the same on every host; env: a dict of more
    environment for each host (its front end, workers and coordinator)."""

    def __init__(self, n, label, conf=None, server=None, env=None):
        self.server = server or PG_SERVER
        self.db, self.uri = pgdb.create_database(self.server, prefix="hlmh")
        self.stacks = []
        try:
            for i in range(n):
                s = Stack(dict(conf or {}), label="%s-%s" % (label, LETTERS[i]), store=self.uri,
                          host_env=(env or [{}] * n)[i])
                s.host = LETTERS[i]
                self.stacks.append(s)
        except BaseException:
            self.cleanup()
            raise

    def __iter__(self):
        return iter(self.stacks)

    def __getitem__(self, i):
        return self.stacks[i]

    def __len__(self):
        return len(self.stacks)

    def start(self):
        """Starts every host, at once behind lighttpd; returns the seconds
        it took.  Behind Apache one after the other: the worker pool is
        this process's child and ends with the thread that started it
        (PR_SET_PDEATHSIG), so it must be started by this one."""
        t0 = time.monotonic()
        if all(s.front_name == "lighttpd" for s in self.stacks):
            bgs = [BG(s.start) for s in self.stacks]
            for b in bgs:
                b.get(60)
        else:
            for s in self.stacks:
                s.start()
        return time.monotonic() - t0

    def stop_and_check(self):
        """Stops the hosts that still run and checks every host's logs."""
        for s in self.stacks:
            if not s.stopped:
                s.stop()
            s.check_logs()

    def tails(self, n=20):
        return "".join("=== host %s (%s)\n%s" % (s.host, s.dir, s.log_tails(n))
                       for s in self.stacks)

    def cleanup(self, keep=False):
        for s in self.stacks:
            s.cleanup(keep=keep)
        if keep:
            pgdb.keep(self.db, self.server)
            return
        try:
            pgdb.drop_database(self.db, self.server)
        except pgdb.PgError:
            pass


def _run_on_hosts(fn, hosts):
    """Starts the hosts, runs fn(hosts), stops them and checks their
    logs; prints their log tails when anything fails, and removes them."""
    ok = False
    try:
        took = hosts.start()
        n = int(hosts[0].store_query("SELECT count(*) FROM httplock.hosts")[0][0])
        log("%d hosts started %s on one database in %.2f s; %d host rows in the store" % (
            len(hosts), "at once" if hosts[0].front_name == "lighttpd" else "in turn", took, n))
        assert n == len(hosts), "%d rows in httplock.hosts for %d hosts" % (n, len(hosts))
        fn(hosts)
        hosts.stop_and_check()
        ok = True
    except BaseException:
        log(hosts.tails().replace("\n", "\n    "))
        raise
    finally:
        hosts.cleanup(keep=not ok and bool(os.environ.get("HTTPLOCK_KEEP")))


def on_hosts(n=3, seconds=60, **conf):
    """Runs the test as fn(hosts) on n hosts sharing a fresh database of
    HTTPLOCK_TEST_PG; PostgreSQL runs only (marked @shared so that run.py
    starts no stack of its own for it)."""
    def mark(fn):
        @functools.wraps(fn)
        def run(_shared_stack):
            _run_on_hosts(fn, Hosts(n, fn.__name__, conf))
        run.hl_timeout = seconds
        return needs_store("postgresql")(shared(run))
    return mark


def _pcts(ms):
    """"p50 X, p99 Y, max Z ms" of a list of milliseconds."""
    if not ms:
        return "none"
    s = sorted(ms)
    return "p50 %.1f, p99 %.1f, max %.1f ms (n=%d)" % (
        statistics.median(s), s[min(len(s) - 1, int(len(s) * 0.99))], s[-1], len(s))


# ---------------------------------------------------------------------------

@on_hosts(3)
def test_cross_host_handoff_fifo(h):
    """Waiters parked on B and C, queued in a known order, are granted in
    that order as each grant is released on A (a token works on any
    host); fences increase."""
    A, B, C = h
    name = "mh-fifo"
    plan = [B, C, C, B, C, B]
    g = A.acquire_ok(name, ttl=60)
    order = []
    order_lock = threading.Lock()

    def waiter(i, host):
        r = host.acquire(name, owner="w%d" % i, timeout=20, ttl=60, timeout_s=40)
        if r.status == 200:
            with order_lock:
                order.append(i)
        return r

    bgs = []
    for i, host in enumerate(plan):
        bgs.append(BG(waiter, i, host))
        A.wait_waiters(name, i + 1, bg=bgs)    # A sees the queue B and C make
    for host in h:
        assert host.waiters(name) == len(plan), (host.host, host.status(name).short())
    prev, lat = g, []
    for i, host in enumerate(plan):
        t0 = time.monotonic()
        A.release_ok(name, prev["token"])
        r = bgs[i].get(15)
        lat.append((r.t_done - t0) * 1000)
        log("release %d on A -> waiter %d on %s granted after %.1f ms" % (
            i + 1, i, host.host, lat[-1]))
        check_grant(r, name, owner="w%d" % i)
        with order_lock:
            assert order == list(range(i + 1)), \
                "grant order %s after %d releases, want %s" % (order, i + 1, list(range(i + 1)))
        assert r["fence"] > prev["fence"], "fence %d after %d" % (r["fence"], prev["fence"])
        prev = r
    A.release_ok(name, prev["token"])
    st = B.status(name)
    assert st["held"] is False and st["waiters"] == 0, st.short()
    log("release on A -> grant on B/C in queue order: %s" % _pcts(lat))
    assert max(lat) < CROSS_HOST_LOOK_MS, "a cross-host handoff took %.0f ms" % max(lat)
    # Woken through the store, not by their own looks (1 s and more).
    assert statistics.median(lat) < 500, "cross-host handoffs: %s" % _pcts(lat)


@on_hosts(3, seconds=170, max_wait=120)
def test_mutual_exclusion_16_clients_over_3_hosts(h):
    """16 clients, client i on host i % 3, each doing acquire / hold 2 ms
    / release cycles over three locks: no two critical sections of a lock
    overlap, fences increase in grant order, every cycle completes.  The
    acquires may wait up to 100 s: with notifications lost, a handoff
    across hosts waits for a waiter's next look (CROSS_HOST_LOOK_MS)."""
    names = ["mh-x0", "mh-x1", "mh-x2"]
    clients, cycles = 16, 25
    clog = CycleLog()
    t0 = time.monotonic()
    bgs = [BG(cycle_client, h[i % len(h)], names, cycles, 0.002, clog, i, None, 100)
           for i in range(clients)]
    for b in bgs:
        b.get(160)
    took = time.monotonic() - t0
    if clog.errors:
        raise clog.errors[0]
    counts = check_no_overlap(clog.records)
    assert clog.done == clients * cycles, (clog.done, clients * cycles)
    log("%d critical sections by %d clients on %d hosts in %.1f s (%.1f/s); per lock %s" % (
        clog.done, clients, len(h), took, clog.done / took, counts))
    log("acquire round trips: %s" % _pcts(clog.waits))
    for s in h:
        for n in names:
            st = s.status(n)
            assert st["held"] is False and st["waiters"] == 0, (s.host, st.short())


@on_hosts(2)
def test_expiry_on_one_host_handed_to_waiter_on_another(h):
    """A lease taken on A ends; the waiter parked on B gets the lock, not
    before the lease's end and soon after it; A's token is then dead on
    every host."""
    A, B = h
    name = "mh-expiry"
    g = A.acquire_ok(name, ttl=1)
    w = BG(B.acquire, name, owner="b", timeout=10, ttl=30, timeout_s=20)
    A.wait_waiters(name, 1, bg=w)
    r = w.get(15)
    check_grant(r, name, owner="b")
    late_ms = (r["acquired_at"] - g["expires_at"]) * 1000
    log("lease of 1 s taken on A, granted to B's waiter %.1f ms after its end "
        "(store's clock)" % late_ms)
    assert r["acquired_at"] >= g["expires_at"] - 0.0005, \
        "granted at %.3f, before the lease ended at %.3f" % (r["acquired_at"], g["expires_at"])
    assert late_ms < 2000, "granted %.0f ms after the lease ended" % late_ms
    assert r["fence"] > g["fence"]
    for s in h:
        expect(s.renew(name, g["token"]), 409, "not_held")
    st = A.status(name)
    assert st["held"] is True and st["holders"][0]["owner"] == "b", st.short()
    B.release_ok(name, r["token"])


@on_hosts(3)
def test_status_and_listing_same_from_every_host(h):
    """Locks held and awaited from all three hosts: GET /lock/<name>/
    and GET /locks/ answer the same from each host."""
    A, B, C = h
    g1 = A.acquire_ok("mh-st-1", ttl=60, owner="on-A")
    g2 = B.acquire_ok("mh-st-2", ttl=60, owner="on-B")
    g3 = C.acquire_ok("mh-st-3", ttl=60, owner="on-C")
    wb = BG(B.acquire, "mh-st-1", owner="wait-B", timeout=20, request_id="mh-st-wait-B-0123456789")
    A.wait_waiters("mh-st-1", 1, bg=wb)
    wc = BG(C.acquire, "mh-st-1", owner="wait-C", timeout=20, request_id="mh-st-wait-C-0123456789")
    A.wait_waiters("mh-st-1", 2, bg=[wb, wc])
    for n, owner, waiters in (("mh-st-1", "on-A", 2), ("mh-st-2", "on-B", 0),
                              ("mh-st-3", "on-C", 0)):
        seen = [s.status(n).json for s in h]
        assert seen[0]["held"] is True and seen[0]["waiters"] == waiters and \
            [x["owner"] for x in seen[0]["holders"]] == [owner], seen[0]
        for s, j in zip(h, seen):
            assert j == seen[0], "status of %s from %s: %s; from A: %s" % (n, s.host, j, seen[0])
    lists = [expect(s.get("/locks/", query={"prefix": "mh-st-"}), 200).json for s in h]
    want = [{"lock": "mh-st-1", "holders": 1, "waiters": 2},
            {"lock": "mh-st-2", "holders": 1, "waiters": 0},
            {"lock": "mh-st-3", "holders": 1, "waiters": 0}]
    assert lists[0]["locks"] == want, lists[0]
    for s, j in zip(h, lists):
        assert j == lists[0], "listing from %s: %s; from A: %s" % (s.host, j, lists[0])
    log("status of 3 locks and the listing: the same from A, B and C")
    stores = [s.health().json.get("store") for s in h]
    for s, st in zip(h, stores):
        assert isinstance(st, dict) and st.get("kind") == "postgresql" and \
            st.get("primary") is True and is_num(st.get("latency")), \
            "/healthz of %s: store %r" % (s.host, st)
    log("/healthz store from A, B, C: %s" % stores)
    # Cancels on A of waiters parked on B and C end them there.
    for rid, bg in (("mh-st-wait-B-0123456789", wb), ("mh-st-wait-C-0123456789", wc)):
        t0 = time.monotonic()
        expect(A.cancel("mh-st-1", rid), 200)
        r = bg.get(10)
        assert r.status != 200, "cancelled waiter %s granted: %s" % (rid, r.short())
        log("cancel on A of %s: its request ended %d after %.0f ms" % (
            rid[:11], r.status, (r.t_done - t0) * 1000))
        assert (r.t_done - t0) * 1000 < CROSS_HOST_LOOK_MS
    A.release_ok("mh-st-1", g1["token"])
    B.release_ok("mh-st-2", g2["token"])
    C.release_ok("mh-st-3", g3["token"])
    for s in h:
        j = expect(s.get("/locks/", query={"prefix": "mh-st-"}), 200).json
        assert j["locks"] == [], (s.host, j)


@on_hosts(3)
def test_host_killed_9(h):
    """kill -9 of host C with every process of it (web server, workers,
    coordinator) while it holds a lock and has a waiter parked: A and B
    answer at once; C's grant ends with its lease and goes to B's waiter;
    C's parked waiter stops counting by its deadline (or at once where
    the store sees it as local and dead) and the queue moves on."""
    A, B, C = h
    gc = C.acquire_ok("mh-k1", ttl=2, owner="C")
    ga = A.acquire_ok("mh-k2", ttl=60, owner="A")
    wc = BG(C.acquire, "mh-k2", owner="C-waiter", timeout=3, ttl=2, timeout_s=20)
    A.wait_waiters("mh-k2", 1, bg=wc)
    wb1 = BG(B.acquire, "mh-k1", owner="B1", timeout=15, timeout_s=30)
    A.wait_waiters("mh-k1", 1, bg=wb1)
    wb2 = BG(B.acquire, "mh-k2", owner="B2", timeout=15, timeout_s=30)
    A.wait_waiters("mh-k2", 2, bg=[wc, wb2])
    C.kill_all_9()
    C.stopped = True
    t_kill = time.time()
    ms = []
    for s in (A, B):
        g = s.acquire_ok("mh-k-free-%s" % s.host, timeout=0)
        s.release_ok("mh-k-free-%s" % s.host, g["token"])
        ms.append(g.ms)
        s.health()
    log("after kill -9 of C: acquire on A and B in %s ms" % ["%.1f" % x for x in ms])
    assert max(ms) < 1000, ms
    t_rel = time.time()
    A.release_ok("mh-k2", ga["token"])
    r1 = wb1.get(20)
    check_grant(r1, "mh-k1", owner="B1")
    assert r1["acquired_at"] >= gc["expires_at"] - 0.0005, \
        "C's grant ended at %.3f before its lease (%.3f)" % (r1["acquired_at"], gc["expires_at"])
    log("C's lease (2 s) ended %.2f s after the kill; B's waiter granted %.0f ms after its end" % (
        gc["expires_at"] - t_kill, (r1["acquired_at"] - gc["expires_at"]) * 1000))
    assert r1["acquired_at"] - gc["expires_at"] < 2.0
    r2 = wb2.get(20)
    check_grant(r2, "mh-k2", owner="B2")
    # C's waiter had 3 s from parking and would have got a 2 s lease.
    log("mh-k2 released on A with C's dead waiter first in line: B's waiter granted "
        "%.2f s later" % (r2["acquired_at"] - t_rel))
    assert r2["acquired_at"] - t_rel < 3 + 2 + 2, r2["acquired_at"] - t_rel
    assert r2["fence"] > ga["fence"]
    B.release_ok("mh-k1", r1["token"])
    B.release_ok("mh-k2", r2["token"])


def _private_pg():
    """A started PgCluster of tests/pgcluster.py, for a test that stops
    and starts its server."""
    PgCluster = _pgcluster()
    assert PgCluster is not None, "tests/pgcluster.py is missing"
    pg = PgCluster(verbose=False)
    try:
        pg.start()
    except BaseException:
        pg.stop()
        raise
    return pg


def _retrying_client(host, names, stop, clog, cid, stats):
    """acquire / hold 5 ms / release / pause 30 ms cycles that ride
    through an outage:
    an acquire answered 503 or cut off is sent again with the same
    request_id, a release with the same token; a release retried after a
    cut-off may find the lock released already (409 not_held)."""
    i = 0
    while not stop.is_set():
        name = names[i % len(names)]
        rid = "mh-pg-%d-%d-0123456789" % (cid, i)
        i += 1
        g = None
        while g is None:
            t0 = time.monotonic()
            try:
                r = host.acquire(name, owner="c%d" % cid, request_id=rid, timeout=30, ttl=5,
                                 timeout_s=45)
            except AssertionError as e:        # connection refused or cut
                stats.add("cut", (time.monotonic() - t0) * 1000, str(e))
                time.sleep(0.05)
                continue
            if r.status == 200:
                g = r
            elif r.status == 503:
                stats.add("503", r.ms, r.get("error"), "acquire by c%d on %s" % (cid, host.host))
                time.sleep(0.05)
            else:
                clog.errors.append(AssertionError("client %d: %s after %.0f ms, at %.3f; the "
                                                  "store then: %s" % (
                    cid, r.short(), r.ms, time.time(), _store_state(host))))
                return
        t_enter = time.monotonic()
        time.sleep(0.005)
        t_leave = time.monotonic()
        retried = False
        while True:
            try:
                rr = host.release(name, g["token"], timeout=15)
            except AssertionError as e:
                stats.add("cut", 0, str(e))
                retried = True
                time.sleep(0.05)
                continue
            if rr.status == 200 or (rr.status == 409 and retried):
                break
            if rr.status == 503:
                stats.add("503", rr.ms, rr.get("error"), "release by c%d on %s" % (cid, host.host))
                retried = True
                time.sleep(0.05)
                continue
            clog.errors.append(AssertionError("client %d release: %s" % (cid, rr.short())))
            return
        clog.add((name, g["fence"], t_enter, t_leave, cid), g.ms)
        stats.ok(g.t_done)
        time.sleep(0.03)


def _store_state(s):
    """The holders and waiters rows of s's store, for a failure message."""
    try:
        return "holders %s; waiters %s" % (
            s.store_query("SELECT lock_id, fence, owner, acquired_at, expires_at, waiter_id"
                          " FROM httplock.holders ORDER BY lock_id"),
            s.store_query("SELECT * FROM httplock.waiters ORDER BY id"))
    except pgdb.PgError as e:
        return str(e)


class _OutageStats:
    def __init__(self):
        self.lock = threading.Lock()
        self.failed = {"503": [], "cut": []}     # ms of each failed try
        self.examples = {}
        self.grants = []                          # monotonic time of each grant
        self.events = []                          # (monotonic sent, ms, kind, what)

    def add(self, kind, ms, what, who=""):
        with self.lock:
            self.failed[kind].append(ms)
            self.examples.setdefault(kind, what)
            self.events.append((time.monotonic() - ms / 1000, ms, kind, who))

    def ok(self, t):
        with self.lock:
            self.grants.append(t)


@needs_store("postgresql")
@shared
def test_postgresql_restarted_under_load(_shared_stack):
    """Two hosts on a private PostgreSQL, 6 retrying clients, two on each
    of three locks, one on each host; the server is restarted (fast, then
    immediate: a crash) under them.  Requests meanwhile get 503 (within seconds, never a hang) or
    a refused connection; the clients ride through; afterwards every
    critical section was alone and every lock is free (no grant lost)."""
    pg = _private_pg()
    try:
        hosts = Hosts(2, "pg-restart", conf={"max_wait": "60"}, server=pg.uri())

        def body(h):
            names = ["mh-pg-0", "mh-pg-1", "mh-pg-2"]
            stop, clog, stats = threading.Event(), CycleLog(), _OutageStats()
            marks = []
            bgs = [BG(_retrying_client, h[i % 2], names[i % 3:i % 3 + 1], stop, clog, i, stats)
                   for i in range(6)]
            try:
                wait_for(lambda: clog.done >= 20 or clog.errors, 60, "20 cycles before the restart")
                for mode in ("fast", "immediate"):
                    n0 = clog.done
                    t0 = time.monotonic()
                    pg.restart(mode)
                    t_up = time.monotonic()
                    marks.append((mode, t0, t_up))
                    wait_for(lambda: clog.done >= n0 + 20 or clog.errors, 60,
                             "20 cycles after the %s restart" % mode)
                    with stats.lock:
                        first = min([t for t in stats.grants if t > t_up] or [t_up])
                    log("restart -m %s: server down and up in %.2f s; first grant %.0f ms "
                        "after it was up" % (mode, t_up - t0, (first - t_up) * 1000))
            finally:
                stop.set()
                for b in bgs:
                    b.get(50)
            # Each restart's failures: those since the one before was up.
            starts = [marks[0][1] - 1] + [m[2] for m in marks[:-1]]
            ends = [m[1] for m in marks[1:]] + [float("inf")]
            for (mode, t0, t_up), start, end in zip(marks, starts, ends):
                near = ["%s %s at %+.2f s, %.0f ms" % (k, who, ts - t0, ms)
                        for ts, ms, k, who in sorted(stats.events) if start <= ts < end]
                log("restart -m %s (down for %.2f s): %d failed tries around it: %s" % (
                    mode, t_up - t0, len(near),
                    near[:4] + (["..."] + near[-4:] if len(near) > 8 else near[4:])))
            if clog.errors:
                raise clog.errors[0]
            counts = check_no_overlap(clog.records)
            log("%d critical sections (%s), acquire round trips %s; failed tries: 503 x%d "
                "(%s), cut x%d; %s" % (
                    clog.done, counts, _pcts(clog.waits), len(stats.failed["503"]),
                    _pcts(stats.failed["503"]), len(stats.failed["cut"]), stats.examples))
            assert not stats.failed["503"] or max(stats.failed["503"]) < 2000, \
                "a 503 took %.0f ms" % max(stats.failed["503"])
            for s in h:
                for n in names:
                    st = s.status(n)
                    assert st["held"] is False and st["waiters"] == 0, (s.host, st.short())

        _run_on_hosts(body, hosts)
    finally:
        pg.stop()


test_postgresql_restarted_under_load.hl_timeout = 170


@needs_store("postgresql")
@shared
def test_postgresql_restarted_while_idle(_shared_stack):
    """Two hosts on a private PostgreSQL, each worker's connections opened
    by concurrent requests; the server restarts (fast) while nobody asks
    anything.  Once it is back, requests succeed: the connections it
    closed are opened again, not handed to a request that then fails."""
    pg = _private_pg()
    try:
        hosts = Hosts(2, "pg-idle", server=pg.uri())

        def burst(h, tag):
            """12 concurrent acquire/release pairs on each host; the
            answers."""
            def one(s, i):
                name = "mh-idle-%s-%s-%d" % (tag, s.host, i)
                r = s.acquire(name, timeout=0)
                return [r] if r.status != 200 else [r, s.release(name, r["token"])]
            bgs = [BG(one, s, i) for s in h for i in range(12)]
            return [r for b in bgs for r in b.get(20)]

        def body(h):
            for r in burst(h, "warm"):
                expect(r, 200)
            t0 = time.monotonic()
            pg.restart("fast")
            t_up = time.monotonic()
            wait_for(lambda: pgdb.query(h.uri, "SELECT 1") == [["1"]], 10, "the server back")
            time.sleep(0.5)     # up for a while: no request finds it starting
            rs = burst(h, "after")
            bad = [r for r in rs if r.status != 200]
            log("server down and up in %.2f s; 0.5 s later %d of %d requests failed%s" % (
                t_up - t0, len(bad), len(rs), ": %s" % bad[0].short() if bad else ""))
            assert not bad, "%d of %d requests after the restart: %s" % (
                len(bad), len(rs), bad[0].short())

        _run_on_hosts(body, hosts)
    finally:
        pg.stop()


@needs_store("postgresql")
@shared
def test_grant_survives_a_crash(_shared_stack):
    """A grant is answered only once its commit is in the WAL on disk: a
    crash of PostgreSQL (pg_ctl stop -m immediate) right after the answers
    loses none of them; the locks are still held, and each keeps its
    fence."""
    pg = _private_pg()
    try:
        hosts = Hosts(1, "pg-crash", server=pg.uri())

        def body(h):
            s = h[0]
            names = ["mh-crash-%d" % i for i in range(8)]
            fences = {}
            for n in names:         # the lock rows exist: only grants now
                r = s.acquire(n, timeout=0)
                expect(r, 200)
                expect(s.release(n, r["token"]), 200)
            for n in names:
                r = s.acquire(n, ttl=120, timeout=0)
                expect(r, 200)
                fences[n] = r["fence"]
            t0 = time.monotonic()
            pg.restart("immediate")
            wait_for(lambda: pgdb.query(h.uri, "SELECT 1") == [["1"]], 10, "the server back")
            rows = pgdb.query(h.uri, "SELECT convert_from(l.name, 'UTF8'), h.fence"
                              " FROM httplock.holders h JOIN httplock.locks l ON l.id = h.lock_id")
            kept = {n: int(f) for n, f in rows}
            log("%d grants answered, PostgreSQL crashed and back in %.2f s: %d holder rows" % (
                len(names), time.monotonic() - t0, len(kept)))
            assert kept == fences, "before the crash %s, after it %s" % (fences, kept)
            r = None
            for _ in range(50):
                r = s.acquire(names[0], timeout=0)
                if r.status != 503:
                    break
                time.sleep(0.1)
            expect(r, 423)

        _run_on_hosts(body, hosts)
    finally:
        pg.stop()


@needs_store("postgresql")
@shared
def test_expiry_on_hosts_with_skewed_clocks(_shared_stack):
    """Leases are judged by the server's clock: a host whose clock is 3 s
    behind it and one 3 s ahead each hand a lease that ended to their
    waiter promptly.  Their timers (the worker's, the coordinator's) wait
    for the server's instant, not for their own clock's reading of it,
    which would be 3 s late, or already past and left to the waiter's
    looks once a second (a lease of 1.5 s ends between two)."""
    skews = [0, -3000, 3000]
    hosts = Hosts(3, "skew", env=[{"HTTPLOCK_TEST_CLOCK_SKEW_MS": str(k)} for k in skews])

    def body(h):
        A = h[0]
        for s, skew in zip(h[1:], skews[1:]):
            name = "mh-skew-%s" % s.host
            g = A.acquire_ok(name, ttl=1.5)
            w = BG(s.acquire, name, owner=s.host, timeout=10, ttl=30, timeout_s=20)
            A.wait_waiters(name, 1, bg=w)
            r = w.get(15)
            check_grant(r, name, owner=s.host)
            late_ms = (r["acquired_at"] - g["expires_at"]) * 1000
            log("host %s, clock %+d ms off the server's: lease of 1.5 s handed to its "
                "waiter %.1f ms after its end (server's clock)" % (s.host, skew, late_ms))
            assert r["acquired_at"] >= g["expires_at"] - 0.0005, \
                "granted at %.3f, before the lease ended at %.3f" % (
                    r["acquired_at"], g["expires_at"])
            assert late_ms < 250, "host %s (clock %+d ms): granted %.0f ms after the " \
                "lease ended" % (s.host, skew, late_ms)
            s.release_ok(name, r["token"])

    _run_on_hosts(body, hosts)
