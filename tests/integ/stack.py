"""The stack the integration tests run against, in a private temporary
directory: httplock-coord plus a front end, chosen by HTTPLOCK_FRONT:
"lighttpd" (the default; it spawns the httplock-worker processes itself)
or "apache" (Apache 2.4 with mod_proxy_fcgi, in front of an
httplock-worker pool: `httplock-worker -s SOCKET -n 2`).  Stack writes the
configuration, starts, stops, kills and restarts the processes, finds
them in /proc, and reads and checks their logs; it is also the tests'
HTTP client (httpclient.Client) on its port.  Its store is an SQLite file
in that directory, or, when HTTPLOCK_TEST_PG is set, a database of its
own on that PostgreSQL server (created here, dropped by cleanup()); or
the `store` it is given, which several stacks share as several hosts.

Python 3 standard library only.  Every process started here is registered so
that it can be killed whatever happens (see kill_everything()).
"""

import grp
import http.client
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from coordwire import ping as coord_ping
from httpclient import Client
import pgdb
from procs import (all_pids, children_map, kill_quietly, pid_alive, proc_comm, threads,
                   wait_gone)
from rawsock import free_port, unix_accepts
from testenv import (APACHE2, APACHE_CONF, COORD_BIN, FRONT, FRONTS, LIGHTTPD, LIGHTTPD_CONF,
                     PG_SERVER, PROCS, WORKER_BIN)

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

LOG_FILES = ("lighttpd-error.log", "coord.log", "lighttpd.out",
             "apache-error.log", "apache.out", "pool.log")


# Every stack not yet cleaned up, for kill_everything().
_registry_lock = threading.Lock()
_live_stacks = set()


def kill_everything():
    """Last-resort cleanup: SIGKILL every process of every live stack and
    drop the PostgreSQL databases made for them."""
    with _registry_lock:
        stacks = list(_live_stacks)
    for s in stacks:
        try:
            s.force_kill()
        except Exception:
            pass
    pgdb.drop_all()


class StackError(Exception):
    """The stack could not be built or started (a binary missing, a
    process that exited at start, a socket that never accepted)."""


class Stack(Client):
    """front: "lighttpd" or "apache" (default HTTPLOCK_FRONT); mount: the
    URL prefix httplock is mounted at ("/" or e.g. "/httplock"), which
    request() and url() put before every path.  lighttpd_conf: another
    lighttpd configuration (e.g. conf/lighttpd-auth.conf); apache_conf: another
    Apache configuration (e.g. conf/apache-auth.conf); extra_env: more
    environment for the front end (may be filled in before start());
    host_env: more environment for every process of the stack, the
    coordinator too (a test hook that plays another machine).
    start_coord: whether start() starts httplock-coord; by default it does
    unless the conf sets coord_autostart = yes (then the workers start it:
    see auto_coords()).  store: a libpq URI the stack's httplock.conf names
    as its store (the same as conf_overrides {"store": ...}); unset, the
    stack makes a PostgreSQL database of its own when HTTPLOCK_TEST_PG is
    set, else it keeps SQLite at db_path.  store_kind: "postgresql" or
    "sqlite"; pg_db: the database this stack made (None if none)."""

    def __init__(self, conf_overrides=None, label="stack", front=None, mount="/",
                 lighttpd_conf=None, extra_env=None, apache_conf=None, start_coord=None,
                 store=None, host_env=None):
        self.lighttpd_conf = lighttpd_conf or LIGHTTPD_CONF
        self.apache_conf = apache_conf or APACHE_CONF
        self.extra_env = dict(extra_env or {})
        self.host_env = dict(host_env or {})
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
        Client.__init__(self, None, mount.rstrip("/"))
        self.mount = mount
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
        self.coord = None            # Popen
        self.front = None            # Popen: lighttpd, or Apache's parent
        self.pool = None             # Popen: the worker pool (Apache only)
        self.known_workers = set()   # every worker pid we have seen
        self.stopped = True
        self.pg_db = None
        with _registry_lock:
            _live_stacks.add(self)
        if store is not None:
            self.conf["store"] = store
        if not self.conf.get("store") and PG_SERVER:
            try:
                self.pg_db, self.conf["store"] = pgdb.create_database(PG_SERVER)
            except pgdb.PgError as e:
                self.cleanup()
                raise StackError("cannot make the stack's database: %s" % e)
        self.store_uri = self.conf.get("store") or None
        self.store_kind = "postgresql" if self.store_uri else "sqlite"

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
        self.coord = self._popen([COORD_BIN, "-c", self.conf_path], "coord.log",
                                 env=dict(os.environ, **self.host_env))
        self._wait_accepts(self.coord, self.coord_sock, "httplock-coord", "coord.log", timeout_s)

    def _wait_accepts(self, proc, sock, what, logname, timeout_s):
        """Waits until the Unix socket sock accepts; StackError if proc
        (`what`, logging to logname) exits first or timeout_s passes."""
        deadline = time.monotonic() + timeout_s
        while True:
            rc = proc.poll()
            if rc is not None:
                raise StackError("%s exited with status %s at start\n%s" % (
                    what, rc, self.log_tail(logname)))
            if unix_accepts(sock):
                return
            if time.monotonic() >= deadline:
                raise StackError("%s: socket %s did not accept within %.0f s\n%s" % (
                    what, sock, timeout_s, self.log_tail(logname)))
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
        env.update(self.host_env)
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
        self._wait_accepts(self.pool, sock, "httplock-worker pool", "pool.log", timeout_s)

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

    def front_pids(self):
        """The front end's live processes: lighttpd, or Apache's parent and
        its children (what a SIGSTOP must reach to pause the web server)."""
        if self.front is None or not pid_alive(self.front.pid):
            return []
        return [self.front.pid] + sorted(children_map().get(self.front.pid, []))

    def worker_pids(self):
        """Live httplock-worker processes below lighttpd, or below the pool
        supervisor (which is not one of them)."""
        root = self.front if self.front_name == "lighttpd" else self.pool
        if root is None:
            return []
        root = root.pid
        children = children_map()
        out, todo = [], [root]
        while todo:
            p = todo.pop()
            for c in children.get(p, []):
                todo.append(c)
                if proc_comm(c) == "httplock-worker":
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
        for pid in all_pids():
            comm = proc_comm(pid)
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
        for pid in all_pids():
            if proc_comm(pid) != "httplock-coord" or not pid_alive(pid):
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
        kill_quietly(workers, signal.SIGSTOP)
        kill_quietly([p.pid for p in procs if p.poll() is None], signal.SIGKILL)
        kill_quietly(workers, signal.SIGKILL)
        for p in procs:
            p.wait(timeout_s)
        # One lighttpd forked after the list was taken is not on it.
        deadline = time.monotonic() + timeout_s
        while True:
            strays = set(self.stray_workers()) - workers
            kill_quietly(strays, signal.SIGKILL)
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
        kill_quietly(pids, signal.SIGKILL)
        for p in (self.front, self.pool, self.coord):
            if p is not None:
                try:
                    p.wait(5)
                except Exception:
                    pass
        wait_gone(list(pids), 5)

    def cleanup(self, keep=False):
        """Kills what is left; removes the directory and the database it
        made unless keep."""
        self.force_kill()
        with _registry_lock:
            _live_stacks.discard(self)
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)
            if self.pg_db is not None:
                db, self.pg_db = self.pg_db, None
                try:
                    pgdb.drop_database(db, PG_SERVER)
                except pgdb.PgError:
                    pass
        elif self.pg_db is not None:
            pgdb.keep(self.pg_db, PG_SERVER)

    def store_query(self, sql):
        """Rows of sql run on this stack's PostgreSQL store (pgdb.query)."""
        if self.store_kind != "postgresql":
            raise AssertionError("store_query on an SQLite store")
        return pgdb.query(self.store_uri, sql)

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

    # -- the coordinator and the workers, seen directly -----------------

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
        return {pid: threads(pid) for pid in self.worker_pids()}
