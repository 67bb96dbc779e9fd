#!/usr/bin/python3
"""Runs one command against a fresh stack:

    withstack.py [-o key=value]... -- COMMAND [ARGS...]

starts the stack (stack.Stack, httplock.conf keys changed by -o), runs
COMMAND with HTTPLOCK_URL (http://127.0.0.1:PORT/) and HTTPLOCK_TEST_RUNDIR
in its environment, stops the stack (asserting a clean stop and clean
logs), and exits with COMMAND's status (or 1 if the stack itself
misbehaved).  tests/client.sh runs the C client's tests this way.
"""

import os
import subprocess
import sys

sys.dont_write_bytecode = True     # the source tree may be read-only

from stack import Stack  # noqa: E402


def main(argv):
    overrides = {}
    while argv and argv[0] == "-o":
        k, _, v = argv[1].partition("=")
        overrides[k] = v
        argv = argv[2:]
    if not argv or argv[0] != "--" or len(argv) < 2:
        sys.stderr.write("usage: withstack.py [-o key=value]... -- COMMAND [ARGS...]\n")
        return 2
    s = Stack(overrides, label="cli")
    rc = None
    try:
        s.start()
        env = dict(os.environ)
        env["HTTPLOCK_URL"] = s.url("/")
        env["HTTPLOCK_TEST_RUNDIR"] = s.rundir
        rc = subprocess.call(argv[1:], env=env)
        s.stop()
        s.check_logs()
    except Exception as e:
        sys.stderr.write("withstack.py: %s\n%s" % (e, s.log_tails()))
        rc = 1 if not rc else rc    # the stack failed: never report success
    finally:
        s.cleanup()
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
