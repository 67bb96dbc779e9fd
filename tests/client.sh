#!/bin/sh
# Runs the libhttplock Check suite against a real stack (lighttpd, workers,
# coordinator) started by tests/integ/withstack.py; HTTPLOCK_URL points at it.
srcdir=${HTTPLOCK_SRCDIR:-.}
builddir=${HTTPLOCK_BUILDDIR:-.}
exec "${PYTHON3:-/usr/bin/python3}" "$srcdir/tests/integ/withstack.py" \
	-- "$builddir/tests/unit/check_client"
