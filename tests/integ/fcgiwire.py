"""FastCGI spoken straight to a worker's socket, as the web server speaks
it: records, name/value pairs, a whole request, reading the answer's
records, the CGI answer inside; one request in a call (fcgi_request), and
a worker pool of the test's own to send them to (Pool).
"""

import json
import os
import signal
import socket
import struct
import subprocess

from common import wait_for
from procs import children_of, wait_gone
from testenv import WORKER_BIN

FCGI_BEGIN_REQUEST, FCGI_ABORT_REQUEST, FCGI_END_REQUEST = 1, 2, 3
FCGI_PARAMS, FCGI_STDIN, FCGI_STDOUT, FCGI_STDERR = 4, 5, 6, 7
FCGI_RESPONDER = 1
ANSWER_BOUND_S = 10.0


def record(rtype, content=b"", req_id=1):
    """One record of type rtype, or several when content is longer than
    a record carries (65535 bytes)."""
    out = b""
    while True:
        chunk, content = content[:65535], content[65535:]
        pad = (-len(chunk)) % 8
        out += struct.pack("!BBHHBB", 1, rtype, req_id, len(chunk), pad, 0) + chunk + b"\0" * pad
        if not content:
            return out


def enc_len(n, force4=False):
    """A name or value length: one byte below 128, else four."""
    if n < 128 and not force4:
        return bytes([n])
    return struct.pack("!I", n | 0x80000000)


def nv(name, value):
    """One name/value pair (bytes)."""
    return enc_len(len(name)) + enc_len(len(value)) + name + value


def base_params(method="GET", uri="/healthz", extra=()):
    """The PARAMS stream of a plain request, with (name, value) pairs of
    `extra` added."""
    p = [(b"REQUEST_METHOD", method.encode()), (b"REQUEST_URI", uri.encode()),
         (b"SCRIPT_NAME", b""), (b"SERVER_PROTOCOL", b"HTTP/1.1"),
         (b"GATEWAY_INTERFACE", b"CGI/1.1")]
    if method == "POST":
        p.append((b"CONTENT_TYPE", b"application/x-www-form-urlencoded"))
    p.extend(extra)
    return b"".join(nv(k, v) for k, v in p)


def request_bytes(params, body=b"", req_id=1, stdin=True):
    """A whole request: BEGIN_REQUEST (responder), the PARAMS stream, and
    unless not stdin the STDIN stream with body."""
    out = record(FCGI_BEGIN_REQUEST, struct.pack("!HB5x", FCGI_RESPONDER, 0), req_id)
    out += record(FCGI_PARAMS, params, req_id) + record(FCGI_PARAMS, b"", req_id)
    if stdin:
        if body:
            out += record(FCGI_STDIN, body, req_id)
        out += record(FCGI_STDIN, b"", req_id)
    return out


def exchange(path, data, timeout_s=ANSWER_BOUND_S, shut=False):
    """Sends data, reads records until END_REQUEST or EOF.  Returns
    (stdout bytes, ended, eof)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout_s)
    out, ended, eof = b"", False, False
    try:
        s.connect(path)
        try:
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass     # the worker closed on us while we were still sending
        buf = b""
        while not ended:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                b = b""
            if not b:
                eof = True
                break
            buf += b
            while len(buf) >= 8:
                _, rtype, _, clen, pad, _ = struct.unpack("!BBHHBB", buf[:8])
                if len(buf) < 8 + clen + pad:
                    break
                content = buf[8:8 + clen]
                buf = buf[8 + clen + pad:]
                if rtype == FCGI_STDOUT:
                    out += content
                elif rtype == FCGI_END_REQUEST:
                    ended = True
    finally:
        s.close()
    return out, ended, eof


def parse_cgi(out):
    """(status, headers, json body or None) of a CGI response."""
    head, _, body = out.partition(b"\r\n\r\n")
    status, hdrs = 200, {}
    for line in head.split(b"\r\n"):
        k, _, v = line.partition(b":")
        hdrs[k.strip().lower().decode()] = v.strip().decode()
    if "status" in hdrs:
        status = int(hdrs["status"].split()[0])
    try:
        j = json.loads(body.decode())
    except ValueError:
        j = None
    return status, hdrs, j


def fcgi_request(sock_path, method, uri, params=None, body=b""):
    """One request on a worker's socket, with these CGI variables added
    (a dict of str); returns (status, JSON body or None)."""
    env = {"REQUEST_METHOD": method, "REQUEST_URI": uri, "SCRIPT_NAME": "",
           "CONTENT_LENGTH": str(len(body)), "SERVER_PROTOCOL": "HTTP/1.1"}
    if body:
        env["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
    env.update(params or {})
    pairs = b"".join(nv(k.encode(), v.encode()) for k, v in env.items())
    out, ended, _ = exchange(sock_path, request_bytes(pairs, body))
    assert ended, "%s %s: the worker closed without END_REQUEST" % (method, uri)
    status, _, j = parse_cgi(out)
    return status, j


def worker_socket(s):
    """The path of the socket the stack's web server reaches its workers on."""
    socks = sorted(f for f in os.listdir(s.rundir) if f.startswith("worker.sock"))
    assert socks, "no worker socket in %s: %s" % (s.rundir, os.listdir(s.rundir))
    return os.path.join(s.rundir, socks[0])


class Pool:
    """httplock-worker -s SOCK -n 1 on a stack's configuration: a worker
    the test speaks FastCGI to itself."""

    def __init__(self, s):
        self.sock = os.path.join(s.rundir, "raw.sock")
        logf = open(os.path.join(s.rundir, "raw-pool.log"), "ab")
        try:
            self.p = subprocess.Popen([WORKER_BIN, "-c", s.conf_path, "-s", self.sock,
                                       "-n", "1"], stdin=subprocess.DEVNULL, stdout=logf,
                                      stderr=logf, start_new_session=True, close_fds=True)
        finally:
            logf.close()
        wait_for(lambda: self.p.poll() is not None or self.child(), 10, "the raw pool's worker")
        assert self.p.poll() is None, "raw pool exited: %s" % self.p.poll()
        wait_for(lambda: self.health_ok(), 10, "the raw pool to answer /healthz")

    def child(self):
        kids = children_of(self.p.pid)
        return kids[0] if kids else None

    def health_ok(self):
        out, ended, _ = exchange(self.sock, request_bytes(base_params()), 5)
        st, _, j = parse_cgi(out)
        return ended and st == 200 and isinstance(j, dict) and j.get("ok") is True

    def stop(self):
        kid = self.child()
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(5)
        # The supervisor stops its worker before it exits.
        left = wait_gone([kid] if kid else [], 5)
        assert not left, "raw pool worker %s outlived its supervisor" % left
