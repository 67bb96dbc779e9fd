"""Garbage-speaking peers on the coordinator's socket.

Thousands of connections to the real httplock-coord of a running stack —
idle ones, ones sending random bytes, frames of another protocol version,
truncated frames, headers announcing huge lengths, peers that flood NOTIFY
for ever new lock names with timers far in the future, and peers that PING
without ever reading the answers — while a real holder and waiter go
through the web server: the waiter is still registered with the
coordinator and woken promptly when the holder releases, the coordinator
stays up, its memory stays bounded (VmRSS from /proc), and its descriptors
return to their baseline once the garbage peers have gone.

Also: a coordinator whose descriptors run out (RLIMIT_NOFILE lowered to a
few dozen) neither dies nor spins in accept(): silent peers make room for
new ones, and with only talking peers it pauses accepting and burns
(almost) no CPU until descriptors are free again.
"""

import os
import random
import resource
import socket
import struct
import subprocess
import time

from checks import expect
from common import BG, log, wait_for
from coordwire import (NAME_MAX, NOTIFY_WAKE, PROTO_VERSION, T_ACK, T_ERROR, T_PING, T_PONG,
                       T_UNWAIT, T_WAIT, T_WAKE, frame, notify_frame, ping, recv_frame, wait_frame)
from markers import shared, timeout
from procs import cpu_seconds, fd_count, rss_kb
from testenv import COORD_BIN

PEERS_WANTED = 3000
HELLO_S = 5.0              # coord/coord.c HELLO_MS
TIMER_LOCKS_MAX = 16384    # coord/coord.c
RSS_BOUND_KB = 96 * 1024   # growth allowed while flooded (generous)
WAKE_BOUND_S = 2.0         # release -> waiter's 200 (registered waiters: ms)


def raise_nofile():
    """Raises our own descriptor limit as far as the hard limit allows;
    returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def garbage_peer(path, kind, rng, idx):
    """Connects one hostile peer of `kind`; returns its socket (still open)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10.0)
    s.connect(path)
    if kind == "idle":
        pass
    elif kind == "random":
        s.sendall(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64))))
    elif kind == "version":
        s.sendall(frame(T_PING, version=rng.choice(
            [v for v in (0, 1, 2, 3, 4, 255) if v != PROTO_VERSION])))
    elif kind == "truncated":
        # half a header, or a header promising more than follows
        if idx % 2:
            s.sendall(frame(T_PING)[:5])
        else:
            s.sendall(frame(T_WAIT, length=100) + b"x" * 10)
    elif kind == "huge":
        s.sendall(frame(T_WAIT, length=rng.choice((0xFFFFFFFF, 0x7FFFFFFF, 1 << 20))))
    elif kind == "badtype":
        s.sendall(frame(rng.choice((T_ACK, T_WAKE, T_PONG, T_ERROR, 0, 99))))
    elif kind == "badname":
        # WAIT whose name length runs past the payload
        s.sendall(frame(T_WAIT, struct.pack("!Qq", 1, 0) + struct.pack("!H", 900) + b"n" * 10))
    else:
        raise ValueError(kind)
    return s


KINDS = ("idle", "random", "version", "truncated", "huge", "badtype", "badname")


def holder_waiter_round(s, name, label):
    """A real holder and a blocked waiter through the web server: the waiter
    must be registered with the coordinator and be granted promptly after
    the release.  Returns the wake latency in seconds."""
    g = s.acquire_ok(name, ttl=60)
    bg = BG(s.acquire, name, timeout_s=30, timeout=20, ttl=5)
    s.wait_waiters(name, 1, timeout_s=10, bg=bg)
    # The waiter registers with the coordinator right after it queues.
    wait_for(lambda: ping(s.coord_sock)[1] >= 1, 10,
             "%s: the waiter to register with the coordinator" % label)
    t0 = time.monotonic()
    s.release_ok(name, g["token"])
    r = bg.get(15)
    expect(r, 200)
    lat = bg.t_done - t0
    s.release_ok(name, r["token"])
    if lat > WAKE_BOUND_S:
        raise AssertionError("%s: waiter granted %.3f s after the release (bound %.1f s)" % (
            label, lat, WAKE_BOUND_S))
    return lat


@timeout(150)
def test_coord_garbage_flood(s):
    pid = s.coord_pid
    soft = raise_nofile()
    # Leave room for the stack's own sockets and our HTTP requests.
    n = max(100, min(PEERS_WANTED, soft - open_fds() - 300))
    log("RLIMIT_NOFILE %d: %d garbage peers (wanted %d)" % (soft, n, PEERS_WANTED))
    lat0 = holder_waiter_round(s, "flood-a", "before")
    # The stack's own peers: each worker's notifier and pooled waiter
    # connections (and our PING's).
    base_peers = ping(s.coord_sock)[0]
    base_fd, base_rss = fd_count(pid), rss_kb(pid)
    rng = random.Random(5)
    socks, flooders, noread = [], [], []
    t0 = time.monotonic()
    try:
        for i in range(n):
            socks.append(garbage_peer(s.coord_sock, KINDS[i % len(KINDS)], rng, i))
        t_open = time.monotonic() - t0
        # Talking but abusive peers: NOTIFY floods for ever new names with
        # timers far in the future, and a PING flood nobody reads.
        far = int((time.time() + 86400 * 365 * 50) * 1000)
        n_notify = 0
        for j in range(4):
            f = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            f.connect(s.coord_sock)
            flooders.append(f)
            for k in range(0, 6000, 200):
                f.sendall(b"".join(notify_frame(b"flood-%d-%06d-" % (j, k + m) + b"x" * 1000, far)
                                   for m in range(200)))
                n_notify += 200
        for j in range(4):
            f = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            f.connect(s.coord_sock)
            f.setblocking(False)
            sent = 0
            try:
                for _ in range(5000):
                    f.send(frame(T_PING))
                    sent += 1
            except BlockingIOError:
                pass          # our buffer is full: the coordinator's too
            except (BrokenPipeError, ConnectionResetError):
                pass          # already dropped for not reading
            noread.append(f)
        peak_fd = fd_count(pid)
        peers, waiters, locks = ping(s.coord_sock)
        log("opened %d garbage peers in %.2f s; coordinator: %d fds (baseline %d), "
            "PONG peers %d waiters %d locks %d after %d NOTIFYs for new names" % (
                n, t_open, peak_fd, base_fd, peers, waiters, locks, n_notify))
        if locks > TIMER_LOCKS_MAX + 10:
            raise AssertionError("coordinator keeps %d locks for NOTIFY garbage (cap %d)" % (
                locks, TIMER_LOCKS_MAX))
        # Service while the garbage is connected.
        lat1 = holder_waiter_round(s, "flood-b", "flooded")
        peak_rss = rss_kb(pid)
        log("wake latency before %.1f ms, while flooded %.1f ms; VmRSS %d KiB (baseline %d)" % (
            lat0 * 1000, lat1 * 1000, peak_rss, base_rss))
        if peak_rss - base_rss > RSS_BOUND_KB:
            raise AssertionError("coordinator VmRSS grew by %d KiB (bound %d)" % (
                peak_rss - base_rss, RSS_BOUND_KB))
        # Peers that never sent a valid frame are dropped after HELLO_MS;
        # the ones that sent garbage are dropped at once.
        # Bound: generous, as under ASan on a loaded machine a coordinator
        # at its fd limit churns through the backlog 16 evictions at a time.
        t1 = time.monotonic()
        seen = [None]

        def dropped():
            seen[0] = ping(s.coord_sock)[0]
            # The talking peers stay; a noread one stays too while the
            # kernel's buffer still takes its PONGs.  The flooded round may
            # have left a pooled waiter connection and a notifier in the
            # other worker process: 2 more.
            return seen[0] <= base_peers + len(flooders) + len(noread) + 2
        try:
            wait_for(dropped, HELLO_S + 40, "the coordinator to drop its silent and broken peers")
        except AssertionError as e:
            raise AssertionError("%s (peers still connected: %s)" % (e, seen[0]))
        log("silent peers dropped within %.1f s of the check (HELLO_MS %.0f s)" % (
            time.monotonic() - t1, HELLO_S))
    finally:
        for x in socks + flooders + noread:
            x.close()
    assert s.coord.poll() is None, "coordinator died (status %s)" % s.coord.poll()
    t2 = time.monotonic()
    wait_for(lambda: fd_count(pid) <= base_fd + 2, 10,
             "the coordinator's descriptors to return to their baseline %d" % base_fd)
    end_fd, end_rss = fd_count(pid), rss_kb(pid)
    lat2 = holder_waiter_round(s, "flood-c", "after")
    log("after close: %d fds within %.2f s (baseline %d), VmRSS %d KiB; wake latency %.1f ms" % (
        end_fd, time.monotonic() - t2, base_fd, end_rss, lat2 * 1000))
    text = s.log_text("coord.log")
    if text.count("accept4") > 5:
        raise AssertionError("coordinator logged accept4 trouble %d times" % text.count("accept4"))


def start_low_coord(s, sock, nofile):
    """A second coordinator on `sock` with RLIMIT_NOFILE soft = hard = nofile."""
    def lower():
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    logf = open(os.path.join(s.rundir, "coord-low.log"), "ab")
    try:
        p = subprocess.Popen([COORD_BIN, "-c", s.conf_path, "-s", sock],
                             stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                             preexec_fn=lower, close_fds=True)
    finally:
        logf.close()
    wait_for(lambda: p.poll() is not None or ping(sock, 1.0), 10,
             "the low-limit coordinator to answer PING")
    if p.poll() is not None:
        raise AssertionError("low-limit coordinator exited: %s" % p.poll())
    return p


def cpu_over(pid, seconds):
    c0, t0 = cpu_seconds([pid]), time.monotonic()
    time.sleep(seconds)     # measuring a rate: a duration is the point
    return (cpu_seconds([pid]) - c0) / (time.monotonic() - t0)


@shared
@timeout(60)
def test_coord_out_of_descriptors(s):
    nofile = 48
    sock = os.path.join(s.rundir, "c-low.sock")
    p = start_low_coord(s, sock, nofile)
    socks = []
    try:
        # 1. Silent peers fill the table: new peers still get in (the
        # oldest silent ones are evicted), and accept() does not spin.
        for _ in range(3 * nofile):
            x = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            x.settimeout(5)
            x.connect(sock)       # completes in the backlog
            socks.append(x)
        t0 = time.monotonic()
        st = ping(sock, 5.0)
        log("RLIMIT_NOFILE %d, %d silent peers: PING answered in %.1f ms (peers %d)" % (
            nofile, len(socks), (time.monotonic() - t0) * 1000, st[0]))
        cpu = cpu_over(p.pid, 1.0)
        log("coordinator CPU with its table full of silent peers: %.1f %%" % (cpu * 100))
        assert cpu < 0.3, "coordinator burns %.0f %% CPU" % (cpu * 100)
        for x in socks:
            x.close()
        socks = []
        # 2. Only talking peers (each sent a PING and read the PONG): none
        # may be evicted, so the coordinator pauses accepting.
        talkers = []
        for _ in range(nofile):
            x = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            x.settimeout(5)
            x.connect(sock)
            x.sendall(frame(T_PING))
            talkers.append(x)
        socks = talkers
        answered = 0
        for x in talkers:
            x.settimeout(0.3 if answered < nofile - 12 else 0.05)
            try:
                if recv_frame(x, x.gettimeout()) is not None:
                    answered += 1
            except OSError:
                pass
        cpu = cpu_over(p.pid, 1.0)
        log("%d of %d talking peers answered before descriptors ran out; coordinator CPU "
            "while out of descriptors: %.1f %%" % (answered, len(talkers), cpu * 100))
        assert cpu < 0.3, "coordinator burns %.0f %% CPU out of descriptors" % (cpu * 100)
        assert p.poll() is None, "coordinator died out of descriptors: %s" % p.poll()
        for x in talkers[:nofile // 2]:
            x.close()
        socks = talkers[nofile // 2:]
        t0 = time.monotonic()
        wait_for(lambda: ping(sock, 2.0), 10, "PING once descriptors are free again")
        log("PING answered %.1f ms after half the talkers left" % ((time.monotonic() - t0) * 1000))
        text = open(os.path.join(s.rundir, "coord-low.log"), errors="replace").read()
        n_warn = text.count("accept4")
        log("accept4 warnings logged: %d" % n_warn)
        assert n_warn <= 4, "accept4 trouble logged %d times:\n%s" % (n_warn, text[-2000:])
    finally:
        for x in socks:
            x.close()
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
    assert p.returncode == 0, "low-limit coordinator exit status %s" % p.returncode


# ---------------------------------------------------------------------------
# Frames that arrive in pieces.  The coordinator decodes frames straight out
# of one read buffer shared by all peers and keeps, per peer, only the start
# of a frame still incomplete (its tail): these cross every boundary of that.

IN_READ = 4 * (8 + 1088)   # coord/coord.c IN_MAX: one read


def send_pieces(sock, data, cuts, pause_s=0.01):
    """Sends data cut at the offsets `cuts`, pausing between the pieces so
    that each arrives in a read of its own."""
    prev = 0
    for c in list(cuts) + [len(data)]:
        if c > prev:
            sock.sendall(data[prev:c])
            time.sleep(pause_s)     # the point: one piece per read
        prev = max(prev, c)


def expect_frames(sock, types, what):
    got = []
    for t in types:
        f = recv_frame(sock, 5.0)
        got.append(None if f is None else f[0])
        if f is None or f[0] != t:
            raise AssertionError("%s: answers %r, wanted %r" % (what, got, list(types)))
    return got


def expect_eof(sock, what, timeout_s=5.0):
    sock.settimeout(timeout_s)
    try:
        data = sock.recv(64)
    except ConnectionResetError:
        return
    if data:
        raise AssertionError("%s: got %r, wanted the connection closed" % (what, data))


def woken(s, sock, name, waiter_id, what):
    """NOTIFY(WAKE) `name` from another connection: `sock`, registered as
    the first waiter of `name`, must get WAKE `waiter_id`."""
    n = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        n.connect(s.coord_sock)
        n.sendall(notify_frame(name, 0, flags=NOTIFY_WAKE))
        f = recv_frame(sock, 5.0)
        if f is None or f[0] != T_WAKE or struct.unpack("!Q", f[1])[0] != waiter_id:
            raise AssertionError("%s: wanted WAKE %d, got %r" % (what, waiter_id, f))
    finally:
        n.close()


def coord_conn(s):
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(5.0)
    c.connect(s.coord_sock)
    return c


@shared
@timeout(60)
def test_coord_split_frames(s):
    tag = b"split-%d-" % os.getpid()
    # 1. A WAIT byte by byte: registered under its whole name and id.
    c = coord_conn(s)
    try:
        name = tag + b"bytes"
        data = wait_frame(7001, name)
        send_pieces(c, data, range(1, len(data)), 0.002)
        expect_frames(c, [T_ACK], "WAIT byte by byte")
        woken(s, c, name, 7001, "WAIT byte by byte")
    finally:
        c.close()
    # 2. The largest frame (a WAIT with a name of PROTO_NAME_MAX bytes) cut
    # in the header, at its end, in the payload and one byte before the
    # end (the longest tail), each time followed by a PING in the same
    # piece as the frame's last bytes.
    name = tag + b"n" * (NAME_MAX - len(tag))
    big = wait_frame(7002, name)
    for cut in (1, 5, 8, 9, 26, 500, len(big) - 1):
        c = coord_conn(s)
        try:
            send_pieces(c, big + frame(T_PING), [cut])
            expect_frames(c, [T_ACK, T_PONG], "largest WAIT cut at %d" % cut)
            woken(s, c, name, 7002, "largest WAIT cut at %d" % cut)
        finally:
            c.close()
    # 3. A tail grown in several steps: the largest frame in 7 pieces.
    c = coord_conn(s)
    try:
        send_pieces(c, big, range(150, len(big), 150))
        expect_frames(c, [T_ACK], "largest WAIT in pieces of 150")
        c.sendall(frame(T_UNWAIT) + frame(T_PING))
        expect_frames(c, [T_PONG], "UNWAIT, PING")
    finally:
        c.close()
    # 4. Several hundred frames in random pieces, some larger than one
    # read: every one answered, in order.
    rng = random.Random(11)
    stream, want = [], []
    for i in range(400):
        if rng.random() < 0.5:
            stream.append(frame(T_PING))
            want.append(T_PONG)
        else:
            stream.append(wait_frame(8000 + i, tag + b"r" * rng.randint(1, 600)))
            want.append(T_ACK)
    stream.append(frame(T_UNWAIT))
    data = b"".join(stream)
    cuts, at = [], 0
    while at < len(data):
        at += rng.choice((1, 2, 7, 8, 9, 100, 1000, IN_READ - 1, IN_READ + 3))
        cuts.append(at)
    c = coord_conn(s)
    try:
        send_pieces(c, data, cuts, 0.001)
        expect_frames(c, want, "%d frames in %d pieces" % (len(want), len(cuts) + 1))
    finally:
        c.close()
    # 5. Broken frames completed from a tail drop the peer, after it has
    # been answered for the frames before them: a header announcing more
    # than a frame may hold, a name length that disagrees with the payload,
    # and another version right behind a tail.
    bad = (
        ("huge length", frame(T_WAIT, length=1 << 20), [2, 4, 6, 7]),
        ("bad name", frame(T_WAIT, struct.pack("!Qq", 1, 0) + struct.pack("!H", 900) +
                           b"n" * 10), [3, 20]),
        ("version", frame(T_PING, version=PROTO_VERSION + 1), []),
    )
    for what, tail, cuts in bad:
        c = coord_conn(s)
        try:
            ping_f = frame(T_PING)
            data = ping_f + tail
            send_pieces(c, data, [3] + [len(ping_f) + x for x in cuts])
            want = [T_PONG] + ([T_ERROR] if what == "version" else [])
            expect_frames(c, want, what)
            expect_eof(c, what)
        finally:
            c.close()
    assert s.coord.poll() is None, "coordinator died (status %s)" % s.coord.poll()
