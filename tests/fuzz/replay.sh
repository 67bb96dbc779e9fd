#!/bin/sh
# Replays each fuzz harness's saved corpus (make check runs this).
# Ends with "N passed, N failed", one count per harness.
srcdir=${HTTPLOCK_SRCDIR:-.}
builddir=${HTTPLOCK_BUILDDIR:-.}
pass=0 fail=0
for h in request proto conf log notify; do
	if "$builddir/tests/fuzz/replay_$h" "$srcdir/tests/fuzz/corpus/$h"; then
		echo "PASS replay_$h"; pass=$((pass + 1))
	else
		echo "FAIL replay_$h"; fail=$((fail + 1))
	fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
