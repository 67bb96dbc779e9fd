"""Shared hosting needs no root (docs/shared-hosting.md): the whole stack
runs as an unprivileged user out of one private directory.

The test makes a directory owned by `nobody`:`nogroup` (mode 0700, so only
that user can reach it), copies httplock-worker, httplock-coord and
conf/lighttpd.conf into it (as a shared-hosting user uploads them), writes
httplock.conf with every path inside it and coord_autostart = yes, and
starts lighttpd there as nobody (subprocess.Popen's user=/group=/
extra_groups=[]).  lighttpd spawns the workers as nobody; the first waiting
acquire makes a worker start the coordinator, as nobody.  Checked:
acquire, wait, handoff and release work; every process of the stack runs
with uid and gid nobody (/proc/PID/status); every file in the directory
(database, -wal, -shm, sockets, lock files, logs) belongs to nobody;
nothing was created outside it (no /run/httplock, /var/lib/httplock, ...,
and no new file owned by nobody anywhere it could write); the coordinator
exits by itself when idle (coord_idle_exit = 1) and lighttpd with its
workers on SIGTERM.

When the suite does not run as root it cannot switch users; the test then
runs the same stack as the current (already unprivileged) user.

The test starts a stack of its own, behind lighttpd only (Apache cannot
spawn the workers: see the doc); it is marked @shared only so that run.py
does not start a second, unused stack for it.
"""

import grp
import os
import pwd
import shutil
import signal
import subprocess
import time

from checks import check_grant
from common import BG, log, wait_for
from markers import fronts, on_own_stack, timeout
import pgdb
from procs import all_pids, pid_alive, wait_gone
from stack import Stack
from testenv import COORD_BIN, LIGHTTPD_CONF, WORKER_BIN

# Where a service installed by root would put its state: none of it may
# appear.
SYSTEM_PATHS = ("/run/httplock", "/var/run/httplock", "/var/lib/httplock",
                "/var/log/httplock", "/etc/httplock", "/var/tmp/httplock",
                "/tmp/httplock")
# Where an unprivileged user could create files outside its own directory
# (world-writable directories live below these).
SCAN_ROOTS = ("/tmp", "/var", "/run", "/dev/shm", "/etc", "/home", "/srv", "/opt")


def _target_ids():
    """(uid, gid, name) to run as: nobody/nogroup when we are root, else
    ourselves."""
    if os.geteuid() == 0:
        return pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid, "nobody"
    return os.geteuid(), os.getegid(), pwd.getpwuid(os.geteuid()).pw_name


def _store_dirs(s):
    """The directories of the PostgreSQL server a PostgreSQL store lives
    on (its data and its sockets): not the stack's, and a private test
    server may run as the same user.  [] on SQLite, or when the server
    does not say."""
    if s.store_kind != "postgresql":
        return []
    try:
        rows = pgdb.query(s.store_uri, "SELECT current_setting('data_directory') || ',' || "
                                       "current_setting('unix_socket_directories')")
    except pgdb.PgError:
        return []
    return [d.strip() for d in rows[0][0].split(",") if d.strip().startswith("/")]


def _owned_outside(uid, s):
    """Every path below SCAN_ROOTS owned by uid, except below stack s's
    directory and its store's server's directories."""
    roots = [r for r in SCAN_ROOTS if os.path.isdir(r)]
    prune = ["-path", s.dir]
    for d in _store_dirs(s):
        prune += ["-o", "-path", d]
    p = subprocess.run(["find"] + roots + ["-xdev", "("] + prune + [")", "-prune",
                                           "-o", "-user", str(uid), "-print"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return set(p.stdout.decode("utf-8", "replace").splitlines())


def _ids(pid):
    """(uids, gids, groups) of a process from /proc/PID/status, or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    d = dict(l.split(":", 1) for l in lines if ":" in l)
    return (tuple(int(x) for x in d["Uid"].split()),
            tuple(int(x) for x in d["Gid"].split()),
            tuple(int(x) for x in d.get("Groups", "").split()))


def _procs_of(uid, d):
    """Live processes of uid whose executable, command line or working
    directory is inside d: everything this test's stack runs."""
    out = []
    for pid in all_pids():
        ids = _ids(pid)
        if ids is None or uid not in ids[0] or not pid_alive(pid):
            continue
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            for link in ("exe", "cwd"):
                try:
                    text += "\0" + os.readlink("/proc/%d/%s" % (pid, link))
                except OSError:
                    pass
        except OSError:
            continue
        if d in text:
            out.append(pid)
    return sorted(out)


class NonrootStack(Stack):
    """The default stack, but lighttpd (hence the workers and the
    coordinator) runs as uid:gid, and binaries, configuration and state
    all live in the stack's directory, which uid owns."""

    def __init__(self, uid, gid, conf_overrides):
        super().__init__(conf_overrides, label="nonroot", front="lighttpd")
        self.uid, self.gid = uid, gid
        self.switch = os.geteuid() != uid
        bindir = os.path.join(self.dir, "bin")
        confdir = os.path.join(self.dir, "conf")
        os.mkdir(bindir)
        os.mkdir(confdir)
        self.worker_bin = shutil.copy2(WORKER_BIN, bindir)
        self.coord_bin = shutil.copy2(COORD_BIN, bindir)
        self.lighttpd_conf = shutil.copy2(LIGHTTPD_CONF, confdir)
        self.extra_env["HTTPLOCK_WORKER"] = self.worker_bin
        self.extra_env["HOME"] = self.dir
        self.conf["coord_binary"] = self.coord_bin
        for k in ("database", "coord_socket", "coord_log", "coord_binary"):
            assert self.conf[k].startswith(self.dir + "/"), (k, self.conf[k])

    def chown_all(self):
        """Hands the directory over to uid (what root did to set it up)."""
        os.chmod(self.dir, 0o700)
        for top, dirs, files in os.walk(self.dir):
            for n in [top] + [os.path.join(top, x) for x in dirs + files]:
                os.lchown(n, self.uid, self.gid)

    def start(self):
        self.write_conf()
        self.chown_all()
        super().start()

    def _popen(self, argv, logname, env=None):
        path = os.path.join(self.rundir, logname)
        out = open(path, "ab")
        try:
            os.fchown(out.fileno(), self.uid, self.gid)
            kw = {}
            if self.switch:
                kw = dict(user=self.uid, group=self.gid, extra_groups=[])
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=out, env=env, cwd=self.dir,
                                    start_new_session=True, close_fds=True, **kw)
        finally:
            out.close()

    def cleanup(self, keep=False):
        try:
            super().cleanup(keep=True)
            left = _procs_of(self.uid, self.dir)
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            wait_gone(left, 5)
        finally:
            if not keep:
                shutil.rmtree(self.dir, ignore_errors=True)


def _check_ids(s, pids, what):
    for pid in pids:
        ids = _ids(pid)
        assert ids is not None, "%s %d vanished" % (what, pid)
        uids, gids, groups = ids
        assert set(uids) == {s.uid}, "%s %d runs with Uid %s, not %d" % (what, pid, uids, s.uid)
        assert set(gids) == {s.gid}, "%s %d runs with Gid %s, not %d" % (what, pid, gids, s.gid)
        if s.switch:
            assert groups == (), "%s %d keeps supplementary groups %s" % (what, pid, groups)


def _check_files(s, must_exist):
    """Every entry of the directory belongs to uid:gid; must_exist (paths
    relative to it) are there."""
    seen = set()
    for top, dirs, files in os.walk(s.dir):
        for n in [top] + [os.path.join(top, x) for x in dirs + files]:
            try:
                st = os.lstat(n)
            except FileNotFoundError:
                continue
            assert (st.st_uid, st.st_gid) == (s.uid, s.gid), \
                "%s belongs to %d:%d, not %d:%d" % (n, st.st_uid, st.st_gid, s.uid, s.gid)
            seen.add(os.path.relpath(n, s.dir))
    missing = [p for p in must_exist if p not in seen]
    assert not missing, "missing in %s: %s (have %s)" % (s.dir, missing, sorted(seen))
    return seen


def _start_nonroot(label):
    """A started NonrootStack (coordinator started by the workers on
    demand); s.sys_before and s.outside_before: what existed outside its
    directory before."""
    uid, gid, _ = _target_ids()
    sys_before = {p: os.path.lexists(p) for p in SYSTEM_PATHS}
    s = NonrootStack(uid, gid, dict(coord_autostart="yes", coord_idle_exit="1",
                                    poll_interval="1"))
    s.sys_before = sys_before
    s.outside_before = _owned_outside(uid, s)
    try:
        s.start()
    except BaseException:
        s.cleanup()
        raise
    return s


@fronts("lighttpd")
@timeout(90)
@on_own_stack(_start_nonroot)
def test_nonroot_shared_hosting(s):
    """The shared-hosting stack as nobody: works, runs and writes as nobody,
    only inside its directory, and goes away cleanly."""
    uid, gid, uname = s.uid, s.gid, _target_ids()[2]
    sys_before, outside_before = s.sys_before, s.outside_before
    log("stack as %s (uid %d, gid %d) in %s, port %d" % (uname, uid, gid, s.dir, s.port))
    assert s.health()["coordinator"] == "down"
    assert s.auto_coords() == []

    # acquire, wait, handoff, release; the waiter starts the coordinator
    name = "nonroot"
    h = s.acquire_ok(name, owner="first")
    w = BG(s.acquire, name, timeout=20, owner="second")

    def one_coord():
        pids = s.auto_coords()
        assert len(pids) <= 1, "more than one coordinator: %s" % pids
        return pids[0] if pids and s.health()["coordinator"] == "ok" else None
    cpid = wait_for(one_coord, 10, "the auto-started coordinator")
    wait_for(lambda: s.coord_waiters() == 1, 5, "the waiter registered")
    assert os.readlink("/proc/%d/exe" % cpid) == s.coord_bin, \
        "coordinator %d runs %s" % (cpid, os.readlink("/proc/%d/exe" % cpid))

    # every process of the stack runs as the user
    workers = s.worker_pids()
    assert workers, "no httplock-worker below lighttpd"
    _check_ids(s, [s.front.pid], "lighttpd")
    _check_ids(s, workers, "httplock-worker")
    _check_ids(s, [cpid], "httplock-coord")
    ours = _procs_of(uid, s.dir)
    assert set(ours) == {s.front.pid, cpid} | set(workers), \
        "processes of uid %d in %s: %s; expected lighttpd %d, workers %s, coordinator %d" % (
            uid, s.dir, ours, s.front.pid, workers, cpid)
    log("lighttpd %d, workers %s, coordinator %d: all uid/gid %d/%d" % (
        s.front.pid, workers, cpid, uid, gid))

    # every file it made is in the directory and the user's (the database
    # files only on SQLite: a PostgreSQL store keeps none here)
    dbfiles = ["data/httplock.db", "data/httplock.db-wal", "data/httplock.db-shm"]
    if s.store_kind != "sqlite":
        dbfiles = []
    made = _check_files(s, [
        "httplock.conf", "bin/httplock-worker", "bin/httplock-coord",
        "conf/lighttpd.conf"] + dbfiles + [
        "run/coord.sock", "run/coord.sock.lock",
        "run/coord.sock.spawn", "run/coord.log", "run/lighttpd-error.log",
        "run/lighttpd.pid"])
    wsocks = [p for p in made if p.startswith("run/worker.sock")]
    assert wsocks, "no worker socket in run/: %s" % sorted(made)

    t0 = time.monotonic()
    s.release_ok(name, h["token"])
    g = w.get(10)
    check_grant(g, name, owner="second")
    ms = (w.t_done - t0) * 1000
    log("handoff through the coordinator started by nobody's worker: %.1f ms" % ms)
    assert ms < 500, "handoff took %.0f ms: not woken by the coordinator" % ms
    assert g["fence"] > h["fence"]
    s.release_ok(name, g["token"])

    # idle: the coordinator leaves by itself and removes its socket
    assert wait_gone([cpid], 10) == [], "coordinator %d still running when idle" % cpid
    assert not os.path.exists(s.coord_sock)
    _check_files(s, [])

    # SIGTERM lighttpd: it and its workers exit
    s.stop()
    left = _procs_of(uid, s.dir)
    assert left == [], "processes of the stack left after stop: %s" % left
    _check_files(s, dbfiles[:1] + ["run/coord.log", "run/lighttpd-error.log"])
    s.check_logs()

    # nothing outside the directory
    sys_after = {p: os.path.lexists(p) for p in SYSTEM_PATHS}
    created = [p for p in SYSTEM_PATHS if sys_after[p] and not sys_before[p]]
    assert not created, "created outside the directory: %s" % created
    new = sorted(_owned_outside(uid, s) - outside_before)
    assert not new, "files of uid %d created outside %s: %s" % (uid, s.dir, new[:20])
    log("%d entries in the directory, all %s's; none outside" % (len(made), uname))
