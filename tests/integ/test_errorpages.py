"""Errors the web server answers itself are JSON too.

Requests that never reach httplock (a malformed request line or
Content-Length, an over-long URI or header, an unknown method, a body
announced too large, a worker that is down) get the web server's own
answer: conf/lighttpd.conf serves conf/errors/<status>.html as
application/json, conf/apache.conf has the same texts as ErrorDocuments.
Each must have the shape of httplock's errors,
{"error": "<code>", "message": "..."}, with Content-Type application/json,
and the code that goes with the status.  Raw sockets: a client library
would not send most of these.
"""

import json
import os
import re
import signal
import time

from checks import check_json_error
from common import log, wait_for
from markers import shared, timeout
from rawsock import parse_raw_response, read_response
from testenv import SRCDIR


CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 408: "request_timeout", 411: "length_required",
         413: "too_large", 414: "too_large", 431: "too_large", 500: "internal",
         501: "not_implemented", 502: "unavailable", 503: "unavailable", 504: "unavailable"}


def check_raw_error(what, data, statuses):
    """Asserts that the raw answer `data` is a JSON error with one of
    `statuses` and the code that goes with its status; returns the status."""
    st, hdrs, body = read_response(data)
    log("%-34s -> %s %s %r" % (what, st, hdrs.get("content-type"), body[:90]))
    check_json_error(what, st, hdrs, body, statuses, CODES.get(st))
    return st


def cases(prefix):
    p = prefix.encode()
    return [
        ("malformed request line", b"garbage\r\n\r\n", (400,)),
        ("bad Content-Length", b"POST %s/lock/e/acquire HTTP/1.0\r\nContent-Length: abc\r\n\r\n" % p,
         (400,)),
        ("two Content-Lengths", b"POST %s/lock/e/acquire HTTP/1.0\r\nContent-Length: 1\r\n"
         b"Content-Length: 2\r\n\r\nab" % p, (400,)),
        ("URI of 9000 bytes", b"GET %s/lock/%s HTTP/1.0\r\n\r\n" % (p, b"u" * 9000), (414, 431)),
        ("header of 70000 bytes", b"GET %s/healthz HTTP/1.0\r\nX-Fill: %s\r\n\r\n" % (p, b"h" * 70000),
         (400, 431)),
        ("unknown method", b"FROB %s/healthz HTTP/1.0\r\n\r\n" % p, (405, 501)),
        ("POST without Content-Length", b"POST %s/healthz HTTP/1.1\r\nHost: x\r\n"
         b"Connection: close\r\n\r\n" % p, (405, 411)),
        ("Content-Length: 1 GiB", b"POST %s/lock/e/acquire HTTP/1.0\r\n"
         b"Content-Length: 1073741824\r\n\r\nowner=x" % p, (413,)),
        ("control byte in the path", b"GET %s/lock/a\x01b HTTP/1.0\r\n\r\n" % p, (400,)),
        ("NUL in the path", b"GET %s/lock/a\x00b HTTP/1.0\r\n\r\n" % p, (400,)),
    ]


@shared
def test_front_errors_are_json(s):
    """Every error the web server answers itself has httplock's JSON shape."""
    for what, data, statuses in cases(s.prefix):
        check_raw_error(what, s.raw(data, timeout=10), statuses)


@timeout(60)
def test_worker_down_is_json(s):
    """While no worker answers, the web server's 503 is JSON too; the
    service comes back afterwards.  Apache: the worker pool is stopped.
    lighttpd spawns its workers itself and restarts them: they are killed
    until lighttpd answers a request without one."""
    req = b"GET %s/healthz HTTP/1.0\r\n\r\n" % s.prefix.encode()
    if s.apache is not None:
        s.pool.send_signal(signal.SIGTERM)
        s.pool.wait(10)
        check_raw_error("worker pool stopped", s.raw(req, timeout=10), (503,))
        s.start_pool()
    else:
        seen = {}
        deadline = time.monotonic() + 20
        while 503 not in seen and time.monotonic() < deadline:
            for pid in s.worker_pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            st = parse_raw_response(s.raw(req, timeout=10))[0]
            seen[st] = seen.get(st, 0) + 1
            if st == 503:
                data = s.raw(req, timeout=10)
                if parse_raw_response(data)[0] == 503:
                    check_raw_error("workers killed", data, (503,))
                else:
                    seen.pop(503)
        log("answers while killing workers: %s" % seen)
        assert 503 in seen, "lighttpd never answered 503 without workers: %s" % seen
        # The dead workers' exits are logged; this test caused them.
        s.known_workers.clear()
    wait_for(lambda: parse_raw_response(s.raw(req, timeout=10))[0] == 200, 20,
             "the service to answer again")


@shared
def test_error_documents_agree(s):
    """conf/errors/<status>.html (lighttpd) and the ErrorDocuments of
    conf/apache.conf and the Apache sample say the same, and every one is
    an error body whose code goes with its status."""
    confdir = os.path.join(SRCDIR, "conf")
    files = {}
    for f in os.listdir(os.path.join(confdir, "errors")):
        with open(os.path.join(confdir, "errors", f)) as fh:
            files[int(f[:3])] = json.loads(fh.read())
    for st, j in files.items():
        assert sorted(j) == ["error", "message"] and j["error"] == CODES.get(st, j["error"]), (st, j)
    for conf in ("apache.conf", "apache-httplock.conf.sample"):
        docs = {}
        with open(os.path.join(confdir, conf)) as fh:
            for line in fh:
                m = re.match(r'\s*ErrorDocument (\d+) "(.*)"\s*$', line)
                if m:
                    docs[int(m.group(1))] = json.loads(m.group(2).replace('\\"', '"'))
        differ = sorted(st for st in set(docs) | set(files) if docs.get(st) != files.get(st))
        assert not differ, "%s: ErrorDocuments differ from conf/errors for %s" % (conf, differ)
