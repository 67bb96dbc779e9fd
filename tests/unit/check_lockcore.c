/*
 * Unit tests of lockcore: lock semantics on a real SQLite file in a fresh
 * directory per test, under one mkdtemp(3) directory that main() removes
 * at the end, also after failed tests (which skip their teardown).  With
 * HTTPLOCK_TEST_PG set (lctest.h), the same tests run on PostgreSQL, but
 * for the tcase "sqlite": the tests of the SQLite file itself (its bytes,
 * WAL, modes, busy handler, boot-id recovery after a power loss, upgrades
 * of older files, a restored copy).  Time is passed explicitly, so expiry
 * and deadlines are tested without sleeping; processes are real (fork)
 * where liveness or concurrency is the point.  Fences start at the floor
 * each open sets from the wall clock (floor_of()), so tests compare fences
 * with the floor or with each other.
 */
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "clock.h"
#include "lctest.h"
#include "lockcore.h"
#include "proc.h"
#include "secret.h"
#include "unit.h"

/* Per-test state, set up in the forked test process by setup(). */
static char dir[128];
static char dbpath[LCT_PATH_MAX];
static struct lockcore *lc;
static char long_name[LC_KEY_MAX + 2];
static char long_owner[LC_OWNER_MAX + 2];
static char long_rid[LC_REQUEST_ID_MAX + 2];

static const struct lockcore_opts opts = { .busy_timeout_ms = 5000 };

static void
setup(void)
{
	lc = lct_setup(dir, sizeof(dir), dbpath, sizeof(dbpath), &opts);
	memset(long_name, 'n', sizeof(long_name) - 1);
	memset(long_owner, 'o', sizeof(long_owner) - 1);
	memset(long_rid, 'r', sizeof(long_rid) - 1);
}

static void
teardown(void)
{
	lct_teardown(&lc, dir);
}

/* A request for `name` by this process with waiter key `key`. */
static struct lock_acquire_req
mkreq(const char *name, bool wait, uint64_t key)
{
	return lct_req(name, NULL, wait, key);
}

/* The identity of a request of this process with key `key`; its token is
 * unknown ("") until set from the lock_wait_info of its queueing. */
static struct lock_waiter_ident
ident(uint64_t key)
{
	struct lock_waiter_ident w;

	memset(&w, 0, sizeof(w));
	w.pid = getpid();
	w.pstart = proc_start(getpid());
	w.key = key;
	return w;
}

/* Gives *w the token that lock_acquire's LC_QUEUED told in *wi. */
static void
take_token(struct lock_waiter_ident *w, const struct lock_wait_info *wi)
{
	ck_assert_uint_eq(strlen(wi->token), LC_TOKEN_LEN);
	memcpy(w->token, wi->token, sizeof(w->token));
}

/* The fence floor that connection c found at its open. */
static int64_t
floor_of(struct lockcore *c)
{
	struct lockcore_recovery rec;

	lockcore_recovery(c, &rec);
	return rec.fence_floor;
}

static int64_t
max64(int64_t a, int64_t b)
{
	return a > b ? a : b;
}

/* Acquires `name` at `now` and insists on a grant. */
static struct lock_grant
must_grant(struct lockcore *c, const char *name, int64_t now)
{
	struct lock_acquire_req r = mkreq(name, false, 1);

	return lct_grant(c, &r, now);
}

/*
 * Queues a waiter with key `key` on `name` at `now`; returns its id and,
 * in *who (may be NULL), the identity that polls it, with its token.
 */
static int64_t
must_queue(const char *name, uint64_t key, int64_t now, int ahead,
    struct lock_waiter_ident *who)
{
	struct lock_acquire_req r = mkreq(name, true, key);
	struct lock_grant g;
	struct lock_wait_info wi;
	int rc;

	rc = lock_acquire(lc, &r, now, &g, &wi);
	ck_assert_msg(rc == LC_QUEUED, "queue %s: %d", name, rc);
	ck_assert_int_gt(wi.waiter_id, 0);
	ck_assert_int_eq(wi.ahead, ahead);
	if (who != NULL) {
		*who = r.who;
		take_token(who, &wi);
	}
	return wi.waiter_id;
}

static void
must_release(struct lockcore *c, const struct lock_grant *g, int64_t now,
    bool wake)
{
	bool wake_next = !wake;

	ck_assert_int_eq(lock_release(c, g->name, g->token, now, &wake_next, NULL),
	    LC_OK);
	ck_assert(wake_next == wake);
}

/* The integer in the first column of the first row of `sql` on dbpath
 * (its own connection), -1 if there is no row. */
static int64_t
count_rows(const char *sql)
{
	return lct_query_int(dbpath, sql);
}

/*
 * One full round of lockcore_sweep from wherever c's cursor is: the rows
 * after it, then (the cursor having started over) all of them, in at most
 * three calls.  Returns the rows deleted.
 */
static int
sweep_all(struct lockcore *c, int64_t now)
{
	int changed, i, sum = 0;

	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(lockcore_sweep(c, now, INT_MAX, 0, &changed),
		    0);
		sum += changed;
	}
	return sum;
}

/*
 * True if the file at `path` contains the bytes of the string `needle`;
 * a file that does not exist contains nothing.
 */
static bool
file_has(const char *path, const char *needle)
{
	char *buf = NULL;
	size_t len = 0, cap = 0, n;
	FILE *f;
	bool has;

	if ((f = fopen(path, "rb")) == NULL) {
		ck_assert_int_eq(errno, ENOENT);
		return false;
	}
	do {
		if (len == cap) {
			cap = cap == 0 ? 65536 : 2 * cap;
			ck_assert_ptr_nonnull(buf = realloc(buf, cap));
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
	} while (n > 0);
	ck_assert(!ferror(f));
	(void)fclose(f);
	has = memmem(buf, len, needle, strlen(needle)) != NULL;
	free(buf);
	return has;
}

/* file_has() for the -wal of database `path`. */
static bool
wal_has(const char *path, const char *needle)
{
	char wal[PATH_MAX];

	ck_assert(snprintf(wal, sizeof(wal), "%s-wal", path) <
	    (int)sizeof(wal));
	return file_has(wal, needle);
}

/* Copies the file `from` to `to` (created, or truncated, with mode 0600). */
static void
copy_file(const char *from, const char *to)
{
	int in;

	in = open(from, O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(in, 0);
	unit_copy_fd(in, to);
}


START_TEST(test_acquire_free)
{
	struct lock_acquire_req r = mkreq("db/main", false, 1);
	struct lock_grant g;
	struct lock_wait_info wi;
	size_t i;

	ck_assert_int_eq(lock_acquire(lc, &r, T0, &g, &wi), LC_GRANTED);
	ck_assert_str_eq(g.name, "db/main");
	ck_assert_str_eq(g.owner, "tester");
	ck_assert_uint_eq(strlen(g.token), LC_TOKEN_LEN);
	for (i = 0; i < LC_TOKEN_LEN; i++)
		ck_assert_ptr_nonnull(strchr("0123456789abcdef", g.token[i]));
	/* The first grant of a name carries the floor of the open. */
	ck_assert_int_gt(floor_of(lc), clock_wall_ms() * 1000 - 60000000);
	ck_assert_int_eq(g.fence, floor_of(lc));
	ck_assert_int_eq(g.acquired_at, T0);
	ck_assert_int_eq(g.expires_at, T0 + TTL);
	ck_assert_int_eq(g.ttl_ms, TTL);
}
END_TEST

START_TEST(test_busy_and_queue)
{
	struct lock_acquire_req r = mkreq("q", false, 2);
	struct lock_grant g, g2;
	struct lock_wait_info wi;

	g = must_grant(lc, "q", T0);
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 1, &g2, &wi), LC_BUSY);
	ck_assert_int_eq(wi.waiter_id, 0);
	ck_assert_int_eq(wi.ahead, 0);
	ck_assert_int_eq(wi.holder_expires, g.expires_at);
	(void)must_queue("q", 2, T0 + 2, 0, NULL);
	(void)must_queue("q", 3, T0 + 3, 1, NULL);
	/* A busy request after them sees both ahead. */
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 4, &g2, &wi), LC_BUSY);
	ck_assert_int_eq(wi.ahead, 2);
	/* A waiter whose deadline has passed cannot wait: busy. */
	r.wait = true;
	r.deadline = T0 + 5;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 5, &g2, &wi), LC_BUSY);
}
END_TEST

START_TEST(test_release_wrong_token)
{
	struct lock_grant g = must_grant(lc, "r", T0);
	char bad[LC_TOKEN_LEN + 1];
	bool wake;

	memcpy(bad, g.token, sizeof(bad));
	bad[LC_TOKEN_LEN - 1] = bad[LC_TOKEN_LEN - 1] == '0' ? '1' : '0';
	ck_assert_int_eq(lock_release(lc, "r", bad, T0, &wake, NULL), LC_E_NOT_HELD);
	ck_assert_int_eq(lock_release(lc, "r", "abc", T0, &wake, NULL),
	    LC_E_NOT_HELD);
	ck_assert_int_eq(lock_release(lc, "other", g.token, T0, &wake, NULL),
	    LC_E_NOT_HELD);
	must_release(lc, &g, T0, false);
	ck_assert_int_eq(lock_release(lc, "r", g.token, T0, &wake, NULL),
	    LC_E_NOT_HELD);
}
END_TEST

START_TEST(test_release_wakes_poll_grants)
{
	struct lock_waiter_ident who;
	struct lock_acquire_req r;
	struct lock_grant g, g2;
	struct lock_wait_info wi;
	int64_t id;
	bool wake;

	g = must_grant(lc, "p", T0);
	id = must_queue("p", 7, T0 + 1, 0, &who);
	ck_assert_int_eq(lock_wait_poll(lc, id, &who, T0 + 2, &g2, &wi, &wake),
	    LC_QUEUED);
	ck_assert_int_eq(wi.waiter_id, id);
	ck_assert_int_eq(wi.holder_expires, g.expires_at);
	ck_assert(!wake);
	must_release(lc, &g, T0 + 3, true);
	/* Free, but a newcomer does not jump the queue. */
	r = mkreq("p", false, 8);
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 3, &g2, &wi), LC_BUSY);
	ck_assert_int_eq(wi.ahead, 1);
	ck_assert_int_eq(wi.holder_expires, 0);
	ck_assert_int_eq(lock_wait_poll(lc, id, &who, T0 + 4, &g2, &wi, &wake),
	    LC_GRANTED);
	ck_assert_int_eq(g2.fence, g.fence + 1);
	ck_assert_str_eq(g2.name, "p");
	ck_assert_str_eq(g2.owner, "tester");
	ck_assert_int_eq(g2.acquired_at, T0 + 4);
	ck_assert_int_eq(g2.expires_at, T0 + 4 + TTL);
	ck_assert_str_ne(g2.token, g.token);
	ck_assert_str_eq(g2.token, who.token);  /* told when it queued */
	ck_assert(!wake);
	ck_assert(!wi.handed);
	/* The row became the grant: looking again returns it, read only. */
	g = g2;
	ck_assert_int_eq(lock_wait_poll(lc, id, &who, T0 + 5, &g2, &wi, &wake),
	    LC_GRANTED);
	ck_assert_str_eq(g2.token, g.token);
	ck_assert(wi.handed);
	must_release(lc, &g2, T0 + 6, false);
	/* Released: gone. */
	ck_assert_int_eq(lock_wait_poll(lc, id, &who, T0 + 7, &g2, &wi, &wake),
	    LC_E_GONE);
}
END_TEST

#define NFIFO 8

START_TEST(test_fifo)
{
	struct lock_waiter_ident who[NFIFO];
	struct lock_grant g, g2;
	struct lock_wait_info wi;
	int64_t id[NFIFO];
	int64_t now = T0, f0;
	int i, j;
	bool wake;

	g = must_grant(lc, "fifo", now++);
	f0 = g.fence;
	for (i = 0; i < NFIFO; i++)
		id[i] = must_queue("fifo", (uint64_t)i + 100, now++, i,
		    &who[i]);
	for (i = 0; i < NFIFO; i++) {
		must_release(lc, &g, now++, true);
		/* Everybody polls, the last first; only the head is granted. */
		for (j = NFIFO - 1; j > i; j--) {
			ck_assert_int_eq(lock_wait_poll(lc, id[j], &who[j],
			    now++, &g2, &wi, &wake), LC_QUEUED);
			ck_assert_int_eq(wi.ahead, j - i);
			ck_assert(wake);  /* room, and the head must be told */
		}
		ck_assert_int_eq(lock_wait_poll(lc, id[i], &who[i], now++, &g,
		    &wi, &wake), LC_GRANTED);
		ck_assert_int_eq(g.fence, f0 + i + 1);
	}
	must_release(lc, &g, now, false);
}
END_TEST

START_TEST(test_fence_persists)
{
	struct lock_status st;
	struct lock_grant g;
	int64_t now = T0, f;

	g = must_grant(lc, "f", now);
	f = g.fence;
	must_release(lc, &g, now + 1, false);
	g = must_grant(lc, "f", now + 2);
	ck_assert_int_eq(g.fence, f + 1);
	/* Let it expire; the next grant still gets a new fence. */
	now += 2 + TTL;
	g = must_grant(lc, "f", now);
	ck_assert_int_eq(g.fence, f + 2);
	lockcore_close(lc);
	lc = lct_open(dbpath, &opts);
	ck_assert_int_ge(floor_of(lc), f);
	ck_assert_int_eq(lock_status(lc, "f", now + 1, &st), 0);
	ck_assert_int_eq(st.nholders, 1);
	ck_assert_int_eq(st.holders[0].fence, f + 2);
	ck_assert_int_eq(st.holders[0].expires_at, g.expires_at);
	ck_assert_int_eq(lock_renew(lc, "f", g.token, TTL, now + 1, &g), LC_OK);
	must_release(lc, &g, now + 2, false);
	/* Above the last fence, and at least the floor of this open. */
	g = must_grant(lc, "f", now + 3);
	ck_assert_int_eq(g.fence, max64(f + 3, floor_of(lc)));
	f = g.fence;
	/* Reopen once more and let the grant expire while closed. */
	lockcore_close(lc);
	lc = lct_open(dbpath, &opts);
	g = must_grant(lc, "f", now + 3 + TTL);
	ck_assert_int_eq(g.fence, max64(f + 1, floor_of(lc)));
}
END_TEST

START_TEST(test_expiry)
{
	struct lock_waiter_ident who;
	struct lock_acquire_req r = mkreq("e", false, 1);
	struct lock_status st;
	struct lock_grant g, g2;
	struct lock_wait_info wi;
	int64_t id;
	bool wake;

	r.ttl_ms = 1000;
	ck_assert_int_eq(lock_acquire(lc, &r, T0, &g, &wi), LC_GRANTED);
	id = must_queue("e", 9, T0 + 10, 0, &who);
	ck_assert_int_eq(lock_status(lc, "e", T0 + 999, &st), 0);
	ck_assert_int_eq(st.nholders, 1);
	ck_assert_int_eq(lock_wait_poll(lc, id, &who, T0 + 999, &g2, &wi,
	    &wake), LC_QUEUED);
	ck_assert_int_eq(lock_status(lc, "e", T0 + 1000, &st), 0);
	ck_assert_int_eq(st.nholders, 0);
	ck_assert_int_eq(st.waiters, 1);
	ck_assert_int_eq(lock_wait_poll(lc, id, &who, T0 + 1000, &g2, &wi,
	    &wake), LC_GRANTED);
	ck_assert_int_eq(g2.fence, g.fence + 1);
	ck_assert_int_eq(lock_release(lc, "e", g.token, T0 + 1000, &wake, NULL),
	    LC_E_NOT_HELD);
	ck_assert_int_eq(lock_renew(lc, "e", g.token, TTL, T0 + 1000, &g),
	    LC_E_NOT_HELD);
}
END_TEST

START_TEST(test_renew)
{
	struct lock_grant g, g2;
	bool wake;

	g = must_grant(lc, "n", T0);
	ck_assert_int_eq(lock_renew(lc, "n", g.token, 50000, T0 + 5000, &g2),
	    LC_OK);
	ck_assert_str_eq(g2.token, g.token);
	ck_assert_int_eq(g2.fence, g.fence);
	ck_assert_int_eq(g2.acquired_at, T0);
	ck_assert_int_eq(g2.expires_at, T0 + 55000);
	/* Alive past the original ttl. */
	ck_assert_int_eq(lock_renew(lc, "n", g.token, 1000, T0 + TTL + 1, &g2),
	    LC_OK);
	ck_assert_int_eq(g2.expires_at, T0 + TTL + 1001);
	ck_assert_int_eq(lock_renew(lc, "n", "0123", 1000, T0 + TTL + 2, &g2),
	    LC_E_NOT_HELD);
	ck_assert_int_eq(lock_renew(lc, "n", g.token, 1000, T0 + TTL + 1001,
	    &g2), LC_E_NOT_HELD);
	ck_assert_int_eq(lock_release(lc, "n", g.token, T0 + TTL + 1001,
	    &wake, NULL), LC_E_NOT_HELD);
}
END_TEST

START_TEST(test_cancel)
{
	struct lock_waiter_ident who = ident(5);
	struct lock_acquire_req r = mkreq("c", true, 5);
	struct lock_status st;
	struct lock_grant g, g2;
	struct lock_wait_info wi;
	int64_t kick;
	bool held, wake;

	g = must_grant(lc, "c", T0);
	r.request_id = "req-w";
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 1, &g2, &wi), LC_QUEUED);
	take_token(&who, &wi);
	ck_assert_int_eq(lock_cancel(lc, "c", "req-w", T0 + 2, &held, &kick,
	    &wake, NULL), LC_OK);
	ck_assert(!held);
	ck_assert_int_eq(kick, wi.waiter_id);
	ck_assert(wake);
	ck_assert_int_eq(lock_wait_poll(lc, wi.waiter_id, &who, T0 + 3, &g2,
	    &wi, &wake), LC_E_GONE);
	must_release(lc, &g, T0 + 4, false);

	r.request_id = "req-g";
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 5, &g2, &wi), LC_GRANTED);
	(void)must_queue("c", 6, T0 + 6, 0, NULL);
	ck_assert_int_eq(lock_cancel(lc, "c", "req-g", T0 + 7, &held, &kick,
	    &wake, NULL), LC_OK);
	ck_assert(held);
	ck_assert_int_eq(kick, 0);
	ck_assert(wake);
	ck_assert_int_eq(lock_status(lc, "c", T0 + 8, &st), 0);
	ck_assert_int_eq(st.nholders, 0);
	ck_assert_int_eq(lock_cancel(lc, "c", "req-g", T0 + 9, &held, &kick,
	    &wake, NULL), LC_E_NOT_HELD);
	ck_assert_int_eq(lock_cancel(lc, "none", "req-g", T0 + 9, &held, &kick,
	    &wake, NULL), LC_E_NOT_HELD);
	ck_assert_int_eq(lock_release(lc, "c", g2.token, T0 + 10, &wake, NULL),
	    LC_E_NOT_HELD);
}
END_TEST

START_TEST(test_request_id_retry)
{
	struct lock_acquire_req r = mkreq("rid", false, 1);
	struct lock_waiter_ident w1 = ident(11), w2 = ident(12);
	struct lock_grant g, g2, g3;
	struct lock_wait_info wi, wi2;
	bool wake;

	/* Granted: the retry gets the same grant. */
	r.request_id = "A";
	ck_assert_int_eq(lock_acquire(lc, &r, T0, &g, &wi), LC_GRANTED);
	r.who.key = 99;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 1, &g2, &wi), LC_GRANTED);
	ck_assert_str_eq(g2.token, g.token);
	ck_assert_int_eq(g2.fence, g.fence);
	ck_assert_int_eq(g2.expires_at, g.expires_at);

	/* Queued: the retry takes the waiter row over. */
	r = mkreq("rid", true, 11);
	r.request_id = "B";
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 2, &g2, &wi), LC_QUEUED);
	r.who.key = 12;
	r.deadline = T0 + 2 * WAITMS;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 3, &g2, &wi2), LC_QUEUED);
	ck_assert_int_eq(wi2.waiter_id, wi.waiter_id);
	ck_assert_int_eq(wi2.ahead, 0);
	/* The retry is told the same token, unsealed with "B". */
	ck_assert_str_eq(wi2.token, wi.token);
	take_token(&w1, &wi);
	take_token(&w2, &wi2);
	ck_assert_int_eq(lock_wait_poll(lc, wi.waiter_id, &w1, T0 + 4, &g2,
	    &wi2, &wake), LC_E_SUPERSEDED);
	ck_assert_int_eq(lock_wait_abandon(lc, wi.waiter_id, &w1, T0 + 4,
	    &wake, NULL), LC_E_SUPERSEDED);
	must_release(lc, &g, T0 + 5, true);
	ck_assert_int_eq(lock_wait_poll(lc, wi.waiter_id, &w2, T0 + 6, &g2,
	    &wi2, &wake), LC_GRANTED);
	ck_assert_str_eq(g2.token, w2.token);
	/* The grant the waiter received answers the next retry. */
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 7, &g3, &wi2), LC_GRANTED);
	ck_assert_str_eq(g3.token, g2.token);
	ck_assert_int_eq(g3.fence, g.fence + 1);
	/* Once that grant expires, the request_id may be granted anew. */
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 6 + TTL, &g3, &wi2),
	    LC_GRANTED);
	ck_assert_str_ne(g3.token, g2.token);
	ck_assert_int_eq(g3.fence, g.fence + 2);
	/* Empty request_id means none: no retry semantics. */
	r.request_id = "";
	r.wait = false;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 8 + TTL, &g3, &wi2),
	    LC_BUSY);
}
END_TEST

START_TEST(test_abandon)
{
	struct lock_waiter_ident wa, wb, bad = ident(23);
	struct lock_grant g, g2;
	struct lock_wait_info wi;
	int64_t a, b, f0;
	bool wake;

	g = must_grant(lc, "ab", T0);
	f0 = g.fence;
	a = must_queue("ab", 21, T0 + 1, 0, &wa);
	b = must_queue("ab", 22, T0 + 2, 1, &wb);
	ck_assert_int_eq(lock_wait_abandon(lc, a, &bad, T0 + 3, &wake, NULL),
	    LC_E_SUPERSEDED);
	ck_assert(!wake);
	ck_assert_int_eq(lock_wait_poll(lc, b, &wb, T0 + 4, &g2, &wi, &wake),
	    LC_QUEUED);
	ck_assert_int_eq(wi.ahead, 1);
	ck_assert_int_eq(lock_wait_abandon(lc, a, &wa, T0 + 5, &wake, NULL),
	    LC_OK);
	ck_assert(wake);
	ck_assert_int_eq(lock_wait_abandon(lc, a, &wa, T0 + 6, &wake, NULL),
	    LC_E_GONE);
	ck_assert_int_eq(lock_wait_poll(lc, b, &wb, T0 + 7, &g2, &wi, &wake),
	    LC_QUEUED);
	ck_assert_int_eq(wi.ahead, 0);
	must_release(lc, &g, T0 + 8, true);
	ck_assert_int_eq(lock_wait_poll(lc, b, &wb, T0 + 9, &g2, &wi, &wake),
	    LC_GRANTED);
	ck_assert_int_eq(g2.fence, f0 + 1);
	/* Leaving after the grant (the client went away before it was told)
	 * releases the grant; another request's key cannot. */
	ck_assert_int_eq(lock_wait_abandon(lc, b, &bad, T0 + 10, &wake, NULL),
	    LC_E_SUPERSEDED);
	ck_assert_int_eq(lock_wait_abandon(lc, b, &wb, T0 + 10, &wake, NULL),
	    LC_OK);
	ck_assert(!wake);
	ck_assert_int_eq(lock_wait_abandon(lc, b, &wb, T0 + 11, &wake, NULL),
	    LC_E_GONE);
	g = must_grant(lc, "ab", T0 + 12);
	ck_assert_int_eq(g.fence, f0 + 2);
}
END_TEST

START_TEST(test_dead_waiters_skipped)
{
	struct lock_acquire_req r = mkreq("dead", true, 31);
	struct lock_waiter_ident w1 = ident(31), w2 = ident(32), w3;
	struct lock_grant g, g2;
	struct lock_wait_info wi;
	int64_t id1, id2, id3;
	bool wake;

	g = must_grant(lc, "dead", T0);
	r.who.pid = lct_dead_pid();
	r.who.pstart = 12345;
	w1.pid = r.who.pid;
	w1.pstart = r.who.pstart;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 1, &g2, &wi), LC_QUEUED);
	id1 = wi.waiter_id;
	/* This process, but a start time it never had: a reused pid. */
	r = mkreq("dead", true, 32);
	r.who.pstart += 1;
	w2.pstart = r.who.pstart;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 2, &g2, &wi), LC_QUEUED);
	id2 = wi.waiter_id;
	/* Only the head is checked for life; the rest count by deadline. */
	id3 = must_queue("dead", 33, T0 + 3, 0, &w3);
	ck_assert_int_eq(lock_wait_poll(lc, id3, &w3, T0 + 4, &g2, &wi, &wake),
	    LC_QUEUED);
	ck_assert_int_eq(wi.ahead, 0);
	must_release(lc, &g, T0 + 5, true);
	ck_assert_int_eq(lock_wait_poll(lc, id3, &w3, T0 + 6, &g2, &wi, &wake),
	    LC_GRANTED);
	ck_assert_int_eq(lock_wait_poll(lc, id1, &w1, T0 + 7, &g2, &wi, &wake),
	    LC_E_GONE);
	ck_assert_int_eq(lock_wait_poll(lc, id2, &w2, T0 + 7, &g2, &wi, &wake),
	    LC_E_GONE);
}
END_TEST

START_TEST(test_dead_waiters_free_lock)
{
	struct lock_acquire_req r = mkreq("df", true, 41);
	struct lock_grant g, g2;
	struct lock_wait_info wi;

	/* A waiter past its deadline is dead too. */
	r.deadline = T0 + 100;
	g = must_grant(lc, "df", T0);
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 1, &g2, &wi), LC_QUEUED);
	must_release(lc, &g, T0 + 2, true);
	/* Nobody live queues any more: a new request is granted. */
	g2 = must_grant(lc, "df", T0 + 100);
	ck_assert_int_eq(g2.fence, g.fence + 1);
}
END_TEST

START_TEST(test_waiter_cap)
{
	struct lock_acquire_req r = mkreq("cap", true, 51);
	struct lock_grant g, g2;
	struct lock_wait_info wi;
	pid_t gone = lct_dead_pid();

	g = must_grant(lc, "cap", T0);
	r.max_waiters = 2;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 1, &g2, &wi), LC_QUEUED);
	r.who.key = 52;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 2, &g2, &wi), LC_QUEUED);
	r.who.key = 53;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 3, &g2, &wi),
	    LC_E_TOO_MANY);
	/* Without wait the cap does not matter. */
	r.wait = false;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 3, &g2, &wi), LC_BUSY);
	ck_assert_int_eq(wi.ahead, 2);

	g = must_grant(lc, "cap2", T0);
	ck_assert_int_eq(lock_renew(lc, "cap2", g.token, 2 * WAITMS, T0, &g),
	    LC_OK);
	r = mkreq("cap2", true, 54);
	r.max_waiters = 2;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 1, &g2, &wi), LC_QUEUED);
	/* A waiter from a dead process behind the head fills the count... */
	r.who.key = 55;
	r.who.pid = gone;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 2, &g2, &wi), LC_QUEUED);
	/* ...until the cap makes lockcore look closer and remove it. */
	r = mkreq("cap2", true, 56);
	r.max_waiters = 2;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 3, &g2, &wi), LC_QUEUED);
	ck_assert_int_eq(wi.ahead, 1);
	r.who.key = 57;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 4, &g2, &wi),
	    LC_E_TOO_MANY);
	/* Waiters past their deadline do not count. */
	r.deadline = T0 + 2 * WAITMS;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + WAITMS, &g2, &wi),
	    LC_QUEUED);
	ck_assert_int_eq(wi.ahead, 0);
}
END_TEST

/*
 * A queue longer than the PostgreSQL store reads at once (the first 8
 * rows with the lock's row, then pages of 32): the cap counts every live
 * waiter, and a dead one past those makes room.
 */
START_TEST(test_waiter_cap_long_queue)
{
	struct lock_acquire_req r;
	struct lock_grant g, g2;
	struct lock_wait_info wi;
	pid_t gone = lct_dead_pid();
	int i;

	g = must_grant(lc, "capq", T0);
	for (i = 0; i < 60; i++) {
		r = mkreq("capq", true, 100 + (uint64_t)i);
		r.max_waiters = 61;
		if (i == 57)
			r.who.pid = gone;
		ck_assert_int_eq(lock_acquire(lc, &r, T0 + 1 + i, &g2, &wi),
		    LC_QUEUED);
		ck_assert_int_eq(wi.ahead, i);
	}
	r = mkreq("capq", true, 200);
	r.max_waiters = 60;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 70, &g2, &wi), LC_QUEUED);
	ck_assert_int_eq(wi.ahead, 59);
	r.who.key = 201;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 71, &g2, &wi),
	    LC_E_TOO_MANY);
	ck_assert_int_eq(count_rows("SELECT nwait FROM locks"
	    " WHERE name = 'capq'"), 60);
	(void)g;
}
END_TEST

START_TEST(test_status)
{
	struct lock_acquire_req r = mkreq("st", true, 61);
	struct lock_status st;
	struct lock_grant g, g2;
	struct lock_wait_info wi;

	ck_assert_int_eq(lock_status(lc, "never", T0, &st), 0);
	ck_assert_int_eq(st.nholders, 0);
	ck_assert_int_eq(st.waiters, 0);
	r.owner = "alice";
	r.wait = false;
	ck_assert_int_eq(lock_acquire(lc, &r, T0, &g, &wi), LC_GRANTED);
	r.wait = true;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 1, &g2, &wi), LC_QUEUED);
	r.deadline = T0 + 500;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 2, &g2, &wi), LC_QUEUED);
	ck_assert_int_eq(lock_status(lc, "st", T0 + 3, &st), 0);
	ck_assert_int_eq(st.nholders, 1);
	ck_assert_str_eq(st.holders[0].owner, "alice");
	ck_assert_int_eq(st.holders[0].fence, g.fence);
	ck_assert_int_eq(st.holders[0].acquired_at, T0);
	ck_assert_int_eq(st.holders[0].expires_at, T0 + TTL);
	ck_assert_int_eq(st.waiters, 2);
	ck_assert_int_eq(lock_status(lc, "st", T0 + 500, &st), 0);
	ck_assert_int_eq(st.waiters, 1);
	ck_assert_int_eq(lock_status(lc, "st", T0 + TTL, &st), 0);
	ck_assert_int_eq(st.nholders, 0);
}
END_TEST

/* lock_list: collects names into a comma-separated string. */
struct collect {
	char names[512];
	int  stop_after;  /* 0: never stop */
	int  n;
	int  holders, waiters;  /* summed */
};

static int
collect(const struct lock_list_entry *e, void *arg)
{
	struct collect *c = arg;
	size_t len = strlen(c->names);
	int n;

	n = snprintf(c->names + len, sizeof(c->names) - len, "%s%s",
	    len > 0 ? "," : "", e->name);
	ck_assert(n > 0 && (size_t)n < sizeof(c->names) - len);
	c->holders += e->holders;
	c->waiters += e->waiters;
	c->n++;
	return c->stop_after != 0 && c->n >= c->stop_after;
}

static const struct list_case {
	int         line;
	const char *prefix;
	const char *skip;
	const char *after;
	int         limit;
	int         stop_after;
	const char *want;
	bool        more;
} list_cases[] = {
	{ __LINE__, NULL, NULL, NULL, 100, 0,
	  "a,app/1,app/2,app/3,app\xff,app\xffx,b,w,\xff\xff", false },
	{ __LINE__, "", NULL, "", 3, 0, "a,app/1,app/2", true },
	{ __LINE__, NULL, NULL, "app/2", 3, 0, "app/3,app\xff,app\xffx", true },
	{ __LINE__, NULL, NULL, "w", 3, 0, "\xff\xff", false },
	{ __LINE__, "app/", NULL, NULL, 100, 0, "app/1,app/2,app/3", false },
	{ __LINE__, "app/", NULL, NULL, 3, 0, "app/1,app/2,app/3", false },
	{ __LINE__, "app/", NULL, NULL, 2, 0, "app/1,app/2", true },
	{ __LINE__, "app/", NULL, "app/1", 1, 0, "app/2", true },
	{ __LINE__, "app/", NULL, "app/2", 1, 0, "app/3", false },
	{ __LINE__, "app\xff", NULL, NULL, 100, 0, "app\xff,app\xffx", false },
	{ __LINE__, "\xff", NULL, NULL, 100, 0, "\xff\xff", false },
	{ __LINE__, "app", NULL, NULL, 100, 0,
	  "app/1,app/2,app/3,app\xff,app\xffx", false },
	{ __LINE__, "idle", NULL, NULL, 100, 0, "", false },
	{ __LINE__, "zzz", NULL, NULL, 100, 0, "", false },
	{ __LINE__, NULL, NULL, NULL, 100, 2, "a,app/1", true },
	/* skip: the default namespace leaves out tenants' keys ("/t/x"). */
	{ __LINE__, NULL, "app/", NULL, 100, 0,
	  "a,app\xff,app\xffx,b,w,\xff\xff", false },
	{ __LINE__, NULL, "app/", "a", 2, 0, "app\xff,app\xffx", true },
	{ __LINE__, "app", "app/", NULL, 100, 0, "app\xff,app\xffx", false },
	{ __LINE__, "app/", "app/", NULL, 100, 0, "", false },
	{ __LINE__, NULL, "", NULL, 3, 0, "a,app/1,app/2", true },
	{ __LINE__, NULL, "app", NULL, 100, 0, "a,b,w,\xff\xff", false },
	{ __LINE__, NULL, "\xff", NULL, 100, 0,
	  "a,app/1,app/2,app/3,app\xff,app\xffx,b,w", false },
	{ __LINE__, NULL, "zzz", NULL, 100, 0,
	  "a,app/1,app/2,app/3,app\xff,app\xffx,b,w,\xff\xff", false },
};

START_TEST(test_list)
{
	static const char *const held[] = { "a", "app/1", "app/2", "app/3",
	    "app\xff", "app\xffx", "b", "\xff\xff", "idle" };
	const struct list_case *tc = &list_cases[_i];
	struct lock_acquire_req r;
	struct lock_grant g;
	struct lock_wait_info wi;
	struct collect c;
	int64_t now = T0 + 200;
	size_t i;
	bool more;

	for (i = 0; i < sizeof(held) / sizeof(held[0]); i++)
		g = must_grant(lc, held[i], T0);
	must_release(lc, &g, T0, false);  /* "idle" is used but not held */
	/* "w" has only a waiter: its holder expired. */
	r = mkreq("w", false, 1);
	r.ttl_ms = 100;
	ck_assert_int_eq(lock_acquire(lc, &r, T0, &g, &wi), LC_GRANTED);
	(void)must_queue("w", 2, T0 + 1, 0, NULL);

	memset(&c, 0, sizeof(c));
	c.stop_after = tc->stop_after;
	more = !tc->more;
	ck_assert_int_eq(lock_list(lc, tc->prefix, tc->skip, tc->after,
	    tc->limit, now, collect, &c, &more), 0);
	ck_assert_msg(strcmp(c.names, tc->want) == 0,
	    "line %d: got \"%s\", want \"%s\"", tc->line, c.names, tc->want);
	ck_assert_msg(more == tc->more, "line %d: more %d", tc->line, more);
	if (tc->prefix == NULL && tc->skip == NULL && tc->after == NULL &&
	    tc->stop_after == 0) {
		ck_assert_int_eq(c.holders, 8);
		ck_assert_int_eq(c.waiters, 1);
	}
}
END_TEST

/*
 * lockcore_sweep deletes expired holders and the rows of idle locks (no
 * holder left, no waiter row).  A lock with a waiter row stays, even a
 * dead one: dead waiters are removed when they reach the head.
 */
START_TEST(test_sweep)
{
	struct lock_acquire_req r;
	struct lock_waiter_ident wd = ident(71);
	struct lock_handoff ho;
	struct lock_status st;
	struct lock_grant g, g2, gs2;
	struct lock_wait_info wi;
	int64_t dead_id;
	int changed = -1, reaped = lct_pg() ? 1 : 0;
	bool wake;

	/* s1: expired holder.  s2: waiter of a dead process. */
	r = mkreq("s1", false, 1);
	r.ttl_ms = 100;
	ck_assert_int_eq(lock_acquire(lc, &r, T0, &g, &wi), LC_GRANTED);
	gs2 = must_grant(lc, "s2", T0);
	r = mkreq("s2", true, 71);
	r.who.pid = wd.pid = lct_dead_pid();
	ck_assert_int_eq(lock_acquire(lc, &r, T0, &g2, &wi), LC_QUEUED);
	take_token(&wd, &wi);
	dead_id = wi.waiter_id;
	/* s3: live holder, live waiter.  s4: waiter past its deadline.
	 * s5: released, idle. */
	g = must_grant(lc, "s3", T0);
	(void)must_queue("s3", 72, T0, 0, NULL);
	g = must_grant(lc, "s4", T0);
	r = mkreq("s4", true, 73);
	r.deadline = T0 + 100;
	ck_assert_int_eq(lock_acquire(lc, &r, T0, &g2, &wi), LC_QUEUED);
	g = must_grant(lc, "s5", T0);
	must_release(lc, &g, T0, false);

	/* A new connection's cursor is at the start: one call, all rows:
	 * s1's holder, s1's and s5's rows; on a shared store also this
	 * host's waiter rows whose process is gone (s2's), which other
	 * hosts cannot judge. */
	ck_assert_int_eq(lockcore_sweep(lc, T0 + 100, 100, 0, &changed), 0);
	ck_assert_int_eq(changed, 3 + reaped);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM locks"
	    " WHERE name IN ('s1', 's5')"), 0);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM locks"), 3);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM waiters"),
	    3 - reaped);
	ck_assert_int_eq(sweep_all(lc, T0 + 100), 0);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM waiters"),
	    3 - reaped);
	ck_assert_int_eq(lock_status(lc, "s3", T0 + 101, &st), 0);
	ck_assert_int_eq(st.nholders, 1);
	ck_assert_int_eq(st.waiters, 1);
	ck_assert_int_eq(lock_status(lc, "s1", T0 + 101, &st), 0);
	ck_assert_int_eq(st.nholders, 0);
	/* Freed, s2 finds its head dead, removes it and grants nobody... */
	memset(&ho, 0, sizeof(ho));
	ck_assert_int_eq(lock_release(lc, "s2", gs2.token, T0 + 101, &wake,
	    &ho), LC_OK);
	ck_assert_int_eq(ho.waiter_id, 0);
	ck_assert(!wake);
	ck_assert_int_eq(lock_wait_poll(lc, dead_id, &wd, T0 + 101, &g2, &wi,
	    &wake), LC_E_GONE);
	/* ...and is idle now. */
	ck_assert_int_eq(sweep_all(lc, T0 + 102), 1);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM locks"
	    " WHERE name = 's2'"), 0);
	/* s4's waiter row goes a minute after its deadline (its request has
	 * answered by then), and s4, idle then, with it; s3's stays. */
	(void)sweep_all(lc, T0 + 100 + 59999);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM waiters w JOIN locks l"
	    " ON l.id = w.lock_id WHERE l.name = 's4'"), 1);
	(void)sweep_all(lc, T0 + 100 + 60000);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM locks"
	    " WHERE name = 's4'"), 0);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM waiters w JOIN locks l"
	    " ON l.id = w.lock_id WHERE l.name = 's3'"), 1);
}
END_TEST

/* lock_acquire argument checks, one row per bad field. */
static const struct inval_case {
	int         line;
	const char *name;
	const char *owner;
	const char *rid;
	int64_t     ttl_ms;
	int         max_waiters;
} inval_cases[] = {
	{ __LINE__, NULL, NULL, NULL, TTL, 1 },
	{ __LINE__, "", NULL, NULL, TTL, 1 },
	{ __LINE__, long_name, NULL, NULL, TTL, 1 },
	{ __LINE__, "x", long_owner, NULL, TTL, 1 },
	{ __LINE__, "x", NULL, long_rid, TTL, 1 },
	{ __LINE__, "x", NULL, NULL, 0, 1 },
	{ __LINE__, "x", NULL, NULL, -5, 1 },
	{ __LINE__, "x", NULL, NULL, INT64_MAX, 1 },
	{ __LINE__, "x", NULL, NULL, TTL, 0 },
	{ __LINE__, "x", NULL, NULL, TTL, -1 },
};

START_TEST(test_acquire_inval)
{
	const struct inval_case *tc = &inval_cases[_i];
	struct lock_acquire_req r = mkreq("x", true, 1);
	struct lock_grant g;
	struct lock_wait_info wi;
	int rc;

	r.name = tc->name;
	r.owner = tc->owner;
	r.request_id = tc->rid;
	r.ttl_ms = tc->ttl_ms;
	r.max_waiters = tc->max_waiters;
	rc = lock_acquire(lc, &r, T0, &g, &wi);
	ck_assert_msg(rc == LC_E_INVAL, "line %d: rc %d", tc->line, rc);
	/* The longest valid values are accepted. */
	long_name[LC_KEY_MAX] = '\0';
	long_owner[LC_OWNER_MAX] = '\0';
	long_rid[LC_REQUEST_ID_MAX] = '\0';
	r = mkreq(long_name, false, 1);
	r.owner = long_owner;
	r.request_id = long_rid;
	ck_assert_int_eq(lock_acquire(lc, &r, T0, &g, &wi), LC_GRANTED);
	ck_assert_str_eq(g.name, long_name);
	ck_assert_str_eq(g.owner, long_owner);
}
END_TEST

START_TEST(test_other_inval)
{
	struct lock_waiter_ident who = ident(1);
	struct lock_grant g = must_grant(lc, "x", T0);
	struct lock_wait_info wi;
	struct lock_status st;
	struct collect c;
	int64_t kick;
	int changed;
	bool b;

	ck_assert_int_eq(lock_release(lc, "", g.token, T0, &b, NULL),
	    LC_E_INVAL);
	ck_assert_int_eq(lock_release(lc, long_name, g.token, T0, &b, NULL),
	    LC_E_INVAL);
	ck_assert_int_eq(lock_release(lc, "x", NULL, T0, &b, NULL),
	    LC_E_INVAL);
	ck_assert_int_eq(lock_renew(lc, "x", g.token, -1, T0, &g), LC_E_INVAL);
	ck_assert_int_eq(lock_renew(lc, "x", g.token, INT64_MAX, T0, &g),
	    LC_E_INVAL);
	ck_assert_int_eq(lock_cancel(lc, "x", NULL, T0, &b, &kick, &b, NULL),
	    LC_E_INVAL);
	ck_assert_int_eq(lock_cancel(lc, "x", "", T0, &b, &kick, &b, NULL),
	    LC_E_INVAL);
	ck_assert_int_eq(lock_cancel(lc, "x", long_rid, T0, &b, &kick, &b,
	    NULL), LC_E_INVAL);
	ck_assert_int_eq(lock_wait_poll(lc, 0, &who, T0, &g, &wi, &b),
	    LC_E_INVAL);
	ck_assert_int_eq(lock_wait_abandon(lc, -1, &who, T0, &b, NULL),
	    LC_E_INVAL);
	ck_assert_int_eq(lock_status(lc, NULL, T0, &st), LC_E_INVAL);
	ck_assert_int_eq(lock_list(lc, NULL, NULL, NULL, 0, T0, collect, &c,
	    &b), LC_E_INVAL);
	ck_assert_int_eq(lock_list(lc, long_name, NULL, NULL, 1, T0, collect,
	    &c, &b), LC_E_INVAL);
	ck_assert_int_eq(lock_list(lc, NULL, long_name, NULL, 1, T0, collect,
	    &c, &b), LC_E_INVAL);
	ck_assert_int_eq(lock_list(lc, NULL, NULL, long_name, 1, T0, collect,
	    &c, &b), LC_E_INVAL);
	ck_assert_int_eq(lock_list(lc, NULL, NULL, NULL, 1, T0, NULL, &c, &b),
	    LC_E_INVAL);
	ck_assert_int_eq(lockcore_sweep(lc, T0, 10, 0, NULL), LC_E_INVAL);
	ck_assert_int_eq(lockcore_sweep(NULL, T0, 10, 0, &changed),
	    LC_E_INVAL);
	ck_assert_int_eq(lockcore_sweep(lc, T0, 0, 0, &changed), LC_E_INVAL);
	ck_assert_int_eq(lockcore_sweep(lc, T0, -1, 0, &changed), LC_E_INVAL);
	ck_assert_int_eq(lockcore_sweep(lc, T0, 10, -1, &changed),
	    LC_E_INVAL);
	/* Nothing above changed the grant. */
	ck_assert_int_eq(lock_renew(lc, "x", g.token, TTL, T0, &g), LC_OK);
}
END_TEST

/* Size of the WAL of dbpath in bytes, 0 if there is none. */
static off_t
wal_size(void)
{
	char path[160];
	struct stat sb;

	ck_assert(snprintf(path, sizeof(path), "%s-wal", dbpath) <
	    (int)sizeof(path));
	if (stat(path, &sb) < 0) {
		ck_assert_int_eq(errno, ENOENT);
		return 0;
	}
	return sb.st_size;
}

/* n grant/release cycles on "wal", taking turns between a and b. */
static void
wal_cycles(struct lockcore *a, struct lockcore *b, int n, int64_t *now)
{
	struct lock_grant g;
	int i;

	for (i = 0; i < n; i++, *now += 2) {
		g = must_grant(i % 2 ? a : b, "wal", *now);
		must_release(i % 2 ? b : a, &g, *now + 1, false);
	}
}

/*
 * With live_clock, a transaction's time is the wall clock once it has the
 * database when the caller's `now` is older (it waited for the lock):
 * grants and renewals are stamped then, never earlier.
 */
START_TEST(test_live_clock)
{
	struct lockcore_opts lo = { .busy_timeout_ms = 5000, .live_clock = 1 };
	struct lockcore *c = lct_open(dbpath, &lo);
	struct lock_grant g, g2;
	int64_t before = clock_wall_ms(), stale = before - 60000;

	g = must_grant(c, "live", stale);
	ck_assert_int_ge(g.acquired_at, before);
	ck_assert_int_eq(g.expires_at, g.acquired_at + TTL);
	ck_assert_int_eq(lock_renew(c, "live", g.token, TTL, stale, &g2),
	    LC_OK);
	ck_assert_int_ge(g2.expires_at, before + TTL);
	g = must_grant(c, "live2", before + 3600000);
	if (lct_pg())
		/* PostgreSQL: the server's clock, also when the caller's is
		 * ahead, so that every host judges leases by one clock. */
		ck_assert_int_lt(g.acquired_at, before + 60000);
	else
		/* SQLite: a `now` in the future is kept; the clock only
		 * moves it forward. */
		ck_assert_int_eq(g.acquired_at, before + 3600000);
	lockcore_close(c);
}
END_TEST

/*
 * The WAL stays bounded while two connections write in turn (two worker
 * processes), and a WAL that a long reader made grow is cut back once the
 * reader is gone.  WAL_MAX is store_sqlite.c's journal_size_limit.
 */
#define WAL_MAX (8 * 1024 * 1024)
START_TEST(test_wal_bounded)
{
	struct lockcore *lc2 = lct_open(dbpath, &opts);
	sqlite3 *rd = NULL;
	int64_t now = T0;
	int i;

	for (i = 0; i < 40; i++) {
		wal_cycles(lc, lc2, 100, &now);
		ck_assert_msg(wal_size() <= WAL_MAX, "WAL %lld bytes after %d"
		    " cycles", (long long)wal_size(), (i + 1) * 100);
	}
	/* A reader keeps its snapshot: no checkpoint can finish. */
	ck_assert_int_eq(sqlite3_open(dbpath, &rd), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(rd, "BEGIN; SELECT count(*) FROM locks",
	    NULL, NULL, NULL), SQLITE_OK);
	wal_cycles(lc, lc2, 1200, &now);
	ck_assert_msg(wal_size() > WAL_MAX, "WAL only %lld bytes",
	    (long long)wal_size());
	ck_assert_int_eq(sqlite3_exec(rd, "COMMIT", NULL, NULL, NULL),
	    SQLITE_OK);
	ck_assert_int_eq(sqlite3_close(rd), SQLITE_OK);
	wal_cycles(lc, lc2, 500, &now);
	ck_assert_msg(wal_size() <= WAL_MAX, "WAL %lld bytes after the"
	    " reader left", (long long)wal_size());
	lockcore_close(lc2);
}
END_TEST

START_TEST(test_two_connections)
{
	struct lockcore *lc2 = lct_open(dbpath, &opts);
	struct lock_acquire_req r = mkreq("two", false, 1);
	struct lock_status st;
	struct lock_grant g, g2;
	struct lock_wait_info wi;

	g = must_grant(lc, "two", T0);
	ck_assert_int_eq(lock_acquire(lc2, &r, T0 + 1, &g2, &wi), LC_BUSY);
	ck_assert_int_eq(lock_status(lc2, "two", T0 + 1, &st), 0);
	ck_assert_int_eq(st.nholders, 1);
	ck_assert_int_eq(st.holders[0].fence, g.fence);
	must_release(lc2, &g, T0 + 2, false);
	/* lc2's open raised the floor in the file, which lc's grants
	 * read. */
	g2 = must_grant(lc, "two", T0 + 3);
	ck_assert_int_eq(g2.fence, max64(g.fence + 1, floor_of(lc2)));
	lockcore_close(lc2);
}
END_TEST

/* Group commit: calls share one transaction, each undoing only itself on
 * failure; nothing is visible to others or kept before the batch ends. */
START_TEST(test_batch)
{
	struct lockcore *lc2 = lct_open(dbpath, &opts);
	struct lock_acquire_req r = mkreq("b1", false, 1);
	struct lock_status st;
	struct lock_grant g1, g2, g;
	struct lock_wait_info wi;
	bool wake;

	ck_assert_int_eq(lockcore_batch_begin(lc), 0);
	ck_assert_int_eq(lockcore_batch_begin(lc), LC_E_INVAL);
	g1 = must_grant(lc, "b1", T0);
	g2 = must_grant(lc, "b2", T0);
	/* Later calls of the batch see earlier ones... */
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 1, &g, &wi), LC_BUSY);
	/* ...a failing one undoes itself only... */
	ck_assert_int_eq(lock_release(lc, "b1", "abc", T0 + 1, &wake, NULL),
	    LC_E_NOT_HELD);
	must_release(lc, &g2, T0 + 2, false);
	/* ...and another connection sees nothing yet. */
	ck_assert_int_eq(lock_status(lc2, "b1", T0 + 2, &st), 0);
	ck_assert_int_eq(st.nholders, 0);
	ck_assert_int_eq(lockcore_batch_end(lc, 0), 0);
	ck_assert_int_eq(lockcore_batch_end(lc, 0), LC_E_INVAL);
	ck_assert_int_eq(lock_status(lc2, "b1", T0 + 3, &st), 0);
	ck_assert_int_eq(st.nholders, 1);
	ck_assert_int_eq(st.holders[0].fence, g1.fence);
	ck_assert_int_eq(lock_status(lc2, "b2", T0 + 3, &st), 0);
	ck_assert_int_eq(st.nholders, 0);

	/* A batch ended with an error is rolled back whole. */
	ck_assert_int_eq(lockcore_batch_begin(lc), 0);
	must_release(lc, &g1, T0 + 4, false);
	g = must_grant(lc, "b3", T0 + 4);
	ck_assert_int_lt(lockcore_batch_end(lc, LC_E_DB), 0);
	ck_assert_int_eq(lock_status(lc2, "b1", T0 + 5, &st), 0);
	ck_assert_int_eq(st.nholders, 1);
	ck_assert_int_eq(lock_status(lc2, "b3", T0 + 5, &st), 0);
	ck_assert_int_eq(st.nholders, 0);
	/* Outside a batch, calls commit one by one again. */
	must_release(lc, &g1, T0 + 6, false);
	ck_assert_int_eq(lock_status(lc2, "b1", T0 + 6, &st), 0);
	ck_assert_int_eq(st.nholders, 0);
	lockcore_close(lc2);
}
END_TEST


START_TEST(test_proc)
{
	uint64_t start = proc_start(getpid());
	siginfo_t si;
	pid_t zombie;

	ck_assert_uint_ne(start, 0);
	ck_assert(proc_alive(getpid(), start));
	ck_assert(proc_alive(getpid(), 0));
	ck_assert(!proc_alive(getpid(), start + 1));
	ck_assert(!proc_alive(lct_dead_pid(), 0));
	ck_assert(!proc_alive(0, 0));
	ck_assert(!proc_alive(-1, 0));
	ck_assert_uint_eq(proc_start(-1), 0);
	/* An exited child not yet reaped still has a pid, but is dead. */
	zombie = fork();
	ck_assert_int_ge(zombie, 0);
	if (zombie == 0)
		_exit(0);
	ck_assert_int_eq(waitid(P_PID, (id_t)zombie, &si, WEXITED | WNOWAIT),
	    0);
	ck_assert_int_eq(kill(zombie, 0), 0);
	ck_assert(!proc_alive(zombie, 0));
	ck_assert_int_eq(waitpid(zombie, NULL, 0), zombie);
	ck_assert_int_gt(clock_wall_ms(), INT64_C(1600000000000));
}
END_TEST

START_TEST(test_ping_open_errors)
{
	struct lockcore *c = lc;  /* must come back NULL */
	char err[128] = "";

	ck_assert_int_eq(lockcore_ping(lc), 0);
	ck_assert_ptr_nonnull(lockcore_errmsg(lc));
	ck_assert_int_lt(lockcore_open(&c, "/nonexistent/dir/x.db", &opts,
	    err, sizeof(err)), 0);
	ck_assert_ptr_null(c);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent/dir/x.db"));
	lockcore_close(NULL);
}
END_TEST

/* Elapsed milliseconds on the monotonic clock since *t0. */
static int64_t
elapsed_ms(const struct timespec *t0)
{
	struct timespec t;

	(void)clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)(t.tv_sec - t0->tv_sec) * 1000 +
	    (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/*
 * A child holds the write lock of the database for hold_ms (raw SQLite,
 * BEGIN IMMEDIATE).  hold_db() forks it; it opens the file only when
 * hold_go() tells it to and hold_go() returns once it has the lock, so
 * the parent may open its own connection in between (SQLite must not have
 * the file open across fork()).
 */
static int hold_p[2], hold_q[2];

static pid_t
hold_db(int hold_ms)
{
	sqlite3 *db;
	char c = 'x';
	pid_t pid;

	ck_assert_int_eq(pipe(hold_p), 0);
	ck_assert_int_eq(pipe(hold_q), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (read(hold_q[0], &c, 1) != 1 ||
		    sqlite3_open(dbpath, &db) != SQLITE_OK ||
		    sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
		    SQLITE_OK || write(hold_p[1], &c, 1) != 1)
			_exit(1);
		(void)usleep((useconds_t)hold_ms * 1000);
		_exit(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) !=
		    SQLITE_OK);
	}
	(void)close(hold_p[1]);
	(void)close(hold_q[0]);
	return pid;
}

static void
hold_go(void)
{
	char c = 'x';

	ck_assert_int_eq(write(hold_q[1], &c, 1), 1);
	ck_assert_int_eq(read(hold_p[0], &c, 1), 1);
	(void)close(hold_p[0]);
	(void)close(hold_q[1]);
}

START_TEST(test_busy_handler)
{
	static const struct lockcore_opts quick = {
	    .busy_timeout_ms = 50, .synchronous_full = 1 };
	struct lock_grant g;
	struct timespec t0;
	int64_t ms;
	pid_t pid;
	int status;

	/*
	 * SQLite must not have the file open across fork(), so the holder is
	 * forked while this process has no connection to it.
	 */
	lockcore_close(lc);
	lc = NULL;
	pid = hold_db(1000);
	lc = lct_open(dbpath, &quick);
	hold_go();
	(void)clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(lockcore_sweep(lc, T0, 100, 0, &status), LC_E_DB);
	ms = elapsed_ms(&t0);
	ck_assert_msg(ms >= 45 && ms < 900, "gave up after %lld ms",
	    (long long)ms);
	ck_assert_ptr_nonnull(strstr(lockcore_errmsg(lc), "locked"));
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_int_eq(status, 0);
	/* A holder that lets go within busy_timeout_ms is waited for. */
	lockcore_close(lc);
	lc = NULL;
	pid = hold_db(50);
	hold_go();
	/* Opening writes (its session row), so the wait may come there. */
	(void)clock_gettime(CLOCK_MONOTONIC, &t0);
	lc = lct_open(dbpath, &opts);
	g = must_grant(lc, "busy", T0);
	ck_assert_int_ge(elapsed_ms(&t0), 30);
	ck_assert_int_eq(g.fence, floor_of(lc));
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_int_eq(status, 0);
}
END_TEST

/*
 * Unclean shutdowns (conn.c, "Unclean shutdowns").  A reboot is played
 * by opening with another boot id while a connection of the first "boot"
 * is still open, which is what the file looks like after a power loss.
 */
static struct lockcore *
open_boot(const char *boot, int64_t boot_time, int64_t max_ttl, int full,
    int no_grace)
{
	struct lockcore_opts o = { .busy_timeout_ms = 5000 };

	o.boot_id = boot;
	o.boot_time_ms = boot_time;
	o.max_ttl_ms = max_ttl;
	o.synchronous_full = full;
	o.no_crash_grace = no_grace;
	return lct_open(dbpath, &o);
}

START_TEST(test_unclean_shutdown)
{
	struct lock_acquire_req r = mkreq("z", true, 7);
	struct lock_acquire_req qy = mkreq("y", true, 9);
	struct lock_handoff ho;
	struct lockcore_recovery rec;
	struct lock_wait_info info;
	struct lock_grant g, gx, gy;
	struct lock_status st;
	struct lockcore *a, *b, *c;
	int64_t now = clock_wall_ms(), boot = now - 1000, before, fb;
	bool wake;

	lockcore_close(lc);
	lc = NULL;
	a = open_boot("boot-A", 0, 20000, 0, 0);
	lockcore_recovery(a, &rec);
	ck_assert_int_eq(rec.recovered, 0);
	ck_assert_int_eq(rec.grace_until, 0);
	gx = must_grant(a, "x", now);
	gy = must_grant(a, "y", now);
	/* A waiter queued before the crash (its process, ours, still runs). */
	qy.deadline = now + 600000;
	ck_assert_int_eq(lock_acquire(a, &qy, now, &g, &info), LC_QUEUED);
	take_token(&qy.who, &info);
	/* "Power loss": a's session row is still there under boot-A. */
	before = clock_wall_ms();
	b = open_boot("boot-B", boot, 5000, 0, 0);
	lockcore_recovery(b, &rec);
	ck_assert_int_eq(rec.recovered, 1);
	ck_assert_int_eq(rec.stale_sessions, 1);
	/* The longest lease of the dead boot (20 s), not b's own (5 s). */
	ck_assert_int_eq(rec.grace_until, boot + 20000);
	/* 2^32 above the highest fence on disk, the floor and the clock. */
	fb = rec.fence_floor;
	ck_assert_int_ge(fb, gy.fence + (INT64_C(1) << 32));
	ck_assert_int_ge(fb, before * 1000 + (INT64_C(1) << 32));
	ck_assert_int_le(fb, clock_wall_ms() * 1000 + (INT64_C(1) << 32));
	/* No new grant, not even a queue, until the grace ends. */
	ck_assert_int_eq(lock_acquire(b, &r, now, &g, &info), LC_E_RECOVERING);
	r.wait = false;
	r.name = "x";
	ck_assert_int_eq(lock_acquire(b, &r, boot + 19999, &g, &info),
	    LC_E_RECOVERING);
	/* What is on disk stays usable: status, renew, release. */
	ck_assert_int_eq(lock_status(b, "x", now, &st), 0);
	ck_assert_int_eq(st.nholders, 1);
	ck_assert_int_eq(lock_renew(b, "x", gx.token, TTL, now, &g), 0);
	/* A release during the grace does not hand the lock on. */
	memset(&ho, 0, sizeof(ho));
	ck_assert_int_eq(lock_release(b, "y", gy.token, now, &wake, &ho), 0);
	ck_assert_int_eq(ho.waiter_id, 0);
	ck_assert(wake);
	ck_assert_int_eq(lock_wait_poll(b, info.waiter_id, &qy.who,
	    boot + 19999, &g, &info, &wake), LC_E_RECOVERING);
	/* After it, fences continue above anything a lost commit issued. */
	ck_assert_int_eq(lock_wait_poll(b, info.waiter_id, &qy.who,
	    boot + 20000, &g, &info, &wake), LC_GRANTED);
	ck_assert_int_eq(g.fence, fb);
	ck_assert_int_eq(must_grant(b, "new", boot + 20000).fence, fb);
	/* A second connection of the same boot finds nothing to recover
	 * but the same floor and grace. */
	c = open_boot("boot-B", boot, 5000, 0, 0);
	lockcore_recovery(c, &rec);
	ck_assert_int_eq(rec.recovered, 0);
	ck_assert_int_eq(rec.stale_sessions, 0);
	ck_assert_int_eq(rec.grace_until, boot + 20000);
	ck_assert_int_eq(rec.fence_floor, fb);
	ck_assert_int_eq(lock_acquire(c, &r, now, &g, &info), LC_E_RECOVERING);
	lockcore_close(a);
	lockcore_close(b);
	lockcore_close(c);
	/* Closed cleanly: a reboot after that recovers nothing. */
	ck_assert_int_eq(count_rows("SELECT count(*) FROM sessions"), 0);
	c = open_boot("boot-C", clock_wall_ms(), 5000, 0, 0);
	lockcore_recovery(c, &rec);
	ck_assert_int_eq(rec.recovered, 0);
	ck_assert_int_eq(rec.fence_floor, fb);
	ck_assert_int_eq(must_grant(c, "y", boot + 40000).fence, fb + 1);
	lockcore_close(c);
}
END_TEST

/* With synchronous=FULL nothing was lost, so nothing is recovered. */
START_TEST(test_unclean_shutdown_full)
{
	struct lockcore_recovery rec;
	struct lockcore *a, *b;
	int64_t now = clock_wall_ms(), fx;

	lockcore_close(lc);
	lc = NULL;
	a = open_boot("boot-A", 0, 20000, 1, 0);
	fx = must_grant(a, "x", now).fence;
	ck_assert_int_eq(fx, floor_of(a));
	b = open_boot("boot-B", now, 20000, 0, 0);
	lockcore_recovery(b, &rec);
	ck_assert_int_eq(rec.recovered, 0);
	ck_assert_int_eq(rec.stale_sessions, 1);
	ck_assert_int_eq(rec.grace_until, 0);
	/* No jump: the floor is this open's clock. */
	ck_assert_int_lt(rec.fence_floor, fx + (INT64_C(1) << 32));
	ck_assert_int_eq(must_grant(b, "y", now).fence, rec.fence_floor);
	lockcore_close(a);
	lockcore_close(b);
}
END_TEST

/* crash_grace = no: fences still jump, grants go on at once. */
START_TEST(test_unclean_shutdown_no_grace)
{
	struct lockcore_recovery rec;
	struct lockcore *a, *b;
	int64_t now = clock_wall_ms(), fx;

	lockcore_close(lc);
	lc = NULL;
	a = open_boot("boot-A", 0, 20000, 0, 0);
	fx = must_grant(a, "x", now).fence;
	ck_assert_int_eq(fx, floor_of(a));
	ck_assert_int_eq(must_grant(a, "x2", now).fence, fx);
	b = open_boot("boot-B", now, 20000, 0, 1);
	lockcore_recovery(b, &rec);
	ck_assert_int_eq(rec.recovered, 1);
	ck_assert_int_eq(rec.grace_until, 0);
	ck_assert_int_ge(rec.fence_floor, fx + (INT64_C(1) << 32));
	ck_assert_int_eq(must_grant(b, "y", now).fence, rec.fence_floor);
	lockcore_close(a);
	lockcore_close(b);
}
END_TEST

/*
 * A process that dies without closing (kill -9) loses nothing: its row is
 * removed by the next opener of the same boot, without a grace.
 */
START_TEST(test_process_crash_no_grace)
{
	struct lockcore_recovery rec;
	struct lockcore *b;
	int64_t now = clock_wall_ms(), seq;
	pid_t pid;
	int status;

	lockcore_close(lc);
	lc = NULL;
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct lockcore *a = NULL;
		struct lock_acquire_req r = mkreq("x", false, 1);
		struct lock_wait_info info;
		struct lock_grant g;

		if (lockcore_open(&a, dbpath, &opts, NULL, 0) != 0 ||
		    lock_acquire(a, &r, now, &g, &info) != LC_GRANTED)
			_exit(1);
		_exit(0);        /* no lockcore_close */
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_int_eq(status, 0);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM sessions"), 1);
	b = lct_open(dbpath, &opts);
	lockcore_recovery(b, &rec);
	ck_assert_int_eq(rec.recovered, 0);
	ck_assert_int_eq(rec.stale_sessions, 0);
	ck_assert_int_eq(rec.grace_until, 0);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM sessions"), 1);
	/* No jump either: the next fence is the next one, or this open's
	 * floor. */
	seq = count_rows("SELECT fence_seq FROM locks WHERE name = 'x'");
	ck_assert_int_lt(rec.fence_floor, seq + (INT64_C(1) << 32));
	ck_assert_int_eq(must_grant(b, "x", now + TTL).fence,
	    max64(seq + 1, rec.fence_floor));
	lockcore_close(b);
}
END_TEST

/*
 * A version 2 database with sessions but without holders.waiter_id (main
 * before the handoff change) is upgraded in place.
 */
START_TEST(test_schema_upgrade)
{
	sqlite3 *db;
	struct lockcore *b;
	char wal[sizeof(dbpath) + 8];

	lockcore_close(lc);
	lc = NULL;
	(void)snprintf(wal, sizeof(wal), "%s-wal", dbpath);
	ck_assert_int_eq(unlink(dbpath), 0);
	(void)unlink(wal);
	ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db,
	    "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
	    "INSERT INTO meta VALUES ('schema_version', 2);"
	    "CREATE TABLE locks(id INTEGER PRIMARY KEY, name TEXT NOT NULL"
	    " UNIQUE, fence_seq INTEGER NOT NULL DEFAULT 0,"
	    " max_holders INTEGER NOT NULL DEFAULT 1);"
	    "CREATE TABLE holders(token TEXT PRIMARY KEY, lock_id INTEGER NOT"
	    " NULL, fence INTEGER NOT NULL, owner TEXT NOT NULL DEFAULT '',"
	    " request_id TEXT, acquired_at INTEGER NOT NULL,"
	    " expires_at INTEGER NOT NULL);"
	    "CREATE TABLE sessions(id INTEGER PRIMARY KEY, boot_id TEXT NOT"
	    " NULL, pid INTEGER NOT NULL, pstart INTEGER NOT NULL, sync_full"
	    " INTEGER NOT NULL, max_ttl_ms INTEGER NOT NULL, opened_at"
	    " INTEGER NOT NULL);"
	    "INSERT INTO locks(name, fence_seq) VALUES ('old', 7);",
	    NULL, NULL, NULL), SQLITE_OK);
	(void)sqlite3_close(db);
	b = lct_open(dbpath, &opts);
	ck_assert_int_eq(must_grant(b, "old", T0).fence, max64(8, floor_of(b)));
	ck_assert_int_eq(count_rows("SELECT value FROM meta"
	    " WHERE key = 'schema_version'"), 5);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM sessions"), 1);
	/* holders was rebuilt: no unique index on token any more; keyed by
	 * (lock_id, fence), WITHOUT ROWID, so no index on lock_id either. */
	ck_assert_int_eq(count_rows("SELECT count(*) FROM sqlite_master"
	    " WHERE tbl_name = 'holders' AND name LIKE 'sqlite_autoindex%'"), 0);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM sqlite_master"
	    " WHERE name = 'holders_waiter'"), 1);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM sqlite_master"
	    " WHERE name IN ('holders_lock', 'holders_exp')"), 0);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM sqlite_master"
	    " WHERE name = 'holders' AND sql LIKE '%WITHOUT ROWID'"), 1);
	lockcore_close(b);
}
END_TEST

/*
 * A retry with the request_id of a waiter that a handoff granted takes the
 * grant over: the old request can no longer withdraw or undo it (its
 * client is gone, the retry's client holds the lock now).
 */
START_TEST(test_retry_takes_over_handed_grant)
{
	struct lock_acquire_req r1 = mkreq("t", true, 11);
	struct lock_acquire_req r2 = mkreq("t", true, 12);
	struct lock_acquire_req r3 = mkreq("t", false, 13);
	struct lock_grant h, g2, g3;
	struct lock_handoff ho;
	struct lock_wait_info wi;
	bool wake;

	r1.request_id = r2.request_id = "rid-t";
	h = must_grant(lc, "t", T0);
	ck_assert_int_eq(lock_acquire(lc, &r1, T0 + 1, &g2, &wi), LC_QUEUED);
	take_token(&r1.who, &wi);
	memset(&ho, 0, sizeof(ho));
	ck_assert_int_eq(lock_release(lc, "t", h.token, T0 + 2, &wake, &ho),
	    LC_OK);
	ck_assert_int_eq(ho.waiter_id, wi.waiter_id);
	ck_assert(ho.key == r1.who.key);
	/* Only the waiting request knows the token of its grant. */
	ck_assert_str_eq(ho.grant.token, "");
	ck_assert_int_gt(ho.grant.fence, h.fence);
	ck_assert_int_eq(lock_acquire(lc, &r2, T0 + 3, &g2, &wi), LC_GRANTED);
	ck_assert_str_eq(g2.token, r1.who.token);
	/* The first request, on its way out, must leave it alone. */
	ck_assert_int_eq(lock_wait_abandon(lc, ho.waiter_id, &r1.who, T0 + 4,
	    &wake, NULL), LC_E_SUPERSEDED);
	ck_assert_int_eq(lock_undo(lc, "t", g2.token, r1.who.key, T0 + 4,
	    &wake, NULL), LC_E_SUPERSEDED);
	ck_assert_int_eq(lock_acquire(lc, &r3, T0 + 5, &g3, &wi), LC_BUSY);
	/* The retry's own undo (its client went away too) does release. */
	ck_assert_int_eq(lock_undo(lc, "t", g2.token, r2.who.key, T0 + 6,
	    &wake, NULL), LC_OK);
	ck_assert_int_eq(lock_acquire(lc, &r3, T0 + 7, &g3, &wi), LC_GRANTED);
	ck_assert_int_gt(g3.fence, g2.fence);
}
END_TEST

/* The same for an immediate grant replayed to a retry. */
START_TEST(test_retry_takes_over_grant)
{
	struct lock_acquire_req r1 = mkreq("u", false, 21);
	struct lock_acquire_req r2 = mkreq("u", false, 22);
	struct lock_grant g1, g2;
	struct lock_wait_info wi;
	bool wake;

	r1.request_id = r2.request_id = "rid-u";
	ck_assert_int_eq(lock_acquire(lc, &r1, T0, &g1, &wi), LC_GRANTED);
	ck_assert_int_eq(lock_acquire(lc, &r2, T0 + 1, &g2, &wi), LC_GRANTED);
	ck_assert_str_eq(g1.token, g2.token);
	ck_assert_int_eq(lock_undo(lc, "u", g1.token, r1.who.key, T0 + 2,
	    &wake, NULL), LC_E_SUPERSEDED);
	ck_assert_int_eq(lock_undo(lc, "u", g1.token, 0, T0 + 2, &wake, NULL),
	    LC_E_INVAL);
	ck_assert_int_eq(lock_undo(lc, "u", g1.token, r2.who.key, T0 + 3,
	    &wake, NULL), LC_OK);
}
END_TEST

/* A waiter past its deadline never grants itself, even on a free lock. */
START_TEST(test_late_waiter_not_granted)
{
	struct lock_acquire_req r = mkreq("late", true, 31);
	struct lock_grant h, g;
	struct lock_wait_info wi;
	bool wake;

	h = must_grant(lc, "late", T0);
	r.deadline = T0 + 100;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 1, &g, &wi), LC_QUEUED);
	take_token(&r.who, &wi);
	/* The holder's lease (TTL) ends long after the waiter's deadline. */
	ck_assert_int_eq(lock_wait_poll(lc, wi.waiter_id, &r.who, T0 + TTL,
	    &g, &wi, &wake), LC_QUEUED);
	ck_assert_int_eq(lock_wait_abandon(lc, wi.waiter_id, &r.who, T0 + TTL,
	    &wake, NULL), LC_OK);
	(void)h;
}
END_TEST

#define NPROC 4
#define NITER 150

/* What the contenders share (MAP_SHARED). */
struct arena {
	int     inside;                  /* 1 while someone holds "hot" */
	int     grants;                  /* grants made, all contenders */
	int64_t fences[NPROC * NITER];   /* their fences, [0, grants) */
};

/* One contender: grab, check exclusivity, release, NITER times. */
static int
contend(const char *path, struct arena *a)
{
	struct lock_acquire_req r = mkreq("hot", false, 1);
	struct lock_status st;
	struct lock_grant g;
	struct lock_wait_info wi;
	struct lockcore *c = NULL;
	int i, rc, bad = 0;
	bool wake;

	if (lockcore_open(&c, path, &opts, NULL, 0) != 0)
		return 1;
	for (i = 0; i < NITER && !bad; i++) {
		rc = lock_acquire(c, &r, clock_wall_ms(), &g, &wi);
		if (rc == LC_BUSY)
			continue;
		if (rc != LC_GRANTED ||
		    __atomic_exchange_n(&a->inside, 1, __ATOMIC_SEQ_CST) != 0)
			bad = 1;
		a->fences[__atomic_fetch_add(&a->grants, 1, __ATOMIC_SEQ_CST)] =
		    g.fence;
		if (lock_status(c, "hot", clock_wall_ms(), &st) != 0 ||
		    st.nholders != 1 || st.holders[0].fence != g.fence)
			bad = 1;
		__atomic_store_n(&a->inside, 0, __ATOMIC_SEQ_CST);
		if (lock_release(c, "hot", g.token, clock_wall_ms(),
		    &wake, NULL) != LC_OK)
			bad = 1;
	}
	lockcore_close(c);
	return bad;
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

START_TEST(test_processes)
{
	char path[LCT_PATH_MAX];
	struct lockcore *c;
	struct lock_grant g;
	struct arena *a;
	int status, i;
	pid_t pid[NPROC];

	/* All contenders open (and create) a fresh database at once. */
	lct_fresh(&lc, path, sizeof(path), dir, "conc.db");
	a = mmap(NULL, sizeof(*a), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert(a != MAP_FAILED);
	memset(a, 0, sizeof(*a));
	for (i = 0; i < NPROC; i++) {
		pid[i] = fork();
		ck_assert_int_ge(pid[i], 0);
		if (pid[i] == 0)
			_exit(contend(path, a));
	}
	for (i = 0; i < NPROC; i++) {
		ck_assert_int_eq(waitpid(pid[i], &status, 0), pid[i]);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		    "contender %d failed (status %d)", i, status);
	}
	ck_assert_int_gt(a->grants, 0);
	/* Every grant took a fence of its own (opens in between raise the
	 * floor, so they need not be consecutive). */
	qsort(a->fences, (size_t)a->grants, sizeof(a->fences[0]), cmp_i64);
	for (i = 1; i < a->grants; i++)
		ck_assert_int_lt(a->fences[i - 1], a->fences[i]);
	c = lct_open(path, &opts);
	g = must_grant(c, "hot", clock_wall_ms());
	ck_assert_int_gt(g.fence, a->fences[a->grants - 1]);
	lockcore_close(c);
	(void)munmap(a, sizeof(*a));
}
END_TEST

/* Handoffs: the transaction that frees a lock grants its next waiter. */

/* Releases g with a handoff allowed to any process; returns whom it gave. */
static int64_t
must_hand(struct lockcore *c, const struct lock_grant *g, int64_t now,
    struct lock_handoff *ho)
{
	bool wake = true;

	memset(ho, 0, sizeof(*ho));
	ck_assert_int_eq(lock_release(c, g->name, g->token, now, &wake, ho),
	    LC_OK);
	ck_assert(!wake);
	return ho->waiter_id;
}

/* Waiter `id` polled by `who` finds its grant with a read; the grant
 * carries who's token. */
static struct lock_grant
must_find(int64_t id, const struct lock_waiter_ident *who, int64_t now)
{
	struct lock_grant g;
	struct lock_wait_info wi;
	bool wake = true;

	ck_assert_int_eq(lock_wait_poll(lc, id, who, now, &g, &wi, &wake),
	    LC_GRANTED);
	ck_assert(wi.handed);
	ck_assert(!wake);
	ck_assert_str_eq(g.token, who->token);
	return g;
}

START_TEST(test_handoff_fifo)
{
	struct lock_waiter_ident who[NFIFO];
	struct lock_handoff ho;
	struct lock_status st;
	struct lock_acquire_req r;
	struct lock_grant g, g2;
	struct lock_wait_info wi;
	int64_t id[NFIFO];
	int64_t now = T0, rel, f0;
	int i, j;
	bool wake;

	g = must_grant(lc, "hf", now++);
	f0 = g.fence;
	for (i = 0; i < NFIFO; i++)
		id[i] = must_queue("hf", (uint64_t)i + 200, now++, i,
		    &who[i]);
	for (i = 0; i < NFIFO; i++) {
		rel = now++;
		ck_assert_int_eq(must_hand(lc, &g, rel, &ho), id[i]);
		ck_assert_int_eq(ho.pid, getpid());
		ck_assert_int_eq(ho.expires_at, rel + TTL);
		ck_assert_uint_eq(ho.key, (uint64_t)i + 200);
		ck_assert_int_eq(ho.grant.fence, f0 + i + 1);
		ck_assert_str_eq(ho.grant.token, "");
		/* Held by the waiter now; a newcomer still queues behind. */
		ck_assert_int_eq(lock_status(lc, "hf", now++, &st), LC_OK);
		ck_assert_int_eq(st.nholders, 1);
		ck_assert_int_eq(st.waiters, NFIFO - i - 1);
		r = mkreq("hf", false, 999);
		ck_assert_int_eq(lock_acquire(lc, &r, now++, &g2, &wi), LC_BUSY);
		/* The others look (read only) and go on waiting. */
		for (j = NFIFO - 1; j > i; j--) {
			ck_assert_int_eq(lock_wait_poll(lc, id[j], &who[j],
			    now++, &g2, &wi, &wake), LC_QUEUED);
			ck_assert_int_eq(wi.ahead, j - i - 1);
			ck_assert_int_eq(wi.holder_expires, rel + TTL);
			ck_assert(!wake);
		}
		g = must_find(id[i], &who[i], now++);
		/* What the waiter reads is what the handoff said. */
		ck_assert_int_eq(g.fence, f0 + i + 1);
		ck_assert_int_eq(g.acquired_at, rel);
		ck_assert_int_eq(g.expires_at, rel + TTL);
		ck_assert_str_eq(g.owner, "tester");
		ck_assert_str_eq(g.name, "hf");
	}
	/* Nobody left: the release grants nobody and wakes nobody. */
	ck_assert_int_eq(must_hand(lc, &g, now, &ho), 0);
	ck_assert_int_eq(ho.grant.fence, 0);
	ck_assert_uint_eq(ho.key, 0);
	g = must_grant(lc, "hf", now + 1);
	ck_assert_int_eq(g.fence, f0 + NFIFO + 1);
}
END_TEST

START_TEST(test_handoff_skips_dead_and_late)
{
	struct lock_acquire_req r;
	struct lock_waiter_ident wd = ident(41), wfirst, wlive;
	struct lock_handoff ho;
	struct lock_grant g, g2;
	struct lock_wait_info wi;
	int64_t first, dead, late, live, f0;
	bool wake;

	g = must_grant(lc, "hd", T0);
	f0 = g.fence;
	first = must_queue("hd", 40, T0 + 1, 0, &wfirst);
	/* Behind a live head nobody looks at the process of the others. */
	r = mkreq("hd", true, 41);
	r.who.pid = wd.pid = lct_dead_pid();
	r.who.pstart = wd.pstart = 777;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 2, &g2, &wi), LC_QUEUED);
	dead = wi.waiter_id;
	r = mkreq("hd", true, 42);
	r.deadline = T0 + 6;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 3, &g2, &wi), LC_QUEUED);
	late = wi.waiter_id;
	live = must_queue("hd", 43, T0 + 4, 3, &wlive);
	ck_assert_int_eq(must_hand(lc, &g, T0 + 5, &ho), first);
	g = must_find(first, &wfirst, T0 + 5);
	/* At T0 + 6 the dead process's waiter is skipped, and so is the
	 * one whose deadline has come. */
	ck_assert_int_eq(must_hand(lc, &g, T0 + 6, &ho), live);
	ck_assert_int_eq(lock_wait_poll(lc, dead, &wd, T0 + 7, &g2, &wi,
	    &wake), LC_E_GONE);
	wd = ident(42);
	ck_assert_int_eq(lock_wait_poll(lc, late, &wd, T0 + 7, &g2, &wi,
	    &wake), LC_E_GONE);
	g = must_find(live, &wlive, T0 + 7);
	ck_assert_int_eq(g.fence, f0 + 2);
	ck_assert_int_eq(g.acquired_at, T0 + 6);
}
END_TEST

START_TEST(test_handoff_only_pid)
{
	struct lock_acquire_req r;
	struct lock_waiter_ident wo = ident(51), wmine;
	struct lock_handoff ho;
	struct lock_grant g, g2;
	struct lock_wait_info wi;
	int64_t other, mine, f0;
	bool wake = false;

	g = must_grant(lc, "ho", T0);
	f0 = g.fence;
	/* A waiter of another live process (our parent). */
	r = mkreq("ho", true, 51);
	r.who.pid = wo.pid = getppid();
	r.who.pstart = wo.pstart = proc_start(getppid());
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 1, &g2, &wi), LC_QUEUED);
	take_token(&wo, &wi);
	other = wi.waiter_id;
	mine = must_queue("ho", 52, T0 + 2, 1, &wmine);
	memset(&ho, 0, sizeof(ho));
	ho.only_pid = getpid();
	ck_assert_int_eq(lock_release(lc, "ho", g.token, T0 + 3, &wake, &ho),
	    LC_OK);
	/* Not ours to grant, and nobody may overtake it: it is woken and
	 * grants itself. */
	ck_assert_int_eq(ho.waiter_id, 0);
	ck_assert(wake);
	ck_assert_int_eq(lock_wait_poll(lc, other, &wo, T0 + 4, &g, &wi,
	    &wake), LC_GRANTED);
	ck_assert(!wi.handed);
	ck_assert_int_eq(g.acquired_at, T0 + 4);
	/* Its release may grant ours. */
	ck_assert_int_eq(lock_release(lc, "ho", g.token, T0 + 5, &wake, &ho),
	    LC_OK);
	ck_assert_int_eq(ho.waiter_id, mine);
	g = must_find(mine, &wmine, T0 + 6);
	ck_assert_int_eq(g.fence, f0 + 2);
}
END_TEST

START_TEST(test_handoff_request_id)
{
	struct lock_acquire_req r;
	struct lock_waiter_ident w1 = ident(61), w2 = ident(62);
	struct lock_handoff ho;
	struct lock_grant g, g2, g3;
	struct lock_wait_info wi;
	int64_t id;
	bool wake;

	g = must_grant(lc, "hr", T0);
	r = mkreq("hr", true, 61);
	r.request_id = "req-h";
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 1, &g2, &wi), LC_QUEUED);
	id = wi.waiter_id;
	take_token(&w1, &wi);
	/* A retry takes the queue place over before the handoff, and is
	 * told the same token. */
	r.who.key = 62;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 2, &g2, &wi), LC_QUEUED);
	ck_assert_int_eq(wi.waiter_id, id);
	ck_assert_str_eq(wi.token, w1.token);
	take_token(&w2, &wi);
	ck_assert_int_eq(must_hand(lc, &g, T0 + 3, &ho), id);
	/* The grant is the retry's; the old request is told so. */
	ck_assert_int_eq(lock_wait_poll(lc, id, &w1, T0 + 4, &g2, &wi, &wake),
	    LC_E_SUPERSEDED);
	ck_assert_int_eq(lock_wait_abandon(lc, id, &w1, T0 + 4, &wake, &ho),
	    LC_E_SUPERSEDED);
	g2 = must_find(id, &w2, T0 + 5);
	/* A retry after the handoff gets the same grant back. */
	r.who.key = 63;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 6, &g3, &wi), LC_GRANTED);
	ck_assert_str_eq(g3.token, g2.token);
	ck_assert_int_eq(g3.fence, g2.fence);
}
END_TEST

START_TEST(test_handoff_cancel_abandon)
{
	struct lock_acquire_req r;
	struct lock_waiter_ident w1 = ident(71), w2, w3;
	struct lock_handoff ho;
	struct lock_grant g, g2;
	struct lock_wait_info wi;
	int64_t id1, id2, id3, kick, f0;
	bool held, wake;

	g = must_grant(lc, "hc", T0);
	f0 = g.fence;
	r = mkreq("hc", true, 71);
	r.request_id = "req-c";
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 1, &g2, &wi), LC_QUEUED);
	id1 = wi.waiter_id;
	id2 = must_queue("hc", 72, T0 + 2, 1, &w2);
	id3 = must_queue("hc", 73, T0 + 3, 2, &w3);
	ck_assert_int_eq(must_hand(lc, &g, T0 + 4, &ho), id1);
	/* Cancelling the request_id before its request saw the grant:
	 * the grant is released and handed on, and the request is kicked. */
	memset(&ho, 0, sizeof(ho));
	ck_assert_int_eq(lock_cancel(lc, "hc", "req-c", T0 + 5, &held, &kick,
	    &wake, &ho), LC_OK);
	ck_assert(held);
	ck_assert_int_eq(kick, id1);
	ck_assert_int_eq(ho.waiter_id, id2);
	ck_assert(!wake);
	ck_assert_int_eq(lock_wait_poll(lc, id1, &w1, T0 + 6, &g2, &wi, &wake),
	    LC_E_GONE);
	/* The second waiter's client goes before it was told: leaving
	 * releases its grant and hands the lock on to the third. */
	memset(&ho, 0, sizeof(ho));
	ck_assert_int_eq(lock_wait_abandon(lc, id2, &w2, T0 + 7, &wake, &ho),
	    LC_OK);
	ck_assert_int_eq(ho.waiter_id, id3);
	ck_assert_int_eq(lock_wait_abandon(lc, id2, &w2, T0 + 8, &wake, &ho),
	    LC_E_GONE);
	ck_assert_int_eq(ho.waiter_id, 0);
	g = must_find(id3, &w3, T0 + 9);
	ck_assert_int_eq(g.fence, f0 + 3);
	ck_assert_int_eq(g.acquired_at, T0 + 7);
	/* A grant that ran out before its waiter looked is gone. */
	ck_assert_int_eq(lock_wait_poll(lc, id3, &w3, T0 + 7 + TTL, &g2, &wi,
	    &wake), LC_E_GONE);
}
END_TEST

/* A database made by schema version 1 is migrated on open. */
START_TEST(test_schema_migration)
{
	static const char v1[] =
	    "PRAGMA journal_mode=WAL;"
	    "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
	    "INSERT INTO meta VALUES ('schema_version', 1);"
	    "CREATE TABLE locks(id INTEGER PRIMARY KEY, name TEXT NOT NULL"
	    " UNIQUE, fence_seq INTEGER NOT NULL DEFAULT 0,"
	    " max_holders INTEGER NOT NULL DEFAULT 1);"
	    "CREATE TABLE holders(token TEXT PRIMARY KEY, lock_id INTEGER NOT"
	    " NULL, fence INTEGER NOT NULL, owner TEXT NOT NULL DEFAULT '',"
	    " request_id TEXT, acquired_at INTEGER NOT NULL,"
	    " expires_at INTEGER NOT NULL);"
	    "CREATE TABLE waiters(id INTEGER PRIMARY KEY AUTOINCREMENT,"
	    " lock_id INTEGER NOT NULL, request_id TEXT, owner TEXT NOT NULL"
	    " DEFAULT '', ttl_ms INTEGER NOT NULL, deadline INTEGER NOT NULL,"
	    " pid INTEGER NOT NULL, pstart INTEGER NOT NULL,"
	    " wkey INTEGER NOT NULL);"
	    "INSERT INTO locks VALUES (1, 'old', 5, 1);"
	    "INSERT INTO holders VALUES ('0123456789abcdef0123456789abcdef',"
	    " 1, 5, 'o', NULL, 1700000000000, 1700000010000);";
	struct lock_waiter_ident who;
	struct lock_handoff ho;
	struct lock_grant g;
	char path[160];
	sqlite3 *db;
	int64_t id;

	ck_assert(snprintf(path, sizeof(path), "%s/v1.db", dir) <
	    (int)sizeof(path));
	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db, v1, NULL, NULL, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
	ck_assert(file_has(path, "0123456789abcdef0123456789abcdef"));
	lockcore_close(lc);
	lc = lct_open(path, &opts);
	id = must_queue("old", 81, T0 + 1, 0, &who);
	/* The old token still releases the old grant (its hash is kept). */
	memset(&g, 0, sizeof(g));
	ck_assert(snprintf(g.name, sizeof(g.name), "old") > 0);
	ck_assert(snprintf(g.token, sizeof(g.token),
	    "0123456789abcdef0123456789abcdef") > 0);
	ck_assert_int_eq(must_hand(lc, &g, T0 + 2, &ho), id);
	g = must_find(id, &who, T0 + 3);
	ck_assert_int_eq(g.fence, max64(6, floor_of(lc)));
	/* Opening it again finds version 5. */
	lockcore_close(lc);
	lc = lct_open(path, &opts);
	ck_assert_int_eq(must_grant(lc, "new", T0 + 4).fence, floor_of(lc));
	lockcore_close(lc);
	lc = NULL;
	ck_assert(!file_has(path, "0123456789abcdef0123456789abcdef"));
	ck_assert(!wal_has(path, "0123456789abcdef0123456789abcdef"));
}
END_TEST

/*
 * A version 3 database (holders a rowid table with an index on lock_id)
 * is upgraded to 5 in place (through 4), its grants kept with everything
 * that finds them: the token (release; only its hash is kept), the waiter
 * row a handoff granted (the waiter's read) with its key, the request_id
 * (a retry gets the same token), the expiry (the sweep).  Waiter rows are
 * deleted.
 */
START_TEST(test_schema_upgrade_v3)
{
	static const char v3[] =
	    "PRAGMA journal_mode=WAL;"
	    "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
	    "INSERT INTO meta VALUES ('schema_version', 3);"
	    "INSERT INTO meta VALUES ('fence_floor', 0);"
	    "INSERT INTO meta VALUES ('grace_until', 0);"
	    "CREATE TABLE locks(id INTEGER PRIMARY KEY, name TEXT NOT NULL"
	    " UNIQUE, fence_seq INTEGER NOT NULL DEFAULT 0,"
	    " max_holders INTEGER NOT NULL DEFAULT 1);"
	    "CREATE TABLE holders(token TEXT NOT NULL, lock_id INTEGER NOT"
	    " NULL, fence INTEGER NOT NULL, owner TEXT NOT NULL DEFAULT '',"
	    " request_id TEXT, acquired_at INTEGER NOT NULL,"
	    " expires_at INTEGER NOT NULL, waiter_id INTEGER, wkey INTEGER);"
	    "CREATE INDEX holders_lock ON holders(lock_id);"
	    "CREATE UNIQUE INDEX holders_waiter ON holders(waiter_id)"
	    " WHERE waiter_id IS NOT NULL;"
	    "CREATE UNIQUE INDEX holders_req ON holders(lock_id, request_id)"
	    " WHERE request_id IS NOT NULL;"
	    "CREATE INDEX holders_exp ON holders(expires_at);"
	    "CREATE TABLE waiters(id INTEGER PRIMARY KEY AUTOINCREMENT,"
	    " lock_id INTEGER NOT NULL, request_id TEXT, owner TEXT NOT NULL"
	    " DEFAULT '', ttl_ms INTEGER NOT NULL, deadline INTEGER NOT NULL,"
	    " pid INTEGER NOT NULL, pstart INTEGER NOT NULL,"
	    " wkey INTEGER NOT NULL);"
	    "CREATE INDEX waiters_lock ON waiters(lock_id, id);"
	    "CREATE UNIQUE INDEX waiters_req ON waiters(lock_id, request_id)"
	    " WHERE request_id IS NOT NULL;"
	    "CREATE TABLE sessions(id INTEGER PRIMARY KEY, boot_id TEXT NOT"
	    " NULL, pid INTEGER NOT NULL, pstart INTEGER NOT NULL, sync_full"
	    " INTEGER NOT NULL, max_ttl_ms INTEGER NOT NULL, opened_at"
	    " INTEGER NOT NULL);"
	    "INSERT INTO locks VALUES (1, 'handed', 3, 1), (2, 'rid', 9, 1),"
	    " (3, 'gone', 4, 1), (4, 'queue', 0, 1);"
	    "INSERT INTO waiters(lock_id, ttl_ms, deadline, pid, pstart, wkey)"
	    " VALUES (4, 1000, 1, 1, 1, 1), (4, 1000, 1, 1, 1, 2);"
	    /* waiter row 5 (key 77) was granted by a handoff */
	    "INSERT INTO holders VALUES ('0123456789abcdef0123456789abcdef',"
	    " 1, 3, 'o', NULL, 1700000000000, 1700000010000, 5, 77),"
	    " ('fedcba9876543210fedcba9876543210', 2, 9, 'p', 'req-1',"
	    " 1700000000000, 1700000010000, NULL, 1),"
	    " ('00000000000000000000000000000000', 3, 4, 'q', NULL,"
	    " 1600000000000, 1600000010000, NULL, NULL);";
	struct lock_acquire_req r = mkreq("rid", false, 88);
	struct lock_waiter_ident who = ident(77);
	struct lock_wait_info wi;
	struct lock_grant g;
	char wal[sizeof(dbpath) + 8];
	sqlite3 *db;
	int changed;

	lockcore_close(lc);
	lc = NULL;
	(void)snprintf(wal, sizeof(wal), "%s-wal", dbpath);
	ck_assert_int_eq(unlink(dbpath), 0);
	(void)unlink(wal);
	ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db, v3, NULL, NULL, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
	lc = lct_open(dbpath, &opts);
	ck_assert_int_eq(count_rows("SELECT value FROM meta"
	    " WHERE key = 'schema_version'"), 5);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM sqlite_master"
	    " WHERE name IN ('holders_lock', 'holders_exp', 'holders_req',"
	    " 'waiters_req')"), 0);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM sqlite_master"
	    " WHERE name IN ('holders_rid', 'holders_waiter', 'waiters_rid')"),
	    3);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM holders"), 3);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM holders WHERE"
	    " length(token_hash) = 32 AND ttl_ms = 10000"), 3);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM holders WHERE"
	    " length(rid_hash) = 32 AND length(seal) = 48"), 1);
	/* The waiters are gone, and their count with them. */
	ck_assert_int_eq(count_rows("SELECT count(*) FROM waiters"), 0);
	ck_assert_int_eq(count_rows("SELECT sum(nwait) FROM locks"), 0);
	/* The handed grant: found by its waiter, with its key, by the
	 * token it was told. */
	ck_assert(snprintf(who.token, sizeof(who.token),
	    "0123456789abcdef0123456789abcdef") == LC_TOKEN_LEN);
	g = must_find(5, &who, T0 + 1);
	ck_assert_int_eq(g.fence, 3);
	ck_assert_str_eq(g.name, "handed");
	must_release(lc, &g, T0 + 2, false);
	ck_assert_int_eq(must_grant(lc, "handed", T0 + 3).fence,
	    max64(4, floor_of(lc)));
	/* The request_id grant: a retry gets it again, with its token. */
	r.request_id = "req-1";
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 4, &g, &wi), LC_GRANTED);
	ck_assert_int_eq(g.fence, 9);
	ck_assert_str_eq(g.token, "fedcba9876543210fedcba9876543210");
	/* The expired one and the lock whose waiters went: the sweep
	 * deletes the holder and both rows. */
	ck_assert_int_eq(lockcore_sweep(lc, T0 + 5, 100, 0, &changed), 0);
	ck_assert_int_eq(changed, 3);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM holders"), 2);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM locks"
	    " WHERE name IN ('gone', 'queue')"), 0);
	ck_assert_int_eq(must_grant(lc, "gone", T0 + 6).fence,
	    max64(5, floor_of(lc)));
	ck_assert_int_eq(count_rows("SELECT count(*) FROM holders"), 3);
	lockcore_close(lc);
	lc = NULL;
	ck_assert(!file_has(dbpath, "0123456789abcdef0123456789abcdef"));
	ck_assert(!file_has(dbpath, "fedcba9876543210fedcba9876543210"));
	ck_assert(!file_has(dbpath, "req-1"));
	ck_assert(!wal_has(dbpath, "fedcba9876543210fedcba9876543210"));
	ck_assert(!wal_has(dbpath, "req-1"));
}
END_TEST

/* locks.nwait follows every insert and delete of a waiter row, and an
 * arrival's `ahead` comes from it. */
START_TEST(test_waiter_count_kept)
{
	struct lock_waiter_ident w2;
	struct lock_acquire_req r = mkreq("nq", true, 14);
	struct lock_handoff ho;
	struct lock_grant g, g2;
	struct lock_wait_info wi;
	int64_t id1, id2;
	bool wake;

	g = must_grant(lc, "nq", T0);
	id1 = must_queue("nq", 11, T0 + 1, 0, NULL);
	id2 = must_queue("nq", 12, T0 + 1, 1, &w2);
	(void)must_queue("nq", 13, T0 + 1, 2, NULL);
	ck_assert_int_eq(count_rows("SELECT nwait FROM locks WHERE name = 'nq'"),
	    3);
	ck_assert_int_eq(lock_wait_abandon(lc, id2, &w2, T0 + 2, &wake, NULL),
	    LC_OK);
	ck_assert_int_eq(count_rows("SELECT nwait FROM locks WHERE name = 'nq'"),
	    2);
	memset(&ho, 0, sizeof(ho));
	ck_assert_int_eq(lock_release(lc, "nq", g.token, T0 + 3, &wake, &ho),
	    LC_OK);
	ck_assert_int_eq(ho.waiter_id, id1);
	ck_assert_int_eq(count_rows("SELECT nwait FROM locks WHERE name = 'nq'"),
	    1);
	/* An arrival counts the rows left behind the holder. */
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 4, &g2, &wi), LC_QUEUED);
	ck_assert_int_eq(wi.ahead, 1);
	ck_assert_int_eq(count_rows("SELECT nwait FROM locks WHERE name = 'nq'"),
	    2);
	/* Past their deadlines, the next grant removes them. */
	g = must_grant(lc, "nq", T0 + WAITMS + TTL + 10);
	ck_assert_int_eq(count_rows("SELECT nwait FROM locks WHERE name = 'nq'"),
	    0);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM waiters"), 0);
}
END_TEST

/* Tokens and request ids (secret.h). */

START_TEST(test_secret)
{
	/* SHA-256("abc"), FIPS 180-2 appendix B.1. */
	static const unsigned char abc[SECRET_HASH_LEN] = {
	    0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
	    0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
	    0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad };
	unsigned char h[SECRET_HASH_LEN], h2[SECRET_HASH_LEN];
	unsigned char seal[SECRET_SEAL_LEN], seal2[SECRET_SEAL_LEN];
	char t[SECRET_TOKEN_LEN + 1], t2[SECRET_TOKEN_LEN + 1];
	char out[SECRET_TOKEN_LEN + 1];
	size_t i;

	ck_assert_int_eq(secret_hash("abc", 3, h), 0);
	ck_assert_mem_eq(h, abc, SECRET_HASH_LEN);
	ck_assert(secret_equal(h, abc, SECRET_HASH_LEN));
	h[SECRET_HASH_LEN - 1] ^= 1;
	ck_assert(!secret_equal(h, abc, SECRET_HASH_LEN));
	ck_assert(secret_equal(h, abc, 0));

	ck_assert_int_eq(secret_token(t), 0);
	ck_assert_int_eq(secret_token(t2), 0);
	ck_assert_uint_eq(strlen(t), SECRET_TOKEN_LEN);
	for (i = 0; i < SECRET_TOKEN_LEN; i++)
		ck_assert_ptr_nonnull(strchr("0123456789abcdef", t[i]));
	ck_assert_str_ne(t, t2);
	ck_assert_int_eq(secret_hash(t, SECRET_TOKEN_LEN, h), 0);
	ck_assert_int_eq(secret_hash(t2, SECRET_TOKEN_LEN, h2), 0);

	/* Each seal has a salt of its own: the same token and request id
	 * never seal to the same bytes, and no seal shows the token. */
	ck_assert_int_eq(secret_seal(t, "rid-1", seal), 0);
	ck_assert_int_eq(secret_seal(t, "rid-1", seal2), 0);
	ck_assert(memcmp(seal, seal2, SECRET_SEAL_LEN) != 0);
	ck_assert_ptr_null(memmem(seal, SECRET_SEAL_LEN, t, SECRET_TOKEN_LEN));
	ck_assert_int_eq(secret_unseal(seal, "rid-1", h, out), 0);
	ck_assert_str_eq(out, t);
	ck_assert_int_eq(secret_unseal(seal2, "rid-1", h, out), 0);
	ck_assert_str_eq(out, t);
	/* Another request id, another token's hash, damage: no token. */
	ck_assert_int_eq(secret_unseal(seal, "rid-2", h, out), -1);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(secret_unseal(seal, "rid-", h, out), -1);
	ck_assert_int_eq(secret_unseal(seal, "rid-1", h2, out), -1);
	ck_assert_str_eq(out, "");
	seal[SECRET_SALT_LEN + 3] ^= 0x20;
	ck_assert_int_eq(secret_unseal(seal, "rid-1", h, out), -1);
	seal[SECRET_SALT_LEN + 3] ^= 0x20;
	seal[0] ^= 1;   /* the salt */
	ck_assert_int_eq(secret_unseal(seal, "rid-1", h, out), -1);
	/* Only a whole token can be sealed. */
	ck_assert_int_eq(secret_seal("0123", "rid-1", seal), -1);
}
END_TEST

/*
 * The file keeps no token and no request_id in plain text, neither in the
 * database nor in its WAL: they are credentials, and a copy of the file
 * must not grant anything.
 */
START_TEST(test_no_plain_secrets)
{
	struct lock_acquire_req r = mkreq("sec", false, 1);
	struct lock_grant g, gp, g2;
	struct lock_wait_info wi;
	struct lockcore *c;
	const char *secrets[5];
	char copy[160], hex[LC_TOKEN_LEN + 1] = "";
	sqlite3 *db;
	sqlite3_stmt *st;
	size_t i;
	bool wake;

	r.request_id = "rid-held-4f2c9a";
	ck_assert_int_eq(lock_acquire(lc, &r, T0, &g, &wi), LC_GRANTED);
	r = mkreq("sec", true, 2);
	r.request_id = "rid-waiting-8d1e07";
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 1, &g2, &wi), LC_QUEUED);
	gp = must_grant(lc, "plain", T0);
	secrets[0] = g.token;
	secrets[1] = wi.token;
	secrets[2] = gp.token;
	secrets[3] = "rid-held-4f2c9a";
	secrets[4] = "rid-waiting-8d1e07";
	/* While open (the WAL has the commits)... */
	for (i = 0; i < 5; i++) {
		ck_assert_msg(!file_has(dbpath, secrets[i]), "%s", secrets[i]);
		ck_assert_msg(!wal_has(dbpath, secrets[i]), "%s", secrets[i]);
	}
	/* ...and after a close (checkpointed into the database). */
	lockcore_close(lc);
	lc = NULL;
	for (i = 0; i < 5; i++) {
		ck_assert_msg(!file_has(dbpath, secrets[i]), "%s", secrets[i]);
		ck_assert_msg(!wal_has(dbpath, secrets[i]), "%s", secrets[i]);
	}
	/* What a copy shows of a token (its hash) releases nothing; only
	 * the token itself does. */
	ck_assert(snprintf(copy, sizeof(copy), "%s/copy.db", dir) <
	    (int)sizeof(copy));
	copy_file(dbpath, copy);
	ck_assert_int_eq(sqlite3_open(copy, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT lower(substr("
	    "hex(token_hash), 1, 32)) FROM holders WHERE lock_id ="
	    " (SELECT id FROM locks WHERE name = 'sec')", -1, &st, NULL),
	    SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert(snprintf(hex, sizeof(hex), "%s",
	    (const char *)sqlite3_column_text(st, 0)) == LC_TOKEN_LEN);
	(void)sqlite3_finalize(st);
	(void)sqlite3_close(db);
	c = lct_open(copy, &opts);
	ck_assert_int_eq(lock_release(c, "sec", hex, T0 + 2, &wake, NULL),
	    LC_E_NOT_HELD);
	ck_assert_int_eq(lock_release(c, "sec", g.token, T0 + 2, &wake, NULL),
	    LC_OK);
	ck_assert(wake);
	lockcore_close(c);
}
END_TEST

/*
 * A retry with the request_id of a grant gets the grant's token back,
 * though the file keeps only its hash: for a grant made at once (also on
 * another connection) and for one a handoff made for a waiter, whose
 * token only the waiting request knew.
 */
START_TEST(test_retry_same_token)
{
	struct lock_acquire_req r = mkreq("same", false, 1), rw;
	struct lock_handoff ho;
	struct lock_grant g, g2, gw;
	struct lock_wait_info wi, wi2;
	struct lockcore *c;

	r.request_id = "rid-held";
	ck_assert_int_eq(lock_acquire(lc, &r, T0, &g, &wi), LC_GRANTED);
	r.who.key = 2;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 1, &g2, &wi), LC_GRANTED);
	ck_assert_str_eq(g2.token, g.token);
	c = lct_open(dbpath, &opts);
	r.who.key = 3;
	ck_assert_int_eq(lock_acquire(c, &r, T0 + 2, &g2, &wi), LC_GRANTED);
	ck_assert_str_eq(g2.token, g.token);
	ck_assert_int_eq(g2.fence, g.fence);
	lockcore_close(c);

	rw = mkreq("same", true, 10);
	rw.request_id = "rid-waiter";
	ck_assert_int_eq(lock_acquire(lc, &rw, T0 + 3, &g2, &wi), LC_QUEUED);
	take_token(&rw.who, &wi);
	ck_assert_str_ne(wi.token, g.token);
	ck_assert_int_eq(must_hand(lc, &g, T0 + 4, &ho), wi.waiter_id);
	ck_assert_str_eq(ho.grant.token, "");
	gw = must_find(wi.waiter_id, &rw.who, T0 + 5);
	ck_assert_int_eq(gw.fence, ho.grant.fence);
	/* The retry (its client did not get the answer) gets that token. */
	rw.who.key = 11;
	ck_assert_int_eq(lock_acquire(lc, &rw, T0 + 6, &g2, &wi2),
	    LC_GRANTED);
	ck_assert_str_eq(g2.token, gw.token);
	ck_assert_int_eq(g2.fence, gw.fence);
	must_release(lc, &g2, T0 + 7, false);
}
END_TEST

/*
 * A waiter's poll must show the token it was told when it queued: with
 * another one it gets LC_E_INVAL and no grant, whether it would grant
 * itself or a handoff granted it already.
 */
START_TEST(test_poll_wrong_token)
{
	struct lock_waiter_ident who, who2, bad;
	struct lock_handoff ho;
	struct lock_status st;
	struct lock_grant g, g2;
	struct lock_wait_info wi;
	int64_t id, id2;
	bool wake;

	g = must_grant(lc, "wt", T0);
	id = must_queue("wt", 5, T0 + 1, 0, &who);
	must_release(lc, &g, T0 + 2, true);
	bad = who;
	bad.token[0] = bad.token[0] == 'a' ? 'b' : 'a';
	ck_assert_int_eq(lock_wait_poll(lc, id, &bad, T0 + 3, &g2, &wi, &wake),
	    LC_E_INVAL);
	memset(bad.token, 0, sizeof(bad.token));
	ck_assert_int_eq(lock_wait_poll(lc, id, &bad, T0 + 3, &g2, &wi, &wake),
	    LC_E_INVAL);
	memcpy(bad.token, g.token, sizeof(bad.token));  /* someone else's */
	ck_assert_int_eq(lock_wait_poll(lc, id, &bad, T0 + 3, &g2, &wi, &wake),
	    LC_E_INVAL);
	ck_assert_int_eq(lock_status(lc, "wt", T0 + 3, &st), 0);
	ck_assert_int_eq(st.nholders, 0);
	ck_assert_int_eq(st.waiters, 1);
	ck_assert_int_eq(lock_wait_poll(lc, id, &who, T0 + 4, &g, &wi, &wake),
	    LC_GRANTED);
	ck_assert_str_eq(g.token, who.token);

	id2 = must_queue("wt", 6, T0 + 5, 0, &who2);
	ck_assert_int_eq(must_hand(lc, &g, T0 + 6, &ho), id2);
	bad = who2;
	bad.token[LC_TOKEN_LEN - 1] = bad.token[LC_TOKEN_LEN - 1] == '0' ?
	    '1' : '0';
	ck_assert_int_eq(lock_wait_poll(lc, id2, &bad, T0 + 7, &g2, &wi,
	    &wake), LC_E_INVAL);
	g2 = must_find(id2, &who2, T0 + 8);
	must_release(lc, &g2, T0 + 9, false);
}
END_TEST

/*
 * lock_renew with ttl 0 extends by the grant's own lease (as granted, or
 * as last renewed with a ttl), not by a default.
 */
START_TEST(test_renew_own_ttl)
{
	struct lock_acquire_req r = mkreq("own", false, 1);
	struct lock_waiter_ident who;
	struct lock_status st;
	struct lock_grant g, g2;
	struct lock_wait_info wi;
	struct lockcore *c;
	int64_t id;
	bool wake;

	r.ttl_ms = 300000;
	ck_assert_int_eq(lock_acquire(lc, &r, T0, &g, &wi), LC_GRANTED);
	ck_assert_int_eq(g.ttl_ms, 300000);
	ck_assert_int_eq(lock_renew(lc, "own", g.token, 0, T0 + 1000, &g2),
	    LC_OK);
	ck_assert_int_eq(g2.expires_at, T0 + 1000 + 300000);
	ck_assert_int_eq(g2.ttl_ms, 300000);
	ck_assert_str_eq(g2.token, g.token);
	ck_assert_int_eq(g2.fence, g.fence);
	ck_assert_int_eq(lock_renew(lc, "own", g.token, 60000, T0 + 2000,
	    &g2), LC_OK);
	ck_assert_int_eq(g2.expires_at, T0 + 2000 + 60000);
	ck_assert_int_eq(g2.ttl_ms, 60000);
	ck_assert_int_eq(lock_renew(lc, "own", g.token, 0, T0 + 3000, &g2),
	    LC_OK);
	ck_assert_int_eq(g2.expires_at, T0 + 3000 + 60000);
	ck_assert_int_eq(g2.ttl_ms, 60000);
	ck_assert_int_eq(lock_renew(lc, "own", g.token, -1, T0 + 4000, &g2),
	    LC_E_INVAL);
	ck_assert_int_eq(lock_status(lc, "own", T0 + 4000, &st), 0);
	ck_assert_int_eq(st.holders[0].expires_at, T0 + 3000 + 60000);
	/* The lease is kept in the file, not in the connection. */
	c = lct_open(dbpath, &opts);
	ck_assert_int_eq(lock_renew(c, "own", g.token, 0, T0 + 5000, &g2),
	    LC_OK);
	ck_assert_int_eq(g2.expires_at, T0 + 5000 + 60000);
	lockcore_close(c);
	/* A waiter's grant has the waiter's ttl. */
	r = mkreq("own", true, 2);
	r.ttl_ms = 5000;
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 6000, &g2, &wi), LC_QUEUED);
	id = wi.waiter_id;
	who = r.who;
	take_token(&who, &wi);
	must_release(lc, &g, T0 + 7000, true);
	ck_assert_int_eq(lock_wait_poll(lc, id, &who, T0 + 8000, &g2, &wi,
	    &wake), LC_GRANTED);
	ck_assert_int_eq(g2.ttl_ms, 5000);
	ck_assert_int_eq(lock_renew(lc, "own", g2.token, 0, T0 + 9000, &g2),
	    LC_OK);
	ck_assert_int_eq(g2.expires_at, T0 + 9000 + 5000);
	/* Never longer than the renewing connection's max_ttl: the crash
	 * grace after a power loss is sized by it. */
	r = mkreq("own-long", false, 3);
	r.ttl_ms = 300000;
	ck_assert_int_eq(lock_acquire(lc, &r, T0, &g, &wi), LC_GRANTED);
	c = lct_open(dbpath, &(struct lockcore_opts){ .busy_timeout_ms = 5000,
	    .max_ttl_ms = 30000 });
	ck_assert_int_eq(lock_renew(c, "own-long", g.token, 0, T0 + 1000, &g2),
	    LC_OK);
	ck_assert_int_eq(g2.expires_at, T0 + 1000 + 30000);
	ck_assert_int_eq(g2.ttl_ms, 30000);
	lockcore_close(c);
}
END_TEST

/*
 * An older copy of the database put back in place (a restore from a
 * backup, with the server stopped) never issues a fence again that the
 * server issued after the copy was taken: the open floors fences at the
 * wall clock, which grew faster than the fences did.
 */
START_TEST(test_restore_older_copy)
{
	struct lock_grant g;
	char copy[160];
	int64_t f1, f3;
	int i;

	g = must_grant(lc, "x", T0);
	f1 = g.fence;
	must_release(lc, &g, T0 + 1, false);
	lockcore_close(lc);
	lc = NULL;
	ck_assert(!wal_has(dbpath, ""));  /* a clean close leaves no WAL */
	ck_assert(snprintf(copy, sizeof(copy), "%s/backup.db", dir) <
	    (int)sizeof(copy));
	copy_file(dbpath, copy);
	lc = lct_open(dbpath, &opts);
	for (i = 0; i < 3; i++) {
		g = must_grant(lc, "x", T0 + 10 + 2 * i);
		must_release(lc, &g, T0 + 11 + 2 * i, false);
	}
	f3 = g.fence;
	ck_assert_int_gt(f3, f1);
	lockcore_close(lc);
	lc = NULL;
	copy_file(copy, dbpath);
	(void)usleep(2000);
	lc = lct_open(dbpath, &opts);
	g = must_grant(lc, "x", T0 + 20);
	ck_assert_int_gt(g.fence, f3);
}
END_TEST

/*
 * The sweep reclaims the rows of idle locks (no holder, no waiter row, no
 * grant for idle_ms), and the next grant of a reclaimed name carries a
 * fence above every one it had.
 */
#define NRECLAIM 1000
START_TEST(test_sweep_reclaims)
{
	struct lock_waiter_ident who;
	struct lock_grant g, held;
	struct lock_wait_info wi;
	char name[32];
	int64_t top, qid;
	int changed, i;
	bool wake;

	for (i = 0; i < NRECLAIM; i++) {
		ck_assert(snprintf(name, sizeof(name), "r%04d", i) <
		    (int)sizeof(name));
		g = must_grant(lc, name, T0);
		must_release(lc, &g, T0, false);
	}
	for (i = 0; i < 3; i++) {
		g = must_grant(lc, "r0500", T0 + 1);
		must_release(lc, &g, T0 + 1, false);
	}
	top = g.fence;
	/* Held; queued on (no holder, a waiter row); granted lately. */
	held = must_grant(lc, "held", T0);
	g = must_grant(lc, "queued", T0);
	qid = must_queue("queued", 7, T0, 0, &who);
	must_release(lc, &g, T0 + 1, true);
	g = must_grant(lc, "recent", T0 + 5000);
	must_release(lc, &g, T0 + 5000, false);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM locks"),
	    NRECLAIM + 3);

	ck_assert_int_eq(lockcore_sweep(lc, T0 + 6000, 10000, 2000, &changed),
	    0);
	ck_assert_int_eq(changed, NRECLAIM);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM locks"
	    " WHERE name LIKE 'r0%'"), 0);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM locks"), 3);
	/* Without the floor raised above the rows it deleted, the name
	 * would start over at the floor of the open, its first fence. */
	g = must_grant(lc, "r0500", T0 + 6001);
	ck_assert_int_gt(g.fence, top);
	ck_assert_int_eq(lock_wait_poll(lc, qid, &who, T0 + 6002, &g, &wi,
	    &wake), LC_GRANTED);
	must_release(lc, &g, T0 + 6003, false);
	ck_assert_int_eq(lock_renew(lc, "held", held.token, TTL, T0 + 6004,
	    &held), LC_OK);
	/* Now "queued" and "recent" are idle long enough. */
	ck_assert_int_eq(sweep_all(lc, T0 + 8000), 2);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM locks"), 2);
}
END_TEST

/*
 * The sweep goes through the lock rows one batch at a time from where its
 * last call stopped, and starts over after the last row.
 */
START_TEST(test_sweep_batches)
{
	struct lock_grant g;
	char name[32];
	int changed, i, n;

	/* Rows 1..100 held, 101..1000 idle. */
	for (i = 0; i < NRECLAIM; i++) {
		ck_assert(snprintf(name, sizeof(name), "b%04d", i) <
		    (int)sizeof(name));
		g = must_grant(lc, name, T0);
		if (i >= 100)
			must_release(lc, &g, T0, false);
	}
	/* Always the first 100 rows would delete nothing. */
	for (i = 0; i < 10; i++) {
		ck_assert_int_eq(lockcore_sweep(lc, T0 + 1, 100, 0, &changed),
		    0);
		ck_assert_int_eq(changed, i == 0 ? 0 : 100);
		ck_assert_int_eq(count_rows("SELECT count(*) FROM locks"),
		    NRECLAIM - 100 * i);
	}
	/* Past the last row: the first rows again, their holders expired
	 * by now (a call may be spent on finding the end). */
	for (i = 0, n = 0; i < 2; i++) {
		ck_assert_int_eq(lockcore_sweep(lc, T0 + TTL, 100, 0, &changed),
		    0);
		n += changed;
	}
	ck_assert_int_eq(n, 200);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM locks"), 0);
}
END_TEST

/* The permission bits of `path`. */
static mode_t
mode_of(const char *path)
{
	struct stat sb;

	ck_assert_msg(stat(path, &sb) == 0, "%s: %s", path, strerror(errno));
	return sb.st_mode & 07777;
}

/* Opens and closes the database `name` in `sub` of the test directory;
 * its path goes to path[160]. */
static void
open_in(const char *sub, const char *name, char path[160],
    struct lockcore **c)
{
	ck_assert(snprintf(path, 160, "%s/%s/%s", dir, sub, name) < 160);
	*c = lct_open(path, &opts);
}

/*
 * The database and its -wal and -shm hold grants: whatever the umask, a
 * new file is 0600 (0660 in a directory its group may write), and an
 * existing one loses other users' bits and execute bits.
 */
START_TEST(test_file_modes)
{
	char d[160], path[160], side[170];
	struct lockcore *c;
	sqlite3 *db;
	int fd;

	(void)umask(0);
	ck_assert(snprintf(d, sizeof(d), "%s/own", dir) < (int)sizeof(d));
	ck_assert_int_eq(mkdir(d, 0700), 0);
	ck_assert(snprintf(d, sizeof(d), "%s/grp", dir) < (int)sizeof(d));
	ck_assert_int_eq(mkdir(d, 0770), 0);

	open_in("own", "new.db", path, &c);
	ck_assert_int_eq(mode_of(path), 0600);
	(void)snprintf(side, sizeof(side), "%s-wal", path);
	ck_assert_int_eq(mode_of(side), 0600);
	(void)snprintf(side, sizeof(side), "%s-shm", path);
	ck_assert_int_eq(mode_of(side), 0600);
	lockcore_close(c);

	open_in("grp", "new.db", path, &c);
	ck_assert_int_eq(mode_of(path), 0660);
	(void)snprintf(side, sizeof(side), "%s-wal", path);
	ck_assert_int_eq(mode_of(side), 0660);
	lockcore_close(c);

	/* Made by someone else with umask 0, and a stray WAL too. */
	ck_assert(snprintf(path, sizeof(path), "%s/own/old.db", dir) <
	    (int)sizeof(path));
	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db, "CREATE TABLE t(x)", NULL, NULL,
	    NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
	ck_assert_int_eq(chmod(path, 0755), 0);
	(void)snprintf(side, sizeof(side), "%s-wal", path);
	fd = open(side, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(close(fd), 0);
	c = lct_open(path, &opts);
	ck_assert_int_eq(mode_of(path) & 007, 0);
	ck_assert_int_eq(mode_of(path), 0640);
	ck_assert_int_eq(mode_of(side) & 007, 0);
	lockcore_close(c);
	(void)umask(022);
}
END_TEST

/*
 * A version 4 database is upgraded to 5 in place: grants keep working
 * with the tokens and request ids their clients have (release, renew,
 * retry), each grant's lease becomes its ttl, the waiter rows go (their
 * requests were served by an older process), and neither a token nor a
 * request id stays in the file.
 */
START_TEST(test_schema_upgrade_v4)
{
	static const char v4[] =
	    "PRAGMA journal_mode=WAL;"
	    "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
	    "INSERT INTO meta VALUES ('schema_version', 4), ('fence_floor', 0),"
	    " ('grace_until', 0);"
	    "CREATE TABLE locks(id INTEGER PRIMARY KEY, name TEXT NOT NULL"
	    " UNIQUE, fence_seq INTEGER NOT NULL DEFAULT 0,"
	    " max_holders INTEGER NOT NULL DEFAULT 1,"
	    " nwait INTEGER NOT NULL DEFAULT 0);"
	    "CREATE TABLE holders(token TEXT NOT NULL, lock_id INTEGER NOT"
	    " NULL, fence INTEGER NOT NULL, owner TEXT NOT NULL DEFAULT '',"
	    " request_id TEXT, acquired_at INTEGER NOT NULL,"
	    " expires_at INTEGER NOT NULL, waiter_id INTEGER, wkey INTEGER,"
	    " PRIMARY KEY (lock_id, fence)) WITHOUT ROWID;"
	    "CREATE UNIQUE INDEX holders_waiter ON holders(waiter_id)"
	    " WHERE waiter_id IS NOT NULL;"
	    "CREATE UNIQUE INDEX holders_req ON holders(lock_id, request_id)"
	    " WHERE request_id IS NOT NULL;"
	    "CREATE TABLE waiters(id INTEGER PRIMARY KEY AUTOINCREMENT,"
	    " lock_id INTEGER NOT NULL, request_id TEXT, owner TEXT NOT NULL"
	    " DEFAULT '', ttl_ms INTEGER NOT NULL, deadline INTEGER NOT NULL,"
	    " pid INTEGER NOT NULL, pstart INTEGER NOT NULL,"
	    " wkey INTEGER NOT NULL);"
	    "CREATE INDEX waiters_lock ON waiters(lock_id, id);"
	    "CREATE UNIQUE INDEX waiters_req ON waiters(lock_id, request_id)"
	    " WHERE request_id IS NOT NULL;"
	    "CREATE TRIGGER waiters_ins AFTER INSERT ON waiters BEGIN UPDATE"
	    " locks SET nwait = nwait + 1 WHERE id = NEW.lock_id; END;"
	    "CREATE TRIGGER waiters_del AFTER DELETE ON waiters BEGIN UPDATE"
	    " locks SET nwait = nwait - 1 WHERE id = OLD.lock_id; END;"
	    "CREATE TABLE sessions(id INTEGER PRIMARY KEY, boot_id TEXT NOT"
	    " NULL, pid INTEGER NOT NULL, pstart INTEGER NOT NULL, sync_full"
	    " INTEGER NOT NULL, max_ttl_ms INTEGER NOT NULL, opened_at"
	    " INTEGER NOT NULL);"
	    "INSERT INTO locks(id, name, fence_seq) VALUES (1, 'a', 12),"
	    " (2, 'b', 40);"
	    "INSERT INTO holders VALUES ('fedcba9876543210fedcba9876543210',"
	    " 1, 12, 'p', 'req-held-v4', 1700000000000, 1700000020000, NULL,"
	    " 5), ('1111222233334444aaaabbbbccccdddd', 2, 40, 'q', NULL,"
	    " 1700000000000, 1700000030000, NULL, NULL);"
	    "INSERT INTO waiters(lock_id, request_id, ttl_ms, deadline, pid,"
	    " pstart, wkey) VALUES (1, 'req-wait-v4', 1000, 1800000000000, 1,"
	    " 1, 7), (1, NULL, 1000, 1800000000000, 1, 1, 8),"
	    " (2, 'req-wait2-v4', 1000, 1800000000000, 1, 1, 9);";
	static const char *const plain[] = {
	    "fedcba9876543210fedcba9876543210",
	    "1111222233334444aaaabbbbccccdddd", "req-held-v4", "req-wait-v4",
	    "req-wait2-v4" };
	struct lock_acquire_req r = mkreq("a", false, 20);
	struct lock_wait_info wi;
	struct lock_grant g;
	int64_t kick;
	sqlite3 *db;
	size_t i;
	bool held, wake;

	lockcore_close(lc);
	lc = NULL;
	ck_assert_int_eq(unlink(dbpath), 0);
	ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db, v4, NULL, NULL, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
	ck_assert_int_eq(count_rows("SELECT sum(nwait) FROM locks"), 3);
	for (i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
		ck_assert_msg(file_has(dbpath, plain[i]), "%s", plain[i]);

	lc = lct_open(dbpath, &opts);
	ck_assert_int_eq(count_rows("SELECT value FROM meta"
	    " WHERE key = 'schema_version'"), 5);
	/* The file was rewritten and its WAL emptied: nothing left to do. */
	ck_assert_int_eq(count_rows("SELECT count(*) FROM meta"
	    " WHERE key = 'scrub_pending'"), 0);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM sqlite_master"
	    " WHERE name IN ('holders_req', 'waiters_req')"), 0);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM waiters"), 0);
	ck_assert_int_eq(count_rows("SELECT sum(nwait) FROM locks"), 0);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM holders"), 2);
	ck_assert_int_eq(count_rows("SELECT ttl_ms FROM holders"
	    " WHERE fence = 12"), 20000);
	ck_assert_int_eq(count_rows("SELECT ttl_ms FROM holders"
	    " WHERE fence = 40"), 30000);
	/* The old token renews its grant, by its own lease. */
	ck_assert_int_eq(lock_renew(lc, "a",
	    "fedcba9876543210fedcba9876543210", 0, T0 + 1000, &g), LC_OK);
	ck_assert_int_eq(g.fence, 12);
	ck_assert_int_eq(g.expires_at, T0 + 1000 + 20000);
	/* The old request_id gets the old token back. */
	r.request_id = "req-held-v4";
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 2000, &g, &wi), LC_GRANTED);
	ck_assert_str_eq(g.token, "fedcba9876543210fedcba9876543210");
	ck_assert_int_eq(g.fence, 12);
	/* The waiter's request_id is not known any more; a retry queues
	 * anew, first in line. */
	ck_assert_int_eq(lock_cancel(lc, "a", "req-wait-v4", T0 + 3000, &held,
	    &kick, &wake, NULL), LC_E_NOT_HELD);
	r = mkreq("a", true, 21);
	r.request_id = "req-wait-v4";
	ck_assert_int_eq(lock_acquire(lc, &r, T0 + 3000, &g, &wi), LC_QUEUED);
	ck_assert_int_eq(wi.ahead, 0);
	/* The old token releases its grant; fences go on above it. */
	ck_assert_int_eq(lock_release(lc, "b",
	    "1111222233334444aaaabbbbccccdddd", T0 + 4000, &wake, NULL), LC_OK);
	ck_assert(!wake);
	ck_assert_int_eq(must_grant(lc, "b", T0 + 5000).fence,
	    max64(41, floor_of(lc)));
	lockcore_close(lc);
	lc = NULL;
	for (i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		ck_assert_msg(!file_has(dbpath, plain[i]), "%s", plain[i]);
		ck_assert_msg(!wal_has(dbpath, plain[i]), "%s", plain[i]);
	}
	/* A rewrite that could not be done then (busy, disk full) is left
	 * flagged, and the next open does it. */
	ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db, "INSERT INTO meta(key, value)"
	    " VALUES ('scrub_pending', 1)", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	lc = lct_open(dbpath, &opts);
	ck_assert_int_eq(count_rows("SELECT count(*) FROM meta"
	    " WHERE key = 'scrub_pending'"), 0);
}
END_TEST

static Suite *
lockcore_suite(void)
{
	Suite *s = suite_create("lockcore");
	TCase *tc;

	tc = tcase_create("grant");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_acquire_free);
	tcase_add_test(tc, test_busy_and_queue);
	tcase_add_test(tc, test_release_wrong_token);
	tcase_add_test(tc, test_release_wakes_poll_grants);
	tcase_add_test(tc, test_fifo);
	tcase_add_test(tc, test_fence_persists);
	tcase_add_test(tc, test_expiry);
	tcase_add_test(tc, test_renew);
	tcase_add_test(tc, test_cancel);
	tcase_add_test(tc, test_request_id_retry);
	tcase_add_test(tc, test_abandon);
	tcase_add_test(tc, test_renew_own_ttl);
	suite_add_tcase(s, tc);

	tc = tcase_create("secrets");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_secret);
	tcase_add_test(tc, test_retry_same_token);
	tcase_add_test(tc, test_poll_wrong_token);
	suite_add_tcase(s, tc);

	tc = tcase_create("handoff");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_handoff_fifo);
	tcase_add_test(tc, test_handoff_skips_dead_and_late);
	tcase_add_test(tc, test_handoff_only_pid);
	tcase_add_test(tc, test_handoff_request_id);
	tcase_add_test(tc, test_handoff_cancel_abandon);
	suite_add_tcase(s, tc);

	tc = tcase_create("queue");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_dead_waiters_skipped);
	tcase_add_test(tc, test_dead_waiters_free_lock);
	tcase_add_test(tc, test_waiter_cap);
	tcase_add_test(tc, test_waiter_cap_long_queue);
	tcase_add_test(tc, test_proc);
	suite_add_tcase(s, tc);

	tc = tcase_create("read");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_status);
	tcase_add_loop_test(tc, test_list, 0,
	    (int)(sizeof(list_cases) / sizeof(list_cases[0])));
	tcase_add_test(tc, test_sweep);
	tcase_add_test(tc, test_sweep_reclaims);
	tcase_add_test(tc, test_sweep_batches);
	tcase_add_test(tc, test_ping_open_errors);
	suite_add_tcase(s, tc);

	tc = tcase_create("args");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_acquire_inval, 0,
	    (int)(sizeof(inval_cases) / sizeof(inval_cases[0])));
	tcase_add_test(tc, test_other_inval);
	suite_add_tcase(s, tc);

	tc = tcase_create("sharing");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_two_connections);
	tcase_add_test(tc, test_batch);
	tcase_add_test(tc, test_waiter_count_kept);
	tcase_add_test(tc, test_live_clock);
	tcase_add_test(tc, test_processes);
	tcase_add_test(tc, test_retry_takes_over_handed_grant);
	tcase_add_test(tc, test_retry_takes_over_grant);
	tcase_add_test(tc, test_late_waiter_not_granted);
	suite_add_tcase(s, tc);

	/* The SQLite file itself: not run on PostgreSQL. */
	if (!lct_pg()) {
		tc = tcase_create("sqlite");
		tcase_add_checked_fixture(tc, setup, teardown);
		tcase_set_timeout(tc, 30);
		tcase_add_test(tc, test_no_plain_secrets);
		tcase_add_test(tc, test_file_modes);
		tcase_add_test(tc, test_schema_migration);
		tcase_add_test(tc, test_wal_bounded);
		tcase_add_test(tc, test_busy_handler);
		tcase_add_test(tc, test_unclean_shutdown);
		tcase_add_test(tc, test_unclean_shutdown_full);
		tcase_add_test(tc, test_unclean_shutdown_no_grace);
		tcase_add_test(tc, test_process_crash_no_grace);
		tcase_add_test(tc, test_schema_upgrade);
		tcase_add_test(tc, test_schema_upgrade_v3);
		tcase_add_test(tc, test_schema_upgrade_v4);
		tcase_add_test(tc, test_restore_older_copy);
		suite_add_tcase(s, tc);
	}
	return s;
}

int
main(void)
{
	return unit_run(lockcore_suite(), "/tmp/check_lockcore.XXXXXX");
}
