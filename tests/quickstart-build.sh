#!/bin/bash
# The two build paths side by side, in a scratch copy of the source tree:
# after the in-tree `./configure` of docs/install.md, `./quickstart build`
# builds in-tree (an out-of-tree configure would refuse: "source directory
# already configured") and `./quickstart test` refuses with what to do;
# after `make distclean`, `./quickstart build` builds into ./build again.
# Only common/libcommon.a is built (TARGETS), to keep it short.  Ends with
# "N passed, N failed".
srcdir=${HTTPLOCK_SRCDIR:-.}
passed=0 failed=0
ok() { echo "PASS $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1"; failed=$((failed + 1)); }
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit; }

tmp=$(mktemp -d /tmp/hlqsbuild.XXXXXX) || exit 99
trap 'rm -rf "$tmp"' EXIT
tree=$tmp/src

# The tree with its generated configure, without builds, data or .git.
t0=$(date +%s%N)
mkdir "$tree" &&
tar -C "$srcdir" --exclude=./build --exclude=./build-test --exclude=./build-asan --exclude=./build-fuzz --exclude=./data \
	--exclude=./.git --exclude=./autom4te.cache -cf - . | tar -C "$tree" -xf - ||
	{ bad "copy of $srcdir"; finish; }
chmod -R u+w "$tree"        # a distcheck source tree is read-only
if [ -f "$tree/config.status" ]; then
	# The source itself is configured in-tree: start from a clean copy.
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$tree" distclean >/dev/null 2>&1
fi
if [ ! -x "$tree/configure" ]; then
	(cd "$tree" && autoreconf -fi >/dev/null 2>&1) || { bad "autoreconf"; finish; }
fi
echo "copied $srcdir in $(ms "$t0") ms"

qs() {
	(cd "$tree" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
		TARGETS=common/libcommon.a ./quickstart "$@") >"$tmp/out" 2>&1
}

t0=$(date +%s%N)
if (cd "$tree" && ./configure -q >"$tmp/configure.out" 2>&1); then
	ok "in-tree ./configure ($(ms "$t0") ms)"
else
	bad "in-tree ./configure"; cat "$tmp/configure.out"; finish
fi

t0=$(date +%s%N)
if qs build && [ -f "$tree/common/libcommon.a" ] && [ ! -e "$tree/build/Makefile" ]; then
	ok "./quickstart build after ./configure: in-tree ($(ms "$t0") ms): $(grep -m1 in-tree "$tmp/out")"
else
	bad "./quickstart build after ./configure"; cat "$tmp/out"
fi

t0=$(date +%s%N)
if qs test; then
	bad "./quickstart test ran in a tree configured in-tree"; cat "$tmp/out"
elif grep -q "make distclean" "$tmp/out" && [ ! -e "$tree/build" ] && [ ! -e "$tree/build-asan" ]; then
	ok "./quickstart test refused ($(ms "$t0") ms): $(head -n 1 "$tmp/out")"
else
	bad "./quickstart test: no message saying what to do, or it built"; cat "$tmp/out"
fi

t0=$(date +%s%N)
if (cd "$tree" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s distclean >/dev/null 2>&1) &&
   qs build && [ -f "$tree/build/common/libcommon.a" ]; then
	ok "make distclean, then ./quickstart build: into ./build ($(ms "$t0") ms)"
else
	bad "make distclean, then ./quickstart build"; cat "$tmp/out"
fi
finish
