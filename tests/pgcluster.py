#!/usr/bin/env python3
"""pgcluster: a private, throw-away PostgreSQL for the tests.

A PgCluster runs Debian's PostgreSQL server (the highest version under
/usr/lib/postgresql, else `pg_config --bindir`; HTTPLOCK_PG_BINDIR
chooses another directory) in a fresh temporary
directory: initdb into DIR/data with the superuser `httplock` and trust
authentication, the server on a free loopback port with its socket in DIR
and fsync off (the tests kill processes, never the machine).  initdb and
the server refuse to run as root: as root, DIR belongs to nobody:nogroup
and the server programs run as that user through setpriv(1).

    with PgCluster() as pg:
        pg.create_database("t")
        uri = pg.uri("t")        # postgresql://httplock@127.0.0.1:PORT/t
        pg.restart("immediate")  # a crash and its recovery
        pg.kill9()               # SIGKILL of every server process
        pg.restart()             # back on the same port

stop() (also at exit, on SIGTERM and on SIGINT) leaves no server process
and no directory behind, however the cluster ended.

The command line:
    pgcluster.py run -- CMD ARGS...
        Starts a cluster, runs CMD with HTTPLOCK_TEST_PG set to the server's
        URI (no database) and HTTPLOCK_TEST_PG_DIR to its directory, stops
        the cluster, and exits with CMD's status (128+N when CMD died of
        signal N; 1 with a message when the cluster does not start).
    pgcluster.py selftest
        Checks start, create_database, queries, restart, kill9 and stop,
        and that `run` cleans up after CMD's end and after a SIGTERM.
"""

import atexit
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

USER = "httplock"
RUN_AS = ("nobody", "nogroup")
START_TRIES = 5


class PgError(Exception):
    """The cluster could not be made, started, queried or stopped."""


def say(msg):
    print("pgcluster: " + msg, file=sys.stderr, flush=True)


def find_bindir():
    """The directory of initdb, pg_ctl and postgres: $HTTPLOCK_PG_BINDIR
    when set, else the highest version under /usr/lib/postgresql, else
    what `pg_config --bindir` says."""
    b = os.environ.get("HTTPLOCK_PG_BINDIR")
    if b:
        if not os.access(os.path.join(b, "initdb"), os.X_OK):
            raise PgError("HTTPLOCK_PG_BINDIR=%s: no initdb there" % b)
        return b
    root = "/usr/lib/postgresql"
    found = []
    if os.path.isdir(root):
        for v in os.listdir(root):
            b = os.path.join(root, v, "bin")
            if re.fullmatch(r"[0-9]+(\.[0-9]+)?", v) and \
                    os.access(os.path.join(b, "initdb"), os.X_OK):
                found.append((tuple(int(x) for x in v.split(".")), b))
    if found:
        return max(found)[1]
    try:
        b = subprocess.run(["pg_config", "--bindir"], capture_output=True,
                           text=True, check=True).stdout.strip()
        if os.access(os.path.join(b, "initdb"), os.X_OK):
            return b
    except (OSError, subprocess.CalledProcessError):
        pass
    raise PgError("no PostgreSQL server found (no initdb under %s/*/bin nor"
                  " in `pg_config --bindir`): install Debian's `postgresql`"
                  " package" % root)


def free_port():
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    """True while something accepts connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def alive(pid):
    """True while process pid runs (a zombie does not)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return False
    return st[st.rindex(")") + 2] not in "ZX"


def children(pid):
    """The pids whose parent is pid."""
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        if int(st[st.rindex(")") + 2:].split()[1]) == pid:
            kids.append(int(d))
    return kids


def traversable_by_others(path):
    """True if every directory from / to path lets other users pass."""
    path = os.path.abspath(path)
    while True:
        try:
            if not os.stat(path).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
        if path == "/":
            return True
        path = os.path.dirname(path)


def clean_env():
    """This process's environment without libpq's PG* variables, which
    would redirect psql (the tests name server and database in full)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


_live = []          # clusters started and not yet stopped
_handlers_set = False


def _stop_all():
    for c in list(_live):
        c.stop()


def _on_signal(signum, _frame):
    # SystemExit runs the finally blocks and atexit: the clusters stop.
    raise SystemExit(128 + signum)


def _install_cleanup():
    """Stops every live cluster at exit and on SIGTERM (SIGINT's
    KeyboardInterrupt already ends in atexit), leaving handlers that the
    program has set alone."""
    global _handlers_set
    if _handlers_set:
        return
    _handlers_set = True
    atexit.register(_stop_all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            if signal.getsignal(sig) == signal.SIG_DFL:
                signal.signal(sig, _on_signal)
        except ValueError:      # not the main thread
            pass


class PgCluster:
    """A private PostgreSQL server in a temporary directory (see the
    module's description)."""

    def __init__(self, verbose=True):
        self.verbose = verbose
        self.bindir = find_bindir()
        self.dir = None
        self.port = None
        self.seen = set()   # every server pid observed, for the checks
        self.root = os.geteuid() == 0
        exe = os.path.join(self.bindir, "psql")
        self.psql_path = exe if os.access(exe, os.X_OK) else shutil.which("psql")

    # -- paths and commands

    @property
    def data(self):
        return os.path.join(self.dir, "data")

    @property
    def log(self):
        return os.path.join(self.dir, "log")

    def _as_server(self, argv):
        if self.root:
            return ["setpriv", "--reuid=" + RUN_AS[0], "--regid=" + RUN_AS[1],
                    "--clear-groups", "--"] + argv
        return argv

    def _server(self, prog, *args, timeout=60, check=True):
        argv = self._as_server([os.path.join(self.bindir, prog)] + list(args))
        p = subprocess.run(argv, cwd=self.dir, env=clean_env(), text=True,
                           stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise PgError("%s failed (status %d): %s%s" % (
                prog, p.returncode, p.stderr.strip(), self._log_tail()))
        return p

    def _log_tail(self, n=15):
        try:
            with open(self.log, errors="replace") as f:
                lines = f.readlines()[-n:]
        except OSError:
            return ""
        return "\n--- %s (last lines)\n%s" % (self.log, "".join(lines))

    def _say(self, msg):
        if self.verbose:
            say(msg)

    # -- life cycle

    def start(self):
        """Makes the directory, runs initdb and starts the server; returns
        self.  A start that loses its port to another program is tried
        again on another port."""
        if self.dir is not None:
            raise PgError("cluster already started in %s" % self.dir)
        _install_cleanup()
        base = os.environ.get("TMPDIR") or "/tmp"
        if self.root and not traversable_by_others(base):
            base = "/tmp"       # the server's user must reach its directory
        self.dir = tempfile.mkdtemp(prefix="httplock-pg.", dir=base)
        _live.append(self)
        try:
            if self.root:
                shutil.chown(self.dir, RUN_AS[0], RUN_AS[1])
            t = time.monotonic()
            self._server("initdb", "-D", self.data, "-U", USER, "--auth=trust",
                         "--no-sync", "-E", "UTF8", "--locale=C.UTF-8",
                         "--no-instructions", timeout=120)
            t_init = time.monotonic() - t
            t = time.monotonic()
            for attempt in range(START_TRIES):
                self.port = free_port()
                try:
                    self._launch()
                    break
                except PgError:
                    if attempt + 1 == START_TRIES or not self._port_taken():
                        raise
                    self._say("port %d was taken meanwhile: another" % self.port)
            self._say("initdb %.2f s, start %.2f s (127.0.0.1:%d, %s)" % (
                t_init, time.monotonic() - t, self.port, self.dir))
        except BaseException:
            self.stop()
            raise
        return self

    def _port_taken(self):
        tail = self._log_tail(30)
        return "Address already in use" in tail or \
            "could not create any TCP/IP sockets" in tail

    def _launch(self):
        opts = ("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off"
                " -c max_connections=200" % (self.port, self.dir))
        self._server("pg_ctl", "-w", "-t", "60", "-D", self.data, "-l",
                     self.log, "-o", opts, "start", timeout=90)
        self._note_pids()

    def postmaster_pid(self):
        """The server's pid from postmaster.pid, or None."""
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError, TypeError):
            return None

    def pids(self):
        """The live server processes: the postmaster and its children."""
        pm = self.postmaster_pid()
        if pm is None or not alive(pm):
            return []
        return [pm] + [p for p in children(pm) if alive(p)]

    def _note_pids(self):
        self.seen.update(self.pids())

    def running(self):
        pm = self.postmaster_pid()
        return pm is not None and alive(pm)

    def uri(self, db=None):
        u = "postgresql://%s@127.0.0.1:%d" % (USER, self.port)
        return u + "/" + db if db else u

    def _pg_ctl_stop(self, mode):
        p = self._server("pg_ctl", "-w", "-t", "30", "-D", self.data, "-m",
                         mode, "stop", timeout=60, check=False)
        return p.returncode == 0 and not self.running()

    def restart(self, mode="fast"):
        """Stops the server (pg_ctl stop -m MODE: `fast`, or `immediate`,
        a crash) if it runs, and starts it again on the same port."""
        if mode not in ("fast", "immediate"):
            raise ValueError("mode: fast or immediate")
        self._note_pids()
        if self.running() and not self._pg_ctl_stop(mode):
            raise PgError("pg_ctl stop -m %s failed%s" % (mode, self._log_tail()))
        self._wait_gone(10)
        self._launch()

    def kill9(self, timeout=10):
        """SIGKILL to the postmaster and every one of its processes, then
        waits until they are gone and the port is free.  The postmaster is
        stopped first (SIGSTOP), so it starts no child meanwhile, and its
        children are found while it is still their parent."""
        pm = self.postmaster_pid()
        if pm is None or not alive(pm):
            return
        os.kill(pm, signal.SIGSTOP)
        victims = [pm] + children(pm)
        self.seen.update(victims)
        for p in victims[1:]:
            self._kill(p)
        self._kill(pm)
        self._wait_gone(timeout, victims)
        self._clear_locks()

    def _clear_locks(self):
        """After a SIGKILL of every server process: frees the shared memory
        segment and removes the lock files they left.  The next server
        would take a pid in them for a live postmaster while the killed
        one is a zombie that init has not reaped yet."""
        self._drop_shm()
        for f in (os.path.join(self.data, "postmaster.pid"),
                  os.path.join(self.dir, ".s.PGSQL.%d.lock" % self.port)):
            try:
                os.unlink(f)
            except FileNotFoundError:
                pass

    @staticmethod
    def _kill(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _wait_gone(self, timeout, pids=None):
        pids = list(self.seen) if pids is None else pids
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not any(alive(p) for p in pids) and \
                    (self.port is None or not port_open(self.port)):
                return
            time.sleep(0.02)
        raise PgError("server processes %s still alive or port %s still open"
                      " after %d s" % ([p for p in pids if alive(p)],
                                       self.port, timeout))

    def _drop_shm(self):
        """Removes the SysV shared memory segment a killed server left
        (postmaster.pid, line 7: key and id), if nothing is attached."""
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                lines = f.read().split("\n")
            shmid = int(lines[6].split()[1])
        except (OSError, ValueError, IndexError):
            return
        try:
            with open("/proc/sysvipc/shm") as f:
                for line in f.readlines()[1:]:
                    w = line.split()
                    if int(w[1]) == shmid and int(w[6]) == 0:
                        subprocess.run(["ipcrm", "-m", str(shmid)],
                                       capture_output=True)
        except (OSError, ValueError, IndexError):
            pass

    def stop(self):
        """Stops the server (fast, then immediate, then SIGKILL of all its
        processes) and removes the directory; a stopped cluster is left
        as it is."""
        if self.dir is None:
            return
        t = time.monotonic()
        try:
            self._note_pids()
            if self.running() and not self._pg_ctl_stop("fast"):
                self._say("pg_ctl stop -m fast failed: -m immediate")
                if not self._pg_ctl_stop("immediate"):
                    self._say("pg_ctl stop -m immediate failed: SIGKILL")
                    self.kill9()
            for p in self.seen:     # children that outlived the postmaster
                if alive(p):
                    self._kill(p)
            self._wait_gone(10)
            self._drop_shm()
        except (PgError, OSError, subprocess.SubprocessError) as e:
            say("stop: %s" % e)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            if os.path.exists(self.dir):
                say("stop: could not remove %s" % self.dir)
            self._say("stopped in %.2f s" % (time.monotonic() - t))
            self.dir = None
            if self in _live:
                _live.remove(self)

    def __enter__(self):
        return self.start() if self.dir is None else self

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- SQL through psql

    def psql(self, sql, db="postgres", check=True):
        """Runs sql in database db; returns psql's CompletedProcess
        (stdout: unaligned tuples only)."""
        if self.psql_path is None:
            raise PgError("no psql: install Debian's `postgresql-client`")
        argv = [self.psql_path, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                "-v", "VERBOSITY=verbose", "-h", "127.0.0.1", "-p",
                str(self.port), "-U", USER, "-d", db, "-c", sql]
        p = subprocess.run(argv, env=clean_env(), text=True,
                           capture_output=True, stdin=subprocess.DEVNULL,
                           timeout=60)
        if check and p.returncode != 0:
            raise PgError("psql (%s): %s" % (sql, p.stderr.strip()))
        return p

    def query(self, sql, db="postgres"):
        """sql's rows as psql prints them unaligned, without the newline."""
        return self.psql(sql, db).stdout.rstrip("\n")

    def create_database(self, name):
        """Creates database `name` unless it exists (also when another
        client creates it at the same moment)."""
        ident = '"%s"' % name.replace('"', '""')
        p = self.psql("CREATE DATABASE %s TEMPLATE template0" % ident,
                      check=False)
        if p.returncode != 0 and "42P04" not in p.stderr:
            raise PgError("CREATE DATABASE %s: %s" % (name, p.stderr.strip()))


# ---------------------------------------------------------------- the CLI

def cmd_run(argv):
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        say("usage: pgcluster.py run -- CMD ARGS...")
        return 2
    try:
        pg = PgCluster()
    except PgError as e:
        say("PostgreSQL did not start: %s" % e)
        return 1
    child = None

    def forward(signum, _frame):
        if child is not None and child.poll() is None:
            child.send_signal(signum)
        else:
            raise SystemExit(128 + signum)

    # Installed before the start, so a SIGTERM during it still stops the
    # cluster; once CMD runs, signals go to CMD and its end ends the run.
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, forward)
    try:
        try:
            pg.start()
        except PgError as e:
            say("PostgreSQL did not start: %s" % e)
            return 1
        env = dict(os.environ, HTTPLOCK_TEST_PG=pg.uri(),
                   HTTPLOCK_TEST_PG_DIR=pg.dir)
        try:
            child = subprocess.Popen(argv, env=env)
        except OSError as e:
            say("%s: %s" % (argv[0], e))
            return 127
        while True:
            try:
                rc = child.wait()
                break
            except KeyboardInterrupt:
                continue    # CMD got the terminal's SIGINT too: wait for it
        return 128 - rc if rc < 0 else rc
    finally:
        pg.stop()


def server_pids_of(user):
    """The pids of the postgres processes of `user` (pgrep -u)."""
    p = subprocess.run(["pgrep", "-u", user, "postgres"], capture_output=True,
                       text=True)
    return {int(x) for x in p.stdout.split()}


def ours(pids, dirs):
    """The pids among `pids` whose working directory (a server's is its
    data directory) lies in one of `dirs`: other programs' clusters on
    this machine are not counted."""
    found = []
    for p in pids:
        try:
            cwd = os.readlink("/proc/%d/cwd" % p)
        except OSError:
            continue
        if any(d and (cwd == d or cwd.startswith(d + "/")) for d in dirs):
            found.append(p)
    return found


def cmd_selftest(_argv):
    fails = []
    passed = []
    dirs = []

    def check(cond, what):
        print("%s - %s" % ("ok" if cond else "FAIL", what), flush=True)
        (passed if cond else fails).append(what)

    user = RUN_AS[0] if os.geteuid() == 0 else \
        subprocess.run(["id", "-un"], capture_output=True,
                       text=True).stdout.strip()
    before = server_pids_of(user)
    pg = PgCluster()
    t = time.monotonic()
    with pg:
        d = pg.dir
        dirs.append(d)
        check(pg.running() and len(pg.pids()) > 1,
              "started: postmaster %s and its children" % pg.postmaster_pid())
        check(pg.uri() == "postgresql://httplock@127.0.0.1:%d" % pg.port and
              pg.uri("t") == pg.uri() + "/t", "uri()")
        pg.create_database("t")
        pg.create_database("t")
        check(pg.query("SELECT count(*) FROM pg_database WHERE datname = 't'")
              == "1", "create_database twice: one database")
        pg.psql("CREATE TABLE k(v int); INSERT INTO k VALUES (7)", db="t")
        check(pg.query("SELECT v FROM k", db="t") == "7", "a query in it")
        check(pg.query("SHOW fsync") == "off" and
              pg.query("SHOW max_connections") == "200", "fsync off, 200 conns")
        pm = pg.postmaster_pid()
        pg.restart("fast")
        check(pg.postmaster_pid() != pm and not alive(pm) and
              pg.query("SELECT v FROM k", db="t") == "7", "restart fast")
        pm = pg.postmaster_pid()
        pg.psql("INSERT INTO k VALUES (8)", db="t")
        pg.restart("immediate")
        check(not alive(pm) and
              pg.query("SELECT sum(v) FROM k", db="t") == "15",
              "restart immediate: a crash, committed rows kept")
        pids = pg.pids()
        t9 = time.monotonic()
        pg.kill9()
        check(not any(alive(p) for p in pids) and not port_open(pg.port),
              "kill9: %d processes gone, port free in %.2f s" % (
                  len(pids), time.monotonic() - t9))
        check(pg.psql("SELECT 1", check=False).returncode != 0,
              "kill9: nothing answers")
        pg.restart()
        check(pg.query("SELECT sum(v) FROM k", db="t") == "15",
              "restart after kill9: rows kept")
        seen = set(pg.seen) | set(pg.pids())
    check(not os.path.exists(d), "stop: %s removed" % d)
    check(not any(alive(p) for p in seen),
          "stop: none of the %d server pids seen is alive" % len(seen))
    new = server_pids_of(user) - before
    bad = sorted(set(ours(new, dirs)) | {p for p in new & seen if alive(p)})
    check(not bad, "pgrep -u %s postgres: none of ours among %d new %s" % (
        user, len(new), bad))
    print("# whole cluster cycle: %.2f s" % (time.monotonic() - t), flush=True)

    # `run`: CMD's status, its environment, and the cleanup.
    me = [sys.executable, os.path.abspath(__file__), "run", "--"]
    p = subprocess.run(me + ["sh", "-c", 'echo "$HTTPLOCK_TEST_PG_DIR";'
                             ' exec "$0" -X -At -h 127.0.0.1 -d "$HTTPLOCK_TEST_PG/postgres"'
                             ' -c "SELECT 42"', pg.psql_path],
                       capture_output=True, text=True)
    out = p.stdout.split("\n")
    check(p.returncode == 0 and out[1:2] == ["42"],
          "run: CMD reaches the server through HTTPLOCK_TEST_PG")
    dirs.append(out[0])
    check(out[0] != "" and not os.path.exists(out[0]),
          "run: directory removed after CMD")
    p = subprocess.run(me + ["sh", "-c", "exit 3"], capture_output=True)
    check(p.returncode == 3, "run: exits with CMD's status (%d)" % p.returncode)
    with tempfile.TemporaryDirectory() as tmp:
        f = os.path.join(tmp, "dir")
        r = subprocess.Popen(me + ["sh", "-c", 'echo "$HTTPLOCK_TEST_PG_DIR"'
                                   ' >"$0.tmp" && mv "$0.tmp" "$0" && exec sleep 60', f],
                             stderr=subprocess.DEVNULL)
        end = time.monotonic() + 30
        while not os.path.exists(f) and time.monotonic() < end:
            time.sleep(0.05)
        with open(f) as fh:
            d = fh.read().strip()
        dirs.append(d)
        check(os.path.isdir(d), "run: cluster up in %s" % d)
        r.send_signal(signal.SIGTERM)
        rc = r.wait(timeout=60)
        check(rc == 128 + signal.SIGTERM and not os.path.exists(d),
              "run, SIGTERM: status %d, directory removed" % rc)
    new = server_pids_of(user) - before
    check(not ours(new, dirs), "no server process of the runs left (%d new"
          " postgres processes of %s, none in their directories)" % (
              len(new), user))
    print("%d passed, %d failed" % (len(passed), len(fails)))
    return 1 if fails else 0


def main(argv):
    if len(argv) >= 1 and argv[0] == "run":
        return cmd_run(argv[1:])
    if argv == ["selftest"]:
        return cmd_selftest(argv[1:])
    print(__doc__.split("The command line:\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
