#!/bin/sh
# A bounded libFuzzer run of each harness (CI runs it from `./quickstart test`).
#
#   tests/fuzz/run-fuzzers.sh BUILDDIR [SECONDS]
#
# BUILDDIR was configured with CC=clang --enable-fuzzing and has
# tests/fuzz/fuzz_{request,proto,conf,log,notify} built.  Each harness runs SECONDS
# (default 20) on a fresh copy of its seed corpus in
# BUILDDIR/tests/fuzz/work/NAME (the source tree is never written), with
# its dictionary, -max_len=4096, -timeout=5 (a hang fails), -rss_limit_mb=2048
# and leak detection.  libFuzzer's output goes to
# BUILDDIR/tests/fuzz/run/fuzz_NAME.out.  A harness passes if libFuzzer exits
# 0; otherwise the crash input's path and the tail of its output are printed,
# and the input is copied to BUILDDIR/tests/fuzz/run/.  Reproduce with
#   BUILDDIR/tests/fuzz/fuzz_NAME FILE
# Ends with "N passed, N failed", one count per harness.
set -u

[ $# -ge 1 ] && [ $# -le 2 ] || {
	echo "usage: $0 BUILDDIR [SECONDS]" >&2; exit 2; }
builddir=$(cd "$1" && pwd) || exit 2
secs=${2:-20}
case $secs in
''|*[!0-9]*) echo "$0: SECONDS must be a whole number" >&2; exit 2;;
esac
srcdir=$(cd "$(dirname "$0")/../.." && pwd)
fdir=$builddir/tests/fuzz
rundir=$fdir/run

# UBSan is recoverable in this build: halt so libFuzzer sees the report.
ASAN_OPTIONS=detect_leaks=1
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS UBSAN_OPTIONS

mkdir -p "$rundir" || exit 2
pass=0 fail=0
for h in request proto conf log notify; do
	bin=$fdir/fuzz_$h
	out=$rundir/fuzz_$h.out
	work=$fdir/work/$h
	art=$rundir/$h-
	rm -rf "$work" "$rundir/$h"-* "$out"
	if [ ! -x "$bin" ]; then
		echo "FAIL fuzz_$h: $bin not built (configure CC=clang --enable-fuzzing)"
		fail=$((fail + 1)); continue
	fi
	mkdir -p "$work" && cp -R "$srcdir/tests/fuzz/corpus/$h/." "$work/" || {
		echo "FAIL fuzz_$h: cannot copy the seed corpus"
		fail=$((fail + 1)); continue; }
	seeds=$(ls "$work" | wc -l)
	rc=0
	# The outer timeout only guards against libFuzzer itself wedging.
	timeout -k 10 $((secs * 2 + 120)) "$bin" \
		-max_total_time="$secs" -max_len=4096 \
		-dict="$srcdir/tests/fuzz/$h.dict" -timeout=5 -rss_limit_mb=2048 \
		-detect_leaks=1 -print_final_stats=1 -artifact_prefix="$art" \
		"$work" >"$out" 2>&1 || rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -n 1)
	cov=$(grep -Eo 'cov: [0-9]+' "$out" | tail -n 1)
	new=$(( $(ls "$work" | wc -l) - seeds ))
	if [ $rc -eq 0 ]; then
		echo "PASS fuzz_$h (${secs} s, ${runs:-?} runs, ${cov:-cov: ?}, $new new inputs)"
		pass=$((pass + 1))
		continue
	fi
	echo "FAIL fuzz_$h (libFuzzer exit $rc after ${secs} s budget; $(grep -m1 -o 'Seed: [0-9]*' "$out"))"
	found=0
	for f in "$art"*; do
		[ -f "$f" ] || continue
		found=1
		echo "  input: $f  (reproduce: $bin $f)"
	done
	[ $found -eq 1 ] || echo "  no input saved (rc $rc; see $out)"
	grep -m 5 -E 'Assertion|runtime error|ERROR: |SUMMARY: ' "$out" |
		sed 's/^/  ! /'
	echo "  --- last lines of $out"
	tail -n 60 "$out" | sed 's/^/  | /'
	fail=$((fail + 1))
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
