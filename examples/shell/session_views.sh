#!/bin/sh
# Concurrent "AJAX views" updating one session, from the shell.
#
#     session_views.sh curl     # each view takes lock session:<id> with curl
#     session_views.sh run      # each view runs under `httplock run session:<id> -- ...`
#     session_views.sh nolock   # no lock: updates get lost
#
# VIEWS processes (default 20) start together; each reads a JSON session
# file, works 5-20 ms, adds its name to "visited" and bumps "counter", and
# writes the file back.  Prints e.g.
#
#     views=20 updates_expected=20 updates_kept=20 lost=0
#
# and exits 0 if every view ran and kept its update, 1 otherwise (a view
# failed, e.g. the server or the httplock command could not be reached, or
# an update was lost: so `nolock` usually exits 1, which is the race it
# shows).
#
# Environment: HTTPLOCK_URL (default http://127.0.0.1:8080/), HTTPLOCK_BIN
# (the httplock command, default `httplock` on PATH), VIEWS, SESSION (the
# session id, default 42), SESSION_FILE (default in $TMPDIR or /tmp), WAIT
# (seconds a view waits for the lock, default 30).
# Needs curl, sed, awk, od, and a sleep that takes fractions (GNU, BSD).

set -u

mode=${1:-}
case $mode in
curl|run|nolock) ;;
*) echo "usage: $0 curl|run|nolock" >&2; exit 2 ;;
esac

URL=${HTTPLOCK_URL:-http://127.0.0.1:8080/}
URL=${URL%/}
HTTPLOCK_BIN=${HTTPLOCK_BIN:-httplock}
VIEWS=${VIEWS:-20}
WAIT=${WAIT:-30}
SESSION=${SESSION:-42}
FILE=${SESSION_FILE:-${TMPDIR:-/tmp}/httplock-session-$SESSION.json}
LOCK="session:$SESSION"     # no characters that need percent-encoding

# One view: a read-modify-write of the session file, as a small sh program
# ($1: the file, $2: the view's name) so that `httplock run` can run it too.
# The session is {"counter":N,"visited":["view-0",...]}; sed is enough to
# take it apart.
VIEW=$(cat <<'EOF'
f=$1 id=$2
s=$(cat "$f")
counter=$(printf '%s' "$s" | sed -n 's/.*"counter":\([0-9]*\).*/\1/p')
visited=$(printf '%s' "$s" | sed -n 's/.*"visited":\[\([^]]*\)\].*/\1/p')
# "begins processing": 5-20 ms
sleep "$(awk -v seed="$$" 'BEGIN { srand(seed); printf "%.3f", 0.005 + rand() * 0.015 }')"
visited=${visited:+$visited,}\"$id\"
# Write a new file and rename it over the old one, so that no reader sees
# half a file.  (That does not prevent lost updates; only the lock does.)
printf '{"counter":%d,"visited":[%s]}\n' $((counter + 1)) "$visited" > "$f.$$"
mv "$f.$$" "$f"
EOF
)

# The view under the lock, with two curl calls.
curl_view() {
	id=$1
	body=$(mktemp) || return 1
	# A random request_id: if the acquire gets no answer (or 503), asking
	# again with the same id returns the same grant or queue place instead
	# of a second grant.
	rid=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
	tries=0
	while :; do
		code=$(curl -s -o "$body" -w '%{http_code}' --max-time $((WAIT + 10)) \
		    -d "timeout=$WAIT&ttl=10&owner=$id&request_id=$rid" "$URL/lock/$LOCK/acquire")
		case $code in
		200) break ;;
		000|502|503|504)
			tries=$((tries + 1))
			if [ "$tries" -ge 5 ]; then
				echo "$id: acquire failed (HTTP $code): $(cat "$body")" >&2
				# A grant we never saw must not stay behind.
				curl -s -o /dev/null -d "request_id=$rid" "$URL/lock/$LOCK/cancel"
				rm -f "$body"
				return 1
			fi
			sleep 1 ;;
		*)      # 423 timeout, 4xx: the body says {"error":...,"message":...}
			echo "$id: acquire: HTTP $code $(cat "$body")" >&2
			rm -f "$body"
			return 1 ;;
		esac
	done
	token=$(sed -n 's/.*"token":"\([0-9a-f]*\)".*/\1/p' "$body")
	rm -f "$body"

	# Release also when interrupted.
	trap 'release "$id" "$token"; exit 1' INT TERM
	sh -c "$VIEW" view "$FILE" "$id"
	release "$id" "$token"
}

release() {
	code=$(curl -s -o /dev/null -w '%{http_code}' -d "token=$2" "$URL/lock/$LOCK/release")
	case $code in
	200) ;;
	409) echo "$1: lease lost before the release: the write may have clobbered another" >&2 ;;
	*)   echo "$1: release: HTTP $code (the lease will expire by itself)" >&2 ;;
	esac
}

# The view under `httplock run`, which acquires, runs the command, and
# releases (renewing the lease while the command runs).
run_view() {
	"$HTTPLOCK_BIN" run "$LOCK" -w "$WAIT" --ttl 10 -- sh -c "$VIEW" view "$FILE" "$1"
}

printf '{"counter":0,"visited":[]}\n' > "$FILE"       # a fresh session

# Start every view, then let them all go at once, like a burst of AJAX
# requests.
go=$(mktemp -u "${TMPDIR:-/tmp}/httplock-go.XXXXXX")
i=0
pids=
while [ "$i" -lt "$VIEWS" ]; do
	(
		while [ ! -e "$go" ]; do sleep 0.005; done
		case $mode in
		curl)   curl_view "view-$i" ;;
		run)    run_view "view-$i" ;;
		nolock) sh -c "$VIEW" view "$FILE" "view-$i" ;;
		esac
	) &
	pids="$pids $!"
	i=$((i + 1))
done
sleep 0.2
: > "$go"
failed=0
for p in $pids; do
	wait "$p" || failed=$((failed + 1))
done
rm -f "$go"

s=$(cat "$FILE")
kept=$(printf '%s' "$s" | grep -o '"view-[0-9]*"' | wc -l)
counter=$(printf '%s' "$s" | sed -n 's/.*"counter":\([0-9]*\).*/\1/p')
echo "views=$VIEWS updates_expected=$VIEWS updates_kept=$kept lost=$((VIEWS - kept))" \
    "counter=$counter failed=$failed mode=$mode"
[ "$failed" -eq 0 ] && [ "$kept" -eq "$VIEWS" ]
