"""Bad command lines and configurations for the server programs: each is
refused at once with a message and a non-zero exit, before anything is
served."""

import os
import shutil
import subprocess
import tempfile
import time

from common import log, wait_for
from markers import fronts, shared
from testenv import COORD_BIN, WORKER_BIN


def _run(argv, env=None, timeout_s=5.0, cwd=None):
    t0 = time.monotonic()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env, timeout=timeout_s, cwd=cwd)
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


@shared
@fronts("lighttpd")
def test_daemons_help_and_version(s):
    """--help prints the usage on stdout and exits 0, --version the
    program's name and version; neither needs a configuration."""
    env = dict(os.environ, HTTPLOCK_CONF="/nonexistent/httplock.conf")
    for prog in (WORKER_BIN, COORD_BIN):
        name = os.path.basename(prog)
        for flag in ("--help", "-h"):
            p = subprocess.run([prog, flag], stdin=subprocess.DEVNULL, capture_output=True,
                               env=env, timeout=5)
            out = p.stdout.decode()
            assert p.returncode == 0, "%s %s: exit %d: %r" % (name, flag, p.returncode, p.stderr)
            assert out.startswith("usage: %s " % name), "%s %s: %r" % (name, flag, out)
            assert "-s PATH" in out and "--version" in out and "(8)" in out, out
        for flag in ("--version", "-V"):
            p = subprocess.run([prog, flag], stdin=subprocess.DEVNULL, capture_output=True,
                               env=env, timeout=5)
            out = p.stdout.decode().strip()
            assert p.returncode == 0, "%s %s: exit %d" % (name, flag, p.returncode)
            parts = out.split(" ")
            assert len(parts) == 2 and parts[0] == name and parts[1][:1].isdigit(), \
                "%s %s printed %r" % (name, flag, out)
            log("%s %s: %s" % (name, flag, out))
        # A usage error still goes to stderr, with exit status 2.
        p = subprocess.run([prog, "--no-such-option"], stdin=subprocess.DEVNULL,
                           capture_output=True, env=env, timeout=5)
        assert p.returncode == 2 and b"usage:" in p.stderr and not p.stdout, \
            "%s --no-such-option: exit %d, %r" % (name, p.returncode, p.stderr)


@shared
@fronts("lighttpd")
def test_socket_argument_must_be_a_path(s):
    """-s HOST:PORT (or a bare port) is refused with a message that says to
    give a path; no file of that name is made.  ./HOST:PORT is a path."""
    d = tempfile.mkdtemp(prefix="hlsock", dir="/tmp")
    try:
        conf = _conf(d, "database = %s/db\ncoord_socket = %s/c.sock\n" % (d, d))
        for arg in ("0.0.0.0:18097", "127.0.0.1:9000", "localhost:9000", "9000"):
            for prog, extra in ((WORKER_BIN, ["-D"]), (COORD_BIN, [])):
                name = os.path.basename(prog)
                rc, err, el = _run([prog, "-c", conf] + extra + ["-s", arg], cwd=d)
                assert rc == 1, "%s -s %s: exit %d: %r" % (name, arg, rc, err)
                assert "looks like a TCP address" in err and "path" in err, \
                    "%s -s %s: %r" % (name, arg, err)
                if prog == WORKER_BIN:
                    assert "fd 0" in err, err
                assert os.listdir(d) == ["httplock.conf"], "%s -s %s made %s" % (
                    name, arg, os.listdir(d))
        # The same name as a relative path is a Unix socket like any other.
        p = subprocess.Popen([COORD_BIN, "-c", conf, "-s", "./0.0.0.0:18097"], cwd=d,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        try:
            sock = os.path.join(d, "0.0.0.0:18097")
            wait_for(lambda: os.path.exists(sock) or p.poll() is not None, 5.0,
                     "the coordinator's socket ./0.0.0.0:18097")
            assert p.poll() is None, "httplock-coord -s ./0.0.0.0:18097 exited %d: %r" % (
                p.returncode, p.stderr.read())
        finally:
            p.terminate()
            p.wait(5)
        log("-s HOST:PORT refused by both programs; ./HOST:PORT accepted")
    finally:
        shutil.rmtree(d, ignore_errors=True)
