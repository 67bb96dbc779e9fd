"""Disk full and read-only database: the database lives on a small
tmpfs mounted over the stack's data directory.  An acquire that cannot be
written answers 503 "unavailable" (JSON, with a message) and never hangs,
nothing already granted is lost, and the service resumes by itself once the
file system is writable again.  Needs root (mount); the test is skipped
(passes with a note) otherwise.  SQLite store only: a PostgreSQL store
keeps no file there.  Part of the fault-injection suite
(tests/fault/run.sh, on the integration harness in tests/integ/)."""

import errno
import functools
import os
import subprocess
import sys
import time

# The harness lives with the integration tests.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integ"))
from checks import check_integrity, expect  # noqa: E402
from common import BG, log, wait_for  # noqa: E402
from httpclient import lpath  # noqa: E402
from markers import fronts, needs_store, shared, timeout  # noqa: E402
from procs import cpu_seconds  # noqa: E402
from rawsock import free_port  # noqa: E402
from stack import Stack  # noqa: E402
from testenv import LIGHTTPD  # noqa: E402

TMPFS_SIZE = "1m"
HELD = 3                 # locks granted before the trouble starts
HELD_TTL = 600           # long enough to outlive the test
MAX_FILL_ACQUIRES = 3000  # bound on "acquire new names until 503"
FILL_SECONDS = 30.0
RECOVER_BOUND = 10.0     # seconds the service may take to resume by itself
CLIENT_TIMEOUT = 10.0    # a request answering later than this is a hang
SLACK = 64 << 10         # bytes freed again after filling the tmpfs


def _run(argv):
    return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=20)


def _mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def _umount(path):
    if not _mounted(path):
        return
    r = _run(["umount", path])
    if r.returncode != 0:
        log("umount %s: %s; lazy umount" % (path, r.stdout.strip()))
        r = _run(["umount", "-l", path])
        if r.returncode != 0:
            raise AssertionError("umount -l %s failed: %s" % (path, r.stdout.strip()))


def _can_mount():
    return os.geteuid() == 0


def on_tmpfs_stack(fn):
    """Runs fn(s) on a stack of its own whose data directory (hence
    httplock.db, -wal, -shm) is a TMPFS_SIZE tmpfs.  Afterwards: stop, check
    the logs, PRAGMA integrity_check, umount, remove."""
    def run(_shared_stack):
        if not _can_mount():
            log("not root: cannot mount a tmpfs; skipped")
            return
        s = Stack(label=fn.__name__, front="lighttpd")
        ok = False
        try:
            r = _run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % TMPFS_SIZE,
                      "tmpfs", s.datadir])
            if r.returncode != 0:
                raise AssertionError("mount tmpfs on %s: %s" % (s.datadir, r.stdout.strip()))
            s.start()
            fn(s)
            s.stop()
            s.check_logs()
            check_integrity(s.db_path)
            log("PRAGMA integrity_check: ok")
            ok = True
        except BaseException:
            log(s.log_tails(25).replace("\n", "\n    "))
            raise
        finally:
            try:
                s.force_kill()
            finally:
                try:
                    if _mounted(s.datadir):
                        _run(["mount", "-o", "remount,rw", s.datadir])
                    _umount(s.datadir)
                finally:
                    s.cleanup(keep=not ok and bool(os.environ.get("HTTPLOCK_KEEP")))
    return shared(functools.wraps(fn)(run))


def _dir_sizes(s):
    return " ".join(sorted("%s=%d" % (e, os.path.getsize(os.path.join(s.datadir, e)))
                           for e in os.listdir(s.datadir)))


def _short(r):
    return r.short().strip()


def _json_any(r, statuses):
    """r is one of statuses with a JSON object body (Stack.request already
    checked the Content-Type and that the body parses)."""
    if r.status not in statuses or not isinstance(r.json, dict):
        raise AssertionError("%s: expected one of %s with a JSON body, got %s" % (
            r.desc, statuses, r.short()))
    return r


def _unavailable(r):
    """A 503 "unavailable" with a non-empty message."""
    expect(r, 503, "unavailable")
    if not r["message"].strip():
        raise AssertionError("%s: empty message: %s" % (r.desc, r.short()))
    return r


def _grant_held(s, prefix):
    held = []
    for i in range(HELD):
        name = "%s-held-%d" % (prefix, i)
        g = s.acquire_ok(name, ttl=HELD_TTL, timeout=0, owner="o%d" % i)
        held.append((name, g["token"], g["fence"], g["owner"]))
    return held


def _check_still_held(s, held, when, allow_unavailable=False):
    """Every entry still shows as held, with its fence.  allow_unavailable:
    a status may instead answer 503 unavailable (the database cannot be
    read at all); returns how many did."""
    unavailable = 0
    for name, _token, fence, owner in held:
        if allow_unavailable:
            r = s.get(lpath(name), timeout=CLIENT_TIMEOUT)
            if r.status == 503:
                _unavailable(r)
                unavailable += 1
                continue
        st = s.status(name)
        fences = [h.get("fence") for h in st["holders"]]
        if st["held"] is not True or fences != [fence]:
            raise AssertionError("%s: grant lost: %r (fence %d, owner %r) now %s" % (
                when, name, fence, owner, st.short()))
    return unavailable


def _release_while_broken(s, held, when):
    """Releasing a held lock while the database cannot be written: 200 (it
    went through) or 503 unavailable, never 409 or anything else.  Returns
    the held entries that are still held."""
    left = []
    outcomes = []
    for entry in held:
        name, token = entry[0], entry[1]
        r = s.release(name, token, timeout=CLIENT_TIMEOUT)
        if r.status == 200:
            if r["released"] is not True:
                raise AssertionError("%s: %s" % (when, r.short()))
        elif r.status == 503:
            _unavailable(r)
            left.append(entry)
        else:
            raise AssertionError("%s: release answered %s (want 200 or 503 unavailable)" % (
                when, r.short()))
        outcomes.append(r.status)
    log("%s: releases of held locks answered %s" % (when, outcomes))
    return left


def _wait_recovered(s, probe, what):
    """Polls acquire of new names until one is granted; returns (seconds,
    grant, statuses seen)."""
    t0 = time.monotonic()
    seen = {}
    n = [0]

    def pred():
        n[0] += 1
        name = "%s-%d" % (probe, n[0])
        r = s.acquire(name, timeout_s=CLIENT_TIMEOUT, timeout=0, ttl=60)
        seen[r.status] = seen.get(r.status, 0) + 1
        if r.status == 200:
            return r
        _unavailable(r)
        return None
    try:
        g = wait_for(pred, RECOVER_BOUND, what, interval=0.05)
    except AssertionError as e:
        raise AssertionError("%s (answers seen: %s; healthz %s)" % (
            e, seen, s.get("/healthz", expect_json=False).short()))
    return time.monotonic() - t0, g, seen


# ---------------------------------------------------------------------------


@fronts("lighttpd")
@needs_store("sqlite")
@timeout(120)
@on_tmpfs_stack
def test_disk_full(s):
    """Fill the tmpfs with a filler file, then acquire new names until the
    server answers 503; grants survive; deleting the filler brings the
    service back by itself."""
    held = _grant_held(s, "df")
    # Fill the file system.
    filler = os.path.join(s.datadir, "filler")
    written = 0
    chunk = b"\0" * 4096
    with open(filler, "wb", buffering=0) as f:
        while True:
            try:
                n = f.write(chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
            written += n
            if written > 64 << 20:
                raise AssertionError("wrote 64 MiB to a %s tmpfs without ENOSPC" % TMPFS_SIZE)
    # Give back a little room so that some acquires still fit and the
    # database runs out of space while it grows, mid-stream.
    os.truncate(filler, max(0, written - SLACK))
    log("filler: %d bytes until ENOSPC, %d left; data dir: %s" % (
        written, max(0, written - SLACK), _dir_sizes(s)))
    # Acquire new names until the database is full.
    t0 = time.monotonic()
    granted = []
    full = None
    for i in range(MAX_FILL_ACQUIRES):
        name = "df-new-%d" % i
        r = s.acquire(name, timeout_s=CLIENT_TIMEOUT, timeout=0, ttl=HELD_TTL)
        if r.status == 200:
            granted.append((name, r["token"], r["fence"], r["owner"]))
            if time.monotonic() - t0 > FILL_SECONDS:
                break
            continue
        full = _unavailable(r)
        break
    if full is None:
        raise AssertionError("%d acquires of new names in %.1f s were all granted on a full "
                             "file system" % (len(granted), time.monotonic() - t0))
    log("disk full: %d acquires of new names granted before the first 503 (%.2f s): %s; "
        "data dir then: %s" % (len(granted), time.monotonic() - t0, _short(full), _dir_sizes(s)))
    # Stays unavailable, in JSON, without hanging.
    more = []
    for i in range(5):
        r = s.acquire("df-more-%d" % i, timeout_s=CLIENT_TIMEOUT, timeout=0)
        if r.status == 200:
            granted.append(("df-more-%d" % i, r["token"], r["fence"], r["owner"]))
        else:
            _unavailable(r)
        more.append(r.status)
    log("5 more acquires while full: %s (max %.0f ms)" % (more, full.ms))
    h = _json_any(s.get("/healthz", expect_json=True), (200, 503))
    log("/healthz while full: %s" % _short(h))
    # Nothing granted is lost (reads still work).
    _check_still_held(s, held + granted, "while full")
    # Releases while full: 200 or 503, never 409.
    held_left = _release_while_broken(s, held, "while full")
    # Space comes back: the service resumes by itself.
    os.unlink(filler)
    secs, g, seen = _wait_recovered(s, "df-after", "an acquire granted after the filler is gone")
    log("recovered %.0f ms after deleting the filler (answers meanwhile: %s)" % (
        secs * 1000, seen))
    _check_still_held(s, held_left + granted, "after recovery")
    for name, token, _fence, _owner in held_left + granted:
        s.release_ok(name, token)
    s.release_ok(g["lock"], g["token"])
    for name, *_ in held + granted:
        st = s.status(name)
        if st["held"] is not False:
            raise AssertionError("after release: %s" % st.short())
    s.assert_healthy_and_working("df-probe")


@fronts("lighttpd")
@needs_store("sqlite")
@timeout(120)
@on_tmpfs_stack
def test_waiter_while_disk_full(s):
    """A parked waiter whose lock's lease runs out while the disk is full
    cannot be granted (the commit fails); it must look again every
    poll_interval, not spin (a failed look once woke itself through the
    coordinator, over and over, on the one parking thread), and be granted
    once there is room again."""
    h = s.acquire_ok("dw", ttl=1)
    bg = BG(s.acquire, "dw", timeout_s=40, timeout=30)
    s.wait_waiters("dw", 1, bg=bg)
    filler = os.path.join(s.datadir, "filler")
    chunk = b"\0" * 4096
    with open(filler, "wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
    # The lease ends 1 s after the grant; from then on the waiter's looks
    # try to grant it, which needs a commit.
    wait_for(lambda: time.time() > h["expires_at"] + 0.5, 5, "the lease to run out")
    pids = s.worker_pids()
    c0, t0 = cpu_seconds(pids), time.monotonic()
    time.sleep(3.0)     # the window measured: nothing to wait for
    cpu = cpu_seconds(pids) - c0
    el = time.monotonic() - t0
    done_early = bg.done()
    log("workers used %.2f s of CPU in %.2f s with one waiter on a full disk%s" % (
        cpu, el, " (the waiter was answered meanwhile)" if done_early else ""))
    if cpu > 1.0:
        raise AssertionError("workers used %.2f s of CPU in %.2f s: the waiter spins" % (cpu, el))
    os.unlink(filler)
    r = bg.get(35)
    if r.status == 200:
        log("waiter granted %.0f ms after the filler was removed" % ((bg.t_done - t0 - el) * 1000))
        s.release_ok("dw", r["token"])
    else:
        # Granted meanwhile by a commit that still fit would be 200 too;
        # anything else is a lost waiter.
        raise AssertionError("waiter: %d %s" % (r.status, r.body[:200]))


def _start_tolerant(s):
    """Starts the coordinator and lighttpd like Stack.start(), but waits for
    /healthz to answer JSON with any status (200, or 503 while the database
    cannot be used)."""
    s.write_conf()
    s.stopped = False
    s.start_coord()
    s.port = free_port()
    s.front = s._popen([LIGHTTPD, "-D", "-f", s.lighttpd_conf], "lighttpd.out",
                       env=s._front_env())

    def pred():
        if s.front.poll() is not None:
            raise AssertionError("lighttpd exited with status %s" % s.front.returncode)
        try:
            return s.get("/healthz", timeout=2.0)
        except AssertionError as e:   # not listening yet
            last[0] = e
            return None
    last = [None]
    try:
        h = wait_for(pred, 15, "/healthz to answer JSON", interval=0.05)
    except AssertionError as e:
        raise AssertionError("%s (last: %s)" % (e, last[0]))
    s.worker_pids()
    return h


@fronts("lighttpd")
@needs_store("sqlite")
@timeout(120)
@on_tmpfs_stack
def test_read_only_database(s):
    """The file system under the database turns read-only: acquire answers
    503 unavailable, grants survive, and the service resumes after the file
    system is writable again.  A live "mount -o remount,ro" is refused by
    the kernel (EBUSY) while the workers hold the database open for writing,
    so the stack is stopped, the tmpfs remounted read-only, and the stack
    started again on it."""
    held = _grant_held(s, "ro")
    r = _run(["mount", "-o", "remount,ro", s.datadir])
    if r.returncode == 0:
        log("live remount,ro succeeded")
        live = True
    else:
        log("live remount,ro refused while the stack runs: %s" % r.stdout.strip().splitlines()[0])
        live = False
        s.stop()
        r = _run(["mount", "-o", "remount,ro", s.datadir])
        if r.returncode != 0:
            raise AssertionError("remount,ro with the stack stopped: %s" % r.stdout.strip())
        h = _start_tolerant(s)
        log("/healthz on a read-only database at start: %s" % _short(h))
    try:
        ro = _unavailable(s.acquire("ro-new", timeout_s=CLIENT_TIMEOUT, timeout=0))
        log("acquire while read-only (%s): %s in %.0f ms" % (
            "live" if live else "restarted", _short(ro), ro.ms))
        for i in range(3):
            _unavailable(s.acquire("ro-new-%d" % i, timeout_s=CLIENT_TIMEOUT, timeout=0))
        h = _json_any(s.get("/healthz"), (200, 503))
        log("/healthz while read-only: %s" % _short(h))
        n = _check_still_held(s, held, "while read-only", allow_unavailable=True)
        log("status of the %d held locks while read-only: %d answered 503 unavailable, "
            "%d showed the grant" % (len(held), n, len(held) - n))
        held_left = _release_while_broken(s, held, "while read-only")
    finally:
        r = _run(["mount", "-o", "remount,rw", s.datadir])
        if r.returncode != 0:
            raise AssertionError("remount,rw: %s" % r.stdout.strip())
    secs, g, seen = _wait_recovered(s, "ro-after", "an acquire granted after remount,rw")
    log("recovered %.0f ms after remount,rw (answers meanwhile: %s)" % (secs * 1000, seen))
    _check_still_held(s, held_left, "after recovery")
    for name, token, _fence, _owner in held_left:
        s.release_ok(name, token)
    s.release_ok(g["lock"], g["token"])
    s.assert_healthy_and_working("ro-probe")
