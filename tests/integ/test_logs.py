"""Log lines and /healthz (docs/logging.md, docs/tenants.md).

Lock names, owners and tenants are the client's bytes: in the workers' and
the coordinator's lines they appear escaped (quotes and backslash with a
backslash, control bytes as \\xHH, bidirectional and other invisible
format characters such as U+202E as \\u{XXXX}), never raw, so a name cannot
forge a line or reorder one when the log is displayed.  Every line the
workers and the coordinator write starts with the UTC time with
milliseconds.  /healthz shows an anonymous client whether the service
works, never the service's waiter count or the worker's figures; an
authenticated request (REMOTE_USER) sees them.

The log tests run on stacks of their own, with debug lines on in the
workers (HTTPLOCK_DEBUG=1) and the coordinator (-d), and read the raw log
files after the stack stopped.
"""

import calendar
import json
import os
import re
import secrets
import time

from authstack import USERS, User, start_auth_stack
from checks import expect
from common import BG, log, wait_for
from fcgiwire import fcgi_request, worker_socket
from markers import on_own_stack, shared
from rawsock import unix_accepts
from stack import LOG_FILES, Stack
from testenv import COORD_BIN

RLO = "\u202e"
# Accepted by the request parser (no control character, valid UTF-8):
# both quotes, a backslash, a right-to-left override, a left-to-right
# isolate, a line separator.
NAME = 'q"x\\' + RLO + "y'z\u2066\u2028e"
NAME_ESC = "q\\\"x\\\\\\u{202E}y\\'z\\u{2066}\\u{2028}e"
OWNER = 'o"w' + RLO + "n"
OWNER_ESC = "o\\\"w\\u{202E}n"
# Bytes that must not be in any log file: the raw characters above.
RAW = [c.encode() for c in (RLO, "\u2066", "\u2028")]
# Handoffs tried for one that crosses worker processes (each does with
# about even odds behind Apache): a miss in all is 1 in 2^12.
HANDOFF_ROUNDS = 12

STAMP_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.\d{3}Z "
                      r"httplock-(worker|coord)\[\d+\]: ")


def raw_log(s, name):
    try:
        with open(os.path.join(s.rundir, name), "rb") as f:
            return f.read()
    except OSError:
        return b""


# lighttpd writes what it says before it opens its error log (setrlimit
# warnings, say) to the stderr it shares with the workers it spawns.
LIGHTTPD_OWN_RE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d: \([a-z_]+\.c\.\d+\) ")


def own_logs(s):
    """The files the workers and the coordinator write to (their stderr)."""
    worker = "lighttpd.out" if s.front_name == "lighttpd" else "pool.log"
    return ("coord.log", worker)


def start_debug_coord(s, timeout_s=10.0):
    """Starts httplock-coord -d (debug lines) and waits for its socket."""
    s.coord = s._popen([COORD_BIN, "-d", "-c", s.conf_path], "coord.log")

    def up():
        if s.coord.poll() is not None:
            raise AssertionError("httplock-coord exited: %s" % s.log_tail("coord.log"))
        return unix_accepts(s.coord_sock)
    wait_for(up, timeout_s, "the coordinator's socket")


def start_debug_stack(label, auth):
    """A started stack with debug lines on in the workers and the
    coordinator, behind the suite's front end; with basic auth and
    authstack.USERS if auth.  s.debug_since: the wall time before it
    started (what check_own_lines compares the lines' times with)."""
    env = {"HTTPLOCK_DEBUG": "1"}
    t0 = time.time()
    if auth:
        s = start_auth_stack(label, extra_env=env)
    else:
        s = Stack(None, label=label, extra_env=env, start_coord=False)
    try:
        if auth:
            # start_auth_stack started a coordinator without -d.
            s.coord.terminate()
            s.coord.wait(5)
            start_debug_coord(s)
        else:
            s.write_conf()
            s.stopped = False
            start_debug_coord(s)
            s.start_front()
    except BaseException:
        log(s.log_tails(20).replace("\n", "\n    "))
        s.cleanup(keep=bool(os.environ.get("HTTPLOCK_KEEP")))
        raise
    s.debug_since = t0
    return s


def on_debug_stack(auth=False):
    """Runs the test as fn(stack) on a stack of its own from
    start_debug_stack (markers.on_own_stack), then stops it and checks its
    logs: check_logs (no token, no sanitizer report) and check_own_lines."""
    return on_own_stack(lambda label: start_debug_stack(label, auth),
                        lambda s: check_own_lines(s, s.debug_since))


def check_own_lines(s, t0):
    """Every line of the workers and the coordinator starts with a UTC time
    between the test's start and now; no log file holds a raw character
    that the escaping must have replaced."""
    t1 = time.time()
    n = 0
    for name in own_logs(s):
        for line in raw_log(s, name).decode("utf-8", "replace").splitlines():
            if LIGHTTPD_OWN_RE.match(line):
                continue        # lighttpd's own stderr, before its error log
            m = STAMP_RE.match(line)
            assert m, "%s: line without a time: %r" % (name, line[:200])
            t = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
            assert t0 - 2 <= t <= t1 + 2, "%s: time %s not in [%s, %s] (UTC?): %r" % (
                name, m.group(1), time.strftime("%H:%M:%S", time.gmtime(t0)),
                time.strftime("%H:%M:%S", time.gmtime(t1)), line[:200])
            n += 1
    assert n > 0, "no lines in %s" % (own_logs(s),)
    for name in LOG_FILES:
        data = raw_log(s, name)
        for b in RAW:
            i = data.find(b)
            assert i < 0, "%s holds a raw %r: %r" % (name, b, data[max(0, i - 80):i + 80])
    log("%d worker and coordinator lines, each with a UTC time" % n)


def _own_text(s):
    return b"".join(raw_log(s, n) for n in own_logs(s)).decode("utf-8", "replace")


def _has_line(s, *parts):
    return any(all(p in l for p in parts) for l in _own_text(s).splitlines())


def lines_with(s, *parts):
    text = _own_text(s)
    lines = [l for l in text.splitlines() if all(p in l for p in parts)]
    assert lines, "no line with %r in:\n%s" % (parts, "\n".join(text.splitlines()[-30:]))
    return lines


def check_escaped_lines(s):
    lock = "lock '%s'" % NAME_ESC
    lines_with(s, lock, ": granted, fence ", "owner '%s'" % OWNER_ESC)
    lines_with(s, lock, ": timeout after ")
    lines_with(s, lock, ": release: released")
    # The coordinator names the lock by its key, which here is the name.
    lines_with(s, "httplock-coord[", ': WAIT "%s"' % NAME_ESC)
    lines_with(s, "httplock-coord[", ': NOTIFY "%s"' % NAME_ESC)


@on_debug_stack()
def test_log_escapes_names_and_owners(s):
    """A lock whose name and owner hold quotes, a backslash, U+202E, U+2066
    and U+2028: granted, waited for (timeout), waited for and handed over;
    the worker's and the coordinator's lines show the escaped forms only,
    and every line has a UTC time."""
    a = s.acquire_ok(NAME, owner=OWNER, ttl=30)
    expect(s.acquire(NAME, timeout=0.2), 423, "timeout")
    # The coordinator hears of a release (NOTIFY) only when the waiter is
    # in another worker process than the release; which process serves a
    # request is the web server's choice (behind Apache, whichever
    # accepts first), so hand the lock over until one crossed processes.
    notify = ("httplock-coord[", ': NOTIFY "%s"' % NAME_ESC)
    for handoffs in range(1, HANDOFF_ROUNDS + 1):
        w = BG(s.acquire, NAME, owner=OWNER, timeout=10)
        s.wait_waiters(NAME, 1, bg=w)
        s.release_ok(NAME, a["token"])
        g = expect(w.get(10), 200)
        assert g["lock"] == NAME and g["owner"] == OWNER, g.short()
        if _has_line(s, *notify):
            break
        a = g
    log("handoffs until one went through the coordinator: %d" % handoffs)
    s.release_ok(NAME, g["token"])
    # Read before stop(), too: the lines are written as they happen.
    check_escaped_lines(s)


EVIL_USER = 'ev"il' + RLO + "'"
EVIL_USER_ESC = "ev\\\"il\\u{202E}\\'"


@on_debug_stack(auth=True)
def test_log_escapes_tenants(s):
    """A tenant (REMOTE_USER, here sent on the worker's FastCGI socket as
    the web server would) with a quote and U+202E in its name: its lines
    name it escaped."""
    sock = worker_socket(s)
    st, body = fcgi_request(sock, "POST", "/lock/t-esc/acquire",
                            {"REMOTE_USER": EVIL_USER}, b"owner=x")
    assert st == 200, (st, body)
    s.tokens.add(body["token"])
    st, body = fcgi_request(sock, "POST", "/lock/t-esc/release",
                            {"REMOTE_USER": EVIL_USER},
                            b"token=" + body["token"].encode())
    assert st == 200, (st, body)
    lines_with(s, "lock 't-esc' of '%s'" % EVIL_USER_ESC, ": granted, fence ")
    lines_with(s, "lock 't-esc' of '%s'" % EVIL_USER_ESC, ": release: released")


# -- /healthz -----------------------------------------------------------------

PUBLIC = {"ok", "database", "coordinator", "recovering_until", "error", "store"}
DETAILS = {"waiters", "worker_pid", "threads"}
# What anyone may see of "store"; "server" (where the store is) is a
# detail for authenticated requests only.
STORE_PUBLIC = {"kind", "primary", "latency"}


def public_only(body):
    """True if a /healthz body shows nothing beyond what anyone may see."""
    if not set(body) <= PUBLIC:
        return False
    return not isinstance(body.get("store"), dict) or set(body["store"]) <= STORE_PUBLIC


def hold_with_waiter(s, user, name):
    """Holds `name` as `user` (an authstack.User) with one waiter queued;
    returns (grant, the waiter's BG)."""
    g = user.acquire_ok(name, owner="holder")
    w = BG(user.acquire, name, owner="waiter", timeout=20, timeout_s=30)
    wait_for(lambda: user.status(name)["waiters"] == 1, 5, "a waiter")
    return g, w


@shared
def test_healthz_anonymous_shows_no_figures(s):
    """Without authentication /healthz tells whether the service works and
    nothing more: no waiter count (there is a waiter), no pid, no threads."""
    name = "h-anon-" + secrets.token_hex(4)
    g = s.acquire_ok(name, owner="holder")
    w = BG(s.acquire, name, owner="waiter", timeout=20, timeout_s=30)
    s.wait_waiters(name, 1, bg=w)
    h = s.health()
    assert public_only(json.loads(h.body)), h.short()
    assert h["ok"] is True and h["coordinator"] == "ok", h.short()
    s.release_ok(name, g["token"])
    s.release_ok(name, expect(w.get(10), 200)["token"])


@on_debug_stack(auth=True)
def test_healthz_tenants(s):
    """With tenants (basic auth behind the web server): anonymous /healthz
    (open in the auth samples) hides alice's waiter and the worker's
    figures, also for a client sending credentials there; on the worker's
    socket, a request with REMOTE_USER sees them, one without does not."""
    alice = User(s, "alice", USERS["alice"])
    g, w = hold_with_waiter(s, alice, "h-ten")
    for hdrs in ({}, alice.h):
        r = expect(s.get("/healthz", headers=hdrs), 200)
        assert public_only(json.loads(r.body)), r.short()
    sock = worker_socket(s)
    st, body = fcgi_request(sock, "GET", "/healthz")
    assert st == 200 and public_only(body) and body["ok"] is True, body
    st, body = fcgi_request(sock, "GET", "/healthz", {"REMOTE_USER": "alice"})
    assert st == 200 and DETAILS <= set(body), body
    assert body["waiters"] >= 1 and body["threads"] >= 1, body
    log("anonymous: %s" % json.loads(r.body))
    log("REMOTE_USER=alice: %s" % body)
    expect(alice.release("h-ten", g["token"]), 200)
    expect(alice.release("h-ten", expect(w.get(10), 200)["token"]), 200)
