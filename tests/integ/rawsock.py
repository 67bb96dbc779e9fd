"""Raw sockets, for requests an HTTP client library would refuse to send or
would send differently: bytes to the web server and what comes back,
the parsing of a raw HTTP answer (chunked bodies too), form POSTs written
out by hand, a reset (RST) close; free loopback ports and whether a Unix
socket accepts.
"""

import re
import socket
import struct
import time
import urllib.parse


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def unix_accepts(path, timeout_s=1.0):
    """True if a connection to the Unix socket at path is accepted."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout_s)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def rst_close(sock):
    """Closes sock with SO_LINGER (1, 0): the peer sees a TCP RST."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()


def raw_connect(port, timeout=10.0):
    """A TCP connection to the web server on 127.0.0.1:port."""
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def raw_exchange(port, data, timeout=10.0, shut_wr=False):
    """Sends raw bytes to 127.0.0.1:port, reads until the server closes
    (AssertionError if `timeout` passes without data); returns what was
    read.  shut_wr: shuts the sending side after the bytes."""
    s = raw_connect(port, timeout)
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


def parse_raw_response(data):
    """(status or None, headers dict lower-case, body bytes) of raw bytes;
    the body as sent (see read_response for a chunked one)."""
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


def dechunk(body):
    """The payload of a chunked body (up to its last chunk)."""
    out = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        n = int(size.split(b";")[0], 16)
        if n == 0:
            break
        out += rest[:n]
        body = rest[n + 2:]
    return out


def read_response(data):
    """(status or None, headers, body) of raw bytes, a chunked body
    decoded."""
    st, hdrs, body = parse_raw_response(data)
    if "chunked" in hdrs.get("transfer-encoding", ""):
        body = dechunk(body)
    return st, hdrs, body


def raw_post(path, params, host="127.0.0.1", close=True):
    """Bytes of an HTTP/1.1 POST with a form body."""
    body = urllib.parse.urlencode(params).encode()
    head = ("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            "Content-Length: %d\r\n%s\r\n" % (path, host, len(body),
                                               "Connection: close\r\n" if close else ""))
    return head.encode() + body


def raw_request(port, method, target, body=b"", headers=(), timeout_s=5.0, http11=False):
    """Sends one request with a raw (bytes) request target; returns
    (status, headers, body, seconds to the answer).  HTTP/1.0, so that
    the answer is not chunked, unless http11 (then the caller sends any
    Content-Length or Transfer-Encoding in headers)."""
    head = b"%s %s HTTP/%s\r\nHost: 127.0.0.1\r\n" % (
        method.encode(), target, b"1.1" if http11 else b"1.0")
    if http11:
        head += b"Connection: close\r\n"
    if method == "POST":
        head += b"Content-Type: application/x-www-form-urlencoded\r\n"
        if not http11:
            head += b"Content-Length: %d\r\n" % len(body)
    for h in headers:
        head += h + b"\r\n"
    t0 = time.monotonic()
    st, hdrs, rbody = read_response(raw_exchange(port, head + b"\r\n" + body, timeout=timeout_s))
    return st, hdrs, rbody, time.monotonic() - t0
