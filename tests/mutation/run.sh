#!/bin/bash
# tests/mutation/run.sh [NAME...]: mutation testing of httplock.
#
# Copies the source tree (the files git knows, or the tree without its
# build directories) to a scratch directory, configures it once (plain,
# --enable-debug --enable-test-hooks) and builds it, checks that the suites pass there
# unmutated, then for each mutation of tests/mutation/mutations.txt (or
# only those named): applies it, rebuilds what the suites need (make
# rebuilds only what changed), and runs the mutation's own tests first,
# then every other unit suite, until one fails: the mutation is killed.
# Integration tests (behind lighttpd) run only for the mutations that
# list them.  Prints "PASS mutation NAME" per mutation killed, "FAIL
# mutation NAME" per survivor (or per mutation that does not apply or
# build), the time taken, and "N passed, N failed"; exits 1 if any failed.
# The scratch directory is removed at the end, also on failure or signal
# (HTTPLOCK_MUTATION_KEEP=1 keeps it).
#
# Environment: HTTPLOCK_SRCDIR (default: two directories up from here),
# PYTHON3, LIGHTTPD, APACHE2, PHP (for the integration tests), TMPDIR.
# HTTPLOCK_MUTATION_SKIP="SUITE..." never runs those suites (to see what
# the rest of the suite kills without them).  HTTPLOCK_TEST_PG (a
# PostgreSQL server, as tests/pgcluster.py run sets it) is given to the
# suites listed as pg:check_NAME only, which run on that server; without
# it they are skipped, and said to be.
set -u
here=$(cd "$(dirname "$0")" && pwd)
src=${HTTPLOCK_SRCDIR:-$(cd "$here/../.." && pwd)}
py=${PYTHON3:-/usr/bin/python3}
list=$here/mutations.txt
start=$(date +%s)
scratch=
passed=0 failed=0

say() { echo "mutation: $*"; }
elapsed() { echo $(( $(date +%s) - $1 )); }

cleanup() {
	[ -n "$scratch" ] || return 0
	if [ "${HTTPLOCK_MUTATION_KEEP:-0}" = 1 ]; then
		say "scratch directory kept: $scratch"
		return 0
	fi
	rm -rf "$scratch"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM HUP

# The list must parse.  A snippet found nowhere, or more than once, fails
# its mutation only (below), naming where it was found.
"$py" "$here/mutate.py" "$list" "$src" names >/dev/null || exit 1
if [ $# -gt 0 ]; then
	names=$*
else
	names=$("$py" "$here/mutate.py" "$list" "$src" names | cut -f1)
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/httplock-mutation.XXXXXX") || exit 1
S=$scratch/src B=$scratch/build L=$scratch/logs
mkdir -p "$S" "$B" "$L"

# --- the copy ------------------------------------------------------------
say "copying $src to $S"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	# Tracked and untracked-but-not-ignored files, as they are on disk.
	(cd "$src" && git ls-files -z --cached --others --exclude-standard |
	    tar --null --ignore-failed-read -T - -cf - 2>/dev/null) |
	    tar -C "$S" -xf - || exit 1
else
	(cd "$src" && tar --exclude='./build' --exclude='./build-*' \
	    --exclude='*.o' --exclude='*.a' -cf - .) | tar -C "$S" -xf - ||
	    exit 1
fi
# The generated build system, when the source tree has a current one
# (as after ./quickstart build); else it is generated here.
if [ -x "$src/configure" ] && [ ! "$src/configure.ac" -nt "$src/configure" ] &&
   [ -f "$src/Makefile.in" ] && [ ! "$src/Makefile.am" -nt "$src/Makefile.in" ]; then
	for f in configure Makefile.in aclocal.m4 config.h.in build-aux m4; do
		[ -e "$src/$f" ] && cp -R "$src/$f" "$S/"
	done
else
	say "autoreconf"
	(cd "$S" && autoreconf -fi >"$L/autoreconf.log" 2>&1) ||
	    { tail -n 30 "$L/autoreconf.log"; exit 1; }
fi

# --- configure and build once ----------------------------------------------
# The flags of ./quickstart test's plain build (a configure without
# --enable-test-hooks warns and goes on).  -O0 -g0 after the debug
# flags: each mutation recompiles a file and relinks, and nothing here
# is debugged.
say "configure --enable-debug --enable-test-hooks"
(cd "$B" && "$S/configure" -q --enable-debug --enable-test-hooks \
    CFLAGS='-O0 -g0' >"$L/configure.log" 2>&1) ||
    { tail -n 30 "$L/configure.log"; exit 1; }

# The unit suites: the Check programs of Makefile.am's TESTS, but
# check_client, which needs a running server (tests/client.sh).
units=$(sed -n '/^TESTS =/,/[^\\]$/p' "$S/Makefile.am" |
    grep -o 'tests/unit/check_[a-z0-9_]*' | grep -v check_client |
    sed 's|tests/unit/||')
skip=" ${HTTPLOCK_MUTATION_SKIP:-} "

# target SUITE: what make must build for it.
target() {
	case $1 in
	integ:*)     echo all ;;
	check_proto) echo "tests/unit/check_proto coord/httplock-coord" ;;
	pg:*)        echo "tests/unit/${1#pg:}" ;;
	*)           echo "tests/unit/$1" ;;
	esac
}

say "make"
# shellcheck disable=SC2046
make -s -C "$B" -j2 all $(for u in $units; do target "$u"; done) \
    >"$L/make.log" 2>&1 || { tail -n 40 "$L/make.log"; exit 1; }
say "built in $(elapsed "$start") s"

# run_suite SUITE LOG: builds what SUITE needs and runs it; status 0 if
# it passed, 1 if it failed, 2 if the build failed.
run_suite() {
	local suite=$1 log=$2
	# shellcheck disable=SC2046
	make -s -C "$B" -j2 $(target "$suite") >>"$log" 2>&1 || return 2
	case $suite in
	integ:*)
		(cd "$S" && HTTPLOCK_SRCDIR=$S HTTPLOCK_BUILDDIR=$B \
		    HTTPLOCK_FRONT=lighttpd \
		    LIGHTTPD=${LIGHTTPD:-/usr/sbin/lighttpd} \
		    APACHE2=${APACHE2:-/usr/sbin/apache2} PYTHON3=$py \
		    PHP=${PHP:-/usr/bin/php} \
		    timeout 240 "$py" "$S/tests/integ/run.py" "${suite#integ:}") \
		    >>"$log" 2>&1
		;;
	pg:*)
		(cd "$S" && HTTPLOCK_SRCDIR=$S HTTPLOCK_BUILDDIR=$B \
		    HTTPLOCK_TEST_PG=$pg CK_TIMEOUT_MULTIPLIER=3 \
		    timeout 240 "$B/tests/unit/${suite#pg:}") >>"$log" 2>&1
		;;
	*)
		# Check forks each test; a hung mutant is stopped by timeout.
		(cd "$S" && HTTPLOCK_SRCDIR=$S HTTPLOCK_BUILDDIR=$B \
		    timeout 120 "$B/tests/unit/$suite") >>"$log" 2>&1
		;;
	esac
	[ $? -eq 0 ] || return 1
}

# failures LOG: the first tests a suite's log reports failed (Check's
# "file:line:F:case:test:n:" lines, run.py's "FAIL module.test").
failures() {
	{ grep -oE ':[FE]:[^:]*:test_[a-z0-9_]*:' "$1" | cut -d: -f4
	  grep -oE '^FAIL test_[a-z0-9_.]+' "$1" | cut -d' ' -f2
	} | awk '!seen[$0]++' | head -n 3 | paste -sd' ' -
}

# --- the unmutated suites must pass -----------------------------------------
integs=$("$py" "$here/mutate.py" "$list" "$src" names | cut -f2 |
    tr ' ' '\n' | grep -E '^(integ|pg):' | sort -u)
# The unit suites run on SQLite; pg: suites alone get the server.
pg=${HTTPLOCK_TEST_PG:-}
unset HTTPLOCK_TEST_PG
if [ -z "$pg" ]; then
	say "no HTTPLOCK_TEST_PG: the pg: suites are skipped"
	skip="$skip $(echo "$integs" | grep '^pg:' | tr '\n' ' ') "
fi
t=$(date +%s)
for suite in $units $integs; do
	case $skip in *" $suite "*) continue ;; esac
	if ! run_suite "$suite" "$L/baseline.log"; then
		say "FAIL: $suite fails without any mutation; its log follows"
		# Check's summary lines reworded: ./quickstart tallies this
		# output by its last "N passed, N failed" line alone.
		tail -n 60 "$L/baseline.log" | sed 's/Checks: /Checks /'
		echo "mutation run took $(elapsed "$start") s"
		echo "0 passed, 1 failed"
		exit 1
	fi
done
say "unmutated suites pass ($(elapsed "$t") s)"

# --- each mutation ------------------------------------------------------------
survivors=
for name in $names; do
	t=$(date +%s)
	log=$L/$name.log
	tests=$("$py" "$here/mutate.py" "$list" "$src" names |
	    awk -F'\t' -v n="$name" '$1 == n { print $2 }')
	if [ -z "$tests" ] ||
	   ! file=$("$py" "$here/mutate.py" "$list" "$S" apply "$name" 2>"$log"); then
		echo "FAIL mutation $name: cannot be applied"
		cat "$log"
		failed=$((failed + 1)) survivors="$survivors $name"
		continue
	fi
	order=$tests
	for u in $units; do
		case " $tests " in *" $u "*) ;; *) order="$order $u" ;; esac
	done
	verdict=survived
	for suite in $order; do
		case $skip in *" $suite "*) continue ;; esac
		run_suite "$suite" "$log"
		case $? in
		0) ;;
		1) verdict="killed by $suite ($(failures "$log"))"; break ;;
		2) verdict="does not build"; break ;;
		esac
	done
	"$py" "$here/mutate.py" "$list" "$S" restore
	case $verdict in
	killed*)
		echo "PASS mutation $name ($file): $verdict ($(elapsed "$t") s)"
		passed=$((passed + 1))
		;;
	*)
		echo "FAIL mutation $name ($file): $verdict ($(elapsed "$t") s)"
		"$py" "$here/mutate.py" "$list" "$S" show "$name" | sed 's/^/    /'
		[ "$verdict" = "does not build" ] && grep -m 5 -E 'error|warning' "$log"
		failed=$((failed + 1)) survivors="$survivors $name"
		;;
	esac
done

echo "mutation run took $(elapsed "$start") s"
[ -z "$survivors" ] || say "not killed:$survivors"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
