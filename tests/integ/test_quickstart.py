"""`./quickstart serve` for real, on a free loopback port with its data in a
temporary directory, behind the front end this run uses (--apache
behind Apache).  It runs the programs of this build (HTTPLOCK_QUICKSTART_BUILD):
nothing is installed or built.  Each run is a session of its own, so that
"nothing left running" means: no live process in that session, and none
whose command line or environment names the run's directory."""

import glob
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import urllib.request

from common import log
from markers import fronts, shared, timeout
from procs import children_of, proc_cmdline, proc_stat
from rawsock import free_port
from testenv import BUILDDIR, FRONT, SRCDIR

QUICKSTART = os.path.join(SRCDIR, "quickstart")
FRONT_ARGS = ["--apache"] if FRONT == "apache" else []


def _env():
    env = dict(os.environ, HTTPLOCK_QUICKSTART_BUILD=BUILDDIR)
    for k in ("HTTPLOCK_CONF", "HTTPLOCK_RUNDIR", "HTTPLOCK_PORT", "HTTPLOCK_MOUNT"):
        env.pop(k, None)
    return env


def _leftovers(sid, mark):
    """Live processes of session sid, or naming `mark` in their command
    line or environment: (pid, command line) pairs."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        pid = int(d)
        st = proc_stat(pid)
        cmd = proc_cmdline(pid)
        if st is None or st[0] in ("Z", "X") or cmd is None:
            continue
        env = b""
        try:
            with open("/proc/%d/environ" % pid, "rb") as f:
                env = f.read()
        except OSError:
            pass
        if st[3] == sid or mark in cmd or mark.encode() in env:
            found.append((pid, cmd.strip()))
    return found


def _kill_leftovers(sid, mark):
    for pid, _ in _leftovers(sid, mark):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


class Serve:
    """One `./quickstart serve` in a session of its own; its stderr is
    collected line by line, and `ready` is set at its "try:" line or when
    it ends."""

    def __init__(self, args, cwd=SRCDIR):
        self.t0 = time.monotonic()
        self.lines = []
        self.ready = threading.Event()
        self.p = subprocess.Popen([QUICKSTART, "serve"] + args, cwd=cwd, env=_env(),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.p.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            if line.startswith("quickstart: try:"):
                self.ready.set()
        self.ready.set()

    def text(self):
        return "\n".join(self.lines)

    def wait(self, timeout_s):
        rc = self.p.wait(timeout_s)
        self.reader.join(5)
        return rc


def _tmpdir(prefix):
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def _remove_serve(sv, d):
    """Kills what is left of a `quickstart serve` in directory d and
    removes d."""
    if sv.p.poll() is None:
        os.killpg(sv.p.pid, signal.SIGKILL)
        sv.p.wait(10)
    _kill_leftovers(sv.p.pid, d)
    shutil.rmtree(d, ignore_errors=True)


def _quickstart_runs():
    return set(glob.glob("/run/httplock-quickstart.*"))


def _assert_nothing_left(sv, mark, what):
    t0 = time.monotonic()
    left = _leftovers(sv.p.pid, mark)
    assert not left, "%s: still running after quickstart exited: %s" % (what, left)
    log("%s: nothing left running (checked in %.0f ms)" % (what, (time.monotonic() - t0) * 1000))


@shared
@fronts("lighttpd")
def test_quickstart_usage_errors(s):
    """Bad serve options: exit status 2 and the usage, at once."""
    d = _tmpdir("hlqsu")
    try:
        data = os.path.join(d, "data")
        for args in (["--port"], ["--data"], ["--procs"], ["--bind"], ["--mount"],
                     ["--port", ""], ["--port", "--apache"], ["--port", "0"],
                     ["--port", "65536"], ["--port", "8x"], ["--procs", "0"],
                     ["--procs", "257"], ["--mount", "/x/"], ["--nope"]):
            t0 = time.monotonic()
            p = subprocess.run([QUICKSTART, "serve", "--data", data] + args, cwd=SRCDIR,
                               env=_env(), stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=20)
            err = p.stderr.decode("utf-8", "replace")
            ms = (time.monotonic() - t0) * 1000
            assert p.returncode == 2, "serve %s: exit %d: %r" % (args, p.returncode, err)
            assert "usage: ./quickstart serve" in err, "serve %s: %r" % (args, err)
            assert "unbound variable" not in err and "try:" not in err, err
            assert not os.path.exists(data), "serve %s created %s" % (args, data)
            log("serve %s -> exit 2 in %.0f ms: %s" % (" ".join(args), ms, err.splitlines()[0]))
    finally:
        shutil.rmtree(d, ignore_errors=True)


@shared
@timeout(90)
def test_quickstart_port_in_use(s):
    """A port someone else listens on: exit 1 with a message, no "try:"
    line, nothing started (not even the data directory).  A bind that fails
    after that check (an address not of this machine) stops everything it
    started: exit 1, nothing left."""
    d = _tmpdir("hlqsp")
    other = socket.socket()
    try:
        other.bind(("127.0.0.1", 0))
        other.listen(8)
        port = other.getsockname()[1]
        data = os.path.join(d, "data")
        sv = Serve(["--port", str(port), "--data", data] + FRONT_ARGS)
        rc = sv.wait(30)
        el = time.monotonic() - sv.t0
        log("port %d in use -> exit %d in %.0f ms: %s" % (port, rc, el * 1000, sv.text()))
        assert rc == 1, "exit %d: %s" % (rc, sv.text())
        assert "in use" in sv.text() and "--port" in sv.text(), sv.text()
        assert "try:" not in sv.text(), sv.text()
        assert not os.path.exists(data), "created %s" % data
        _assert_nothing_left(sv, d, "port in use")

        runs = _quickstart_runs()
        port = free_port()
        sv = Serve(["--port", str(port), "--bind", "192.0.2.1", "--data", data] + FRONT_ARGS)
        rc = sv.wait(60)
        el = time.monotonic() - sv.t0
        log("--bind 192.0.2.1 -> exit %d in %.0f ms" % (rc, el * 1000))
        assert rc == 1, "exit %d: %s" % (rc, sv.text())
        assert "did not start" in sv.text() and "stopped" in sv.text(), sv.text()
        assert "try:" not in sv.text(), sv.text()
        _assert_nothing_left(sv, d, "bind failed")
        assert _quickstart_runs() <= runs, "left %s" % (_quickstart_runs() - runs)
    finally:
        other.close()
        _kill_leftovers(-1, d)
        shutil.rmtree(d, ignore_errors=True)


def _acquire(port, name):
    rid = secrets.token_urlsafe(16)
    req = urllib.request.Request("http://127.0.0.1:%d/lock/%s/acquire" % (port, name),
                                 data=("ttl=30&request_id=%s" % rid).encode())
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.headers.get("Content-Type", ""), json.loads(r.read())


@shared
@timeout(90)
def test_quickstart_serve_private_data_and_sigint(s):
    """serve with --data under a 0700 directory: the data directory is made
    0700 (the database is its owner's alone), a request gets httplock's
    JSON 200 (behind Apache too, whose children run as www-data), and a
    SIGINT to the whole process group (Ctrl-C, or a script's kill -INT
    -PGID) stops everything: exit 130, no process left, no directory left
    under /run."""
    d = _tmpdir("hlqss")
    os.chmod(d, 0o700)
    data = os.path.join(d, "data")
    port = free_port()
    runs = _quickstart_runs()
    sv = Serve(["--port", str(port), "--data", data] + FRONT_ARGS)
    try:
        assert sv.ready.wait(45), "no \"try:\" line in 45 s: %s" % sv.text()
        assert sv.p.poll() is None, "exited %s: %s" % (sv.p.returncode, sv.text())
        log("serving after %.0f ms" % ((time.monotonic() - sv.t0) * 1000))
        status, ctype, body = _acquire(port, "qs-" + secrets.token_hex(4))
        assert status == 200 and ctype.startswith("application/json"), (status, ctype)
        assert "token" in body and "fence" in body, sorted(body)
        log("acquire through %s: %d %s" % (FRONT, status, ctype))
        for p, want in ((data, 0o700), (os.path.join(data, "run"), 0o700)):
            mode = stat.S_IMODE(os.stat(p).st_mode)
            assert mode == want, "%s: mode %o, want %o" % (p, mode, want)

        t0 = time.monotonic()
        os.killpg(sv.p.pid, signal.SIGINT)
        rc = sv.wait(30)
        log("SIGINT to the process group -> exit %d in %.0f ms" % (
            rc, (time.monotonic() - t0) * 1000))
        assert rc == 130, "exit %d: %s" % (rc, sv.text())
        assert "stopped" in sv.text(), sv.text()
        _assert_nothing_left(sv, d, "SIGINT")
        assert _quickstart_runs() <= runs, "left %s" % (_quickstart_runs() - runs)
    finally:
        _remove_serve(sv, d)


@shared
@timeout(90)
def test_quickstart_sigint_to_a_background_serve(s):
    """A script that runs `./quickstart serve &` and later `kill -INT` on
    it: bash starts a background job with SIGINT ignored, yet serve stops
    everything and exits 130."""
    d = _tmpdir("hlqsb")
    data = os.path.join(d, "data")
    port = free_port()
    script = ('"$1" serve --port "$2" --data "$3" %s & qs=$!\n'
              'for i in $(seq 300); do\n'
              '  curl -fs -o /dev/null "http://127.0.0.1:$2/healthz" && break; sleep 0.1\n'
              'done\n'
              'kill -INT $qs; wait $qs; echo "exit $?"\n') % " ".join(FRONT_ARGS)
    t0 = time.monotonic()
    p = subprocess.Popen(["bash", "-c", script, "bash", QUICKSTART, str(port), "data"],
                         cwd=d, env=_env(), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=75)
        out = out.decode()
        log("background serve, kill -INT: %s after %.0f ms" % (
            out.strip(), (time.monotonic() - t0) * 1000))
        assert out.strip() == "exit 130", "%r %r" % (out, err.decode("utf-8", "replace"))
        assert os.path.isfile(os.path.join(data, "httplock.conf")), \
            "a relative --data not taken from the script's directory: %s" % os.listdir(d)
        left = _leftovers(p.pid, d)
        assert not left, "still running: %s" % left
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
        _kill_leftovers(p.pid, d)
        shutil.rmtree(d, ignore_errors=True)


def _children(pid):
    """(pid, command line) of pid's children."""
    return [(k, cmd) for k, cmd in ((k, proc_cmdline(k)) for k in children_of(pid))
            if cmd is not None]


@shared
@timeout(90)
def test_quickstart_stops_when_a_part_dies(s):
    """The worker pool (behind Apache) or lighttpd ends by itself while
    serving: quickstart says so, stops the rest and exits 1; nothing is
    left running."""
    d = _tmpdir("hlqsd")
    data = os.path.join(d, "data")
    port = free_port()
    # A relative --data is taken from where quickstart was started.
    sv = Serve(["--port", str(port), "--data", "data"] + FRONT_ARGS, cwd=d)
    try:
        assert sv.ready.wait(45), "no \"try:\" line in 45 s: %s" % sv.text()
        want = "httplock-worker" if FRONT == "apache" else "lighttpd"
        assert os.path.isfile(os.path.join(data, "httplock.db")), os.listdir(d)
        victims = [(pid, cmd) for pid, cmd in _children(sv.p.pid) if want in cmd]
        assert len(victims) == 1, "children: %s" % _children(sv.p.pid)
        t0 = time.monotonic()
        os.kill(victims[0][0], signal.SIGTERM)
        rc = sv.wait(30)
        log("%s stopped by SIGTERM -> quickstart exit %d in %.0f ms: %s" % (
            want, rc, (time.monotonic() - t0) * 1000,
            [l for l in sv.lines if "exited" in l]))
        assert rc == 1, "exit %d: %s" % (rc, sv.text())
        assert "exited" in sv.text() and "stopped" in sv.text(), sv.text()
        _assert_nothing_left(sv, d, "%s died" % want)
    finally:
        _remove_serve(sv, d)
