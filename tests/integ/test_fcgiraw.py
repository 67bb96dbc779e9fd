"""Raw FastCGI to the worker's socket: oversized and overflowing
name/value lengths (CVE-2025-23016 in libfcgi's ReadParams), lengths that
run past their record, and parameter sets, query strings and bodies over
httplock's caps.  The worker pool (`httplock-worker -s SOCK -n 1`) must
survive each, or its supervisor must replace a worker that died within a
bound, and the next request must be served.  Requests that reach the app
over a cap get a JSON 413; ones libfcgi itself refuses get the connection
closed.

Also checks that the worker's socket is reachable only by its owner and
group (the web server), whoever starts it.
"""

import os
import stat
import struct
import subprocess
import time

from common import log, wait_for
from fcgiwire import (ANSWER_BOUND_S, FCGI_BEGIN_REQUEST, FCGI_PARAMS, FCGI_RESPONDER, FCGI_STDIN,
                      Pool, base_params, enc_len, exchange, parse_cgi, record, request_bytes)
from markers import shared, timeout
from testenv import WORKER_BIN

REPLACE_BOUND_S = 10.0      # pool supervisor: restart delay is 100 ms..5 s


# Attacks libfcgi sees before the app does: declared lengths that overflow
# or exceed what is sent.  (label, params bytes, shut after sending)
HUGE = 0x7FFFFFFF
LIB_CASES = [
    ("name and value 2^31-1 (CVE-2025-23016 overflow)",
     enc_len(HUGE) + enc_len(HUGE) + b"A" * 64, True),
    ("name 2^31-1, value 2^31-1, params end at once",
     enc_len(HUGE) + enc_len(HUGE), False),
    ("name 0x7ffffff0, value 0x20 (sum overflows int)",
     enc_len(0x7FFFFFF0) + enc_len(0x20) + b"B" * 100, True),
    ("lengths run past the record (1000 declared, 10 sent)",
     enc_len(1000) + enc_len(1000) + b"C" * 10, False),
    ("a 4-byte length cut short",
     b"\x80\x00", False),
    ("value length 64 MiB, 1 KiB sent",
     enc_len(4) + enc_len(64 << 20) + b"NAME" + b"D" * 1024, True),
]


@shared
@timeout(90)
def test_fcgi_oversized_param_lengths(s):
    pool = Pool(s)
    try:
        for label, params, shut in LIB_CASES:
            before = pool.child()
            t0 = time.monotonic()
            data = record(FCGI_BEGIN_REQUEST, struct.pack("!HB5x", FCGI_RESPONDER, 0))
            # Records as a web server would never send them: the params
            # stream's bytes as one or more records, then its end.
            data += record(FCGI_PARAMS, params)
            if not shut:
                data += record(FCGI_PARAMS, b"") + record(FCGI_STDIN, b"")
            out, ended, eof = exchange(pool.sock, data, ANSWER_BOUND_S, shut=shut)
            st = parse_cgi(out)[0] if out else None
            # The pool must serve the next request: the same worker, or a
            # replacement if this one died.
            wait_for(lambda: pool.health_ok(), REPLACE_BOUND_S,
                     "the pool to serve again after: %s" % label)
            after = pool.child()
            log("%s: %s in %.0f ms; worker %s" % (
                label, "answered %s" % st if ended else "connection closed" if eof else "no answer",
                (time.monotonic() - t0) * 1000,
                "survived" if before == after else "replaced (%s -> %s)" % (before, after)))
            assert pool.p.poll() is None, "the pool supervisor died: %s" % pool.p.poll()
    finally:
        pool.stop()


def _over_cap_cases():
    big_q = "a=" + "q" * (64 << 10)
    many = tuple((b"HTTP_X_FILL_%05d" % i, b"v" * 200) for i in range(700))
    return [
        ("QUERY_STRING of 64 KiB", base_params(uri="/healthz", extra=((b"QUERY_STRING", big_q.encode()),)),
         b"", 413),
        ("REQUEST_URI of 64 KiB", base_params(uri="/healthz?" + big_q), b"", 413),
        ("700 headers, 150 KiB of params", base_params(extra=many), b"", 413),
        ("CONTENT_LENGTH 10^30", base_params("POST", "/lock/raw/acquire",
                                             ((b"CONTENT_LENGTH", b"1" + b"0" * 30),)), b"", 413),
        ("CONTENT_LENGTH 16 KiB + 1, body sent", base_params("POST", "/lock/raw/acquire", (
            (b"CONTENT_LENGTH", b"16385"),)), b"x" * 16385, 413),
        ("body of 1 MiB without CONTENT_LENGTH", base_params("POST", "/lock/raw/acquire"),
         b"y" * (1 << 20), 413),
    ]


@shared
@timeout(90)
def test_fcgi_over_caps_refused(s):
    pool = Pool(s)
    try:
        before = pool.child()
        for label, params, body, want in _over_cap_cases():
            t0 = time.monotonic()
            out, ended, eof = exchange(pool.sock, request_bytes(params, body))
            st, hdrs, j = parse_cgi(out)
            ms = (time.monotonic() - t0) * 1000
            log("%s: %s %s in %.0f ms" % (label, st if ended else "closed", (j or {}).get("error"), ms))
            assert ended, "%s: no answer (eof %s)" % (label, eof)
            assert st == want, "%s: status %s, expected %d: %r" % (label, st, want, out[:300])
            assert hdrs.get("content-type", "").startswith("application/json"), \
                "%s: not JSON: %r" % (label, out[:300])
            assert isinstance(j, dict) and j.get("error") == "too_large" and \
                isinstance(j.get("message"), str), "%s: body %r" % (label, out[:300])
            assert pool.health_ok(), "%s: the worker stopped serving" % label
        assert pool.child() == before, "the worker was replaced (%s -> %s)" % (before, pool.child())
    finally:
        pool.stop()


@shared
def test_worker_socket_private(s):
    """The worker's own socket (-s) is 0660 unless told otherwise, and a
    world-writable mode is refused: only the web server may connect."""
    pool = Pool(s)
    try:
        m = stat.S_IMODE(os.stat(pool.sock).st_mode)
        log("worker socket mode %04o" % m)
        assert m & 0o007 == 0, "worker socket %s is %04o: others may connect" % (pool.sock, m)
    finally:
        pool.stop()
    bad = os.path.join(s.rundir, "open.sock")
    r = subprocess.run([WORKER_BIN, "-c", s.conf_path, "-s", bad, "-m", "0666"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=10)
    log("-m 0666: exit %d: %s" % (r.returncode, r.stdout.decode(errors="replace").strip()[:200]))
    assert r.returncode != 0, "the worker listened on a world-writable socket"
    # The stack's own: lighttpd creates the sockets of the workers it
    # spawns (worker.sock-N, its umask); behind Apache, the pool's (-m 0660).
    socks = [os.path.join(s.rundir, f) for f in os.listdir(s.rundir)
             if f.startswith("worker.sock")]
    assert socks, "no worker socket in %s" % s.rundir
    for p in socks:
        m = stat.S_IMODE(os.stat(p).st_mode)
        log("%s's worker socket %s: mode %04o" % (s.front_name, os.path.basename(p), m))
        assert m & 0o002 == 0, "%s is %04o: anyone may connect" % (p, m)
