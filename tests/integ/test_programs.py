"""Bad command lines and configurations for the server programs: each is
refused at once with a message and a non-zero exit, before anything is
served."""

import os
import shutil
import subprocess
import tempfile
import time

from stack import COORD_BIN, WORKER_BIN, fronts, log, shared


def _run(argv, env=None, timeout_s=5.0):
    t0 = time.monotonic()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env, timeout=timeout_s)
    return p.returncode, p.stderr.decode("utf-8", "replace"), time.monotonic() - t0


def _conf(dirname, text):
    path = os.path.join(dirname, "httplock.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


@shared
@fronts("lighttpd")
def test_worker_bad_arguments(s):
    d = tempfile.mkdtemp(prefix="hlargs", dir="/tmp")
    conf = _conf(d, "database = %s/db\ncoord_socket = %s/c.sock\n" % (d, d))
    sock = os.path.join(d, "w.sock")
    cases = [
        (["-n", "0", "-s", sock], "usage"),
        (["-n", "abc", "-s", sock], "usage"),
        (["-n", "2"], "usage"),                       # a pool needs -s
        (["-m", "999", "-s", sock], "usage"),
        (["-m", "-1", "-s", sock], "usage"),
        (["-g", "no-such-group-hl", "-s", sock], "no such group"),
        (["-x"], "usage"),
        (["extra"], "usage"),
    ]
    try:
        _worker_cases(conf, sock, cases)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _worker_cases(conf, sock, cases):
    for args, want in cases:
        rc, err, el = _run([WORKER_BIN, "-D", "-c", conf] + args)
        log("worker %s -> exit %d in %.0f ms: %s" % (" ".join(args), rc, el * 1000,
                                                      err.strip().splitlines()[0] if err.strip() else ""))
        assert rc != 0, "worker %s exited 0" % args
        assert want in err, "worker %s: expected %r in stderr, got %r" % (args, want, err)
        assert not os.path.exists(sock), "worker %s left a socket behind" % args


@shared
@fronts("lighttpd")
def test_programs_refuse_bad_config(s):
    """A bad configuration stops both programs with FILE:LINE: KEY."""
    d = tempfile.mkdtemp(prefix="hlconf", dir="/tmp")
    cases = [
        ("max_ttl = abc\n", ":1: max_ttl"),
        ("database = %s/db\nnope = 1\n" % d, ":2: nope"),
        ("threads = 0\n", ":1: threads"),
        ("database = relative.db\n", ":1: database"),
    ]
    try:
        _config_cases(d, cases)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    log("%d bad configurations refused by both programs" % len(cases))


def _config_cases(d, cases):
    for text, want in cases:
        conf = _conf(d, text)
        for prog in (WORKER_BIN, COORD_BIN):
            argv = [prog, "-c", conf]
            if prog == WORKER_BIN:
                argv += ["-D", "-s", os.path.join(d, "w.sock")]
            rc, err, el = _run(argv)
            assert rc != 0, "%s accepted %r" % (os.path.basename(prog), text)
            assert want in err, "%s on %r: expected %r in stderr, got %r" % (
                os.path.basename(prog), text, want, err)


@shared
@fronts("lighttpd")
def test_coordinator_bad_arguments(s):
    d = tempfile.mkdtemp(prefix="hlcargs", dir="/tmp")
    try:
        conf = _conf(d, "database = %s/db\ncoord_socket = %s/c.sock\n" % (d, d))
        for args in (["-i", "abc"], ["-i", "-1"], ["-i", "1e3"], ["-i", "999999999"],
                     ["-x"], ["extra"]):
            rc, err, el = _run([COORD_BIN, "-c", conf] + args)
            log("coord %s -> exit %d in %.0f ms" % (" ".join(args), rc, el * 1000))
            assert rc != 0, "coordinator %s exited 0" % args
            assert "usage" in err or "invalid option" in err, \
                "coordinator %s: no usage message: %r" % (args, err)
            assert not os.path.exists(os.path.join(d, "c.sock")), \
                "coordinator %s left a socket behind" % args
    finally:
        shutil.rmtree(d, ignore_errors=True)
