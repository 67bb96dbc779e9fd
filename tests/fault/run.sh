#!/bin/bash
# Automake test script: httplock's fault-injection suite, the
# tests/fault/test_*.py files, on the integration harness
# (tests/integ/run.py --dir tests/fault, which starts the real stack with
# tests/integ/stack.py), once behind lighttpd and once behind Apache 2.4
# (or only behind $HTTPLOCK_FRONT).  Ends with one combined
# "N passed, N failed" line.
#
#   test_fault.py     32 clients on 4 locks while workers, the coordinator,
#                     the web server and the whole stack are SIGKILLed at
#                     random; the journal of critical sections is checked
#   test_diskfull.py  disk full and read-only database (tmpfs; needs root)
#
# Short form (make check): 20 s of faults per front end.  Longer:
#
#   HTTPLOCK_FAULT_SECONDS=600 make check TESTS=tests/fault/run.sh
#   HTTPLOCK_FAULT_SECONDS=600 HTTPLOCK_BUILDDIR=$PWD \
#       /path/to/src/tests/fault/run.sh fault    # from a build directory
#
# The suite's time limit grows with HTTPLOCK_FAULT_SECONDS; the fault seed is
# printed, HTTPLOCK_FAULT_SEED=N replays it.  Arguments select tests by name
# as for tests/integ/run.sh.
here=$(cd "$(dirname "$0")" && pwd)
: "${HTTPLOCK_SRCDIR:=$(cd "$here/../.." && pwd)}"
export HTTPLOCK_SRCDIR
secs=${HTTPLOCK_FAULT_SECONDS:-20}
case $secs in
''|*[!0-9.]*) echo "HTTPLOCK_FAULT_SECONDS: a number of seconds" >&2; exit 99;;
esac
: "${HTTPLOCK_SUITE_TIMEOUT:=$(awk -v s="$secs" 'BEGIN { printf "%d", s + 260 }')}"
export HTTPLOCK_SUITE_TIMEOUT
# The front-end loop and the combined summary are tests/integ/run.sh's.
exec "$HTTPLOCK_SRCDIR/tests/integ/run.sh" --dir "$here" "$@"
