"""Slow and stuck clients, behind each front end.

- A client acquires a lock with a small ttl on a raw connection with a tiny
  receive buffer, pipelines big lock listings behind it, and then never
  reads (or reads one byte a second).  Other clients' requests on other
  locks are answered promptly meanwhile, and a blocking acquire of the same
  lock is granted when the lease runs out: within ttl + slack of the grant,
  never before the lease ended.
- Clients that send their request one byte a second (slowloris), headers
  or body, more of them than a worker starts threads: other requests are
  still served promptly, and the workers stay healthy.

Bounds are generous; the measured figures are printed.
"""

import socket
import threading
import time

from checks import check_grant, expect
from common import BG, log, wait_for
from httpclient import lpath
from markers import timeout
from rawsock import raw_post

TTL = 2.0                 # the stuck client's lease
GRANT_SLACK = 3.0         # waiter granted within TTL + this of the grant
PROMPT_BOUND = 2.0        # any other request, while clients are stuck
LIST_LOCKS = 100          # held locks that make each listing ~30 KB
LISTINGS = 40             # pipelined behind the acquire: ~1.2 MB unread
SLOW_CLIENTS = 12         # more than a worker's initial 8 threads


def _fill_listing(s, prefix):
    """Holds LIST_LOCKS locks with long names under prefix; returns their
    (name, token) pairs."""
    held = []
    for i in range(LIST_LOCKS):
        name = "%s%03d-%s" % (prefix, i, "n" * 230)
        r = s.acquire_ok(name, ttl=120, timeout=0)
        held.append((name, r["token"]))
    return held


def _tiny_socket(s):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Before connect, so the advertised window is small from the start.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", s.port))
    return sock


def _other_traffic(s, tag, rounds):
    """Acquire/release cycles on locks of their own; returns the latencies
    (seconds) of every request."""
    lats = []
    for i in range(rounds):
        name = "%s-other-%d" % (tag, i % 4)
        t0 = time.monotonic()
        g = s.acquire_ok(name, timeout=0, ttl=10)
        t1 = time.monotonic()
        s.release_ok(name, g["token"])
        t2 = time.monotonic()
        lats += [t1 - t0, t2 - t1]
    return lats


def _stuck_holder(s, tag, reader):
    """The stuck-client scenario; `reader` is None (never reads) or a
    function run on the socket in a thread until the stop event is set."""
    name = "%s-lock" % tag
    prefix = "%s-list-" % tag
    held = _fill_listing(s, prefix)
    listing = ("GET /locks/?prefix=%s&limit=1000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % prefix).encode()
    data = raw_post(s.prefix + lpath(name, "acquire"), {"ttl": "%g" % TTL, "owner": "stuck"},
                    close=False) + listing * LISTINGS
    one = expect(s.get("/locks/", query={"prefix": prefix, "limit": 1000}), 200)
    assert len(one["locks"]) == LIST_LOCKS, one.short()
    sock = _tiny_socket(s)
    stop = threading.Event()
    rd = None
    try:
        sent = 0
        sock.settimeout(0.5)
        try:
            while sent < len(data):
                sent += sock.send(data[sent:])
        except socket.timeout:
            pass      # the server stopped reading us: it is our own fault
        if reader is not None:
            rd = threading.Thread(target=reader, args=(sock, stop), daemon=True)
            rd.start()
        # The grant, as the service sees it (the client does not read it).
        st = wait_for(lambda: (lambda r: r if r["held"] and r["holders"][0]["owner"] == "stuck"
                               else None)(s.status(name)), 10, "the stuck client's grant")
        h = st["holders"][0]
        t_seen = time.time()
        waiter = BG(s.acquire, name, timeout_s=30, timeout=20, ttl=5, owner="next")
        lats = _other_traffic(s, tag, 15)
        r = waiter.get(TTL + GRANT_SLACK + 10)
        check_grant(r, name, owner="next")
        granted = r["acquired_at"]
        s.release_ok(name, r["token"])
        log("%s: %d bytes of requests pipelined (%d sent) for %d KiB of responses "
            "never read; stuck "
            "grant at %.3f, lease to %.3f; next holder granted %.3f s after the stuck "
            "grant (%.3f s after its lease ended); other requests: %d, slowest %.1f ms, "
            "median %.1f ms" % (
                tag, len(data), sent, LISTINGS * len(one.body) // 1024, h["acquired_at"], h["expires_at"],
                granted - h["acquired_at"], granted - h["expires_at"], len(lats),
                max(lats) * 1000, sorted(lats)[len(lats) // 2] * 1000))
        assert granted >= h["expires_at"] - 0.002, \
            "granted at %.3f while the stuck lease ran to %.3f" % (granted, h["expires_at"])
        assert granted - h["acquired_at"] <= TTL + GRANT_SLACK, \
            "next holder granted %.3f s after the stuck grant (bound %.1f s)" % (
                granted - h["acquired_at"], TTL + GRANT_SLACK)
        assert t_seen - h["acquired_at"] < TTL + GRANT_SLACK
        assert max(lats) < PROMPT_BOUND, "a request took %.3f s while a client was stuck" % max(lats)
    finally:
        stop.set()
        if rd is not None:
            rd.join(3)
        sock.close()
        for n, t in held:
            s.release(n, t)
    s.assert_healthy_and_working("%s-probe" % tag)


@timeout(60)
def test_stuck_client_never_reads(s):
    _stuck_holder(s, "stuck", None)


def _one_byte_a_second(sock, stop):
    got = 0
    sock.settimeout(1.0)
    while not stop.is_set():
        try:
            b = sock.recv(1)
        except socket.timeout:
            continue
        except OSError:
            break
        if not b:
            break
        got += 1
        stop.wait(1.0)     # the client's pace: one byte a second
    log("slow reader read %d bytes" % got)


@timeout(60)
def test_slow_reader_one_byte_a_second(s):
    _stuck_holder(s, "trickle", _one_byte_a_second)


def _slowloris(s, name, body_phase, stop, out):
    """Sends an acquire one byte a second: the headers (body_phase False),
    or complete headers and then the body (True).  Records what it got."""
    head, _, body = raw_post(s.prefix + lpath(name, "acquire"),
                             {"ttl": 5, "owner": "loris-%s" % name}).partition(b"\r\n\r\n")
    head += b"\r\n\r\n"
    sock = s.raw_connect()
    try:
        rest = head + body
        if body_phase:
            sock.sendall(head)
            rest = body
        sent = 0
        while sent < len(rest) and not stop.is_set():
            sock.send(rest[sent:sent + 1])
            sent += 1
            stop.wait(1.0)     # the client's pace: one byte a second
        out.append(sent)
    except OSError as e:
        out.append(e)
    finally:
        sock.close()


def _loris_scenario(s, tag, body_phase):
    stop = threading.Event()
    outs = []
    th = [threading.Thread(target=_slowloris, args=(s, "%s-%d" % (tag, i), body_phase, stop, outs),
                           daemon=True) for i in range(SLOW_CLIENTS)]
    for t in th:
        t.start()
    try:
        # Let them all get going (each sent its first bytes), then measure.
        wait_for(lambda: s.health(), 5, "health")
        t0 = time.monotonic()
        lats = []
        while time.monotonic() - t0 < 4.0:
            lats += _other_traffic(s, tag, 2)
        h = s.health()
        log("%s: %d clients sending 1 byte/s; %d other requests, slowest %.1f ms, median "
            "%.1f ms; worker threads %s" % (
                tag, SLOW_CLIENTS, len(lats), max(lats) * 1000,
                sorted(lats)[len(lats) // 2] * 1000, h.get("threads")))
        assert max(lats) < PROMPT_BOUND, "a request took %.3f s under slowloris" % max(lats)
    finally:
        stop.set()
        for t in th:
            t.join(5)
    s.assert_healthy_and_working("%s-probe" % tag)


@timeout(60)
def test_slowloris_headers(s):
    _loris_scenario(s, "loris-h", False)


@timeout(60)
def test_slowloris_body(s):
    """The headers complete, the body one byte a second: the web server may
    pass such a request on to a worker thread (Apache's mod_proxy_fcgi
    streams the body), which then waits; the pool must grow instead."""
    _loris_scenario(s, "loris-b", True)
