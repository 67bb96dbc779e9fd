"""Fault injection: 32 clients run critical sections on a few locks
while the test, at random moments, SIGKILLs single workers, the coordinator
(restarted after a moment, as a supervisor would), all workers at once, and
the web server (restarted on the same port and data), and now and then the
whole stack.  Every critical section goes to a journal, checked afterwards:

- no two holders of a lock at once: sections [grant received, release sent]
  of one lock never overlap, unless the earlier holder's lease (its
  expires_at, server clock) had run out before the later grant (a late
  client, counted, never expected: clients hold a few ms of a 2 s lease);
  and no grant while an earlier lease of the lock was still running and not
  released (wall clock: acquired_at vs. min(expires_at, release sent));
- fences strictly increase per lock in grant order, no fence is seen by two
  sections, each is at most the lock's final fence_seq in the database; the
  fences never seen by a client (grants whose response was lost, living out
  their lease) are counted, and there are no more of them than acquires
  that failed without an answer.  Fences go up by one per grant, except
  where a start after a whole-stack kill floored them at the clock (a jump
  of more than FLOOR_JUMP): grants unseen just before such a jump cannot
  be told from the jump and are not counted;
- every client is served: each cycle ends within a bound;
- PRAGMA integrity_check is ok after a clean stop.

Part of the fault-injection suite, tests/fault/ (with test_diskfull.py),
which tests/fault/run.sh runs behind lighttpd and behind Apache on the
integration harness (tests/integ/run.py and stack.py).

Short form (make check): 20 s of faults per front end.  Longer forms:

    HTTPLOCK_FAULT_SECONDS=600 make check TESTS=tests/fault/run.sh
    HTTPLOCK_FAULT_SECONDS=600 tests/fault/run.sh fault     # in a build dir,
        # with HTTPLOCK_BUILDDIR=. if it is not the source tree's build/
    HTTPLOCK_FAULT_SECONDS=3600 /usr/bin/python3 tests/fault/test_fault.py
        # this test alone, one front end (HTTPLOCK_FRONT), no suite limit

run.sh stretches the suite's time limit by HTTPLOCK_FAULT_SECONDS.
HTTPLOCK_FAULT_SEED=N replays a fault schedule (timing still varies); the
seed of every run is printed.
"""

import http.client
import json
import os
import random
import signal
import sqlite3
import sys
import threading
import time
import urllib.parse

# The harness lives with the integration tests.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integ"))
from checks import is_num  # noqa: E402
from common import log  # noqa: E402
from httpclient import lpath  # noqa: E402
from markers import timeout  # noqa: E402
from procs import wait_gone  # noqa: E402
from stack import Stack  # noqa: E402
import storeview  # noqa: E402

N_CLIENTS = 32
LOCKS = ["fault-%d" % i for i in range(4)]
TTL = 2.0             # lease of every grant
ACQ_TIMEOUT = 5.0     # acquire's own timeout (423 after it)
HOLD = (0.002, 0.006)
EPS = 0.002           # the server prints times to the millisecond
FAULT_SECONDS = float(os.environ.get("HTTPLOCK_FAULT_SECONDS") or 20)
CYCLE_BOUND = 30.0    # a cycle (first acquire attempt to release) must end within
TAIL_CYCLES = 3       # cycles each client runs after the faults stop


def _http(port, path, form, timeout_s):
    """(status, json or None) of one POST on a fresh connection; (None, error)
    on a transport error.  Never raises for the server's answers."""
    body = urllib.parse.urlencode(form).encode()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        c.request("POST", path, body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Content-Length": str(len(body))})
        r = c.getresponse()
        data = r.read()
    except (OSError, http.client.HTTPException) as e:
        return None, repr(e)
    finally:
        c.close()
    try:
        j = json.loads(data.decode("utf-8"))
    except ValueError:
        j = None
    return r.status, j


class Journal:
    def __init__(self):
        self.lock = threading.Lock()
        self.sections = []   # dicts, see Client.section
        self.outcomes = {}   # "409 superseded" etc. -> count
        self.retries = 0     # acquire attempts repeated with the same request_id
        self.rel_retries = 0
        self.failed_acq = {}  # lock -> acquire attempts without an answer (or 5xx)
        self.late = 0
        self.recovered = 0   # grants made for a lost try, got back by a retry
        self.errors = []
        self.slowest = 0.0

    def count(self, key, n=1):
        with self.lock:
            self.outcomes[key] = self.outcomes.get(key, 0) + n


class Client(threading.Thread):
    def __init__(self, s, idx, jr, stop_evt, rng_seed):
        super().__init__(daemon=True)
        self.s, self.idx, self.jr, self.stop_evt = s, idx, jr, stop_evt
        self.rng = random.Random(rng_seed)
        self.cycles = 0
        self.after_stop = 0

    def run(self):
        try:
            n = 0
            while self.after_stop < TAIL_CYCLES:
                stopping = self.stop_evt.is_set()
                self.cycle(LOCKS[(self.idx + n) % len(LOCKS)], n)
                n += 1
                self.cycles += 1
                if stopping:
                    self.after_stop += 1
        except BaseException as e:   # noqa
            with self.jr.lock:
                self.jr.errors.append("client %d: %r" % (self.idx, e))

    def cycle(self, name, n):
        jr = self.jr
        t_cycle = time.monotonic()
        attempt = 0
        while True:
            if time.monotonic() - t_cycle > CYCLE_BOUND:
                raise AssertionError("cycle %d on %r not served within %.0f s" % (
                    n, name, CYCLE_BOUND))
            attempt += 1
            rid = "rid-fault-c%d-n%d-a%d" % (self.idx, n, attempt)
            tries = 0
            while True:     # same request_id until an answer
                tries += 1
                if time.monotonic() - t_cycle > CYCLE_BOUND:
                    raise AssertionError("cycle %d on %r (request_id %s): no answer within "
                                         "%.0f s" % (n, name, rid, CYCLE_BOUND))
                w_sent = time.time()
                st, j = _http(self.s.port, lpath(name, "acquire"), {
                    "request_id": rid, "ttl": "%g" % TTL, "timeout": "%g" % ACQ_TIMEOUT,
                    "owner": "c%d" % self.idx}, ACQ_TIMEOUT + 5)
                if st is not None and st < 500:
                    break
                jr.count("transport error" if st is None else "%s %s" % (
                    st, j.get("error") if isinstance(j, dict) else "(not JSON)"))
                with jr.lock:
                    jr.failed_acq[name] = jr.failed_acq.get(name, 0) + 1
                    jr.retries += 1
                time.sleep(self.rng.uniform(0.02, 0.1))
            if st == 200 and isinstance(j, dict):
                break
            code = j.get("error") if isinstance(j, dict) else None
            jr.count("%s %s" % (st, code))
            if st in (409, 423):
                continue           # a new request_id
            raise AssertionError("acquire %r (request_id %s): unexpected %s %r" % (
                name, rid, st, j))
        t_enter = time.monotonic()
        w_enter = time.time()
        exp = j["expires_at"]
        # The worker stamps acquired_at after it received the request, so a
        # grant older than the last try's send was made for an earlier try
        # whose answer was lost, and the retry got it back.
        if tries > 1 and is_num(j.get("acquired_at")) and j["acquired_at"] < w_sent - EPS:
            with jr.lock:
                jr.recovered += 1
        if j.get("lock") != name or not isinstance(j.get("fence"), int):
            raise AssertionError("bad grant %r" % (j,))
        hold = self.rng.uniform(*HOLD)
        if w_enter + hold < exp - 0.2:
            time.sleep(hold)
        t_leave = time.monotonic()
        w_leave = time.time()
        late = w_leave >= exp
        released = None
        rel_tries = 0
        while True:
            rel_tries += 1
            st, rj = _http(self.s.port, lpath(name, "release"), {"token": j["token"]}, 5.0)
            if st == 200:
                released = time.time()
                break
            if st == 409:
                break      # not held: expired, or an earlier try did it
            if st is not None and st < 500:
                raise AssertionError("release %r fence %d: unexpected %s %r" % (
                    name, j["fence"], st, rj))
            if time.time() > exp + 1:
                break      # the lease is gone anyway
            with jr.lock:
                jr.rel_retries += 1
            time.sleep(self.rng.uniform(0.02, 0.1))
        dur = time.monotonic() - t_cycle
        with jr.lock:
            jr.sections.append({
                "lock": name, "fence": j["fence"], "client": self.idx, "rid": rid,
                "enter": t_enter, "leave": t_leave, "w_enter": w_enter, "w_leave": w_leave,
                "acquired_at": j.get("acquired_at"), "expires_at": exp,
                "released": released, "rel_status": st, "late": late})
            if late:
                jr.late += 1
            jr.slowest = max(jr.slowest, dur)


class Faults:
    """The fault schedule: SIGKILLs and restarts at random moments."""

    KINDS = (("worker", 35), ("coord", 20), ("workers", 15), ("front", 20), ("stack", 10))

    def __init__(self, s, rng):
        self.s, self.rng = s, rng
        self.counts = {k: 0 for k, _ in self.KINDS}
        self.restarts = 0
        self.events = []      # (monotonic, kind, detail)
        self.orphans = 0

    def pick(self):
        total = sum(w for _, w in self.KINDS)
        x = self.rng.uniform(0, total)
        for k, w in self.KINDS:
            x -= w
            if x <= 0:
                return k
        return self.KINDS[-1][0]

    def note(self, kind, detail=""):
        self.events.append((time.monotonic(), kind, detail))

    def _kill(self, pids):
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def inject(self, kind):
        s = self.s
        self.counts[kind] += 1
        if kind == "worker":
            pids = s.worker_pids()
            if pids:
                p = self.rng.choice(pids)
                self._kill([p])
                self.note(kind, "pid %d" % p)
        elif kind == "workers":
            pids = s.worker_pids()
            self._kill(pids)
            self.note(kind, "pids %s" % pids)
        elif kind == "coord":
            s.kill_coord(signal.SIGKILL)
            self.note(kind)
            time.sleep(self.rng.uniform(0.1, 1.0))
            s.start_coord()
            self.restarts += 1
            self.note("coord-restarted")
        elif kind == "front":
            pids = s.front_pids()
            workers = s.worker_pids() if s.front_name == "lighttpd" else []
            self._kill(pids)
            s.front.wait(5)
            self.note(kind, "pids %s" % pids)
            # lighttpd's workers die with it (they may take a moment)
            left = wait_gone(workers, 3)
            # and a worker lighttpd forked just then, which no SIGTERM reaches
            if s.front_name == "lighttpd":
                left += [p for p in s.stray_workers() if p not in workers]
            if left:
                self.orphans += len(left)
                self._kill(left)
                wait_gone(left, 3)
            time.sleep(self.rng.uniform(0.0, 0.5))
            s.start_front(same_port=True)
            self.restarts += 1
            self.note("front-restarted")
        elif kind == "stack":
            s.kill_all_9()
            self.note(kind)
            time.sleep(self.rng.uniform(0.0, 0.5))
            s.restart()
            self.restarts += 1
            self.note("stack-restarted")


def _db_facts(s):
    """The store after the run: SQLite's integrity check (["ok"] on
    PostgreSQL, which keeps its own), each lock's fence_seq, the holders."""
    if s.store_kind == "sqlite":
        con = sqlite3.connect("file:%s?mode=ro" % s.db_path, uri=True)
        try:
            ic = [r[0] for r in con.execute("PRAGMA integrity_check")]
        finally:
            con.close()
    else:
        ic = ["ok"]
    fseq = dict(storeview.rows(s, "SELECT name, fence_seq FROM locks"))
    holders = [tuple(r) for r in storeview.rows(
        s, "SELECT l.name, h.fence FROM holders h JOIN locks l ON l.id = h.lock_id")]
    return ic, fseq, holders


# Fences of a lock step by one per grant; a bigger step is the floor a
# start after a stop raised to the clock (microseconds: a restart takes far
# longer than this many grants of one lock).
FLOOR_JUMP = 100000


def unseen_fences(fences, top):
    """Grants of a lock no section saw: the gaps between the fences seen
    (sorted), and after the last one up to `top` (its fence_seq), where a gap
    is no floor jump."""
    u = 0
    for a, b in zip(fences, fences[1:] + [top + 1]):
        if b - a <= FLOOR_JUMP:
            u += b - a - 1
    return u


def check_journal(sections, fence_seq, failed_acq, db_holders):
    """Raises AssertionError on a violation; returns (unseen per lock, late
    overlaps)."""
    by_lock = {}
    for sec in sections:
        by_lock.setdefault(sec["lock"], []).append(sec)
    unseen = {}
    late_overlaps = 0
    for name, secs in sorted(by_lock.items()):
        secs.sort(key=lambda x: x["fence"])
        fences = [x["fence"] for x in secs]
        dups = sorted(set(f for f in fences if fences.count(f) > 1))
        if dups:
            d = [x for x in secs if x["fence"] == dups[0]]
            raise AssertionError("lock %r: fence %d seen by %d sections: %s" % (
                name, dups[0], len(d), d))
        top = fence_seq.get(name)
        if top is None or fences[-1] > top:
            raise AssertionError("lock %r: fence %d seen, but fence_seq in the database is %s" % (
                name, fences[-1], top))
        # acquired_at is stamped with a time the worker took before its write
        # transaction began (lockcore's `now`), so it may precede the real
        # grant: the grant happened in [acquired_at, grant received].
        for i, a in enumerate(secs):
            for b in secs[i + 1:]:
                if b["enter"] < a["leave"] and a["enter"] < b["leave"]:
                    # b was granted while a had not yet sent its release:
                    # only excusable if a's lease had run out first.
                    if not a["late"] or a["expires_at"] > b["w_enter"] + EPS:
                        raise AssertionError(
                            "lock %r: overlapping holders: client %d (fence %d, granted %.3f, "
                            "expires %.3f) held [%.6f, %.6f]; client %d (fence %d, granted "
                            "%.3f) held [%.6f, %.6f]" % (
                                name, a["client"], a["fence"], a["acquired_at"] or -1,
                                a["expires_at"], a["enter"], a["leave"], b["client"],
                                b["fence"], b["acquired_at"] or -1, b["enter"], b["leave"]))
                    late_overlaps += 1    # a worked past its lease: a client bug
                if b["enter"] > a["leave"] + 5:
                    break
    for name, f in db_holders:
        if f > fence_seq.get(name, -1):
            raise AssertionError("holder of %r with fence %d > fence_seq %s" % (
                name, f, fence_seq.get(name)))
    for name, top in fence_seq.items():
        if name not in LOCKS:
            continue
        u = unseen_fences(sorted(x["fence"] for x in by_lock.get(name, [])), top)
        unseen[name] = u
        if u > failed_acq.get(name, 0):
            raise AssertionError(
                "lock %r: %d fences never seen by a client, but only %d acquires went "
                "unanswered: a grant went to nobody" % (name, u, failed_acq.get(name, 0)))
    return unseen, late_overlaps


@timeout(FAULT_SECONDS + 100)
def test_fault_injection(s):
    seed = int(os.environ.get("HTTPLOCK_FAULT_SEED") or random.SystemRandom().randrange(1 << 31))
    log("seed %d (HTTPLOCK_FAULT_SEED=%d replays the fault schedule), %.0f s of faults, "
        "front end %s" % (seed, seed, FAULT_SECONDS, s.front_name))
    rng = random.Random(seed)
    jr = Journal()
    stop_evt = threading.Event()
    clients = [Client(s, i, jr, stop_evt, rng.randrange(1 << 30)) for i in range(N_CLIENTS)]
    faults = Faults(s, rng)
    t0 = time.monotonic()
    for c in clients:
        c.start()
    try:
        while time.monotonic() - t0 < FAULT_SECONDS:
            time.sleep(rng.uniform(0.3, 1.5))
            if time.monotonic() - t0 >= FAULT_SECONDS:
                break
            kind = faults.pick()
            try:
                faults.inject(kind)
            except Exception as e:
                raise AssertionError("fault %r at %.1f s: %s" % (
                    kind, time.monotonic() - t0, e))
            with jr.lock:
                if jr.errors:
                    break
    finally:
        stop_evt.set()
    t_stop = time.monotonic()
    # make sure the service is whole again (a worker killed last is respawned)
    s.wait_healthy(15)
    for c in clients:
        c.join(max(0.5, CYCLE_BOUND * (TAIL_CYCLES + 1) - (time.monotonic() - t_stop)))
    stuck = [c.idx for c in clients if c.is_alive()]
    if stuck:
        raise AssertionError("clients %s still running %.0f s after the faults stopped" % (
            stuck, time.monotonic() - t_stop))
    s.stop()
    ic, fseq, holders = _db_facts(s)
    with jr.lock:
        sections = list(jr.sections)
        errors = list(jr.errors)
    kills = ", ".join("%s %d" % (k, v) for k, v in faults.counts.items())
    log("%d sections in %.1f s (%s); kills: %s; restarts %d; acquire retries %d, release "
        "retries %d, unanswered acquires %d; outcomes %s; late releases %d; slowest cycle "
        "%.2f s; orphaned workers %d" % (
            len(sections), time.monotonic() - t0,
            ", ".join("%s %d" % (n, sum(1 for x in sections if x["lock"] == n)) for n in LOCKS),
            kills, faults.restarts, jr.retries, jr.rel_retries, sum(jr.failed_acq.values()),
            jr.outcomes or "{}", jr.late, jr.slowest, faults.orphans))
    if errors:
        raise AssertionError("seed %d: %d client errors, first: %s" % (seed, len(errors), errors[0]))
    if ic != ["ok"]:
        raise AssertionError("seed %d: PRAGMA integrity_check: %s" % (seed, ic))
    try:
        unseen, late_ov = check_journal(sections, fseq, jr.failed_acq, holders)
    except AssertionError as e:
        ev = "; ".join("%+.2fs %s %s" % (t - t0, k, d) for t, k, d in faults.events[-12:])
        raise AssertionError("seed %d: %s (last faults: %s)" % (seed, e, ev))
    log("lost grants got back by a request_id retry %d; fences never seen by a client "
        "(lost grants that lived out their lease): %s, total %d; late overlaps %d" % (
            jr.recovered, unseen, sum(unseen.values()), late_ov))
    for c in clients:
        assert c.cycles >= TAIL_CYCLES, "client %d ran only %d cycles" % (c.idx, c.cycles)


if __name__ == "__main__":
    # Runs this test alone, without run.py's suite time limit (long forms).
    st = Stack(label="fault")
    ok = False
    try:
        st.start()
        test_fault_injection(st)
        st.stop()
        st.check_logs()
        ok = True
        print("PASS test_fault.test_fault_injection [%s]" % st.front_name)
    except BaseException as e:  # noqa
        print("FAIL test_fault.test_fault_injection [%s]: %s\n%s" % (
            st.front_name, e, st.log_tails(30)))
    finally:
        st.cleanup(keep=not ok and bool(os.environ.get("HTTPLOCK_KEEP")))
    sys.exit(0 if ok else 1)
