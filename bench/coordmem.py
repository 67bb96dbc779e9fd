#!/usr/bin/python3
"""bench/coordmem.py: the coordinator's memory per registered waiter.

    coordmem.py [-b BUILDDIR | -x COORD_BIN] [-l LOCKS] N [N ...]

Starts httplock-coord on a socket in a temporary directory, then for each N
opens N Unix connections that each register one waiter with the real
protocol (WAIT, answered by ACK: coord/proto.h), checks with a PING that
the coordinator counts N waiters, and prints its VmRSS (/proc/PID/status):
in total, and per waiter above the RSS it had before the first connection.
The waiters are spread over LOCKS lock names (default 1: one queue, as in
W4).  Each N runs on a fresh coordinator.  Our descriptor soft limit is
raised to the hard limit (the coordinator raises its own).
"""
import argparse
import os
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.dirname(HERE)
T_WAIT, T_ACK, T_PING, T_PONG = 1, 2, 5, 6


def proto_version():
    with open(os.path.join(SRCDIR, "coord", "proto.h")) as f:
        for line in f:
            parts = line.split()
            if parts[:2] == ["#define", "PROTO_VERSION"]:
                return int(parts[2])
    raise SystemExit("no PROTO_VERSION in coord/proto.h")


VERSION = proto_version()


def frame(ftype, payload=b""):
    return struct.pack("!BBHI", VERSION, ftype, 0, len(payload)) + payload


def wait_frame(waiter_id, name):
    return frame(T_WAIT, struct.pack("!Qq", waiter_id, 0) +
                 struct.pack("!H", len(name)) + name)


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            raise SystemExit("coordinator closed a connection")
        buf += b
    return buf


def recv_frame(s):
    _, ftype, _, n = struct.unpack("!BBHI", recv_exact(s, 8))
    return ftype, recv_exact(s, n)


def ping(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(10)
        s.connect(path)
        s.sendall(frame(T_PING))
        ftype, payload = recv_frame(s)
        if ftype != T_PONG:
            raise SystemExit("PING answered by type %d" % ftype)
        return struct.unpack("!III", payload)
    finally:
        s.close()


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS for pid %d" % pid)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def start_coord(binary, tmp):
    sock = os.path.join(tmp, "coord.sock")
    conf = os.path.join(tmp, "httplock.conf")
    with open(conf, "w") as f:
        f.write("coord_socket = %s\n" % sock)
    log = open(os.path.join(tmp, "coord.log"), "wb")
    p = subprocess.Popen([binary, "-c", conf, "-s", sock], stdin=subprocess.DEVNULL,
                         stdout=log, stderr=log, close_fds=True)
    log.close()
    for _ in range(200):
        if p.poll() is not None:
            raise SystemExit("coordinator exited with %s" % p.returncode)
        try:
            ping(sock)
            return p, sock
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise SystemExit("coordinator did not answer PING")


def run(binary, n, nlocks, batch=500):
    tmp = tempfile.mkdtemp(prefix="coordmem.")
    p, sock = start_coord(binary, tmp)
    socks = []
    try:
        time.sleep(0.2)
        base = rss_kb(p.pid)
        for lo in range(0, n, batch):
            part = []
            for i in range(lo, min(n, lo + batch)):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(30)
                s.connect(sock)
                s.sendall(wait_frame(i + 1, b"coordmem-%d" % (i % nlocks)))
                part.append(s)
            for s in part:
                ftype, _ = recv_frame(s)
                if ftype != T_ACK:
                    raise SystemExit("WAIT answered by type %d" % ftype)
            socks += part
        peers, waiters, locks = ping(sock)
        if waiters != n:
            raise SystemExit("coordinator counts %d waiters, not %d" % (waiters, n))
        time.sleep(0.2)
        rss = rss_kb(p.pid)
        print("%-40s N %6d locks %5d: VmRSS %7d KiB (idle %5d KiB), %6.0f B per waiter" % (
            binary, n, locks, rss, base, (rss - base) * 1024.0 / n))
        sys.stdout.flush()
    finally:
        for s in socks:
            s.close()
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p.returncode != 0:
            with open(os.path.join(tmp, "coord.log"), errors="replace") as f:
                sys.stderr.write(f.read()[-4000:])
            shutil.rmtree(tmp, ignore_errors=True)
            raise SystemExit("coordinator exit status %s" % p.returncode)
        shutil.rmtree(tmp, ignore_errors=True)
    return rss, base


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-b", "--builddir", default=os.environ.get("HTTPLOCK_BUILDDIR", SRCDIR))
    ap.add_argument("-x", "--binary", help="httplock-coord to run (default: BUILDDIR's)")
    ap.add_argument("-l", "--locks", type=int, default=1, help="lock names (default 1)")
    ap.add_argument("n", type=int, nargs="+", help="waiters")
    a = ap.parse_args()
    binary = a.binary or os.path.join(a.builddir, "coord", "httplock-coord")
    hard = raise_nofile()
    for n in a.n:
        if n + 64 > hard:
            raise SystemExit("N %d: RLIMIT_NOFILE hard limit is %d" % (n, hard))
        run(binary, n, max(1, min(a.locks, n)))


if __name__ == "__main__":
    main()
