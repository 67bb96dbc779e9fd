#!/bin/bash
# Automake test script: httplock's integration suite (tests/integ/run.py)
# against the real lighttpd, workers and coordinator.  `make check` sets
# HTTPLOCK_SRCDIR, HTTPLOCK_BUILDDIR, LIGHTTPD and PYTHON3; run.py falls back
# to the source tree's layout when they are unset.
here=$(cd "$(dirname "$0")" && pwd)
: "${HTTPLOCK_SRCDIR:=$(cd "$here/../.." && pwd)}"
export HTTPLOCK_SRCDIR
"${PYTHON3:-/usr/bin/python3}" "$HTTPLOCK_SRCDIR/tests/integ/run.py" "$@"
exit $?
