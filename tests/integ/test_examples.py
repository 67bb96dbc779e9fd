"""The examples in examples/ against the real stack: the session_views
scenario in Python, PHP and shell (curl, `httplock run`) loses no update with
the lock and does lose updates without it, and exits non-zero when a view
failed or an update was lost; the Python client's context manager releases,
retries and reports a lost lease; the PHP client says whether a lost lease
expired or was released by someone else."""

import os
import re
import socket
import subprocess
import sys
import threading
import time

from common import log, wait_for
from markers import fronts, shared
from rawsock import rst_close
from testenv import BUILDDIR, SRCDIR

EXAMPLES = os.path.join(SRCDIR, "examples")
PYTHON = os.environ.get("PYTHON3") or sys.executable or "/usr/bin/python3"
PHP = os.environ.get("PHP") or "/usr/bin/php"
HTTPLOCK_BIN = os.path.join(BUILDDIR, "client", "httplock")

VIEWS = 16              # concurrent view processes per run
DOWN_URL = "http://127.0.0.1:1/"    # nothing listens there
NOLOCK_ATTEMPTS = 3     # a run without the lock must lose updates in one of these

SUMMARY_RE = re.compile(r"^views=(\d+) updates_expected=(\d+) updates_kept=(\d+) lost=(\d+)"
                        r"(?: counter=(\d+))?(?: failed=(\d+))?", re.M)

sys.path.insert(0, os.path.join(EXAMPLES, "python"))
import httplock_client  # noqa: E402


# ---------------------------------------------------------------------------
# Running one example.

def _session_id(tag):
    return "ex-%s-%d-%d" % (tag, os.getpid(), time.monotonic_ns())


def _example_argv(kind, mode, sid, path, views=VIEWS, wait=30):
    """argv and extra environment of one session_views run."""
    if kind == "python":
        argv = [PYTHON, os.path.join(EXAMPLES, "python", "session_views.py"),
                "--views", str(views), "--session", sid, "--file", path, "--wait", str(wait)]
        return argv + (["--no-lock"] if mode == "nolock" else []), {}
    if kind == "php":
        if not os.access(PHP, os.X_OK):
            raise AssertionError("PHP not found at %s (set $PHP); the PHP example needs php-cli "
                                 "with the curl and pcntl extensions" % PHP)
        argv = [PHP, os.path.join(EXAMPLES, "php", "session_views.php"),
                "--views=%d" % views, "--session=%s" % sid, "--file=%s" % path,
                "--wait=%s" % wait]
        return argv + (["--no-lock"] if mode == "nolock" else []), {}
    if kind == "shell":
        if mode == "run" and not os.access(HTTPLOCK_BIN, os.X_OK):
            raise AssertionError("the httplock CLI is not built: %s (make client/httplock)"
                                 % HTTPLOCK_BIN)
        argv = ["/bin/sh", os.path.join(EXAMPLES, "shell", "session_views.sh"), mode]
        return argv, {"VIEWS": str(views), "SESSION": sid, "SESSION_FILE": path,
                      "HTTPLOCK_BIN": HTTPLOCK_BIN, "WAIT": str(wait)}
    raise ValueError(kind)


def run_example(s, kind, mode, sid, url=None, views=VIEWS, wait=30, env_extra=None):
    """Runs session_views once; returns its summary as a dict (with "rc").
    Its exit status must be 0 exactly when no view failed and no update was
    lost."""
    path = os.path.join(s.dir, "session-%s.json" % sid)
    argv, extra = _example_argv(kind, mode, sid, path, views, wait)
    env = dict(os.environ)
    env.update(extra)
    env.update(env_extra or {})
    env["HTTPLOCK_URL"] = url or s.url("/")
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=30)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("%s: still running after 30 s; stderr: %r" % (argv, e.stderr))
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    m = SUMMARY_RE.search(out)
    if m is None:
        raise AssertionError("%s exited %d without a summary line\nstdout: %s\nstderr: %s" % (
            " ".join(argv), p.returncode, out[-2000:], err[-2000:]))
    res = {"views": int(m.group(1)), "expected": int(m.group(2)), "kept": int(m.group(3)),
           "lost": int(m.group(4)), "counter": int(m.group(5) or -1),
           "failed": int(m.group(6) or 0), "line": m.group(0), "stderr": err,
           "ms": (time.monotonic() - t0) * 1000, "rc": p.returncode}
    good = res["failed"] == 0 and res["lost"] == 0
    assert p.returncode == (0 if good else 1), \
        "%s: %s but exit %d\nstderr: %s" % (" ".join(argv), m.group(0), p.returncode, err[-2000:])
    try:
        os.unlink(path)
    except OSError:
        pass
    return res


def _fence_now(s, name):
    """Acquires and releases `name` once; returns the fence of that grant."""
    g = s.acquire_ok(name, timeout=0)
    s.release_ok(name, g["token"])
    return g["fence"]


def check_with_lock(s, kind, mode="lock"):
    """With the lock every view's update is kept, and the lock was granted
    exactly once per view."""
    sid = _session_id(kind + "-" + mode)
    name = "session:" + sid
    f0 = _fence_now(s, name)
    r = run_example(s, kind, mode, sid)
    log("%s %s: %s (%.0f ms)" % (kind, mode, r["line"], r["ms"]))
    assert r["views"] == VIEWS and r["expected"] == VIEWS, r["line"]
    assert r["failed"] == 0, "%d views failed: %s\nstderr: %s" % (r["failed"], r["line"],
                                                                 r["stderr"][-2000:])
    assert r["kept"] == VIEWS and r["lost"] == 0, \
        "updates lost although every view held the lock: %s\nstderr: %s" % (
            r["line"], r["stderr"][-2000:])
    assert r["counter"] in (-1, VIEWS), "counter %d != %d views" % (r["counter"], VIEWS)
    st = s.status(name)
    assert st["held"] is False and st["waiters"] == 0, "lock left behind: " + st.short()
    f1 = _fence_now(s, name)
    grants = f1 - f0 - 1
    assert grants == VIEWS, "the lock was granted %d times during %d views (fence %d -> %d)" % (
        grants, VIEWS, f0, f1)


def check_without_lock(s, kind):
    """Without the lock, concurrent views clobber each other's updates: at
    least one of NOLOCK_ATTEMPTS runs loses some."""
    seen = []
    for _ in range(NOLOCK_ATTEMPTS):
        r = run_example(s, kind, "nolock", _session_id(kind + "-nolock"))
        seen.append(r["line"])
        log("%s nolock: %s (%.0f ms)" % (kind, r["line"], r["ms"]))
        assert r["failed"] == 0, "%d views failed: %s\nstderr: %s" % (
            r["failed"], r["line"], r["stderr"][-2000:])
        if r["lost"] > 0:
            return
    raise AssertionError("%d runs of %d concurrent views without the lock lost no update, so the "
                         "example does not show the race it is about (views too slow to "
                         "overlap?): %s" % (NOLOCK_ATTEMPTS, VIEWS, seen))


# ---------------------------------------------------------------------------
# session_views in each language.

@shared
def test_python_views_with_lock(s):
    check_with_lock(s, "python")


@shared
def test_python_views_without_lock(s):
    check_without_lock(s, "python")


@shared
def test_php_views_with_lock(s):
    check_with_lock(s, "php")


@shared
def test_php_views_without_lock(s):
    check_without_lock(s, "php")


@shared
def test_shell_curl_views_with_lock(s):
    check_with_lock(s, "shell", "curl")


@shared
def test_shell_views_without_lock(s):
    check_without_lock(s, "shell")


@shared
def test_shell_httplock_run_views(s):
    check_with_lock(s, "shell", "run")


def check_failing_run(s, kind, mode, **kw):
    """A run whose views cannot get the lock reports them failed and exits
    1 (run_example checks the status)."""
    kw.setdefault("url", DOWN_URL)
    r = run_example(s, kind, mode, _session_id(kind + "-fail"), views=2, wait=1, **kw)
    log("%s %s, failing: exit %d, %s (%.0f ms)" % (kind, mode, r["rc"], r["line"], r["ms"]))
    assert r["failed"] == 2 and r["rc"] == 1, r["line"]


@shared
@fronts("lighttpd")
def test_python_views_server_down(s):
    check_failing_run(s, "python", "lock")


@shared
@fronts("lighttpd")
def test_php_views_server_down(s):
    check_failing_run(s, "php", "lock")


@shared
@fronts("lighttpd")
def test_shell_views_server_down(s):
    check_failing_run(s, "shell", "curl")
    check_failing_run(s, "shell", "run")
    # The httplock command not where HTTPLOCK_BIN says.
    check_failing_run(s, "shell", "run", url=s.url("/"),
                      env_extra={"HTTPLOCK_BIN": os.path.join(s.dir, "no-such-httplock")})


@shared
def test_readme_shell_command(s):
    """examples/README's `httplock run` command names the httplock command
    where `./quickstart build` puts it (./build/ at the top of the source
    tree), and works as written there."""
    with open(os.path.join(EXAMPLES, "README")) as f:
        text = f.read()
    paths = re.findall(r"HTTPLOCK_BIN=(\S+) sh examples/shell/session_views.sh run", text)
    assert paths == ["./build/client/httplock"], "examples/README runs %r" % paths
    if os.path.realpath(BUILDDIR) != os.path.realpath(os.path.join(SRCDIR, "build")):
        log("the build is not in ./build (%s): the README's path is checked, not run" % BUILDDIR)
        return
    sid = _session_id("readme")
    path = os.path.join(s.dir, "session-%s.json" % sid)
    env = dict(os.environ, HTTPLOCK_URL=s.url("/"), VIEWS="4", SESSION=sid, SESSION_FILE=path,
               HTTPLOCK_BIN=paths[0])
    p = subprocess.run(["sh", "examples/shell/session_views.sh", "run"], cwd=SRCDIR, env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    out = p.stdout.decode("utf-8", "replace")
    log("the README's command: exit %d, %s" % (p.returncode, out.strip()))
    assert p.returncode == 0 and "lost=0" in out and "failed=0" in out, (
        p.returncode, out, p.stderr.decode("utf-8", "replace")[-2000:])


# ---------------------------------------------------------------------------
# The Python client on its own.

def _remember(s, lease):
    """Lets the stack check that this token never shows up in a log."""
    with s._lock:
        s.tokens.add(lease.token)


@shared
def test_python_lock_releases(s):
    name = "ex-py-release"
    url = s.url("/")
    with httplock_client.lock(name, url=url, owner="ex") as lease:
        _remember(s, lease)
        st = s.status(name)
        assert st["held"] and st["holders"][0]["fence"] == lease.fence, st.short()
        assert st["holders"][0]["owner"] == "ex", st.short()
    st = s.status(name)
    assert st["held"] is False, "still held after the with block: " + st.short()
    assert not lease.lost

    # An exception in the block: released, and the exception comes out.
    class Boom(Exception):
        pass
    try:
        with httplock_client.lock(name, url=url) as lease2:
            _remember(s, lease2)
            raise Boom()
    except Boom:
        pass
    else:
        raise AssertionError("the block's exception was swallowed")
    st = s.status(name)
    assert st["held"] is False, "still held after an exception in the block: " + st.short()
    assert lease2.fence == lease.fence + 1, (lease.fence, lease2.fence)

    # Held by someone else: LockTimeout carrying the server's code.
    h = s.acquire_ok(name)
    t0 = time.monotonic()
    try:
        with httplock_client.lock(name, url=url, timeout=0.3):
            raise AssertionError("the block ran while another client held the lock")
    except httplock_client.LockTimeout as e:
        log("held elsewhere -> %s after %.0f ms" % (e, (time.monotonic() - t0) * 1000))
        assert e.code == "timeout" and e.status == 423, (e.code, e.status)
    s.release_ok(name, h["token"])
    # Other errors carry the server's code too.
    try:
        httplock_client.Client(url).release(name, "0" * 32)
        raise AssertionError("releasing an unknown token succeeded")
    except httplock_client.LockError as e:
        assert e.code == "not_held" and e.status == 409, (e.code, e.status)
    assert s.status(name)["held"] is False


@shared
def test_python_lock_renews(s):
    name = "ex-py-renew"
    with httplock_client.lock(name, url=s.url("/"), ttl=0.6) as lease:
        _remember(s, lease)
        first = lease.expires_at
        time.sleep(1.5)          # 2.5 ttls: only the renewals keep it ours
        st = s.status(name)
        assert st["held"] and st["holders"][0]["fence"] == lease.fence, \
            "lease not renewed: " + st.short()
        assert lease.expires_at > first + 0.5, (first, lease.expires_at)
    assert not lease.lost, lease.lost_reason
    assert s.status(name)["held"] is False


@shared
def test_python_lock_lost_lease(s):
    name = "ex-py-lost"
    url = s.url("/")
    LeaseLost = httplock_client.LeaseLost

    # 1. Released behind our back; the renewal thread notices it.
    try:
        with httplock_client.lock(name, url=url, ttl=0.9) as lease:
            _remember(s, lease)
            s.release_ok(name, lease.token)
            wait_for(lambda: lease.lost, 3, "the renewal thread to notice the lost lease")
            log("noticed: %s" % lease.lost_reason)
            assert "someone else released" in lease.lost_reason, lease.lost_reason
            try:
                lease.check()
                raise AssertionError("lease.check() passed on a lost lease")
            except LeaseLost:
                pass
        raise AssertionError("leaving the block did not raise LeaseLost")
    except LeaseLost as e:
        assert e.code == "not_held", e.code

    # 2. Released behind our back and the block ends before any renewal:
    # the release finds it gone.
    try:
        with httplock_client.lock(name, url=url, ttl=30) as lease:
            _remember(s, lease)
            s.release_ok(name, lease.token)
        raise AssertionError("leaving the block did not raise LeaseLost")
    except LeaseLost as e:
        log("at release: %s" % e)
        assert "someone else released" in str(e), str(e)

    # 3. Renewals cannot get through; the lease runs out on the server and
    # the thread gives it up on its own clock.
    real_renew = httplock_client.Client.renew

    def failing_renew(self, *a, **kw):
        raise httplock_client.LockError("connection", "renewals blocked by the test")
    httplock_client.Client.renew = failing_renew
    try:
        try:
            with httplock_client.lock(name, url=url, ttl=0.6) as lease:
                _remember(s, lease)
                wait_for(lambda: lease.lost, 3, "the lease to be given up")
                log("expired: %s" % lease.lost_reason)
                st = s.status(name)
                assert st["held"] is False, "server still shows the holder: " + st.short()
            raise AssertionError("leaving the block did not raise LeaseLost")
        except LeaseLost:
            pass
    finally:
        httplock_client.Client.renew = real_renew

    # 4. An exception in the block wins, with a note about the lost lease.
    try:
        with httplock_client.lock(name, url=url, ttl=30) as lease:
            _remember(s, lease)
            s.release_ok(name, lease.token)
            raise KeyError("from the block")
    except KeyError as e:
        notes = getattr(e, "__notes__", [])
        assert any("lost" in n for n in notes), notes
    assert s.status(name)["held"] is False


PHP_LOST = r'''<?php
require getenv('EXAMPLES') . '/php/httplock.php';
$name = getenv('LOCK');
$locks = new HttpLock();
// 1. Someone else releases the grant (with its token) while we work.
try {
    with_lock($locks, $name, function (array $g) use ($name) {
        (new HttpLock())->release($name, $g['token']);
    }, ['ttl' => 30]);
    echo "1 no exception\n";
} catch (HttpLockLeaseLost $e) {
    echo '1 ', $e->getMessage(), "\n";
}
// 2. The work outlasts the lease.
try {
    with_lock($locks, $name, function (array $g) {
        usleep(1000000);
    }, ['ttl' => 0.5]);
    echo "2 no exception\n";
} catch (HttpLockLeaseLost $e) {
    echo '2 ', $e->getMessage(), "\n";
}
// 3. A renew after someone else released the grant.
$g = $locks->acquire($name, ['ttl' => 30]);
(new HttpLock())->release($name, $g['token']);
try {
    $locks->renew($name, $g['token']);
    echo "3 no exception\n";
} catch (HttpLockLeaseLost $e) {
    echo '3 ', $e->getMessage(), "\n";
}
'''


@shared
def test_php_lease_lost_reason(s):
    """The PHP client's HttpLockLeaseLost says "expired" only when the lease
    ran out by the client's clock, and that someone else released it
    otherwise (the server answers not_held to both)."""
    if not os.access(PHP, os.X_OK):
        raise AssertionError("PHP not found at %s (set $PHP)" % PHP)
    script = os.path.join(s.dir, "lost.php")
    with open(script, "w") as f:
        f.write(PHP_LOST)
    name = "ex-php-lost"
    env = dict(os.environ, HTTPLOCK_URL=s.url("/"), EXAMPLES=EXAMPLES, LOCK=name)
    p = subprocess.run([PHP, script], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=30)
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 0, (p.returncode, out, err)
    lines = {ln[0]: ln[2:] for ln in out.splitlines() if ln[:2] in ("1 ", "2 ", "3 ")}
    for k in "123":
        log("PHP case %s: %s" % (k, lines.get(k)))
    assert "released or cancelled by someone else" in lines.get("1", ""), out
    assert "expired" in lines.get("2", "") and "someone else" not in lines["2"], out
    assert "released or cancelled by someone else" in lines.get("3", ""), out
    assert s.status(name)["held"] is False


class FlakyProxy:
    """A TCP proxy to the stack that forwards the first connection's request
    and then resets that connection before any answer, like a network that
    fails after the server acted.  Later connections are passed through."""

    def __init__(self, port):
        self.port = port
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.url = "http://127.0.0.1:%d/" % self.srv.getsockname()[1]
        self.requests = []       # the first bytes of each connection
        self.threads = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()

    def _accept(self):
        n = 0
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            n += 1
            t = threading.Thread(target=self._serve, args=(c, n == 1), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, c, drop):
        up = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        c.settimeout(10)
        try:
            data = self._read_request(c)
            self.requests.append(data)
            up.sendall(data)
            if drop:
                up.recv(65536)        # the server has answered: it acted
                rst_close(c)
                return
            pump = threading.Thread(target=self._pipe, args=(up, c), daemon=True)
            pump.start()
            self._pipe(c, up)
            pump.join(10)
        except OSError:
            pass
        finally:
            for x in (c, up):
                try:
                    x.close()
                except OSError:
                    pass

    @staticmethod
    def _read_request(c):
        """The first request on c: headers and Content-Length bytes of body."""
        data = b""
        while b"\r\n\r\n" not in data:
            d = c.recv(65536)
            if not d:
                return data
            data += d
        head, _, body = data.partition(b"\r\n\r\n")
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        need = int(m.group(1)) if m else 0
        while len(body) < need:
            d = c.recv(65536)
            if not d:
                break
            body += d
        return head + b"\r\n\r\n" + body

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    b.shutdown(socket.SHUT_WR)
                    return
                b.sendall(d)
        except OSError:
            pass

    def close(self):
        self.srv.close()


@shared
def test_python_acquire_retries_same_request_id(s):
    name = "ex-py-retry"
    f0 = _fence_now(s, name)
    proxy = FlakyProxy(s.port)
    try:
        with httplock_client.lock(name, url=proxy.url, ttl=30) as lease:
            _remember(s, lease)
            st = s.status(name)
            assert st["held"] and st["holders"][0]["fence"] == lease.fence, st.short()
    finally:
        proxy.close()
    acquires = [r for r in proxy.requests if b"/acquire" in r.split(b"\r\n", 1)[0]]
    log("%d acquire requests through the flaky proxy; fence %d after %d" % (
        len(acquires), lease.fence, f0))
    assert len(acquires) == 2, "expected the reset acquire and one retry: %r" % acquires
    ids = [re.search(rb"request_id=([0-9a-f]+)", r).group(1) for r in acquires]
    assert ids[0] == ids[1], "the retry used another request_id: %r" % ids
    # The first attempt was granted (fence f0 + 1); the retry got that same
    # grant back instead of a second one.
    assert lease.fence == f0 + 1, "fence %d after %d: a second grant was made" % (lease.fence, f0)
    assert _fence_now(s, name) == f0 + 2
