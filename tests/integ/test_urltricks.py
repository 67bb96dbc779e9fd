"""URLs on which the web server and httplock could disagree about the path.

lighttpd and Apache apply their access rules (auth.require, <Location>) to
their own decoded path with "." and ".." segments resolved; httplock routes
on the raw REQUEST_URI, which libfcgi cuts at the first NUL byte.  So the
web server would judge "/lock/acct/acquire\\0/../../../x" as "/x" (no
password needed) while httplock would serve an acquire of "acct", and
"/lock/%2e%2e/acquire" would acquire a lock named "..".  Each such request
is refused (400, JSON) behind both front ends, with and without
authentication; the worker refuses them itself too when a peer speaks
FastCGI to it directly.  Also: the mount
prefix "/httplock" serves /httplock/... only, not /httplockfoo/...; a body
announced larger than httplock takes is refused from its header; and the
worker pool's socket has one path in every shipped configuration and guide.

Requests go out on raw sockets: an HTTP client library would normalise or
refuse these URLs before sending them.
"""

import os
import re
import secrets
import socket
import time

from authstack import USERS, User, on_auth_stack
from checks import check_json_error, expect
from common import log
from fcgiwire import Pool, exchange, nv, parse_cgi, request_bytes
from markers import mount, shared, timeout
from rawsock import parse_raw_response, raw_request
from testenv import SRCDIR

ANSWER_BOUND_S = 5.0


def uniq(tag):
    return "%s-%s" % (tag, secrets.token_hex(6))


# (label, method, raw target after the mount prefix).  {n} is a fresh name.
TRICKS = [
    ("NUL, then dot segments", "POST", b"/lock/{n}/acquire\x00/../../../x"),
    ("NUL at the end", "POST", b"/lock/{n}/acquire\x00"),
    ("raw ..", "POST", b"/lock/../acquire"),
    ("raw .", "POST", b"/lock/./acquire"),
    ("%2e%2e", "POST", b"/lock/%2e%2e/acquire"),
    ("%2E%2e", "POST", b"/lock/%2E%2e/acquire"),
    (".%2e", "POST", b"/lock/.%2e/acquire"),
    ("%2e", "POST", b"/lock/%2e/acquire"),
    ("status of ..", "GET", b"/lock/%2e%2e"),
    ("raw control byte 0x01", "POST", b"/lock/{n}\x01/acquire"),
    ("raw DEL", "GET", b"/lock/{n}\x7f"),
    ("raw tab", "GET", b"/lock/{n}\tx"),
]


def check_tricks(s, name, headers=(), statuses=(400,)):
    """Every trick is refused with a JSON error, and nothing was locked."""
    for label, method, target in TRICKS:
        raw = s.prefix.encode() + target.replace(b"{n}", name.encode())
        st, hdrs, body, secs = raw_request(s.port, method, raw, headers=headers)
        log("%-24s %-5s %r -> %s in %.0f ms" % (label, method, raw[:60], st, secs * 1000))
        check_json_error("%s (%r)" % (label, raw), st, hdrs, body, statuses)


@shared
def test_url_tricks_refused(s):
    """Behind the suite's front end: NUL and control bytes in the URI, "."
    and ".." names (raw and %-encoded) are all refused with a JSON 400, and
    no lock named "..", "." or the name before the NUL is taken."""
    name = uniq("ut")
    check_tricks(s, name)
    listed = expect(s.get("/locks/", query={"prefix": "."}), 200)["locks"]
    assert not [e for e in listed if e["lock"] in (".", "..")], listed
    assert s.status(name)["held"] is False
    # A name merely made of dots is a name.
    g = s.acquire_ok("...", timeout=0)
    s.release_ok("...", g["token"])


@on_auth_stack()
def test_url_tricks_behind_auth(s):
    """The attack on access rules: behind basic auth with anonymous =
    allow, "/lock/acct/acquire\\0/../../../x" and "/lock/%2e%2e/acquire"
    without credentials must not be granted.  Every trick is refused (400)
    or asks for credentials (401), nothing is granted, and the whole mount
    needs a user except GET /healthz."""
    name = uniq("acct")
    check_tricks(s, name, statuses=(400, 401))
    # Without credentials: everything under the mount is 401, /healthz 200.
    for method, path in (("POST", "/lock/%s/acquire" % name), ("GET", "/lock/%s" % name),
                         ("GET", "/locks/"), ("GET", "/locks"), ("GET", "/nosuch"),
                         ("POST", "/lock/%s/release" % name), ("GET", "/healthzx"),
                         ("GET", "/lock/healthz")):
        st, hdrs, body, _ = raw_request(s.port, method, (s.prefix + path).encode())
        log("anonymous %s %s -> %s" % (method, path, st))
        check_json_error("anonymous %s %s" % (method, path), st, hdrs, body, (401,),
                          "unauthorized")
        assert hdrs.get("www-authenticate", "").startswith("Basic"), hdrs
    st, hdrs, body, _ = raw_request(s.port, "GET", (s.prefix + "/healthz").encode())
    assert st == 200, (st, body)
    # With credentials the service works, and the tricks are still refused.
    alice = User(s, "alice", USERS["alice"])
    g = alice.acquire_ok(name, timeout=0)
    expect(alice.release(name, g["token"]), 200)
    check_tricks(s, uniq("acct2"), headers=[b"Authorization: " + alice.h["Authorization"].encode()])
    listed, _ = alice.list(prefix=".")
    assert "." not in listed and ".." not in listed, listed


@shared
def test_worker_refuses_nul_raw_fastcgi(s):
    """Straight to a worker's FastCGI socket, as lighttpd sends it: a NUL in
    REQUEST_URI reaches the app cut short, so the worker compares it with
    what lighttpd judged (SCRIPT_NAME + PATH_INFO) and refuses a mismatch;
    it refuses raw control bytes and "." / ".." names itself."""
    pool = Pool(s)
    try:
        name = uniq("raw").encode()

        def ask(uri, path_info=None, script_name=b""):
            p = [(b"REQUEST_METHOD", b"POST"), (b"REQUEST_URI", uri),
                 (b"SCRIPT_NAME", script_name), (b"SERVER_PROTOCOL", b"HTTP/1.1"),
                 (b"GATEWAY_INTERFACE", b"CGI/1.1"),
                 (b"CONTENT_TYPE", b"application/x-www-form-urlencoded")]
            if path_info is not None:
                p.append((b"PATH_INFO", path_info))
            out, ended, _ = exchange(pool.sock, request_bytes(b"".join(nv(k, v) for k, v in p)))
            assert ended, "no answer to %r" % uri
            st, hdrs, j = parse_cgi(out)
            log("REQUEST_URI %r PATH_INFO %r -> %s %s" % (uri[:50], path_info, st,
                                                           j and j.get("message")))
            return st, j

        # The NUL-and-dot-segments request as lighttpd (without
        # url-ctrls-reject) passes it on.
        st, j = ask(b"/lock/" + name + b"/acquire\x00/../../../x", b"/x")
        assert st == 400 and j["error"] == "bad_request" and "another path" in j["message"], j
        st, j = ask(b"/httplock/lock/" + name + b"/acquire\x00/../release",
                    b"/lock/" + name + b"/release", b"/httplock")
        assert st == 400 and "another path" in j["message"], j
        st, j = ask(b"/lock/" + name + b"\x01/acquire")
        assert st == 400 and "control byte (0x01)" in j["message"], j
        for n in (b"..", b".", b"%2e%2e", b"%2E"):
            st, j = ask(b"/lock/" + n + b"/acquire")
            assert st == 400 and "'.' and '..' are not lock names" in j["message"], (n, j)
        # What lighttpd sends for a plain acquire passes (then release it).
        st, j = ask(b"/httplock/lock/" + name + b"/acquire/", b"/lock/" + name + b"/acquire/",
                    b"/httplock")
        assert st == 200 and j["lock"] == name.decode(), j
        assert s.status(name.decode())["held"] is True
        s.release_ok(name.decode(), j["token"])
    finally:
        pool.stop()


@mount("/httplock")
def test_mount_prefix_is_exact(s):
    """Mounted at /httplock, /httplockfoo/... is not httplock: 404 (lighttpd)
    or 403 (Apache), as JSON, and nothing is locked."""
    name = uniq("pfx")
    for method, path in (("POST", "/httplockfoo/lock/%s/acquire" % name),
                         ("GET", "/httplockfoo/lock/%s" % name),
                         ("GET", "/httplockfoo/healthz"),
                         ("GET", "/httplock.x/locks/"),
                         ("GET", "/httplock"),
                         ("GET", "/healthz")):
        st, hdrs, body, _ = raw_request(s.port, method, path.encode())
        log("%s %s -> %s %r" % (method, path, st, body[:80]))
        check_json_error("%s %s" % (method, path), st, hdrs, body, (403, 404))
    assert s.status(name)["held"] is False
    g = s.acquire_ok(name, timeout=0)
    s.release_ok(name, g["token"])


def upload_files(pid):
    """Regular files lighttpd (pid) holds open, with their sizes."""
    out = []
    fddir = "/proc/%d/fd" % pid
    for fd in os.listdir(fddir):
        try:
            st = os.stat(os.path.join(fddir, fd))
            target = os.readlink(os.path.join(fddir, fd))
        except OSError:
            continue
        if (st.st_mode & 0o170000) == 0o100000 and not target.endswith(".log"):
            out.append((target, st.st_size))
    return out


@shared
@timeout(60)
def test_huge_body_refused_from_header(s):
    """Content-Length: 1 GiB with a little body: 413 (JSON) arrives at once,
    before the web server reads or spools the body; a body of exactly
    16384 bytes still reaches httplock, 16385 does not."""
    head = (b"POST %s/lock/%s/acquire HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 1073741824\r\n\r\n" % (s.prefix.encode(), uniq("big").encode()))
    sock = s.raw_connect(timeout=ANSWER_BOUND_S)
    try:
        t0 = time.monotonic()
        sock.sendall(head + b"owner=" + b"x" * 65536)
        data = b""
        while b"\r\n\r\n" not in data:
            try:
                b = sock.recv(65536)
            except socket.timeout:
                raise AssertionError("no answer within %.0f s to Content-Length: 1 GiB "
                                     "(the web server waits for the body)" % ANSWER_BOUND_S)
            if not b:
                break
            data += b
        secs = time.monotonic() - t0
        # The rest of the error body.
        try:
            while True:
                b = sock.recv(65536)
                if not b:
                    break
                data += b
        except OSError:
            pass
    finally:
        sock.close()
    st, hdrs, body = parse_raw_response(data)
    log("Content-Length: 1 GiB -> %s in %.1f ms: %r" % (st, secs * 1000, body[:100]))
    check_json_error("Content-Length: 1 GiB", st, hdrs, body, (413,), "too_large")
    assert secs < ANSWER_BOUND_S
    if s.lighttpd is not None:
        big = [(f, n) for f, n in upload_files(s.lighttpd.pid) if n > 1 << 20]
        assert not big, "lighttpd holds large files: %s" % big
    # A chunked body announces no size: the cap applies as it arrives.
    chunk = b"owner=" + b"c" * 20000
    st, hdrs, rbody, secs = raw_request(
        s.port, "POST", (s.prefix + "/lock/%s/acquire" % uniq("ch")).encode(), headers=[
            b"Transfer-Encoding: chunked"],
        body=b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk), http11=True)
    log("chunked body of %d bytes -> %s in %.1f ms: %r" % (len(chunk), st, secs * 1000, rbody[:100]))
    check_json_error("chunked body of %d bytes" % len(chunk), st, hdrs, rbody, (413,), "too_large")
    # The limit is httplock's: 16384 bytes pass the web server (and the
    # worker judges them: an owner this long is a 400), 16385 do not.
    for size, want in ((16384, 400), (16385, 413)):
        body = b"owner=" + b"o" * (size - 6)
        st, hdrs, rbody, secs = raw_request(s.port, "POST", (s.prefix + "/lock/%s/acquire" % uniq("b")).encode(),
                                            body=body)
        log("body of %d bytes -> %s in %.1f ms" % (size, st, secs * 1000))
        check_json_error("body of %d bytes" % size, st, hdrs, rbody, (want,))


# The worker pool's socket (httplock-worker -s, the systemd socket unit,
# Apache's ProxyPass): an absolute path whose file name mentions "worker".
# lighttpd's own socket for the workers it spawns (bin-path) lives in its
# own directory and is another thing.
POOL_SOCK_RE = re.compile(r"(?<![\w.}/$-])/run/[\w./-]*worker[\w.-]*\.sock\b")


def shipped_texts():
    top = SRCDIR
    paths = [os.path.join(top, "README")]
    for d in ("conf", "docs", "examples"):
        for root, _, files in os.walk(os.path.join(top, d)):
            paths += [os.path.join(root, f) for f in files]
    for p in sorted(paths):
        try:
            with open(p, encoding="utf-8") as f:
                yield os.path.relpath(p, top), f.read()
        except (UnicodeDecodeError, OSError):
            continue


@shared
def test_worker_socket_path_is_one(s):
    """Every shipped configuration, unit and guide names the same path for
    the worker pool's socket."""
    seen = {}
    for rel, text in shipped_texts():
        for m in POOL_SOCK_RE.finditer(text):
            seen.setdefault(m.group(0), []).append(rel)
    log("worker socket paths: %s" % {k: sorted(set(v)) for k, v in seen.items()})
    assert "/run/httplock-worker.sock" in seen, seen
    assert len(seen) == 1, "more than one worker socket path: %s" % seen
