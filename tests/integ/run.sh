#!/bin/bash
# Automake test script: httplock's integration suite (tests/integ/run.py)
# against the real web server, workers and coordinator, once behind
# lighttpd and once behind Apache 2.4 (or only behind $HTTPLOCK_FRONT when
# it is set).  Ends with one combined "N passed, N failed" line.  `make
# check` sets HTTPLOCK_SRCDIR, HTTPLOCK_BUILDDIR, LIGHTTPD, APACHE2 and
# PYTHON3; run.py falls back to the source tree's layout when they are unset.
here=$(cd "$(dirname "$0")" && pwd)
: "${HTTPLOCK_SRCDIR:=$(cd "$here/../.." && pwd)}"
export HTTPLOCK_SRCDIR
passed=0 failed=0 rc=0
for front in ${HTTPLOCK_FRONT:-lighttpd apache}; do
	echo "=== behind $front"
	out=$(mktemp) || exit 99
	HTTPLOCK_FRONT=$front "${PYTHON3:-/usr/bin/python3}" \
		"$HTTPLOCK_SRCDIR/tests/integ/run.py" "$@" | tee "$out"
	r=${PIPESTATUS[0]}
	[ "$r" -eq 0 ] || rc=1
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
	rm -f "$out"
	if [ -z "$line" ]; then
		failed=$((failed + 1))    # the runner died without a summary
		continue
	fi
	read -r p _ f _ <<<"$line"
	passed=$((passed + p)) failed=$((failed + f))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] || rc=1
exit $rc
