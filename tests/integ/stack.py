"""Harness for httplock's integration tests: starts and stops the real stack
in a private temporary directory, and offers request helpers and checks that
the tests share.  The stack is httplock-coord plus a front end, chosen by
HTTPLOCK_FRONT: "lighttpd" (the default; it spawns the httplock-worker
processes itself) or "apache" (Apache 2.4 with mod_proxy_fcgi, in front of
an httplock-worker pool: `httplock-worker -s SOCKET -n 2`).

Python 3 standard library only.  Every process started here is registered so
that it can be killed whatever happens (see kill_everything()).
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))

SRCDIR = os.environ.get("HTTPLOCK_SRCDIR") or os.path.dirname(os.path.dirname(HERE))
BUILDDIR = os.environ.get("HTTPLOCK_BUILDDIR")
if not BUILDDIR:
    # The source tree itself, or else its build/ (an out-of-tree build).
    BUILDDIR = SRCDIR
    if not os.path.exists(os.path.join(SRCDIR, "fcgi", "httplock-worker")) and \
            os.path.exists(os.path.join(SRCDIR, "build", "fcgi", "httplock-worker")):
        BUILDDIR = os.path.join(SRCDIR, "build")
LIGHTTPD = os.environ.get("LIGHTTPD") or "/usr/sbin/lighttpd"
APACHE2 = os.environ.get("APACHE2") or "/usr/sbin/apache2"
FRONT = os.environ.get("HTTPLOCK_FRONT") or "lighttpd"
FRONTS = ("lighttpd", "apache")
# Worker processes per stack.  Two by default, so that a lock often passes
# between processes; HTTPLOCK_TEST_PROCS=1 runs every handoff in-process.
PROCS = os.environ.get("HTTPLOCK_TEST_PROCS") or "2"

WORKER_BIN = os.path.join(BUILDDIR, "fcgi", "httplock-worker")
COORD_BIN = os.path.join(BUILDDIR, "coord", "httplock-coord")
LIGHTTPD_CONF = os.path.join(SRCDIR, "conf", "lighttpd.conf")
APACHE_CONF = os.path.join(SRCDIR, "conf", "apache.conf")

DEFAULT_CONF = [
    ("database", "{dir}/data/httplock.db"),
    ("coord_socket", "{dir}/run/coord.sock"),
    ("default_ttl", "30"),
    ("max_ttl", "3600"),
    ("max_wait", "10"),
    ("poll_interval", "0.1"),
    ("max_waiters", "1000"),
    ("threads", "8"),
    ("max_threads", "256"),
]

TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")
LOG_FILES = ("lighttpd-error.log", "coord.log", "lighttpd.out",
             "apache-error.log", "apache.out", "pool.log")


# ---------------------------------------------------------------------------
# Test markers, read by run.py.

def shared(fn):
    """The test may run on the suite's shared default stack (it uses lock
    names of its own and does not stop, kill or reconfigure the stack)."""
    fn.hl_shared = True
    return fn


def conf(**overrides):
    """Runs the test on a fresh stack whose httplock.conf has these keys
    changed or added (values are written as given)."""
    def mark(fn):
        fn.hl_conf = {k: str(v) for k, v in overrides.items()}
        return fn
    return mark


def fronts(*names):
    """Runs the test only behind these front ends ("lighttpd", "apache")."""
    def mark(fn):
        fn.hl_fronts = names
        return fn
    return mark


def mount(prefix):
    """Runs the test on a fresh stack mounted at this URL prefix (e.g.
    "/httplock"); Stack.request() and url() add it to every path."""
    def mark(fn):
        fn.hl_mount = prefix
        return fn
    return mark


def timeout(seconds):
    """Per-test time limit (default 60 s), enforced by run.py's watchdog."""
    def mark(fn):
        fn.hl_timeout = seconds
        return fn
    return mark


# ---------------------------------------------------------------------------
# Process bookkeeping: everything we started, so nothing is left behind.

_registry_lock = threading.Lock()
_live_stacks = set()


def kill_everything():
    """Last-resort cleanup: SIGKILL every process of every live stack."""
    with _registry_lock:
        stacks = list(_live_stacks)
    for s in stacks:
        try:
            s.force_kill()
        except Exception:
            pass


def log(msg):
    """Prints a measurement or note from a test (indented under its line)."""
    sys.stdout.write("    %s\n" % msg)
    sys.stdout.flush()


def _proc_stat(pid):
    """(state, ppid, pgrp) of pid, or None when it does not exist."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = data[data.rfind(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[2])


def _proc_comm(pid):
    try:
        with open("/proc/%d/comm" % pid, "rb") as f:
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return None


def _all_pids():
    out = []
    for e in os.listdir("/proc"):
        if e.isdigit():
            out.append(int(e))
    return out


def pid_alive(pid):
    """True while pid exists and is not a zombie.  A killed multi-threaded
    process whose main thread is already a zombie still counts while its
    other threads exit: the last one to go closes the descriptors (a
    worker's listening socket among them), after unmapping the memory,
    which takes a while under AddressSanitizer."""
    st = _proc_stat(pid)
    if st is None:
        return False
    if st[0] not in ("Z", "X"):
        return True
    try:
        return len(os.listdir("/proc/%d/task" % pid)) > 1
    except OSError:
        return False


def wait_gone(pids, timeout_s):
    """Waits until none of pids is alive; returns the ones still alive."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = [p for p in pids if pid_alive(p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.01)


def wait_for(pred, timeout_s, what, interval=0.02):
    """Polls pred() until it returns a true value (which is returned) or
    timeout_s elapses (AssertionError naming `what`)."""
    deadline = time.monotonic() + timeout_s
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except AssertionError:
            raise
        except Exception as e:  # keep polling through transient errors
            last_exc = e
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s%s" % (
                timeout_s, what, "" if last_exc is None else " (last error: %r)" % (last_exc,)))
        time.sleep(interval)


# ---------------------------------------------------------------------------
# Responses and checks.

class Resp:
    def __init__(self, desc, status, reason, headers, body, ms):
        self.desc = desc          # "POST /lock/x/acquire/ {...}" for messages
        self.status = status
        self.reason = reason
        self.headers = headers    # http.client.HTTPMessage
        self.body = body          # bytes
        self.ms = ms              # round trip in milliseconds
        self.json = None
        self.t_done = time.monotonic()

    def header(self, name):
        return self.headers.get(name) if self.headers is not None else None

    def __getitem__(self, k):
        if not isinstance(self.json, dict):
            raise AssertionError("%s: body is not a JSON object: %r" % (self.desc, self.body[:300]))
        if k not in self.json:
            raise AssertionError("%s: key %r missing in %s" % (self.desc, k, self.short()))
        return self.json[k]

    def get(self, k, default=None):
        return self.json.get(k, default) if isinstance(self.json, dict) else default

    def short(self):
        b = self.body[:400].decode("utf-8", "replace")
        return "%d %s" % (self.status, b)

    def __repr__(self):
        return "<%s -> %s>" % (self.desc, self.short())


def expect(r, status, error=None):
    """Asserts the status (and for errors the {"error","message"} body)."""
    if r.status != status:
        raise AssertionError("%s: expected %d%s, got %s" % (
            r.desc, status, "" if error is None else " " + error, r.short()))
    if error is not None:
        if not isinstance(r.json, dict) or r.json.get("error") != error:
            raise AssertionError("%s: expected error %r, got %s" % (r.desc, error, r.short()))
        if not isinstance(r.json.get("message"), str):
            raise AssertionError("%s: error body without a string \"message\": %s" % (r.desc, r.short()))
    return r


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_grant(r, name, owner=None, ttl=None, lease=None):
    """Asserts a 200 acquire/renew body: lock, token, fence, ttl, expires_at,
    owner.  ttl: the "ttl" field must be that and expires_at about now + ttl;
    lease: only expires_at must be about now + lease."""
    expect(r, 200)
    for k in ("lock", "token", "fence", "ttl", "expires_at", "owner"):
        r[k]
    if r["lock"] != name:
        raise AssertionError("%s: lock %r != %r" % (r.desc, r["lock"], name))
    if not isinstance(r["token"], str) or not TOKEN_RE.match(r["token"]):
        raise AssertionError("%s: token is not 32 lowercase hex: %r" % (r.desc, r["token"]))
    if not is_int(r["fence"]):
        raise AssertionError("%s: fence is not an integer: %r" % (r.desc, r["fence"]))
    if not is_num(r["ttl"]) or r["ttl"] <= 0:
        raise AssertionError("%s: bad ttl %r" % (r.desc, r["ttl"]))
    if not is_num(r["expires_at"]):
        raise AssertionError("%s: expires_at is not a number: %r" % (r.desc, r["expires_at"]))
    now = time.time()
    if ttl is not None:
        if abs(r["ttl"] - ttl) > 0.0015:
            raise AssertionError("%s: ttl %r != %r" % (r.desc, r["ttl"], ttl))
        if not (now + ttl - 5 <= r["expires_at"] <= now + ttl + 1):
            raise AssertionError("%s: expires_at %.3f not about now (%.3f) + ttl %s" % (
                r.desc, r["expires_at"], now, ttl))
    if lease is not None and not (now + lease - 5 <= r["expires_at"] <= now + lease + 1):
        raise AssertionError("%s: expires_at %.3f not about now (%.3f) + %s" % (
            r.desc, r["expires_at"], now, lease))
    if owner is not None and r["owner"] != owner:
        raise AssertionError("%s: owner %r != %r" % (r.desc, r["owner"], owner))
    return r


def lpath(name, action=None):
    """URL path of a lock (name is str or bytes, percent-encoded here)."""
    q = urllib.parse.quote(name, safe="")
    return "/lock/%s/%s" % (q, action + "/" if action else "")


class BG(threading.Thread):
    """Runs fn(*args) in a daemon thread; keeps its result or exception and
    the monotonic time it finished."""

    def __init__(self, fn, *args, **kw):
        super().__init__(daemon=True)
        self.fn, self.args, self.kw = fn, args, kw
        self.result = None
        self.exc = None
        self.t_start = None
        self.t_done = None
        self.start()

    def run(self):
        self.t_start = time.monotonic()
        try:
            self.result = self.fn(*self.args, **self.kw)
        except BaseException as e:  # noqa
            self.exc = e
        self.t_done = time.monotonic()

    def done(self):
        return self.t_done is not None

    def get(self, timeout_s):
        """The result, re-raising the thread's exception; AssertionError if it
        did not finish within timeout_s."""
        self.join(timeout_s)
        if self.is_alive():
            raise AssertionError("background request still running after %.1f s" % timeout_s)
        if self.exc is not None:
            raise self.exc
        return self.result


# ---------------------------------------------------------------------------
# Raw sockets.

def rst_close(sock):
    """Closes sock with SO_LINGER (1, 0): the peer sees a TCP RST."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()


def parse_raw_response(data):
    """(status or None, headers dict lower-case, body bytes) of raw bytes."""
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = None
    m = re.match(rb"HTTP/1\.[01] (\d{3})", lines[0] if lines else b"")
    if m:
        status = int(m.group(1))
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(b":")
        hdrs[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    return status, hdrs, body


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


# ---------------------------------------------------------------------------
# The stack.

class StackError(Exception):
    pass


def _proto_version():
    with open(os.path.join(SRCDIR, "coord", "proto.h")) as f:
        m = re.search(r"#define PROTO_VERSION\s+(\d+)", f.read())
    return int(m.group(1))


def coord_ping(path, timeout_s=5.0):
    """(peers, waiters, locks) from a PING to the coordinator at `path`, on
    a fresh connection (coord/proto.h: an 8-byte header, PONG of 12)."""
    t_ping, t_pong = 5, 6
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout_s)
        s.connect(path)
        s.sendall(struct.pack("!BBHI", _proto_version(), t_ping, 0, 0))
        buf = b""
        while len(buf) < 8 + 12:
            b = s.recv(8 + 12 - len(buf))
            if not b:
                break
            buf += b
        hdr = struct.unpack("!BBHI", buf[:8]) if len(buf) == 20 else None
        if hdr is None or hdr[1] != t_pong or hdr[3] != 12:
            raise AssertionError("PING: bad answer %r" % (buf,))
        return struct.unpack("!III", buf[8:])
    finally:
        s.close()


class Stack:
    """front: "lighttpd" or "apache" (default HTTPLOCK_FRONT); mount: the
    URL prefix httplock is mounted at ("/" or e.g. "/httplock"), which
    request() and url() put before every path.  lighttpd_conf: another
    lighttpd configuration (e.g. conf/lighttpd-auth.conf); apache_conf: another
    Apache configuration (e.g. conf/apache-auth.conf); extra_env: more
    environment for the front end (may be filled in before start()).
    start_coord: whether start() starts httplock-coord; by default it does
    unless the conf sets coord_autostart = yes (then the workers start it:
    see auto_coords())."""

    def __init__(self, conf_overrides=None, label="stack", front=None, mount="/",
                 lighttpd_conf=None, extra_env=None, apache_conf=None, start_coord=None):
        self.lighttpd_conf = lighttpd_conf or LIGHTTPD_CONF
        self.apache_conf = apache_conf or APACHE_CONF
        self.extra_env = dict(extra_env or {})
        for path, what in ((WORKER_BIN, "worker"), (COORD_BIN, "coordinator")):
            if not os.access(path, os.X_OK):
                raise StackError("%s binary not built: %s" % (what, path))
        self.front_name = front or FRONT
        if self.front_name not in FRONTS:
            raise StackError("unknown front end %r (HTTPLOCK_FRONT: one of %s)" % (
                self.front_name, ", ".join(FRONTS)))
        binary = LIGHTTPD if self.front_name == "lighttpd" else APACHE2
        if not os.access(binary, os.X_OK):
            raise StackError("%s not found: %s" % (self.front_name, binary))
        self.mount = mount
        self.prefix = mount.rstrip("/")
        self.label = label
        self.dir = tempfile.mkdtemp(prefix="hl", dir="/tmp")
        self.datadir = os.path.join(self.dir, "data")
        self.rundir = os.path.join(self.dir, "run")
        os.mkdir(self.datadir)
        os.mkdir(self.rundir)
        if self.front_name == "apache":
            # Apache's children (www-data when we are root) must reach the
            # pool's socket: traverse the directories, write the socket
            # (group www-data, see start_pool).
            os.chmod(self.dir, 0o711)
            os.chmod(self.rundir, 0o711)
        self.conf_path = os.path.join(self.dir, "httplock.conf")
        self.coord_sock = os.path.join(self.rundir, "coord.sock")
        if len(self.coord_sock.encode()) >= 100:
            raise StackError("socket path too long: %s" % self.coord_sock)
        self.db_path = os.path.join(self.datadir, "httplock.db")
        self.conf = dict((k, v.format(dir=self.dir)) for k, v in DEFAULT_CONF)
        for k, v in (conf_overrides or {}).items():
            self.conf[k] = v
        if start_coord is None:
            start_coord = self.conf.get("coord_autostart", "no").lower() != "yes"
        self.with_coord = start_coord
        if self.conf.get("coord_autostart", "no").lower() == "yes":
            self.conf.setdefault("coord_binary", COORD_BIN)
            self.conf.setdefault("coord_log", os.path.join(self.rundir, "coord.log"))
        self.port = None
        self.coord = None            # Popen
        self.front = None            # Popen: lighttpd, or Apache's parent
        self.pool = None             # Popen: the worker pool (Apache only)
        self.known_workers = set()   # every worker pid we have seen
        self.tokens = set()          # every token the service handed out
        self.stopped = True
        self._lock = threading.Lock()
        with _registry_lock:
            _live_stacks.add(self)

    # -- configuration and start ------------------------------------------

    def write_conf(self):
        with open(self.conf_path, "w") as f:
            for k, v in self.conf.items():
                f.write("%s = %s\n" % (k, v))

    def start(self):
        self.write_conf()
        self.stopped = False
        if self.with_coord:
            self.start_coord()
        self.start_front()

    def _popen(self, argv, logname, env=None):
        import subprocess
        out = open(os.path.join(self.rundir, logname), "ab")
        try:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=out, env=env, start_new_session=True,
                                    close_fds=True)
        finally:
            out.close()

    def start_coord(self, timeout_s=10.0):
        """Starts the coordinator and waits until its socket accepts."""
        if self.coord is not None and self.coord.poll() is None:
            raise StackError("coordinator already running (pid %d)" % self.coord.pid)
        self.coord = self._popen([COORD_BIN, "-c", self.conf_path], "coord.log")
        deadline = time.monotonic() + timeout_s
        while True:
            rc = self.coord.poll()
            if rc is not None:
                raise StackError("httplock-coord exited with status %s at start\n%s" % (
                    rc, self.log_tail("coord.log")))
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(1.0)
                s.connect(self.coord_sock)
                return
            except OSError:
                pass
            finally:
                s.close()
            if time.monotonic() >= deadline:
                raise StackError("coordinator socket %s did not accept within %.0f s\n%s" % (
                    self.coord_sock, timeout_s, self.log_tail("coord.log")))
            time.sleep(0.01)

    @property
    def coord_pid(self):
        return self.coord.pid if self.coord is not None else None

    @property
    def lighttpd(self):
        """The lighttpd process (None behind Apache)."""
        return self.front if self.front_name == "lighttpd" else None

    @property
    def apache(self):
        """Apache's parent process (None behind lighttpd)."""
        return self.front if self.front_name == "apache" else None

    def _front_logs(self):
        if self.front_name == "lighttpd":
            return ("lighttpd.out", "lighttpd-error.log")
        return ("apache.out", "apache-error.log", "pool.log")

    def _front_env(self):
        import pwd
        import grp
        env = dict(os.environ)
        user = pwd.getpwuid(os.geteuid()).pw_name
        group = grp.getgrgid(os.getegid()).gr_name
        if os.geteuid() == 0:
            user = group = "www-data"    # Apache will not run as root
        env.update({
            "HTTPLOCK_BIND": "127.0.0.1",
            "HTTPLOCK_PORT": str(self.port),
            "HTTPLOCK_RUNDIR": self.rundir,
            "HTTPLOCK_WORKER": WORKER_BIN,
            "HTTPLOCK_CONF": self.conf_path,
            "HTTPLOCK_PROCS": PROCS,
            "HTTPLOCK_MOUNT": self.mount,
            "HTTPLOCK_USER": user,
            "HTTPLOCK_GROUP": group,
        })
        env.update(self.extra_env)
        return env

    def _bind_failed(self):
        text = "".join(self.log_tail(n, 20) for n in self._front_logs())
        return "Address already in use" in text or "EADDRINUSE" in text

    def start_pool(self, timeout_s=10.0):
        """Starts the worker pool (for Apache) and waits until its socket
        accepts."""
        if self.pool is not None and self.pool.poll() is None:
            raise StackError("worker pool already running (pid %d)" % self.pool.pid)
        sock = os.path.join(self.rundir, "worker.sock")
        env = self._front_env()
        self.pool = self._popen([WORKER_BIN, "-c", self.conf_path, "-s", sock, "-n", PROCS,
                                 "-m", "0660", "-g", env["HTTPLOCK_GROUP"]],
                                "pool.log", env=env)
        deadline = time.monotonic() + timeout_s
        while True:
            rc = self.pool.poll()
            if rc is not None:
                raise StackError("httplock-worker pool exited with status %s at start\n%s" % (
                    rc, self.log_tail("pool.log")))
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(sock)
                return
            except OSError:
                pass
            finally:
                s.close()
            if time.monotonic() >= deadline:
                raise StackError("worker pool socket %s did not accept within %.0f s\n%s" % (
                    sock, timeout_s, self.log_tail("pool.log")))
            time.sleep(0.01)

    def start_front(self, same_port=False, timeout_s=15.0):
        """Starts the front end (lighttpd, which spawns the workers; or the
        worker pool and Apache) and waits for /healthz to answer 200.  A
        new free port is picked unless same_port."""
        if self.front_name == "lighttpd":
            argv, out = [LIGHTTPD, "-D", "-f", self.lighttpd_conf], "lighttpd.out"
        else:
            argv, out = [APACHE2, "-DFOREGROUND", "-f", self.apache_conf], "apache.out"
            if self.pool is None or self.pool.poll() is not None:
                self.start_pool()
        attempts = 0
        while True:
            attempts += 1
            if not same_port or self.port is None:
                self.port = free_port()
            self.front = self._popen(argv, out, env=self._front_env())
            try:
                self.wait_healthy(timeout_s)
                break
            except StackError:
                rc = self.front.poll()
                if rc is not None and self._bind_failed() and attempts < 20:
                    time.sleep(0.05 if not same_port else 0.25)
                    continue
                raise
        self.worker_pids()   # remember the first generation of workers

    start_lighttpd = start_front

    def wait_healthy(self, timeout_s=15.0):
        deadline = time.monotonic() + timeout_s
        last = None
        while True:
            rc = self.front.poll()
            if rc is not None:
                raise StackError("%s exited with status %s at start\n%s" % (
                    self.front_name, rc, "".join(self.log_tail(n) for n in self._front_logs())))
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2.0)
                try:
                    c.request("GET", self.prefix + "/healthz")
                    r = c.getresponse()
                    r.read()
                    if r.status == 200:
                        return
                    last = "status %d" % r.status
                finally:
                    c.close()
            except OSError as e:
                last = repr(e)
            except http.client.HTTPException as e:
                last = repr(e)
            if time.monotonic() >= deadline:
                raise StackError("GET /healthz did not answer 200 within %.0f s (last: %s)\n%s" % (
                    timeout_s, last, "".join(self.log_tail(n) for n in self._front_logs())))
            time.sleep(0.02)

    # -- processes ---------------------------------------------------------

    def _children(self):
        children = {}
        for pid in _all_pids():
            st = _proc_stat(pid)
            if st is not None and st[0] not in ("Z", "X"):
                children.setdefault(st[1], []).append(pid)
        return children

    def front_pids(self):
        """The front end's live processes: lighttpd, or Apache's parent and
        its children (what a SIGSTOP must reach to pause the web server)."""
        if self.front is None or not pid_alive(self.front.pid):
            return []
        return [self.front.pid] + sorted(self._children().get(self.front.pid, []))

    def worker_pids(self):
        """Live httplock-worker processes below lighttpd, or below the pool
        supervisor (which is not one of them)."""
        root = self.front if self.front_name == "lighttpd" else self.pool
        if root is None:
            return []
        root = root.pid
        children = self._children()
        out, todo = [], [root]
        while todo:
            p = todo.pop()
            for c in children.get(p, []):
                todo.append(c)
                if _proc_comm(c) == "httplock-worker":
                    out.append(c)
        out.sort()
        self.known_workers.update(out)
        return out

    def stray_workers(self):
        """Every live httplock-worker of this stack, wherever its parent is
        (found by HTTPLOCK_CONF in its environment), and any child lighttpd
        forked to become one but has not exec'd yet: killed with lighttpd
        in that instant, it would start as an orphan on the old socket."""
        needle = ("HTTPLOCK_CONF=%s\0" % self.conf_path).encode()
        out = set(p for p in self.known_workers if pid_alive(p))
        front = self.front.pid if self.front is not None else None
        for pid in _all_pids():
            comm = _proc_comm(pid)
            forked = comm == "lighttpd" and self.front_name == "lighttpd" and pid != front
            if (comm != "httplock-worker" and not forked) or not pid_alive(pid):
                continue
            try:
                with open("/proc/%d/environ" % pid, "rb") as f:
                    if needle in f.read() + b"\0":
                        out.add(pid)
            except OSError:
                pass
        return sorted(out)

    def auto_coords(self):
        """Live httplock-coord processes started by this stack's workers
        (coord_autostart): found by "-c <our conf>" on their command line."""
        out = []
        for pid in _all_pids():
            if _proc_comm(pid) != "httplock-coord" or not pid_alive(pid):
                continue
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if self.conf_path.encode() in argv and \
                    (self.coord is None or pid != self.coord.pid):
                out.append(pid)
        return sorted(out)

    def kill_coord(self, sig=signal.SIGKILL, timeout_s=5.0):
        """Signals the coordinator and waits for it to exit."""
        self.coord.send_signal(sig)
        try:
            self.coord.wait(timeout_s)
        except Exception:
            raise AssertionError("coordinator did not exit within %.0f s of signal %d" % (timeout_s, sig))

    def kill_all_9(self, timeout_s=5.0):
        """SIGKILLs the front end, every worker and the coordinator and
        waits until all are gone.  The workers are stopped (SIGSTOP) first:
        a worker dies with its parent (PR_SET_PDEATHSIG, SIGTERM), and one
        that ran that clean stop before its SIGKILL arrived would close the
        database (the last connection to close removes the WAL), which is
        no crash at all."""
        workers = set(self.worker_pids()) | set(self.stray_workers())
        procs = [p for p in (self.front, self.pool, self.coord) if p is not None]
        if self.apache is not None:
            workers |= set(self.front_pids()[1:])    # Apache's children
        for w in workers:
            try:
                os.kill(w, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        for p in procs:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for w in workers:
            try:
                os.kill(w, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in procs:
            p.wait(timeout_s)
        # One lighttpd forked after the list was taken is not on it.
        deadline = time.monotonic() + timeout_s
        while True:
            strays = set(self.stray_workers()) - workers
            for w in strays:
                try:
                    os.kill(w, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            workers |= strays
            left = wait_gone(list(workers), max(0.0, deadline - time.monotonic()))
            if left:
                raise AssertionError("workers still alive after SIGKILL: %s" % left)
            if not strays:
                break

    def restart(self):
        """Starts the coordinator and the front end again: same dir,
        database and port."""
        self.start_coord()
        self.start_front(same_port=True)

    def stop(self, timeout_s=5.0):
        """SIGTERMs the front end (and pool) and the coordinator, waits for
        them and for the workers to exit; returns the seconds it took.  AssertionError (after
        killing what is left) if anything outlived timeout_s or if any worker
        of this stack is left behind."""
        if self.stopped:
            return 0.0
        self.stopped = True
        workers = set(self.worker_pids())
        t0 = time.monotonic()
        problems = []
        for p in (self.front, self.pool, self.coord):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p, name in ((self.front, self.front_name), (self.pool, "httplock-worker pool"),
                        (self.coord, "httplock-coord")):
            if p is None:
                continue
            left = max(0.0, timeout_s - (time.monotonic() - t0))
            try:
                p.wait(left)
            except Exception:
                problems.append("%s (pid %d) did not exit within %.1f s of SIGTERM" % (
                    name, p.pid, timeout_s))
        autos = self.auto_coords()
        for pid in autos:
            os.kill(pid, signal.SIGTERM)
        left = max(0.05, timeout_s - (time.monotonic() - t0))
        if wait_gone(autos, left):
            problems.append("auto-started httplock-coord did not exit within %.1f s of "
                            "SIGTERM: %s" % (timeout_s, autos))
        left = max(0.05, timeout_s - (time.monotonic() - t0))
        alive = wait_gone(sorted(workers | set(self.stray_workers())), left)
        elapsed = time.monotonic() - t0
        if alive:
            problems.append("httplock-worker processes left behind (orphans): %s" % alive)
        if problems:
            self.force_kill()
            raise AssertionError("; ".join(problems))
        return elapsed

    def force_kill(self):
        """SIGKILL everything of this stack, whatever state it is in."""
        self.stopped = True
        pids = set(self.stray_workers()) | set(self.auto_coords())
        for p in (self.front, self.pool, self.coord):
            if p is None:
                continue
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
                try:
                    p.kill()
                except OSError:
                    pass
        for w in pids:
            try:
                os.kill(w, signal.SIGKILL)
            except OSError:
                pass
        for p in (self.front, self.pool, self.coord):
            if p is not None:
                try:
                    p.wait(5)
                except Exception:
                    pass
        wait_gone(list(pids), 5)

    def cleanup(self, keep=False):
        """Kills what is left; removes the directory unless keep."""
        self.force_kill()
        with _registry_lock:
            _live_stacks.discard(self)
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- logs --------------------------------------------------------------

    def log_text(self, name):
        try:
            with open(os.path.join(self.rundir, name), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, name, n=30):
        lines = self.log_text(name).splitlines()[-n:]
        if not lines:
            return ""
        return "--- %s (last %d lines) ---\n%s\n" % (name, len(lines), "\n".join(lines))

    def log_tails(self, n=30):
        return "".join(self.log_tail(name, n) for name in LOG_FILES)

    SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                       "runtime error:", "WARNING: ThreadSanitizer")

    def check_logs(self):
        """No token the service issued appears in any log, and no sanitizer
        (in an --enable-asan build) reported anything."""
        self.check_no_token_leak()
        for name in LOG_FILES:
            text = self.log_text(name)
            for mark in self.SANITIZER_MARKS:
                i = text.find(mark)
                if i >= 0:
                    raise AssertionError("sanitizer report in %s:\n%s" % (
                        name, text[max(0, text.rfind("\n", 0, i)):i + 1500]))

    def check_no_token_leak(self):
        """No token the service issued may appear in any log."""
        with self._lock:
            tokens = list(self.tokens)
        for name in LOG_FILES:
            text = self.log_text(name)
            for t in tokens:
                i = text.find(t)
                if i >= 0:
                    line = text[text.rfind("\n", 0, i) + 1:text.find("\n", i)]
                    raise AssertionError("token %s appears in %s: %r" % (t, name, line[:300]))

    # -- HTTP --------------------------------------------------------------

    def url(self, path):
        return "http://127.0.0.1:%d%s%s" % (self.port, self.prefix, path)

    def request(self, method, path, query=None, form=None, body=None, ctype=None,
                headers=None, timeout=20.0, expect_json=True, mount=True):
        """One request on a fresh connection.  `query` goes to the URL, `form`
        is url-encoded into the body; without either a POST still sends an
        empty body with Content-Length: 0.  The mount prefix goes before path
        unless not mount.  Asserts Content-Type
        application/json and a parseable JSON body unless not expect_json."""
        url = self.prefix + path if mount else path
        if query is not None:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(query)
        hdrs = dict(headers or {})
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            ctype = ctype or "application/x-www-form-urlencoded"
        if body is None and method in ("POST", "PUT", "PATCH", "DELETE"):
            body = b""
        if body is not None:
            hdrs["Content-Length"] = str(len(body))
        if ctype is not None:
            hdrs["Content-Type"] = ctype
        desc = "%s %s" % (method, url if len(url) < 200 else url[:200] + "...")
        if form is not None:
            d = urllib.parse.urlencode(form)
            desc += " body=%s" % (d if len(d) < 200 else d[:200] + "...")
        t0 = time.monotonic()
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, url, body=body, headers=hdrs)
            r = c.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException) as e:
            raise AssertionError("%s: request failed after %.0f ms: %r" % (
                desc, (time.monotonic() - t0) * 1000, e))
        finally:
            c.close()
        res = Resp(desc, r.status, r.reason, r.headers, data, (time.monotonic() - t0) * 1000)
        if expect_json:
            ct = r.headers.get("Content-Type", "")
            if ct.split(";")[0].strip().lower() != "application/json":
                raise AssertionError("%s: Content-Type %r, expected application/json (%s)" % (
                    desc, ct, res.short()))
            if method != "HEAD":
                try:
                    res.json = json.loads(data.decode("utf-8"))
                except ValueError as e:
                    raise AssertionError("%s: body is not JSON (%s): %r" % (desc, e, data[:300]))
        elif data:
            try:
                res.json = json.loads(data.decode("utf-8"))
            except ValueError:
                pass
        if isinstance(res.json, dict) and isinstance(res.json.get("token"), str):
            with self._lock:
                self.tokens.add(res.json["token"])
        lt = r.headers.get("Lock-Token")
        if lt:
            with self._lock:
                self.tokens.add(lt)
        return res

    def get(self, path, query=None, **kw):
        return self.request("GET", path, query=query, **kw)

    def post(self, path, form=None, **kw):
        return self.request("POST", path, form=form, **kw)

    # Lock operations.  Extra keyword arguments become form parameters.

    def acquire(self, name, timeout_s=20.0, **params):
        return self.post(lpath(name, "acquire"), form=params, timeout=timeout_s)

    def acquire_ok(self, name, **params):
        """Acquire that must succeed; returns the checked Resp."""
        r = self.acquire(name, **params)
        check_grant(r, name if isinstance(name, str) else name.decode(), owner=params.get("owner"))
        if r.header("Lock-Token") != r["token"]:
            raise AssertionError("%s: Lock-Token header %r != token %r" % (
                r.desc, r.header("Lock-Token"), r["token"]))
        return r

    def release(self, name, token, **kw):
        return self.post(lpath(name, "release"), form={"token": token}, **kw)

    def release_ok(self, name, token):
        r = expect(self.release(name, token), 200)
        if r["released"] is not True or r["lock"] != name:
            raise AssertionError("%s: bad release body %s" % (r.desc, r.short()))
        return r

    def renew(self, name, token, ttl=None):
        form = {"token": token}
        if ttl is not None:
            form["ttl"] = ttl
        return self.post(lpath(name, "renew"), form=form)

    def cancel(self, name, request_id):
        return self.post(lpath(name, "cancel"), form={"request_id": request_id})

    def status(self, name):
        """GET /lock/<name>/, checked for shape and for leaked tokens."""
        r = expect(self.get(lpath(name)), 200)
        for k in ("lock", "held", "holders", "waiters"):
            r[k]
        if not isinstance(r["held"], bool) or not isinstance(r["holders"], list) \
                or not is_int(r["waiters"]):
            raise AssertionError("%s: bad status body %s" % (r.desc, r.short()))
        for h in r["holders"]:
            for k in ("owner", "fence", "acquired_at", "expires_at"):
                if k not in h:
                    raise AssertionError("%s: holder without %r: %s" % (r.desc, k, r.short()))
            if "token" in h:
                raise AssertionError("%s: holder shows a token: %s" % (r.desc, r.short()))
        text = r.body.decode("utf-8", "replace")
        with self._lock:
            tokens = list(self.tokens)
        for t in tokens:
            if t in text:
                raise AssertionError("%s: status body contains token %s: %s" % (r.desc, t, r.short()))
        return r

    def waiters(self, name):
        return self.status(name)["waiters"]

    def coord_waiters(self, timeout_s=2.0):
        """Waiters registered with the coordinator (a PING on its socket);
        None when it does not answer.  /healthz shows this count only to
        requests the web server authenticated."""
        try:
            return coord_ping(self.coord_sock, timeout_s)[1]
        except (OSError, AssertionError):
            return None

    def worker_threads(self):
        """Threads of each live worker process, by pid (/proc)."""
        out = {}
        for pid in self.worker_pids():
            try:
                with open("/proc/%d/status" % pid) as f:
                    for line in f:
                        if line.startswith("Threads:"):
                            out[pid] = int(line.split()[1])
            except OSError:
                pass
        return out

    def wait_waiters(self, name, n, timeout_s=5.0, bg=None):
        """Polls the status until waiters == n.  If bg (a BG or list of them)
        finishes first, fails with its outcome."""
        bgs = [] if bg is None else (bg if isinstance(bg, list) else [bg])
        seen = [None]

        def pred():
            for b in bgs:
                if b.done():
                    raise AssertionError("background request finished before %r had %d waiters: %r" % (
                        name, n, b.exc if b.exc is not None else b.result))
            seen[0] = self.waiters(name)
            return seen[0] == n
        try:
            wait_for(pred, timeout_s, "%r to show %d waiters" % (name, n))
        except AssertionError as e:
            raise AssertionError("%s (last seen: %s)" % (e, seen[0]))

    def health(self):
        return expect(self.get("/healthz"), 200)

    def assert_healthy_and_working(self, name="health-probe"):
        """GET /healthz is 200 and an acquire/release round trip works."""
        h = self.health()
        if h["ok"] is not True or h["database"] != "ok":
            raise AssertionError("unhealthy: %s" % h.short())
        g = self.acquire_ok(name, timeout=0)
        self.release_ok(name, g["token"])

    # Raw sockets.

    def raw_connect(self, timeout=10.0):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return s

    def raw(self, data, timeout=10.0, shut_wr=False):
        """Sends raw bytes, reads until the server closes (or `timeout` passes
        without data); returns what was read."""
        s = self.raw_connect(timeout)
        chunks = []
        try:
            try:
                s.sendall(data)
                if shut_wr:
                    s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            while True:
                try:
                    b = s.recv(65536)
                except socket.timeout:
                    raise AssertionError("raw request %r: no close within %.0f s (got %r)" % (
                        data[:60], timeout, b"".join(chunks)[:200]))
                except OSError:
                    break
                if not b:
                    break
                chunks.append(b)
        finally:
            s.close()
        return b"".join(chunks)


def raw_post(path, params, host="127.0.0.1", close=True):
    """Bytes of an HTTP/1.1 POST with a form body."""
    body = urllib.parse.urlencode(params).encode()
    head = ("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            "Content-Length: %d\r\n%s\r\n" % (path, host, len(body),
                                               "Connection: close\r\n" if close else ""))
    return head.encode() + body


# ---------------------------------------------------------------------------
# Mutual-exclusion traffic, shared by the concurrency tests.

def queue_fifo_waiters(stack, name, n, timeout_s=30):
    """Queues n blocking acquires of `name` one after the other (each
    seen in the queue before the next is sent).  Each releases as soon as
    it is granted and records (its index, its fence) in `order`, in grant
    order.  Returns (the BGs, order)."""
    order = []
    order_lock = threading.Lock()

    def waiter(i):
        r = stack.acquire(name, owner="w%d" % i, timeout_s=timeout_s)
        if r.status != 200:
            return r
        with order_lock:
            order.append((i, r["fence"]))
        rr = stack.release(name, r["token"])
        return r if rr.status == 200 else rr

    bgs = []
    for i in range(n):
        bgs.append(BG(waiter, i))
        stack.wait_waiters(name, i + 1, bg=bgs)
    return bgs, order


class CycleLog:
    def __init__(self):
        self.lock = threading.Lock()
        self.records = []    # (lock, fence, t_enter, t_leave, client)
        self.done = 0
        self.errors = []

    def add(self, rec):
        with self.lock:
            self.records.append(rec)
            self.done += 1


def cycle_client(stack, names, cycles, hold_s, clog, client_id, stop_evt=None):
    """Runs `cycles` acquire (no timeout) / hold / release cycles over names
    (round robin), recording enter/leave times (monotonic) and fences."""
    for i in range(cycles):
        if stop_evt is not None and stop_evt.is_set():
            return
        name = names[i % len(names)]
        try:
            r = stack.acquire(name, owner="c%d" % client_id)
            if r.status != 200:
                raise AssertionError("client %d cycle %d: %s" % (client_id, i, r.short()))
            t_enter = time.monotonic()
            if hold_s:
                time.sleep(hold_s)
            t_leave = time.monotonic()
            rr = stack.release(name, r["token"])
            if rr.status != 200:
                raise AssertionError("client %d cycle %d: release: %s" % (client_id, i, rr.short()))
            clog.add((name, r["fence"], t_enter, t_leave, client_id))
        except BaseException as e:
            with clog.lock:
                clog.errors.append(e)
            return


def check_no_overlap(records):
    """Per lock, sorted by enter time: each holder left before the next one
    entered, and fences strictly increase in grant order."""
    by_lock = {}
    for rec in records:
        by_lock.setdefault(rec[0], []).append(rec)
    for name, recs in by_lock.items():
        recs.sort(key=lambda r: r[2])
        for a, b in zip(recs, recs[1:]):
            if b[2] < a[3]:
                raise AssertionError(
                    "lock %r: overlapping holders: client %d (fence %d) held [%.6f, %.6f], "
                    "client %d (fence %d) entered at %.6f" % (
                        name, a[4], a[1], a[2], a[3], b[4], b[1], b[2]))
            if b[1] <= a[1]:
                raise AssertionError(
                    "lock %r: fences not increasing in grant order: %d then %d" % (name, a[1], b[1]))
    return {k: len(v) for k, v in by_lock.items()}


# ---------------------------------------------------------------------------
# Command line: run one command against a fresh stack.
#
#   stack.py [-o key=value]... -- COMMAND [ARGS...]
#
# starts the stack, runs COMMAND with HTTPLOCK_URL (http://127.0.0.1:PORT/)
# and HTTPLOCK_TEST_RUNDIR in its environment, stops the stack (asserting a
# clean stop and clean logs), and exits with COMMAND's status (or 1 if the
# stack itself misbehaved).  Used by the C client tests.

def main(argv):
    import subprocess
    overrides = {}
    while argv and argv[0] == "-o":
        k, _, v = argv[1].partition("=")
        overrides[k] = v
        argv = argv[2:]
    if not argv or argv[0] != "--" or len(argv) < 2:
        sys.stderr.write("usage: stack.py [-o key=value]... -- COMMAND [ARGS...]\n")
        return 2
    s = Stack(overrides, label="cli")
    rc = None
    try:
        s.start()
        env = dict(os.environ)
        env["HTTPLOCK_URL"] = s.url("/")
        env["HTTPLOCK_TEST_RUNDIR"] = s.rundir
        rc = subprocess.call(argv[1:], env=env)
        s.stop()
        s.check_logs()
    except Exception as e:
        sys.stderr.write("stack.py: %s\n%s" % (e, s.log_tails()))
        rc = 1 if not rc else rc    # the stack failed: never report success
    finally:
        s.cleanup()
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
