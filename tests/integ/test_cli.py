"""The httplock command-line client (client/cli.c, httplock(1)) against the
real stack: every subcommand and exit status (cancel included, and the
401 message on a basic-auth stack), and `run`: the command's status, its
environment, renewals, losing the lease (released by someone else, or a
server that stops answering), signals reaching the command's whole process
group, and a terminal (reads, Ctrl-C, Ctrl-Z under bash)."""

import json
import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import threading
import time

from authstack import USERS, on_auth_stack
from checks import expect, TOKEN_RE
from common import BG, log, wait_for
from markers import shared, timeout
from procs import children_of, kill_quietly, proc_comm, wait_gone
from testenv import BUILDDIR

CLI = os.path.join(BUILDDIR, "client", "httplock")

# Exit statuses, as httplock(1) EXIT STATUS documents them.
HELD, USAGE, REFUSED, NOT_HELD, UNAVAILABLE, LOST, NOEXEC = 1, 2, 3, 4, 5, 6, 7

DOWN_URL = "http://127.0.0.1:1/"

# A command for `run`: prints "START name token fence url", then waits for a
# line on stdin (or EOF) and exits with the status it names.  With TRAP in
# argv it answers SIGTERM by printing "TERM" and exiting 0; otherwise
# SIGTERM kills it.
CHILD = r'''
import os, signal, sys
if "TRAP" in sys.argv:
    def term(sig, frame):
        sys.stdout.write("TERM\n")
        sys.stdout.flush()
        os._exit(0)
    signal.signal(signal.SIGTERM, term)
e = os.environ
print("START %s %s %s %s" % (e["HTTPLOCK_NAME"], e["HTTPLOCK_TOKEN"],
      e["HTTPLOCK_FENCE"], e["HTTPLOCK_URL"]), flush=True)
line = sys.stdin.readline()
print("DONE", flush=True)
sys.exit(int(line) if line.strip() else 0)
'''


def child(*flags):
    return [sys.executable, "-c", CHILD] + list(flags)


def _env(s, url=True, extra=None):
    env = dict(os.environ)
    for k in ("HTTPLOCK_URL", "HTTPLOCK_USER"):
        env.pop(k, None)
    if url:
        env["HTTPLOCK_URL"] = s.url("/")
    # No ~/.netrc of the machine's user in the tests.
    env["HOME"] = s.dir
    env.update(extra or {})
    return env


def remember(s, token):
    """Adds a token to those the stack checks its logs for."""
    with s._lock:
        s.tokens.add(token)


def check_stderr(s, args, err, rc, quiet=False):
    """A failure says so in exactly one line; success (or, with quiet, a
    status that is the command's own) says nothing; no token ever appears."""
    lines = err.splitlines()
    if rc == 0 or quiet:
        assert lines == [], "%s: exit 0 but stderr %r" % (args, err)
    else:
        assert len(lines) == 1, "%s: exit %d, stderr is not one line: %r" % (args, rc, err)
        assert lines[0].startswith("httplock: "), "%s: stderr %r" % (args, err)
    with s._lock:
        tokens = list(s.tokens)
    for t in tokens:
        assert t not in err, "%s: a token appears on stderr: %r" % (args, err)


class Res:
    def __init__(self, args, rc, out, err, secs):
        self.args, self.rc, self.out, self.err, self.secs = args, rc, out, err, secs

    def __repr__(self):
        return "<httplock %s -> %d, out %r, err %r, %.3f s>" % (
            " ".join(self.args), self.rc, self.out[:300], self.err[:300], self.secs)


def cli(s, *args, url=True, env=None, timeout_s=20, expect_rc=None, quiet=False,
        pass_fds=()):
    """Runs httplock to the end; returns a Res, checked by check_stderr and,
    if given, for its exit status.  quiet: the status is the command's, so
    stderr must be empty."""
    args = [str(a) for a in args]
    t0 = time.monotonic()
    p = subprocess.run([CLI] + args, stdin=subprocess.DEVNULL, capture_output=True,
                       env=_env(s, url, env), timeout=timeout_s, pass_fds=pass_fds)
    r = Res(args, p.returncode, p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"), time.monotonic() - t0)
    for word in r.out.split():
        if TOKEN_RE.match(word):
            remember(s, word)
    check_stderr(s, args, r.err, r.rc, quiet)
    if expect_rc is not None:
        assert r.rc == expect_rc, "expected exit %d: %r" % (expect_rc, r)
    return r


def acquire_token(s, name, *args):
    r = cli(s, "acquire", name, *args, expect_rc=0)
    tok = r.out.strip()
    assert TOKEN_RE.match(tok), "acquire printed %r, not a token" % r.out
    return tok


class Proc:
    """httplock in the background, in a session of its own (so that the
    cleanup can kill it with its command); its stdout lines arrive in a
    queue."""

    def __init__(self, s, args, env=None):
        self.s = s
        self.args = [str(a) for a in args]
        self.t0 = time.monotonic()
        self.p = subprocess.Popen([CLI] + self.args, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=_env(s, True, env), start_new_session=True)
        self.lines = queue.Queue()
        self.err = b""
        self.rc = None
        self.t_exit = None
        self._out = threading.Thread(target=self._read_out, daemon=True)
        self._err = threading.Thread(target=self._read_err, daemon=True)
        self._out.start()
        self._err.start()

    def _read_out(self):
        for ln in self.p.stdout:
            self.lines.put(ln.decode("utf-8", "replace").rstrip("\n"))
        self.lines.put(None)

    def _read_err(self):
        self.err = self.p.stderr.read()

    def line(self, timeout_s=10.0):
        """The next stdout line (AssertionError on EOF or timeout)."""
        try:
            ln = self.lines.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError("httplock %s: no output line within %.0f s" % (
                " ".join(self.args), timeout_s))
        if ln is None:
            self.wait(5)
            raise AssertionError("httplock %s: exited %s without the expected line; stderr %r" % (
                " ".join(self.args), self.rc, self.err))
        return ln

    def start_line(self):
        """Waits for the command's START line: (name, token, fence, url)."""
        ln = self.line()
        parts = ln.split(" ")
        assert parts[0] == "START" and len(parts) == 5, "unexpected line %r" % ln
        remember(self.s, parts[2])
        return parts[1], parts[2], int(parts[3]), parts[4]

    def send(self, text):
        self.p.stdin.write(text.encode())
        self.p.stdin.flush()

    def wait(self, timeout_s=15.0):
        try:
            self.rc = self.p.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError("httplock %s still running after %.0f s" % (
                " ".join(self.args), timeout_s))
        if self.t_exit is None:
            self.t_exit = time.monotonic()
        self._err.join(5)
        self._out.join(5)
        return self.rc

    def stderr(self):
        return self.err.decode("utf-8", "replace")

    def rest(self):
        """Every line left on stdout (after the process exited)."""
        out = []
        while True:
            ln = self.lines.get(timeout=5)
            if ln is None:
                return out
            out.append(ln)

    def cleanup(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except OSError:
                pass
            self.p.wait(5)
        for f in (self.p.stdin, self.p.stdout, self.p.stderr):
            try:
                f.close()
            except OSError:
                pass


def _request_id():
    """A random request_id that cannot be taken for an option (it does not
    start with "-", as token_urlsafe's output may)."""
    return "r" + secrets.token_urlsafe(16)


def held(s, name):
    return s.status(name)["held"]


# ---------------------------------------------------------------------------
# Arguments and the simple commands.

@shared
def test_cli_usage(s):
    r = cli(s, "--help", expect_rc=0)
    for word in ("acquire", "release", "renew", "cancel", "status", "ls", "run",
                 "exit status"):
        assert word in r.out, "--help does not mention %r" % word
    for code in range(8):
        assert "\n  %d " % code in r.out, "--help does not list exit status %d" % code
    r = cli(s, "--version", expect_rc=0)
    assert r.out.startswith("httplock "), r
    bad = [
        [],                                     # no command
        ["frobnicate"],                         # unknown command
        ["acquire"],                            # missing NAME
        ["release", "x"],                       # missing TOKEN
        ["release", "x", "0" * 32, "extra"],    # too many
        ["cancel", "x"],                        # missing REQUEST_ID
        ["cancel", "x", "--ttl", "5", "y" * 22],  # not an option of cancel
        ["acquire", "x", "-w", "abc"],
        ["acquire", "x", "-w", "-1"],
        ["acquire", "x", "-w", "1", "-n"],
        ["acquire", "x", "--ttl", "0"],
        ["acquire", "x", "--bogus"],
        ["acquire", "x", "-w"],                 # missing argument
        ["status", "x", "--ttl", "5"],          # not an option of status
        ["run", "x"],                           # missing COMMAND
        ["run", "x", "-E", "300", "--", "true"],
        ["run", "x", "--grace", "soon", "--", "true"],
        ["release", "x", "not-a-token"],        # caught before sending
    ]
    for args in bad:
        r = cli(s, *args)
        assert r.rc == USAGE, "expected exit %d: %r" % (USAGE, r)
        assert r.out == "", r
    # The server is never asked: a usage error against a dead URL is still 2.
    r = cli(s, "--url", DOWN_URL, "acquire", expect_rc=USAGE)
    log("usage errors: %d cases exit %d with one stderr line, e.g. %r" % (
        len(bad), USAGE, r.err.strip()))


@shared
def test_cli_acquire_release(s):
    name = "cli-acq"
    tok = acquire_token(s, name, "--owner", "cli-test")
    st = s.status(name)
    assert st["held"] and st["holders"][0]["owner"] == "cli-test", st.short()
    # Wrong token: not held, one line naming the server's code.
    wrong = "0123456789abcdef0123456789abcdef"
    remember(s, wrong)
    r = cli(s, "release", name, wrong, expect_rc=NOT_HELD)
    assert r.err.startswith("httplock: release %s: not_held: " % name), r
    log("wrong token: %r" % r.err.strip())
    r = cli(s, "release", name, tok, expect_rc=0)
    assert r.out == "", r
    assert not held(s, name)
    r = cli(s, "release", name, tok, expect_rc=NOT_HELD)
    # Options before the command, and the URL from --url instead of the
    # environment.
    r = cli(s, "--url", s.url("/"), "acquire", "-n", name, url=False, expect_rc=0)
    tok = r.out.strip()
    cli(s, "release", name, tok, url=False, env={"HTTPLOCK_URL": s.url("/")}, expect_rc=0)


@shared
def test_cli_acquire_conflict(s):
    name = "cli-conflict"
    a = s.acquire_ok(name)
    r = cli(s, "acquire", "-n", name, expect_rc=HELD)
    log("acquire -n on a held lock: exit %d after %.0f ms: %r" % (
        r.rc, r.secs * 1000, r.err.strip()))
    assert r.secs < 2.0, r
    assert r.err.startswith("httplock: acquire %s: timeout: " % name), r
    r = cli(s, "acquire", "-w", "0.5", name, expect_rc=HELD)
    log("acquire -w 0.5 on a held lock: exit %d after %.0f ms" % (r.rc, r.secs * 1000))
    assert 0.45 <= r.secs <= 3.0, r
    assert s.waiters(name) == 0
    s.release_ok(name, a["token"])
    # Waiting works: -w gets the lock when its lease runs out.
    a = s.acquire_ok(name, ttl="0.5")
    r = cli(s, "acquire", "-w", "5", name, expect_rc=0)
    log("acquire -w 5 on a ttl=0.5 lease: granted after %.0f ms" % (r.secs * 1000))
    assert r.secs < 4.0, r
    s.release_ok(name, r.out.strip())


@shared
def test_cli_acquire_json(s):
    name = "cli-json"
    rid = _request_id()
    t0 = time.time()
    r = cli(s, "acquire", name, "--json", "--ttl", "7.5", "--owner", "web \"3\"",
            "--request-id", rid, expect_rc=0)
    lines = r.out.splitlines()
    assert len(lines) == 1, r
    g = json.loads(lines[0])
    assert set(g) == {"lock", "token", "fence", "ttl", "acquired_at", "expires_at",
                      "owner", "request_id"}, g
    remember(s, g["token"])
    assert g["lock"] == name and TOKEN_RE.match(g["token"]), g
    assert isinstance(g["fence"], int) and g["fence"] >= 1, g
    assert abs(g["ttl"] - 7.5) < 0.002, g
    assert abs(g["expires_at"] - g["acquired_at"] - 7.5) < 0.01, g
    assert t0 - 5 <= g["acquired_at"] <= time.time() + 5, g
    assert g["owner"] == "web \"3\"" and g["request_id"] == rid, g
    st = s.status(name)
    assert st["holders"][0]["fence"] == g["fence"], st.short()
    # Without --request-id one is made up, and reported.
    r = cli(s, "acquire", "cli-json2", "--json", expect_rc=0)
    g2 = json.loads(r.out)
    remember(s, g2["token"])
    assert re.fullmatch(r"[A-Za-z0-9_.~-]{16,128}", g2["request_id"]), g2
    cli(s, "release", name, g["token"], expect_rc=0)
    cli(s, "release", "cli-json2", g2["token"], expect_rc=0)


@shared
def test_cli_renew(s):
    name = "cli-renew"
    tok = acquire_token(s, name, "--ttl", "5")
    t0 = time.time()
    r = cli(s, "renew", name, tok, "--ttl", "60", expect_rc=0)
    exp = float(r.out.strip())
    assert t0 + 55 <= exp <= time.time() + 61, r
    st = s.status(name)
    assert abs(st["holders"][0]["expires_at"] - exp) < 0.01, (st.short(), exp)
    r = cli(s, "renew", name, tok, "--json", expect_rc=0)
    g = json.loads(r.out)
    assert g["lock"] == name and g["expires_at"] > t0, g
    cli(s, "release", name, tok, expect_rc=0)
    r = cli(s, "renew", name, tok, expect_rc=NOT_HELD)
    assert r.err.startswith("httplock: renew %s: not_held: " % name), r


@shared
def test_cli_cancel(s):
    """cancel withdraws a queued acquire by its request_id, or releases the
    grant it got; exit 4 when there is neither."""
    name = "cli-cancel"
    a = s.acquire_ok(name)
    rid = _request_id()
    w = BG(s.acquire, name, request_id=rid, timeout=8)
    try:
        s.wait_waiters(name, 1, bg=w)
        r = cli(s, "cancel", name, rid, expect_rc=0)
        assert r.out == "waiting\n", r
        expect(w.get(10), 409, "cancelled")
        assert s.waiters(name) == 0
    finally:
        s.release_ok(name, a["token"])
    # The grant of an acquire (here the CLI's own) is released by its id.
    rid2 = _request_id()
    r = cli(s, "acquire", name, "--json", "--request-id", rid2, expect_rc=0)
    remember(s, json.loads(r.out)["token"])
    r = cli(s, "cancel", name, rid2, "--json", expect_rc=0)
    assert json.loads(r.out) == {"lock": name, "cancelled": True, "was": "held"}, r
    assert not held(s, name)
    # Nothing left with that id: not held, and the id is not echoed.
    r = cli(s, "cancel", name, rid2, expect_rc=NOT_HELD)
    assert r.err.startswith("httplock: cancel %s: not_held: " % name), r
    assert rid2 not in r.err, r
    log("cancel: waiting -> 'waiting', held -> 'was: held'; again: exit %d %r" % (
        r.rc, r.err.strip()))


@on_auth_stack()
def test_cli_auth_hint(s):
    """A 401 says where credentials come from; credentials from -u,
    $HTTPLOCK_USER and ~/.netrc are used."""
    r = cli(s, "status", "x", expect_rc=REFUSED)
    for word in ("-u USER:PASS", "$HTTPLOCK_USER", "~/.netrc"):
        assert word in r.err, "the 401 message does not mention %s: %r" % (word, r.err)
    log("no credentials: %r" % r.err.strip())
    r = cli(s, "-u", "alice:wrong", "status", "x", expect_rc=REFUSED)
    assert "refused the credentials" in r.err, r
    assert "wrong" not in r.err, r
    r = cli(s, "status", "x", env={"HTTPLOCK_USER": "alice:nope"}, expect_rc=REFUSED)
    assert "refused the credentials" in r.err, r
    log("wrong credentials: %r" % r.err.strip())
    cli(s, "-u", "alice:" + USERS["alice"], "status", "x", expect_rc=0)
    cli(s, "status", "x", env={"HTTPLOCK_USER": "alice:" + USERS["alice"]}, expect_rc=0)
    with open(os.path.join(s.dir, ".netrc"), "w") as f:
        f.write("machine 127.0.0.1 login alice password %s\n" % USERS["alice"])
    os.chmod(os.path.join(s.dir, ".netrc"), 0o600)
    cli(s, "status", "x", expect_rc=0)


@shared
def test_cli_status_and_ls(s):
    pre = "cli-ls-%d-" % os.getpid()
    a = s.acquire_ok(pre + "a", owner="alice")
    b = s.acquire_ok(pre + "b")
    w = BG(s.acquire, pre + "b", timeout=8)
    s.wait_waiters(pre + "b", 1, bg=w)
    try:
        r = cli(s, "status", pre + "a", expect_rc=0)
        lines = r.out.splitlines()
        assert lines[0] == "lock:    " + pre + "a" and lines[1] == "held:    yes", r
        assert lines[2].startswith("holder:  alice (fence %d, " % a["fence"]), r
        assert lines[3] == "waiters: 0", r
        r = cli(s, "status", pre + "b", "--json", expect_rc=0)
        st = json.loads(r.out)
        assert st["lock"] == pre + "b" and st["held"] is True and st["waiters"] == 1, st
        h = st["holders"][0]
        assert h["fence"] == b["fence"] and abs(h["expires_at"] - b["expires_at"]) < 0.01, st
        assert set(h) == {"owner", "fence", "acquired_at", "expires_at"}, h
        r = cli(s, "status", pre + "never", expect_rc=0)
        assert "held:    no" in r.out.splitlines() and "waiters: 0" in r.out, r
        # Credentials are passed along (this lighttpd asks for none).
        cli(s, "--user", "u:p", "status", pre + "never", expect_rc=0)

        r = cli(s, "ls", "--prefix", pre, expect_rc=0)
        assert r.out.splitlines() == [pre + "a\t1\t0", pre + "b\t1\t1"], r
        r = cli(s, "ls", "--prefix", pre + "b", "--json", expect_rc=0)
        assert [json.loads(x) for x in r.out.splitlines()] == [
            {"lock": pre + "b", "holders": 1, "waiters": 1}], r
        r = cli(s, "ls", "--prefix", pre + "zzz", expect_rc=0)
        assert r.out == "", r
    finally:
        s.release_ok(pre + "b", b["token"])
        g = w.get(10)
        s.release_ok(pre + "b", g["token"])
        s.release_ok(pre + "a", a["token"])


@shared
def test_cli_server_down(s):
    for args in (["acquire", "-n", "x"], ["status", "x"], ["ls"],
                 ["release", "x", "0" * 32], ["run", "-n", "x", "--", "true"]):
        r = cli(s, "--url", DOWN_URL, *args, url=False, expect_rc=UNAVAILABLE)
        assert "cannot connect" in r.err, r
    log("server down: exit %d, %r" % (r.rc, r.err.strip()))
    # $HTTPLOCK_URL is used when --url is not given.
    r = cli(s, "status", "x", url=False, env={"HTTPLOCK_URL": DOWN_URL},
            expect_rc=UNAVAILABLE)


@shared
def test_cli_acquire_interrupted(s):
    """SIGINT during a wait cancels the queued acquire: it leaves the queue
    and is never granted."""
    name = "cli-intr"
    a = s.acquire_ok(name)
    p = Proc(s, ["acquire", name, "-w", "8"])
    try:
        wait_for(lambda: s.waiters(name) == 1 or p.p.poll() is not None, 5,
                 "the CLI's acquire to queue")
        assert p.p.poll() is None, "httplock exited: %s" % p.stderr()
        t0 = time.monotonic()
        p.p.send_signal(signal.SIGINT)
        rc = p.wait(5)
        log("SIGINT while waiting: exit %d after %.0f ms: %r" % (
            rc, (p.t_exit - t0) * 1000, p.stderr().strip()))
        assert rc == 128 + signal.SIGINT, (rc, p.stderr())
        check_stderr(s, p.args, p.stderr(), rc)
        assert p.rest() == [], "printed a token after SIGINT"
        assert s.waiters(name) == 0
        s.release_ok(name, a["token"])
        g = s.acquire_ok(name, timeout=0)
        assert g["fence"] == a["fence"] + 1, "the interrupted acquire was granted"
        s.release_ok(name, g["token"])
    finally:
        p.cleanup()


# ---------------------------------------------------------------------------
# run

@shared
def test_cli_run_status(s):
    name = "cli-run-rc"
    for code in (0, 3, 42):
        r = cli(s, "run", name, "--", "sh", "-c", "exit %d" % code, quiet=True)
        assert r.rc == code, "command exit %d: %r" % (code, r)
    for sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGUSR1):
        r = cli(s, "run", name, "sh", "-c", "kill -%d $$" % sig, quiet=True)
        assert r.rc == 128 + sig, "command killed by %d: %r" % (sig, r)
    assert not held(s, name)
    r = cli(s, "run", name, "--", "/nonexistent/command", expect_rc=NOEXEC)
    assert "/nonexistent/command" in r.err, r
    assert not held(s, name), "the lock stayed held after a failed exec"
    log("run: statuses 0 3 42 and 128+{15,9,10} passed on; exec failure: %r" % r.err.strip())


@shared
def test_cli_run_environment(s):
    name = "cli-run-env"
    r = cli(s, "run", name, "--owner", "env-test", "--", "sh", "-c",
            'echo "$HTTPLOCK_NAME|$HTTPLOCK_TOKEN|$HTTPLOCK_FENCE|$HTTPLOCK_URL"', expect_rc=0)
    n, tok, fence, url = r.out.strip().split("|")
    remember(s, tok)
    assert n == name and TOKEN_RE.match(tok) and int(fence) >= 1 and url == s.url("/"), r
    # The token was the lock's: it is released now.
    expect(s.release(name, tok), 409, "not_held")
    r2 = cli(s, "run", name, "--", "sh", "-c", 'echo "$HTTPLOCK_FENCE"', expect_rc=0)
    assert int(r2.out) == int(fence) + 1, (r.out, r2.out)
    # The command inherits our descriptors (here a pipe as fd 9 and up),
    # and none of httplock's own (its connections to the server).
    rd, wr = os.pipe()
    try:
        r = cli(s, "run", name, "--", "sh", "-c", 'ls -l /proc/$$/fd/', pass_fds=(wr,),
                expect_rc=0)
    finally:
        os.close(rd)
        os.close(wr)
    fds = {}
    for ln in r.out.splitlines():
        if " -> " in ln:
            fd, target = ln.split(" -> ")
            fds[int(fd.split()[-1])] = target
    assert fds.get(wr, "").startswith("pipe:"), "the passed descriptor is missing: %r" % r.out
    extra = {fd: t for fd, t in fds.items() if fd > 2 and fd != wr}
    assert not extra, "the command inherited httplock's descriptors: %r" % extra


@shared
def test_cli_run_holds_and_renews(s):
    """The lock is held for as long as the command runs, past its ttl (the
    lease is renewed), and released when it ends."""
    name = "cli-run-hold"
    p = Proc(s, ["run", name, "--ttl", "1", "--", *child()])
    try:
        n, tok, fence, url = p.start_line()
        assert n == name
        st = s.status(name)
        h = st["holders"][0]
        assert h["fence"] == fence, st.short()
        first_expiry = h["expires_at"]
        cli(s, "acquire", "-n", name, expect_rc=HELD)
        # Renewals every ttl/3: wait until one happened after the first
        # lease would have run out.
        seen = {}

        def renewed_past():
            st = s.status(name)
            assert st["held"], "lock lost during run: " + st.short()
            seen["exp"] = st["holders"][0]["expires_at"]
            return seen["exp"] >= first_expiry + 1.0
        wait_for(renewed_past, 6, "a renewal past the first lease")
        assert time.time() > first_expiry
        assert s.status(name)["holders"][0]["fence"] == fence
        cli(s, "acquire", "-n", name, expect_rc=HELD)
        log("run --ttl 1: still held %.1f s after the first lease ended" % (
            time.time() - first_expiry))
        p.send("0\n")
        assert p.line() == "DONE"
        rc = p.wait()
        assert rc == 0, (rc, p.stderr())
        check_stderr(s, p.args, p.stderr(), rc)
        assert not held(s, name), "still held after run ended"
    finally:
        p.cleanup()


@shared
def test_cli_run_conflict(s):
    name = "cli-run-conflict"
    marker = os.path.join(s.dir, "ran")
    a = s.acquire_ok(name)
    t0 = time.monotonic()
    r = cli(s, "run", "-E", "7", "-n", name, "--", "touch", marker)
    assert r.rc == 7, r
    assert not os.path.exists(marker), "the command ran without the lock"
    r = cli(s, "run", "-n", name, "--", "touch", marker, expect_rc=HELD)
    r = cli(s, "run", "-w", "0.3", "-E", "99", name, "touch", marker, expect_rc=99)
    assert r.err.startswith("httplock: acquire %s: timeout: " % name), r
    assert not os.path.exists(marker)
    log("run -E 7 -n / -n / -w 0.3 -E 99 on a held lock: %.0f ms in all" % (
        (time.monotonic() - t0) * 1000))
    s.release_ok(name, a["token"])
    cli(s, "run", "-n", name, "--", "touch", marker, expect_rc=0)
    assert os.path.exists(marker)


@shared
def test_cli_run_lease_released_elsewhere(s):
    """Another process releases the lease with the command's token: the
    command gets SIGTERM and httplock exits LOST."""
    name = "cli-run-stolen"
    p = Proc(s, ["run", name, "--ttl", "1.5", "--grace", "2", "--", *child("TRAP")])
    try:
        n, tok, fence, url = p.start_line()
        t0 = time.monotonic()
        s.release_ok(name, tok)
        assert p.line() == "TERM"
        rc = p.wait()
        el = p.t_exit - t0
        log("lease released elsewhere: exit %d %.0f ms later: %r" % (
            rc, el * 1000, p.stderr().strip()))
        assert rc == LOST, (rc, p.stderr())
        check_stderr(s, p.args, p.stderr(), rc)
        assert "lease lost: not_held" in p.stderr(), p.stderr()
        assert el < 3.0, "took %.1f s (renewals every 0.5 s)" % el
        assert not held(s, name)
    finally:
        p.cleanup()


@shared
def test_cli_run_sigterm(s):
    """SIGTERM to httplock reaches the command; the lock is released."""
    name = "cli-run-sigterm"
    p = Proc(s, ["run", name, "--", *child()])
    try:
        p.start_line()
        t0 = time.monotonic()
        p.p.send_signal(signal.SIGTERM)
        rc = p.wait()
        log("SIGTERM to httplock run: exit %d after %.0f ms" % (rc, (p.t_exit - t0) * 1000))
        assert rc == 128 + signal.SIGTERM, (rc, p.stderr())
        check_stderr(s, p.args, p.stderr(), rc, quiet=True)
        assert p.rest() == [], "the command did not die of the signal"
        assert not held(s, name), "still held after run ended"
    finally:
        p.cleanup()


@timeout(40)
def test_cli_run_server_paused(s):
    """The server stops answering (the web server and the workers SIGSTOPped)
    longer than the lease: the command gets SIGTERM once the lease must
    have expired, and httplock exits LOST."""
    name = "cli-run-paused"
    p = Proc(s, ["run", name, "--ttl", "1.5", "--grace", "2", "--", *child("TRAP")])
    pids = []
    try:
        p.start_line()
        pids = s.front_pids() + s.worker_pids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        assert p.line(10) == "TERM"
        rc = p.wait()
        el = p.t_exit - t0
        log("server paused: command stopped and exit %d %.0f ms after the pause: %r" % (
            rc, el * 1000, p.stderr().strip()))
        assert rc == LOST, (rc, p.stderr())
        check_stderr(s, p.args, p.stderr(), rc)
        assert "lease lost" in p.stderr(), p.stderr()
        # The last renewal was at most 0.5 s before the pause.
        assert 0.7 <= el <= 4.0, "lease of 1.5 s declared lost %.2f s after the pause" % el
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass
        p.cleanup()
    wait_for(lambda: not held(s, name), 5, "the lease to be gone after the pause")
    s.assert_healthy_and_working()


# A command that leaves two children: A a plain sleep, B a sleep that
# ignores SIGTERM.  It prints "PIDS token A B" once both run and waits.
GROUP_CMD = ('sleep 300 & a=$!; (trap "" TERM; exec sleep 301) & b=$!; '
             'echo "PIDS $HTTPLOCK_TOKEN $a $b"; wait')


@shared
def test_cli_run_lost_stops_the_group(s):
    """When the lease is lost, SIGTERM goes to the command's whole process
    group, not just to its first process, and SIGKILL follows after --grace
    for what is left; httplock exits only once all of it is gone."""
    name = "cli-run-group"
    grace = 2.0
    p = Proc(s, ["run", name, "--ttl", "1.5", "--grace", grace, "--", "sh", "-c", GROUP_CMD])
    pids = []
    try:
        ln = p.line().split(" ")
        assert ln[0] == "PIDS" and len(ln) == 4, ln
        remember(s, ln[1])
        a, b = int(ln[2]), int(ln[3])
        pids = [a, b]
        # B has exec'd sleep (with SIGTERM ignored) before the lease goes.
        wait_for(lambda: proc_comm(a) == "sleep" and proc_comm(b) == "sleep", 5,
                 "both sleeps to run")
        t0 = time.monotonic()
        s.release_ok(name, ln[1])
        assert wait_gone([a], 5) == [], "the command's child survived SIGTERM for 5 s"
        el_a = time.monotonic() - t0
        assert wait_gone([b], grace + 5) == [], \
            "the child that ignores SIGTERM survived %.1f s past the grace" % (grace + 5)
        el_b = time.monotonic() - t0
        rc = p.wait()
        el = p.t_exit - t0
        log("lease lost: TERM-obeying grandchild gone after %.0f ms, TERM-ignoring one "
            "after %.0f ms (grace %.1f s), httplock exit %d after %.0f ms" % (
                el_a * 1000, el_b * 1000, grace, rc, el * 1000))
        assert rc == LOST, (rc, p.stderr())
        check_stderr(s, p.args, p.stderr(), rc)
        assert el_b >= grace - 0.1, "SIGKILL before the grace ran out: %.2f s" % el_b
        assert el + 0.2 >= el_b, "httplock exited %.2f s before the group was gone" % (el_b - el)
    finally:
        kill_quietly(pids, signal.SIGKILL)
        p.cleanup()


@shared
def test_cli_run_signal_reaches_group(s):
    """SIGTERM sent to httplock alone reaches the command's children too."""
    name = "cli-run-group-sig"
    p = Proc(s, ["run", name, "--", "sh", "-c",
                 'sleep 300 & echo "PIDS $HTTPLOCK_TOKEN $!"; wait'])
    pids = []
    try:
        ln = p.line().split(" ")
        remember(s, ln[1])
        pids = [int(ln[2])]
        wait_for(lambda: proc_comm(pids[0]) == "sleep", 5, "the sleep to run")
        t0 = time.monotonic()
        p.p.send_signal(signal.SIGTERM)
        rc = p.wait()
        left = wait_gone(pids, 5)
        log("SIGTERM to httplock: exit %d; grandchild gone %.0f ms later" % (
            rc, (time.monotonic() - t0) * 1000))
        assert rc == 128 + signal.SIGTERM, (rc, p.stderr())
        assert left == [], "the command's child survived SIGTERM to httplock"
        assert not held(s, name)
    finally:
        kill_quietly(pids, signal.SIGKILL)
        p.cleanup()


class Pty:
    """A program on a pseudo-terminal of its own (it is the session leader
    and the terminal is its controlling terminal); its output is collected
    and searched by expect()."""

    def __init__(self, argv, env):
        import pty
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                # A terminal's programs start with SIGINT and SIGQUIT at
                # their defaults; a suite started in the background of a
                # non-interactive shell has them ignored, and ignored they
                # would pass to the command, which Ctrl-C would not stop.
                for sig in (signal.SIGINT, signal.SIGQUIT):
                    signal.signal(sig, signal.SIG_DFL)
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.buf = ""

    def send(self, text):
        os.write(self.fd, text.encode())

    def expect(self, what, timeout_s=10.0):
        """Waits until `what` (a string) has appeared in the output since
        the last match; returns the output up to it."""
        import select
        deadline = time.monotonic() + timeout_s
        while what not in self.buf:
            left = deadline - time.monotonic()
            r = select.select([self.fd], [], [], max(left, 0))[0] if left > 0 else []
            if not r:
                raise AssertionError("no %r on the terminal within %.0f s; output %r" % (
                    what, timeout_s, self.buf[-600:]))
            try:
                data = os.read(self.fd, 4096)
            except OSError:
                data = b""
            if not data:
                raise AssertionError("the terminal closed before %r; output %r" % (
                    what, self.buf[-600:]))
            self.buf += data.decode("utf-8", "replace")
        i = self.buf.index(what) + len(what)
        seen, self.buf = self.buf[:i], self.buf[i:]
        return seen

    def wait(self, timeout_s=10.0):
        deadline = time.monotonic() + timeout_s
        while True:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.pid = None
                os.close(self.fd)
                return os.waitstatus_to_exitcode(st)
            if time.monotonic() >= deadline:
                raise AssertionError("still running after %.0f s; its session:\n%s\n"
                                     "terminal output since the last match: %r" % (
                                         timeout_s, self.session(), self.buf + self.drain()))
            time.sleep(0.02)

    def drain(self):
        """What the terminal has written and expect() has not read yet."""
        import select
        out = ""
        while select.select([self.fd], [], [], 0)[0]:
            try:
                data = os.read(self.fd, 4096)
            except OSError:
                break
            if not data:
                break
            out += data.decode("utf-8", "replace")
        return out

    def session(self):
        """ps of the program's session, with each process's signal masks."""
        ps = subprocess.run(["ps", "-o", "pid,ppid,pgid,tpgid,stat,wchan:16,args",
                             "-s", str(self.pid)], capture_output=True, text=True).stdout
        lines = [ps.rstrip()]
        for line in ps.splitlines()[1:]:
            pid = line.split()[0]
            try:
                with open("/proc/%s/status" % pid) as f:
                    masks = [l.replace("\t", " ") for l in f.read().splitlines()
                             if l.startswith(("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt"))]
            except OSError:
                continue
            lines.append("  %s: %s" % (pid, ", ".join(masks)))
        return "\n".join(lines)

    def cleanup(self):
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except OSError:
                pass
            os.close(self.fd)


def _wait_child(pid, comm, timeout_s=10.0):
    """Waits until `pid` has a child process named `comm`; returns its pid."""
    return wait_for(lambda: [c for c in children_of(pid) if proc_comm(c) == comm],
                    timeout_s, "a %s child of %d" % (comm, pid))[0]


def _tpgid(pid):
    """The foreground process group of pid's controlling terminal, and pid's
    own process group."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[5]), int(fields[2])


@shared
def test_cli_run_terminal(s):
    """On a terminal, the command's process group is the foreground one: it
    can read the terminal, and Ctrl-C reaches it; the lock is then released
    and httplock exits 130."""
    name = "cli-run-tty"
    cmd = 'echo "READY $$"; read x; echo "GOT $x"; sleep 300'
    t = Pty([CLI, "run", name, "--", "sh", "-c", cmd], _env(s))
    try:
        out = t.expect("\n", 10)
        while "READY" not in out:
            out = t.expect("\n", 10)
        sh = int(out.split("READY ")[1].split()[0])
        tpgid, pgrp = _tpgid(sh)
        assert pgrp == sh and tpgid == sh, \
            "the command is not the foreground group: pgrp %d, foreground %d" % (pgrp, tpgid)
        t.send("hello\n")
        t.expect("GOT hello", 10)
        assert held(s, name)
        # Ctrl-C once sleep runs: a SIGINT that reaches sh -c between its
        # echo and its fork is only noted by sh (it catches SIGINT while
        # running a command string), and sleep would never see it.
        _wait_child(sh, "sleep")
        t0 = time.monotonic()
        t.send("\x03")
        rc = t.wait(10)
        log("httplock run on a terminal: the command read it; Ctrl-C: exit %d after %.0f ms" % (
            rc, (time.monotonic() - t0) * 1000))
        assert rc == 128 + signal.SIGINT, rc
        assert not held(s, name)
        assert wait_gone([sh], 5) == []
    finally:
        t.cleanup()


@shared
def test_cli_run_job_control(s):
    """Under an interactive shell, Ctrl-Z stops the job (httplock and its
    command) and gives the terminal back to the shell; fg gives it to the
    command again, which can read it."""
    name = "cli-run-jobs"
    env = _env(s, extra={"PS1": "PROMPT$ ", "TERM": "dumb"})
    t = Pty(["/bin/bash", "--norc", "--noprofile", "-i"], env)
    try:
        # Quotes split the words we wait for, so that the terminal's echo
        # of the input does not match.
        t.send("stty -echo; echo SY''NC\n")
        t.expect("SYNC", 10)
        t.send("%s run %s -- sh -c 'echo RE\"\"ADY; read x; echo \"GOT $x\"'\n" % (CLI, name))
        t.expect("READY", 10)
        t.send("\x1a")
        t.expect("Stopped", 10)
        t.expect("PROMPT$ ", 10)
        assert held(s, name)
        t.send("fg\n")
        t.send("hello\n")
        t.expect("GOT hello", 10)
        t.expect("PROMPT$ ", 10)
        t.send("echo \"RC=$?\"\n")
        t.expect("RC=0", 10)
        assert not held(s, name)
        t.send("exit\n")
        t.wait(10)
        log("Ctrl-Z stopped httplock run and its command; fg resumed it")
    finally:
        t.cleanup()
