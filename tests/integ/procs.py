"""What /proc says about processes: state and parent, command name and
line, children, threads, descriptors, memory, CPU time; whether a process
is alive, and waiting until processes are gone.  Linux only.
"""

import os
import time


def proc_stat(pid):
    """The fields of /proc/PID/stat after the command name, or None when
    pid does not exist: [state, ppid, pgrp, session, ...], the state a
    string, the rest integers."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = data[data.rfind(")") + 2:].split()
    return [rest[0]] + [int(x) for x in rest[1:]]


def proc_comm(pid):
    """The command name of pid, or None."""
    try:
        with open("/proc/%d/comm" % pid, "rb") as f:
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return None


def proc_cmdline(pid):
    """The command line of pid, its words joined by spaces, or None."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return None


def all_pids():
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def children_map():
    """{ppid: [pid, ...]} of every live process (zombies left out)."""
    children = {}
    for pid in all_pids():
        st = proc_stat(pid)
        if st is not None and st[0] not in ("Z", "X"):
            children.setdefault(st[1], []).append(pid)
    return children


def children_of(pid):
    """The live children of pid, sorted."""
    return sorted(children_map().get(pid, []))


def pid_alive(pid):
    """True while pid exists and is not a zombie.  A killed multi-threaded
    process whose main thread is already a zombie still counts while its
    other threads exit: the last one to go closes the descriptors (a
    worker's listening socket among them), after unmapping the memory,
    which takes a while under AddressSanitizer."""
    st = proc_stat(pid)
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


def kill_quietly(pids, sig):
    """Sends sig to each of pids, passing over those already gone."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def _status_field(pid, key):
    """The first number of the "key:" line of /proc/PID/status, or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def threads(pid):
    """The threads of pid (0 when it is gone)."""
    return _status_field(pid, "Threads") or 0


def rss_kb(pid):
    """The resident memory of pid in KiB."""
    kb = _status_field(pid, "VmRSS")
    if kb is None:
        raise AssertionError("no VmRSS for pid %d" % pid)
    return kb


def fd_count(pid):
    """The open descriptors of pid."""
    return len(os.listdir("/proc/%d/fd" % pid))


def cpu_seconds(pids):
    """User + system CPU time of these processes so far, in seconds."""
    total = 0
    for pid in pids:
        st = proc_stat(pid)
        if st is None:
            raise AssertionError("no /proc/%d/stat" % pid)
        total += st[11] + st[12]        # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")
