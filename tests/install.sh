#!/bin/bash
# `make install` of this build into a scratch DESTDIR, then what the
# installation must do from there: the httplock command starts (it needs
# no libhttplock.so, so neither ldconfig nor an rpath matters, in any
# prefix), both daemons answer --version, the man pages are in man8, and
# `make uninstall` removes every file again.  Ends with "N passed, N failed".
builddir=${HTTPLOCK_BUILDDIR:-.}
passed=0 failed=0
ok() { echo "PASS $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1"; failed=$((failed + 1)); }

tmp=$(mktemp -d /tmp/hlinstall.XXXXXX) || exit 99
trap 'rm -rf "$tmp"' EXIT
stage=$tmp/stage

# A make of its own, not a part of the `make check` that runs us.
t0=$(date +%s%N)
if env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
	make -s -C "$builddir" install DESTDIR="$stage" >"$tmp/install.out" 2>&1; then
	ok "make install DESTDIR=... ($(( ($(date +%s%N) - t0) / 1000000 )) ms)"
else
	bad "make install DESTDIR=..."
	cat "$tmp/install.out"
	echo "$passed passed, $failed failed"
	exit 1
fi

find_one() { find "$stage" -path "$1" -type f | head -n 1; }
cli=$(find_one '*/bin/httplock')
worker=$(find_one '*/sbin/httplock-worker')
coord=$(find_one '*/sbin/httplock-coord')
echo "installed: ${cli#"$stage"} ${worker#"$stage"} ${coord#"$stage"}"

# The dynamic linker must not need this build's libraries: nothing of
# LD_LIBRARY_PATH, and the staged library directory is in no cache.
if [ -n "$cli" ] && out=$(env -u LD_LIBRARY_PATH "$cli" --version 2>&1) &&
   [ "${out%% *}" = httplock ]; then
	ok "installed httplock --version: $out"
else
	bad "installed httplock --version: ${out:-not installed}"
fi
if [ -n "$cli" ] && readelf -d "$cli" | grep -q 'NEEDED.*libhttplock'; then
	bad "installed httplock needs libhttplock.so (readelf -d)"
else
	ok "installed httplock needs no libhttplock.so"
fi
# Nothing listens on port 1: exit status 5, "unreachable" (httplock(1)).
if [ -n "$cli" ]; then
	env -u LD_LIBRARY_PATH -u HTTPLOCK_URL "$cli" --url http://127.0.0.1:1/ \
		status install-test >"$tmp/status.out" 2>&1
	rc=$?
	if [ $rc -eq 5 ]; then
		ok "installed httplock status against nothing: exit 5"
	else
		bad "installed httplock status against nothing: exit $rc, want 5"
		cat "$tmp/status.out"
	fi
fi

for prog in "$worker" "$coord"; do
	name=${prog##*/}
	if [ -n "$prog" ] && out=$("$prog" --version 2>&1) && [ "${out%% *}" = "$name" ]; then
		ok "installed $name --version: $out"
	else
		bad "installed ${name:-daemon} --version: ${out:-not installed}"
	fi
done

for page in httplock.1 httplock-worker.8 httplock-coord.8; do
	sect=${page##*.}
	if [ -n "$(find_one "*/man/man$sect/$page")" ]; then
		ok "man page $page installed"
	else
		bad "man page $page not installed in man$sect"
	fi
done

if env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
	make -s -C "$builddir" uninstall DESTDIR="$stage" >"$tmp/uninstall.out" 2>&1 &&
   left=$(find "$stage" ! -type d) && [ -z "$left" ]; then
	ok "make uninstall removes every file"
else
	bad "make uninstall left: ${left:-(make failed)}"
	cat "$tmp/uninstall.out"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
