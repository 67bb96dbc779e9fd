/*
 * Unit tests of lockcore on a store shared by several hosts (PostgreSQL):
 * what only such a store does.  Two connections opened with two host keys
 * are two hosts; each judges its own waiters by their processes and the
 * other's by its host's heartbeat; each removes its own dead waiters; a
 * transaction that frees room for another host's waiter NOTIFYs it; other
 * hosts' sessions are not an unclean shutdown; the server's disappearance
 * costs an error, not a hang.  The lock semantics themselves are
 * check_lockcore's, which runs on this store too.
 *
 * Runs only when HTTPLOCK_TEST_PG names a server (tests/pgcluster.py run
 * sets it); without it the program exits 77, automake's "skipped".
 */
#include <sys/types.h>

#include <check.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "clock.h"
#include "lctest.h"
#include "lockcore.h"
#include "proc.h"
#include "unit.h"

#define HOST_TTL_MS 10000   /* lockcore/lcint.h's HOST_TTL_MS */

static char dir[128];
static char dbpath[LCT_PATH_MAX];
static struct lockcore *a, *b;   /* host A and host B */

/* With a live clock, `now` is the server's: the times passed here are
 * the wall clock, as the worker's are. */
static const struct lockcore_opts opts_a = {
	.busy_timeout_ms = 5000, .live_clock = 0, .host_key = "host-a"
};
static const struct lockcore_opts opts_b = {
	.busy_timeout_ms = 5000, .live_clock = 0, .host_key = "host-b"
};

static void
setup(void)
{
	a = lct_setup(dir, sizeof(dir), dbpath, sizeof(dbpath), &opts_a);
	b = lct_open(dbpath, &opts_b);
}

static void
teardown(void)
{
	lockcore_close(b);
	b = NULL;
	lct_teardown(&a, dir);
}


/* Queues a waiter for `name` on c as process `pid`, deadline now + 60 s;
 * its id. */
static int64_t
queue(struct lockcore *c, const char *name, pid_t pid, uint64_t key,
    int64_t now)
{
	struct lock_acquire_req r = lct_req(name, NULL, true, key);
	struct lock_grant g;
	struct lock_wait_info wi;

	r.who.pid = pid;
	r.who.pstart = 0;
	r.deadline = now + 60000;
	ck_assert_int_eq(lock_acquire(c, &r, now, &g, &wi), LC_QUEUED);
	return wi.waiter_id;
}

/*
 * Another host's waiter is not judged by this host's /proc: a pid that
 * is dead here is live there.  A handoff grants it, and names no process
 * (it is not this host's to wake); the same dead pid queued on this host
 * is skipped.
 */
START_TEST(test_remote_waiter_live)
{
	struct lock_acquire_req r = lct_req("x", NULL, false, 1);
	struct lock_handoff ho;
	struct lock_grant g;
	int64_t now = clock_wall_ms(), wid;
	pid_t gone = lct_dead_pid();
	bool wake;

	g = lct_grant(a, &r, now);
	wid = queue(b, "x", gone, 2, now);
	memset(&ho, 0, sizeof(ho));
	ck_assert_int_eq(lock_release(a, "x", g.token, now, &wake, &ho), LC_OK);
	ck_assert_int_eq(ho.waiter_id, wid);
	ck_assert_int_eq(ho.pid, 0);

	/* The same on one host: the dead waiter is removed, nobody granted. */
	r = lct_req("y", NULL, false, 3);
	g = lct_grant(a, &r, now);
	(void)queue(a, "y", gone, 4, now);
	memset(&ho, 0, sizeof(ho));
	ck_assert_int_eq(lock_release(a, "y", g.token, now, &wake, &ho), LC_OK);
	ck_assert_int_eq(ho.waiter_id, 0);
}
END_TEST

/*
 * A handoff limited to this process (only_pid) never picks another host's
 * waiter, even one whose pid is ours there: it wakes the queue instead.
 */
START_TEST(test_remote_not_only_pid)
{
	struct lock_acquire_req r = lct_req("x", NULL, false, 1);
	struct lock_handoff ho;
	struct lock_grant g;
	int64_t now = clock_wall_ms();
	bool wake = false;

	g = lct_grant(a, &r, now);
	(void)queue(b, "x", getpid(), 2, now);
	memset(&ho, 0, sizeof(ho));
	ho.only_pid = getpid();
	ck_assert_int_eq(lock_release(a, "x", g.token, now, &wake, &ho), LC_OK);
	ck_assert_int_eq(ho.waiter_id, 0);
	ck_assert(wake);
}
END_TEST

/*
 * A host not heard of for HOST_TTL_MS is gone, and so are its waiters:
 * the next walk removes them.  Heard of (its sweep beats) it is back.
 */
START_TEST(test_remote_host_gone)
{
	struct lock_acquire_req r = lct_req("x", NULL, false, 1);
	struct lock_handoff ho;
	struct lock_grant g;
	struct lock_status st;
	int64_t now = clock_wall_ms(), later = now + HOST_TTL_MS + 1000;
	int changed;
	bool wake;

	r.ttl_ms = 3 * HOST_TTL_MS;       /* held across `later` */
	g = lct_grant(a, &r, now);
	(void)queue(b, "x", getpid(), 2, now);
	ck_assert_int_eq(lock_status(a, "x", now, &st), 0);
	ck_assert_int_eq(st.waiters, 1);
	/* B silent for longer than the TTL: A grants nobody and drops it. */
	memset(&ho, 0, sizeof(ho));
	ck_assert_int_eq(lock_release(a, "x", g.token, later, &wake, &ho),
	    LC_OK);
	ck_assert_int_eq(ho.waiter_id, 0);
	ck_assert_int_eq(lct_query_int(dbpath, "SELECT count(*) FROM waiters"),
	    0);

	/* B beats (its sweep) at `later`: its new waiter counts again. */
	g = lct_grant(a, &r, later);
	ck_assert_int_eq(lockcore_sweep(b, later, 100, 3600000, &changed), 0);
	(void)queue(b, "x", getpid(), 3, later);
	memset(&ho, 0, sizeof(ho));
	ck_assert_int_eq(lock_release(a, "x", g.token, later + 1, &wake, &ho),
	    LC_OK);
	ck_assert_int_ne(ho.waiter_id, 0);
}
END_TEST

/*
 * Each host removes its own waiter rows whose process is gone, in its
 * sweep; it leaves the other host's alone, which it cannot judge.
 */
START_TEST(test_reap_mine)
{
	struct lock_acquire_req r = lct_req("x", NULL, false, 1);
	int64_t now = clock_wall_ms();
	pid_t gone = lct_dead_pid();
	int changed = -1;

	/* The dead one behind a live one: no acquire's walk reaches it. */
	(void)lct_grant(a, &r, now);
	(void)queue(b, "x", getpid(), 3, now);
	(void)queue(b, "x", gone, 2, now);
	ck_assert_int_eq(lockcore_sweep(a, now, 100, 3600000, &changed), 0);
	ck_assert_int_eq(changed, 0);
	ck_assert_int_eq(lct_query_int(dbpath, "SELECT count(*) FROM waiters"),
	    2);
	ck_assert_int_eq(lockcore_sweep(b, now, 100, 3600000, &changed), 0);
	ck_assert_int_eq(changed, 1);
	ck_assert_int_eq(lct_query_int(dbpath, "SELECT count(*) FROM waiters"),
	    1);
	ck_assert_int_eq(lct_query_int(dbpath, "SELECT count(*) FROM locks"
	    " WHERE nwait = 1"), 1);
}
END_TEST

/* A connection that LISTENs as a coordinator does. */
static PGconn *
listener(void)
{
	PGconn *c = PQconnectdb(dbpath);
	PGresult *r;

	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
	r = PQexec(c, "LISTEN httplock");
	ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	return c;
}

/* The next notification's payload into buf (within 5 s), or fails. */
static void
next_notify(PGconn *c, char *buf, size_t n)
{
	struct pollfd pfd = { .fd = PQsocket(c), .events = POLLIN };
	int64_t end = clock_mono_ms() + 5000;
	PGnotify *nt;

	for (;;) {
		ck_assert(PQconsumeInput(c));
		if ((nt = PQnotifies(c)) != NULL) {
			(void)snprintf(buf, n, "%s", nt->extra);
			PQfreemem(nt);
			return;
		}
		ck_assert_msg(clock_mono_ms() < end, "no notification in 5 s");
		(void)poll(&pfd, 1, 100);
	}
}

/* "<host id> <kick> <hex name>" of host c's row. */
static void
payload(const char *host_key, int64_t kick, const char *hexname, char *buf,
    size_t n)
{
	char sql[128];

	(void)snprintf(sql, sizeof(sql), "SELECT id FROM hosts WHERE"
	    " host_key = '%s'", host_key);
	(void)snprintf(buf, n, "%lld %lld %s",
	    (long long)lct_query_int(dbpath, sql), (long long)kick, hexname);
}

/*
 * A release that frees room for another host's waiter tells the other
 * hosts when it commits (NOTIFY httplock, the lock's key in hex); one
 * whose waiters are all this host's says nothing; a cancel of another
 * host's waiter names it.
 */
START_TEST(test_notify)
{
	struct lock_acquire_req r = lct_req("x", NULL, false, 1);
	struct lock_grant g;
	PGconn *ls = listener();
	char got[256], want[256];
	int64_t now = clock_wall_ms(), wid;
	bool was_held, wake;
	int64_t kick;

	/* Only A's own waiter on "l": no notification. */
	r.name = "l";
	g = lct_grant(a, &r, now);
	(void)queue(a, "l", getpid(), 2, now);
	ck_assert_int_eq(lock_release(a, "l", g.token, now, &wake, NULL),
	    LC_OK);
	/* B's waiter on "x": A's release of "x" is heard.  Being first
	 * after the silent one shows that one said nothing. */
	r.name = "x";
	g = lct_grant(a, &r, now);
	(void)queue(b, "x", getpid(), 3, now);
	ck_assert_int_eq(lock_release(a, "x", g.token, now, &wake, NULL),
	    LC_OK);
	next_notify(ls, got, sizeof(got));
	payload("host-a", 0, "78", want, sizeof(want));
	ck_assert_str_eq(got, want);

	/* A hands "h" on to its own first waiter, B's waits behind it: B
	 * is told all the same (not by id), so that its waiter looks and
	 * learns when the new lease ends. */
	{
		struct lock_handoff ho;

		r = lct_req("h", NULL, false, 6);
		g = lct_grant(a, &r, now);
		(void)queue(a, "h", getpid(), 7, now);
		(void)queue(b, "h", getpid(), 8, now);
		memset(&ho, 0, sizeof(ho));
		ck_assert_int_eq(lock_release(a, "h", g.token, now, &wake,
		    &ho), LC_OK);
		ck_assert_int_gt(ho.waiter_id, 0);
		next_notify(ls, got, sizeof(got));
		payload("host-a", 0, "68", want, sizeof(want));
		ck_assert_str_eq(got, want);
	}

	/* A hands "r" on to B's waiter: named, in the NOTIFY that goes
	 * with the COMMIT (the handoff's walk read the row). */
	{
		struct lock_handoff ho;

		r = lct_req("r", NULL, false, 9);
		g = lct_grant(a, &r, now);
		wid = queue(b, "r", getpid(), 10, now);
		memset(&ho, 0, sizeof(ho));
		ck_assert_int_eq(lock_release(a, "r", g.token, now, &wake,
		    &ho), LC_OK);
		ck_assert_int_eq(ho.waiter_id, wid);
		next_notify(ls, got, sizeof(got));
		payload("host-a", wid, "72", want, sizeof(want));
		ck_assert_str_eq(got, want);
	}

	/* A cancels B's waiter on "c" by its request_id: named. */
	r = lct_req("c", NULL, false, 4);
	(void)lct_grant(a, &r, now);
	r = lct_req("c", "rid-5", true, 5);
	r.deadline = now + 60000;
	{
		struct lock_grant g2;
		struct lock_wait_info wi;

		ck_assert_int_eq(lock_acquire(b, &r, now, &g2, &wi),
		    LC_QUEUED);
		wid = wi.waiter_id;
	}
	ck_assert_int_eq(lock_cancel(a, "c", "rid-5", now, &was_held, &kick,
	    &wake, NULL), LC_OK);
	ck_assert_int_eq(kick, wid);
	next_notify(ls, got, sizeof(got));
	payload("host-a", wid, "63", want, sizeof(want));
	ck_assert_str_eq(got, want);
	PQfinish(ls);
}
END_TEST

/*
 * Another host's session, of another boot, is not an unclean shutdown of
 * this one: no fence jump, no grace.  The server says which sessions are
 * open.
 */
START_TEST(test_other_hosts_sessions)
{
	struct lockcore_opts o = opts_b;
	struct lockcore_recovery rec;
	struct lockcore *c;

	o.boot_id = "another-boot";
	o.host_key = "host-c";
	c = lct_open(dbpath, &o);
	lockcore_recovery(c, &rec);
	ck_assert_int_eq(rec.recovered, 0);
	ck_assert_int_eq(rec.stale_sessions, 0);
	ck_assert_int_eq(rec.grace_until, 0);
	lockcore_close(c);
	ck_assert_int_eq(lct_query_int(dbpath, "SELECT count(*) FROM sessions"),
	    2);
}
END_TEST

/*
 * A connection the server ends (pg_terminate_backend: a restart, a
 * failover) costs the call that finds it an error, never a hang; the
 * next call connects again, and nothing committed is lost.  Only this
 * test's database's connections are ended: the other suites run at the
 * same time on the same server.
 */
START_TEST(test_connection_lost)
{
	struct lock_acquire_req r = lct_req("x", NULL, false, 1);
	struct lock_status st;
	struct lock_grant g;
	int64_t now = clock_wall_ms(), t0;
	int rc;

	g = lct_grant(a, &r, now);
	ck_assert_int_ge(lct_query_int(dbpath, "SELECT count(*) FROM"
	    " (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
	    "  WHERE application_name = 'httplock'"
	    "  AND datname = current_database()"
	    "  AND pid <> pg_backend_pid()) t"), 2);
	t0 = clock_mono_ms();
	rc = lock_status(a, "x", now, &st);
	printf("first call after the kill: %d in %lld ms\n", rc,
	    (long long)(clock_mono_ms() - t0));
	ck_assert(rc == LC_E_DB || rc == LC_OK);
	ck_assert_int_lt(clock_mono_ms() - t0, 5000);
	ck_assert_int_eq(lock_status(a, "x", now, &st), LC_OK);
	ck_assert_int_eq(st.nholders, 1);
	ck_assert_int_eq(st.holders[0].fence, g.fence);
}
END_TEST

/*
 * A host whose clock is behind the server's still waits as long as it
 * asked: its deadline keeps its distance from the transaction's time (the
 * server's), so the request queues rather than being refused as too late,
 * and its row lives for the wait it asked for.
 */
START_TEST(test_skewed_host_deadline)
{
	struct lockcore_opts o = opts_b;
	struct lock_acquire_req r = lct_req("x", NULL, false, 1);
	struct lock_grant g;
	struct lock_wait_info wi;
	struct lockcore *c;
	int64_t now = clock_wall_ms(), behind = now - 5000, dl;

	o.live_clock = 1;
	o.host_key = "host-behind";
	c = lct_open(dbpath, &o);
	(void)lct_grant(a, &r, now);
	r = lct_req("x", NULL, true, 2);
	r.deadline = behind + 3000;        /* "wait 3 s" by its clock */
	ck_assert_int_eq(lock_acquire(c, &r, behind, &g, &wi), LC_QUEUED);
	dl = lct_query_int(dbpath, "SELECT deadline FROM waiters");
	printf("deadline %lld ms after the local clock\n", (long long)(dl - now));
	ck_assert_int_ge(dl, now + 2000);
	ck_assert_int_le(dl, clock_wall_ms() + 3000 + 1000);
	lockcore_close(c);
}
END_TEST

/* A server that is not there: an error within the timeout, not a hang. */
START_TEST(test_unreachable)
{
	struct lockcore_opts o = { .busy_timeout_ms = 500 };
	struct lockcore *c = NULL;
	char err[256] = "";
	int64_t t0 = clock_mono_ms(), ms;
	int rc;

	rc = lockcore_open(&c, "postgresql://httplock@127.0.0.1:1/none", &o,
	    err, sizeof(err));
	ms = clock_mono_ms() - t0;
	printf("open of a closed port: %d in %lld ms: %s\n", rc,
	    (long long)ms, err);
	ck_assert_int_eq(rc, LC_E_DB);
	ck_assert_ptr_null(c);
	ck_assert_int_lt(ms, 3000);
	ck_assert(strstr(err, "127.0.0.1") != NULL);
	/* The URI's password never reaches the message. */
	rc = lockcore_open(&c, "postgresql://httplock:s3cret@127.0.0.1:1/none",
	    &o, err, sizeof(err));
	ck_assert_int_eq(rc, LC_E_DB);
	ck_assert(strstr(err, "s3cret") == NULL);
	/* Nor when libpq cannot parse the URI (its message quotes it). */
	rc = lockcore_open(&c, "postgresql://httplock:s3cret@[::1/none", &o,
	    err, sizeof(err));
	printf("open of a malformed URI: %d: %s\n", rc, err);
	ck_assert_int_eq(rc, LC_E_INVAL);
	ck_assert(strstr(err, "s3cret") == NULL);
	ck_assert_ptr_null(c);
}
END_TEST

/* lockcore_store_info on a server: its kind, address and role. */
START_TEST(test_store_info)
{
	struct lockcore_store_info si;
	char name[256];

	ck_assert_int_eq(lockcore_store_info(a, &si), 0);
	ck_assert_str_eq(si.kind, "postgresql");
	ck_assert_int_eq(si.primary, 1);
	ck_assert(strchr(si.server, ':') != NULL);
	lockcore_store_name("postgresql://u:pw@h1:5432/db?sslmode=require",
	    name, sizeof(name));
	ck_assert_str_eq(name, "postgresql://u@h1:5432/db");
}
END_TEST

static Suite *
shared_suite(void)
{
	Suite *s = suite_create("shared");
	TCase *tc = tcase_create("hosts");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_remote_waiter_live);
	tcase_add_test(tc, test_remote_not_only_pid);
	tcase_add_test(tc, test_remote_host_gone);
	tcase_add_test(tc, test_reap_mine);
	tcase_add_test(tc, test_notify);
	tcase_add_test(tc, test_other_hosts_sessions);
	tcase_add_test(tc, test_connection_lost);
	tcase_add_test(tc, test_skewed_host_deadline);
	tcase_add_test(tc, test_unreachable);
	tcase_add_test(tc, test_store_info);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	if (!lct_pg()) {
		printf("HTTPLOCK_TEST_PG is not set: nothing to test\n");
		return 77;
	}
	return unit_run(shared_suite(), "/tmp/check_shared.XXXXXX");
}
