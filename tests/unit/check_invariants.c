/*
 * check_invariants: lockcore invariants that a single wrong line would
 * break, each tested through the public API (lockcore.h) alone:
 *  - a request_id is scoped to its lock: the same id on two locks makes
 *    two grants (or two waiter rows), and a cancel touches only its own;
 *  - after two unclean shutdowns in a row, the third boot's fence floor
 *    lies above every fence the second boot could have issued, even
 *    those whose commits were lost;
 *  - a retry that takes over a queued place keeps its own deadline;
 *  - a token that differs from the grant's in one character is refused,
 *    and a lease is over at its expires_at: no renew, no release.
 * tests/mutation/mutations.txt names the mutation each test kills.
 *
 * Every test runs in a fresh directory under one mkdtemp(3) directory
 * that main() removes.  Time is passed explicitly (live_clock 0), except
 * where the fence floor is the point: it comes from the wall clock.  With
 * HTTPLOCK_TEST_PG set (lctest.h), the tests run on PostgreSQL, but for
 * (b), which plays a power loss with a copy of the SQLite file and WAL.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "lctest.h"
#include "lockcore.h"
#include "proc.h"
#include "unit.h"

#define JUMP   (INT64_C(1) << 32)       /* fences skipped after a loss
                                           (lockcore.h: fence_floor) */

static char dir[128];
static char dbpath[LCT_PATH_MAX];
static struct lockcore *lc;

static const struct lockcore_opts opts = { .busy_timeout_ms = 5000 };

static void
setup(void)
{
	lc = lct_setup(dir, sizeof(dir), dbpath, sizeof(dbpath), &opts);
}

static void
teardown(void)
{
	lct_teardown(&lc, dir);
}

/* Queues `r` at `now`; returns its waiter id and gives r->who its token. */
static int64_t
must_queue(struct lock_acquire_req *r, int64_t now)
{
	struct lock_grant g;
	struct lock_wait_info wi;
	int rc;

	rc = lock_acquire(lc, r, now, &g, &wi);
	ck_assert_msg(rc == LC_QUEUED, "queue %s: %d", r->name, rc);
	ck_assert_int_gt(wi.waiter_id, 0);
	ck_assert_uint_eq(strlen(wi.token), LC_TOKEN_LEN);
	memcpy(r->who.token, wi.token, sizeof(r->who.token));
	return wi.waiter_id;
}

static struct lock_status
status_of(struct lockcore *c, const char *name, int64_t now)
{
	struct lock_status st;

	ck_assert_int_eq(lock_status(c, name, now, &st), 0);
	return st;
}

/*
 * (a) One request_id on two locks: the second acquire is a request of its
 * own, not a retry of the first, and a cancel by that id names its lock.
 */
START_TEST(test_request_id_two_locks_held)
{
	const char *rid = "rid-on-two-locks-0001";
	struct lock_acquire_req ra = lct_req("a", rid, false, 1);
	struct lock_acquire_req rb = lct_req("b", rid, false, 2);
	struct lock_grant ga, gb, again;
	struct lock_status st;
	int64_t kick;
	bool held, wake;

	ga = lct_grant(lc, &ra, T0);
	gb = lct_grant(lc, &rb, T0 + 1);
	ck_assert_str_eq(gb.name, "b");
	ck_assert_str_ne(gb.token, ga.token);
	ck_assert_int_eq(gb.acquired_at, T0 + 1);
	st = status_of(lc, "b", T0 + 2);
	ck_assert_int_eq(st.nholders, 1);
	ck_assert_int_eq(st.holders[0].fence, gb.fence);
	/* A retry on each lock gets that lock's grant back. */
	again = lct_grant(lc, &ra, T0 + 2);
	ck_assert_str_eq(again.token, ga.token);
	again = lct_grant(lc, &rb, T0 + 2);
	ck_assert_str_eq(again.token, gb.token);
	/* Cancelling on b leaves a held. */
	ck_assert_int_eq(lock_cancel(lc, "b", rid, T0 + 3, &held, &kick,
	    &wake, NULL), LC_OK);
	ck_assert(held);
	ck_assert_int_eq(status_of(lc, "b", T0 + 4).nholders, 0);
	st = status_of(lc, "a", T0 + 4);
	ck_assert_int_eq(st.nholders, 1);
	ck_assert_int_eq(st.holders[0].fence, ga.fence);
	ck_assert_int_eq(lock_cancel(lc, "b", rid, T0 + 5, &held, &kick,
	    &wake, NULL), LC_E_NOT_HELD);
	ck_assert_int_eq(lock_renew(lc, "a", ga.token, TTL, T0 + 5, &again),
	    LC_OK);
}
END_TEST

/* (a) for waiter rows: the same request_id queued on two locks. */
START_TEST(test_request_id_two_locks_queued)
{
	const char *rid = "rid-queued-on-two-01";
	struct lock_acquire_req hc = lct_req("c", NULL, false, 1);
	struct lock_acquire_req hd = lct_req("d", NULL, false, 2);
	struct lock_acquire_req qc = lct_req("c", rid, true, 3);
	struct lock_acquire_req qd = lct_req("d", rid, true, 4);
	struct lock_grant g;
	struct lock_wait_info wi;
	int64_t wc, wd, kick;
	bool held, wake;

	(void)lct_grant(lc, &hc, T0);
	(void)lct_grant(lc, &hd, T0);
	wc = must_queue(&qc, T0 + 1);
	wd = must_queue(&qd, T0 + 2);
	ck_assert_int_ne(wc, wd);
	ck_assert_str_ne(qc.who.token, qd.who.token);
	ck_assert_int_eq(status_of(lc, "c", T0 + 3).waiters, 1);
	ck_assert_int_eq(status_of(lc, "d", T0 + 3).waiters, 1);
	/* The first request still owns its row on c. */
	ck_assert_int_eq(lock_wait_poll(lc, wc, &qc.who, T0 + 3, &g, &wi,
	    &wake), LC_QUEUED);
	/* Cancelling on d removes d's row only. */
	ck_assert_int_eq(lock_cancel(lc, "d", rid, T0 + 4, &held, &kick,
	    &wake, NULL), LC_OK);
	ck_assert(!held);
	ck_assert_int_eq(kick, wd);
	ck_assert_int_eq(status_of(lc, "d", T0 + 5).waiters, 0);
	ck_assert_int_eq(status_of(lc, "c", T0 + 5).waiters, 1);
	ck_assert_int_eq(lock_wait_poll(lc, wc, &qc.who, T0 + 5, &g, &wi,
	    &wake), LC_QUEUED);
	ck_assert_int_eq(lock_wait_poll(lc, wd, &qd.who, T0 + 5, &g, &wi,
	    &wake), LC_E_GONE);
}
END_TEST

/* Copies `from` to `to` (created or truncated, mode 0600); a missing
 * `from` removes `to`. */
static void
copy_file(const char *from, const char *to)
{
	int in;

	if ((in = open(from, O_RDONLY | O_CLOEXEC)) == -1) {
		ck_assert_int_eq(errno, ENOENT);
		ck_assert(unlink(to) == 0 || errno == ENOENT);
		return;
	}
	unit_copy_fd(in, to);
}

/* What a power loss leaves of database `from`: its file and WAL as they
 * are now (no shared-memory index; the next open rebuilds it), at `to`. */
static void
snapshot_db(const char *from, const char *to)
{
	char f[PATH_MAX], t[PATH_MAX];

	copy_file(from, to);
	ck_assert(snprintf(f, sizeof(f), "%s-wal", from) < (int)sizeof(f));
	ck_assert(snprintf(t, sizeof(t), "%s-wal", to) < (int)sizeof(t));
	copy_file(f, t);
}

/* A boot of the machine, played as in check_lockcore.c's open_boot(): a
 * connection that is never closed is what a power loss leaves behind. */
static struct lockcore *
open_boot(const char *path, const char *boot, int64_t boot_time)
{
	struct lockcore_opts o = { .busy_timeout_ms = 5000 };

	o.boot_id = boot;
	o.boot_time_ms = boot_time;
	o.max_ttl_ms = 20000;
	return lct_open(path, &o);
}

/*
 * (b) Two unclean shutdowns in a row.  Boot A grants and loses power;
 * boot B recovers (its floor is committed, synchronously, at its open),
 * grants, and loses power too, and with it the commits of its grants:
 * the file boot C finds is the one B had right after its open.  C's
 * floor must still lie above every fence B issued, and above anything B
 * could have issued (up to B's floor + 2^32).
 */
START_TEST(test_two_unclean_shutdowns)
{
	const char *name[3] = { "x", "y", "z" };
	struct lock_acquire_req r;
	struct lockcore_recovery rec;
	struct lockcore *a, *b, *c;
	struct lock_grant g;
	char lost[PATH_MAX];
	int64_t now = clock_wall_ms(), boot = now - 100000, fb, top = 0;
	int64_t last[3] = { 0, 0, 0 };
	int i;
	bool wake;

	lockcore_close(lc);
	lc = NULL;
	ck_assert(snprintf(lost, sizeof(lost), "%s/lost.db", dir) <
	    (int)sizeof(lost));
	a = open_boot(dbpath, "boot-A", boot);
	for (i = 0; i < 3; i++) {
		r = lct_req(name[i], NULL, false, 1);
		(void)lct_grant(a, &r, now);
	}
	b = open_boot(dbpath, "boot-B", boot);
	lockcore_recovery(b, &rec);
	ck_assert_int_eq(rec.recovered, 1);
	fb = rec.fence_floor;
	snapshot_db(dbpath, lost);
	/* B's grants, each above the last; their commits will be lost. */
	for (i = 0; i < 30; i++) {
		r = lct_req(name[i % 3], NULL, false, 2);
		g = lct_grant(b, &r, now + TTL + i);
		ck_assert_int_ge(g.fence, fb);
		ck_assert_int_gt(g.fence, last[i % 3]);
		last[i % 3] = g.fence;
		if (g.fence > top)
			top = g.fence;
		ck_assert_int_eq(lock_release(b, g.name, g.token, now + TTL + i,
		    &wake, NULL), LC_OK);
	}
	c = open_boot(lost, "boot-C", boot);
	lockcore_recovery(c, &rec);
	ck_assert_int_eq(rec.recovered, 1);
	ck_assert_int_eq(rec.stale_sessions, 1);  /* B's: B reaped A's */
	ck_assert_int_gt(rec.fence_floor, top);
	ck_assert_int_ge(rec.fence_floor, fb + JUMP);
	for (i = 0; i < 3; i++) {
		r = lct_req(name[i], NULL, false, 3);
		g = lct_grant(c, &r, now + 2 * TTL);
		ck_assert_int_ge(g.fence, fb + JUMP);
	}
	lockcore_close(c);
	lockcore_close(b);
	lockcore_close(a);
}
END_TEST

/*
 * (c) A retry that takes over a queued place with a later deadline
 * waits until its own deadline: freed after the first request's deadline
 * and before the retry's, the lock goes to the retry, whether the waiter
 * grants itself (poll) or the release hands it on.
 */
START_TEST(test_retry_keeps_its_deadline)
{
	const char *rid[2] = { "rid-retry-deadline-1", "rid-retry-deadline-2" };
	const char *name[2] = { "p", "h" };
	struct lock_acquire_req hold, first, retry;
	struct lock_handoff ho;
	struct lock_wait_info wi;
	struct lock_grant gh, g;
	int64_t id;
	bool wake;
	int i;

	for (i = 0; i < 2; i++) {
		hold = lct_req(name[i], NULL, false, 1);
		first = lct_req(name[i], rid[i], true, 2);
		retry = lct_req(name[i], rid[i], true, 3);
		first.deadline = T0 + 1000;
		retry.deadline = T0 + 5000;
		gh = lct_grant(lc, &hold, T0);
		id = must_queue(&first, T0 + 10);
		ck_assert_int_eq(must_queue(&retry, T0 + 500), id);
		ck_assert_str_eq(retry.who.token, first.who.token);
		memset(&ho, 0, sizeof(ho));
		ck_assert_int_eq(lock_release(lc, name[i], gh.token, T0 + 2000,
		    &wake, i == 0 ? NULL : &ho), LC_OK);
		if (i == 1)
			ck_assert_int_eq(ho.waiter_id, id);
		ck_assert_int_eq(lock_wait_poll(lc, id, &retry.who, T0 + 2000,
		    &g, &wi, &wake), LC_GRANTED);
		ck_assert_str_eq(g.token, retry.who.token);
		ck_assert_int_eq(g.expires_at, T0 + 2000 + TTL);
		ck_assert_int_eq(lock_wait_poll(lc, id, &first.who, T0 + 2000,
		    &g, &wi, &wake), LC_E_SUPERSEDED);
	}
}
END_TEST

/*
 * A waiter is dead from its deadline on: a release a millisecond before
 * it hands the lock to the waiter, a release at it hands it to nobody,
 * and the waiter's own look at that moment does not take the lock.
 */
START_TEST(test_handoff_at_deadline)
{
	const char *name[2] = { "before", "at" };
	struct lock_acquire_req hold, q;
	struct lock_handoff ho;
	struct lock_wait_info wi;
	struct lock_grant gh, g;
	int64_t id, when;
	bool wake;
	int i;

	for (i = 0; i < 2; i++) {
		hold = lct_req(name[i], NULL, false, 1);
		q = lct_req(name[i], NULL, true, 2);
		q.deadline = T0 + 1000;
		when = i == 0 ? q.deadline - 1 : q.deadline;
		gh = lct_grant(lc, &hold, T0);
		id = must_queue(&q, T0 + 1);
		memset(&ho, 0, sizeof(ho));
		ck_assert_int_eq(lock_release(lc, name[i], gh.token, when,
		    &wake, &ho), LC_OK);
		ck_assert_int_eq(ho.waiter_id, i == 0 ? id : 0);
		ck_assert_int_eq(status_of(lc, name[i], when).nholders,
		    i == 0 ? 1 : 0);
		ck_assert_int_eq(lock_wait_poll(lc, id, &q.who, when, &g, &wi,
		    &wake), i == 0 ? LC_GRANTED : LC_E_GONE);
	}
}
END_TEST

/*
 * Tokens: one that differs from the grant's in a single character, first
 * or last, releases and renews nothing; the grant's own still does.
 */
START_TEST(test_near_match_token)
{
	struct lock_acquire_req r = lct_req("t", NULL, false, 1);
	struct lock_grant g, g2;
	char near[LC_TOKEN_LEN + 1];
	size_t pos[2] = { 0, LC_TOKEN_LEN - 1 };
	bool wake;
	int i;

	g = lct_grant(lc, &r, T0);
	for (i = 0; i < 2; i++) {
		memcpy(near, g.token, sizeof(near));
		near[pos[i]] = near[pos[i]] == 'a' ? 'b' : 'a';
		ck_assert_int_eq(lock_renew(lc, "t", near, TTL, T0 + 1, &g2),
		    LC_E_NOT_HELD);
		ck_assert_int_eq(lock_release(lc, "t", near, T0 + 1, &wake,
		    NULL), LC_E_NOT_HELD);
		ck_assert_int_eq(status_of(lc, "t", T0 + 1).nholders, 1);
	}
	ck_assert_int_eq(lock_renew(lc, "t", g.token, TTL, T0 + 2, &g2), LC_OK);
	ck_assert_int_eq(lock_release(lc, "t", g.token, T0 + 3, &wake, NULL),
	    LC_OK);
}
END_TEST

/*
 * A lease ends at its expires_at: a renew a millisecond before it
 * extends it from that moment; at expires_at, renew and release are
 * refused and the lock is free.
 */
START_TEST(test_lease_ends_at_expiry)
{
	struct lock_acquire_req r = lct_req("e", NULL, false, 1);
	struct lock_acquire_req r2 = lct_req("e", NULL, false, 2);
	struct lock_grant g, g2;
	int64_t end;
	bool wake;

	g = lct_grant(lc, &r, T0);
	end = g.expires_at;
	ck_assert_int_eq(end, T0 + TTL);
	ck_assert_int_eq(lock_renew(lc, "e", g.token, TTL, end - 1, &g2), LC_OK);
	ck_assert_int_eq(g2.expires_at, end - 1 + TTL);
	end = g2.expires_at;
	ck_assert_int_eq(status_of(lc, "e", end - 1).nholders, 1);
	ck_assert_int_eq(status_of(lc, "e", end).nholders, 0);
	ck_assert_int_eq(lock_renew(lc, "e", g.token, TTL, end, &g2),
	    LC_E_NOT_HELD);
	ck_assert_int_eq(lock_renew(lc, "e", g.token, 0, end + 1, &g2),
	    LC_E_NOT_HELD);
	ck_assert_int_eq(lock_release(lc, "e", g.token, end, &wake, NULL),
	    LC_E_NOT_HELD);
	g2 = lct_grant(lc, &r2, end);
	ck_assert_int_gt(g2.fence, g.fence);
}
END_TEST

static Suite *
invariants_suite(void)
{
	Suite *s = suite_create("invariants");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_request_id_two_locks_held);
	tcase_add_test(tc, test_request_id_two_locks_queued);
	tcase_add_test(tc, test_retry_keeps_its_deadline);
	tcase_add_test(tc, test_handoff_at_deadline);
	tcase_add_test(tc, test_near_match_token);
	tcase_add_test(tc, test_lease_ends_at_expiry);
	suite_add_tcase(s, tc);

	/* The SQLite file itself: not run on PostgreSQL. */
	if (!lct_pg()) {
		tc = tcase_create("sqlite");
		tcase_add_checked_fixture(tc, setup, teardown);
		tcase_set_timeout(tc, 30);
		tcase_add_test(tc, test_two_unclean_shutdowns);
		suite_add_tcase(s, tc);
	}
	return s;
}

int
main(void)
{
	return unit_run(invariants_suite(), "/tmp/check_invariants.XXXXXX");
}
