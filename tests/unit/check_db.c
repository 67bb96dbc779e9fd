/*
 * check_db: unit tests for the worker's database gate and group commit
 * (fcgi/db.c) against a real lockcore on a temporary file.  Threads play
 * requests: each enters the gate, makes one lockcore call and leaves.  A
 * second lockcore connection, as another worker process would, sees only
 * what was committed.  The cases check that a batch's members commit
 * together (nothing of the first is visible until the last leaves), that
 * a failed commit fails every member and undoes all of their calls, that
 * a member's own failure undoes only its call, that a batch ends at its
 * cap of members, and that many threads at once all get their answers.
 * Each case runs in a process of its own (Check's fork mode): db.c keeps
 * one gate per process.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "clock.h"
#include "conf.h"
#include "db.h"
#include "lockcore.h"
#include "log.h"
#include "proc.h"
#include "unit.h"

#define WAIT_MAX_MS 10000       /* for a thread to reach a given state */
#define BOGUS_TOKEN "00000000000000000000000000000000"

static char dir[128];
static struct lockcore *peer;   /* another process's view */

/* One-shot events between the test and its threads. */
struct event {
	pthread_mutex_t mu;
	pthread_cond_t  cv;
	bool            set;
};

static void
ev_init(struct event *e)
{
	pthread_mutex_init(&e->mu, NULL);
	pthread_cond_init(&e->cv, NULL);
	e->set = false;
}

static void
ev_set(struct event *e)
{
	pthread_mutex_lock(&e->mu);
	e->set = true;
	pthread_cond_broadcast(&e->cv);
	pthread_mutex_unlock(&e->mu);
}

static void
ev_wait(struct event *e)
{
	pthread_mutex_lock(&e->mu);
	while (!e->set)
		pthread_cond_wait(&e->cv, &e->mu);
	pthread_mutex_unlock(&e->mu);
}

static bool
ev_isset(struct event *e)
{
	bool v;

	pthread_mutex_lock(&e->mu);
	v = e->set;
	pthread_mutex_unlock(&e->mu);
	return v;
}

/* A request: enters the gate, signals `entered`, waits for `go`, makes
 * its call, leaves, and keeps what db_leave() returned in rc. */
enum op { OP_ACQUIRE, OP_RELEASE_BOGUS };

struct member {
	const char   *lock;
	enum op       op;
	bool          gated;     /* wait for `go` inside the gate */
	struct event  entered, go, left;
	int           rc;
	pthread_t     tid;
};

static int
call(struct lockcore *db, const struct member *m)
{
	struct lock_acquire_req ar;
	struct lock_grant g;
	struct lock_wait_info info;
	struct lock_handoff ho;
	bool wake = false;
	int64_t now = clock_wall_ms();

	if (m->op == OP_RELEASE_BOGUS) {
		memset(&ho, 0, sizeof(ho));
		return lock_release(db, m->lock,
		    BOGUS_TOKEN,
		    now, &wake, &ho);
	}
	memset(&ar, 0, sizeof(ar));
	ar.name = m->lock;
	ar.ttl_ms = 60000;
	ar.deadline = now;
	ar.max_waiters = 10;
	ar.who.pid = getpid();
	ar.who.pstart = proc_start(getpid());
	ar.who.key = (uint64_t)(uintptr_t)m;
	return lock_acquire(db, &ar, now, &g, &info);
}

static void *
member_main(void *arg)
{
	struct member *m = arg;
	struct lockcore *db;

	if ((db = db_enter(DB_WRITE)) == NULL) {
		m->rc = INT32_MIN;
		ev_set(&m->entered);
		ev_set(&m->left);
		return NULL;
	}
	ev_set(&m->entered);
	if (m->gated)
		ev_wait(&m->go);
	m->rc = db_leave(call(db, m));
	ev_set(&m->left);
	return NULL;
}

static void
member_start(struct member *m, const char *lock, enum op op, bool gated)
{
	memset(m, 0, sizeof(*m));
	m->lock = lock;
	m->op = op;
	m->gated = gated;
	ev_init(&m->entered);
	ev_init(&m->go);
	ev_init(&m->left);
	ck_assert_int_eq(pthread_create(&m->tid, NULL, member_main, m), 0);
}

static void
member_join(struct member *m)
{
	ck_assert_int_eq(pthread_join(m->tid, NULL), 0);
}

/* Waits until n threads wait to enter the gate. */
static void
await_waiting(int n)
{
	int64_t end = clock_mono_ms() + WAIT_MAX_MS;

	while (db_waiting() < n) {
		ck_assert_msg(clock_mono_ms() < end,
		    "no thread waits for the gate");
		sched_yield();
	}
}

/* Whether `lock` is held, as another connection sees it. */
static bool
held(const char *lock)
{
	struct lock_status st;

	ck_assert_int_eq(lock_status(peer, lock, clock_wall_ms(), &st), LC_OK);
	return st.nholders > 0;
}

static void
gate_up(int batch_ops_max)
{
	struct hl_conf c;
	struct db_conf dc;
	char err[256] = "";
	struct lockcore_opts po = { .busy_timeout_ms = 5000 };

	conf_defaults(&c);
	ck_assert_int_lt(snprintf(c.database, sizeof(c.database), "%s/lock.db",
	    dir), (int)sizeof(c.database));
	db_conf_from(&dc, &c);
	dc.batch_ops_max = batch_ops_max;
	/* Batches end by their members, never by age, in these cases. */
	dc.batch_ms = 3600 * 1000;
	ck_assert_int_eq(db_init(&dc), 0);
	/* The first entry opens (and creates) the database. */
	ck_assert_ptr_nonnull(db_enter(DB_WRITE));
	ck_assert_int_eq(db_leave(0), 0);
	ck_assert_int_eq(lockcore_open(&peer, c.database, &po, err,
	    sizeof(err)), 0);
}

static void
setup(void)
{
	unit_testdir(dir, sizeof(dir));
}

static void
teardown(void)
{
	lockcore_close(peer);
	peer = NULL;
	(void)db_close(WAIT_MAX_MS);
}

/*
 * Starts a batch of two: a enters the gate, b queues behind it, a leaves
 * (uncommitted: b waits) and b enters.  Both then wait for their `go`.
 */
static void
batch_of_two(struct member *a, const char *la, struct member *b,
    const char *lb, enum op opb)
{
	member_start(a, la, OP_ACQUIRE, true);
	ev_wait(&a->entered);
	member_start(b, lb, opb, true);
	await_waiting(1);
	ev_set(&a->go);
	ev_wait(&b->entered);
}

/*
 * Two members: the first leaves while the second waits at the gate, so it
 * does not commit; its grant is invisible to another connection until the
 * second leaves and commits both.
 */
START_TEST(test_batch_commits_together)
{
	struct member a, b;

	gate_up(BATCH_OPS_MAX);
	batch_of_two(&a, "a", &b, "b", OP_ACQUIRE);
	/* a left the gate, uncommitted */
	ck_assert(!ev_isset(&a.left));
	ck_assert(!held("a"));
	ev_set(&b.go);
	member_join(&a);
	member_join(&b);
	ck_assert_int_eq(a.rc, LC_GRANTED);
	ck_assert_int_eq(b.rc, LC_GRANTED);
	ck_assert(held("a"));
	ck_assert(held("b"));
}
END_TEST

/*
 * The commit of a two-member batch fails (writes past RLIMIT_FSIZE fail
 * with EFBIG): both members get LC_E_DB, neither grant happened, and the
 * next batch commits again.
 */
START_TEST(test_failed_commit_fails_every_member)
{
	struct rlimit old, tiny = { 1, 1 };
	struct member a, b, c;

	gate_up(BATCH_OPS_MAX);
	ck_assert(signal(SIGXFSZ, SIG_IGN) != SIG_ERR);
	ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
	tiny.rlim_max = old.rlim_max;
	batch_of_two(&a, "a", &b, "b", OP_ACQUIRE);
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &tiny), 0);
	ev_set(&b.go);
	member_join(&a);
	member_join(&b);
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
	ck_assert_int_eq(a.rc, LC_E_DB);
	ck_assert_int_eq(b.rc, LC_E_DB);
	ck_assert(!held("a"));
	ck_assert(!held("b"));

	member_start(&c, "a", OP_ACQUIRE, false);
	member_join(&c);
	ck_assert_int_eq(c.rc, LC_GRANTED);
	ck_assert(held("a"));
}
END_TEST

/* A member whose call fails undoes only that call: the batch commits the
 * others', and each member gets its own result. */
START_TEST(test_member_failure_undoes_only_itself)
{
	struct member a, b;

	gate_up(BATCH_OPS_MAX);
	batch_of_two(&a, "a", &b, "a", OP_RELEASE_BOGUS);
	ev_set(&b.go);
	member_join(&a);
	member_join(&b);
	ck_assert_int_eq(a.rc, LC_GRANTED);
	ck_assert_int_eq(b.rc, LC_E_NOT_HELD);
	ck_assert(held("a"));
}
END_TEST

/*
 * With a cap of two members, the second commits the batch although a
 * third waits at the gate: both return while the third holds the gate.
 * (Past the cap, the second would wait for the third, which waits for the
 * test: the joins would hang.)
 */
START_TEST(test_batch_ends_at_its_cap)
{
	struct member a, b, c;

	gate_up(2);
	batch_of_two(&a, "a", &b, "b", OP_ACQUIRE);
	member_start(&c, "c", OP_ACQUIRE, true);
	await_waiting(1);
	ev_set(&b.go);
	member_join(&a);
	member_join(&b);
	ck_assert_int_eq(a.rc, LC_GRANTED);
	ck_assert_int_eq(b.rc, LC_GRANTED);
	ck_assert(held("a"));
	ck_assert(held("b"));
	ev_wait(&c.entered);
	ck_assert(!held("c"));
	ev_set(&c.go);
	member_join(&c);
	ck_assert_int_eq(c.rc, LC_GRANTED);
	ck_assert(held("c"));
}
END_TEST

/* Many threads at once: every one gets its grant, and every grant is
 * committed. */
START_TEST(test_many_members)
{
	enum { N = 16 };
	static struct member m[N];
	static char names[N][8];
	int i;

	gate_up(BATCH_OPS_MAX);
	for (i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "m%d", i);
		member_start(&m[i], names[i], OP_ACQUIRE, false);
	}
	for (i = 0; i < N; i++) {
		member_join(&m[i]);
		ck_assert_int_eq(m[i].rc, LC_GRANTED);
		ck_assert(held(names[i]));
	}
}
END_TEST

/* A read-first call outside any batch runs in lockcore's own
 * transactions: its result comes back as is, and nothing stays open (the
 * other connection can write at once). */
START_TEST(test_read_first_alone)
{
	struct lock_status st;
	struct lockcore *db;
	struct lock_handoff ho;
	bool wake = false;

	gate_up(BATCH_OPS_MAX);
	ck_assert_ptr_nonnull(db = db_enter(DB_READ_FIRST));
	ck_assert_int_eq(db_leave(lock_status(db, "x", clock_wall_ms(), &st)),
	    LC_OK);
	ck_assert_int_eq(st.nholders, 0);
	memset(&ho, 0, sizeof(ho));
	ck_assert_int_eq(lock_release(peer, "x",
	    BOGUS_TOKEN,
	    clock_wall_ms(), &wake, &ho), LC_E_NOT_HELD);
}
END_TEST

/*
 * HTTPLOCK_TEST_BOOT_ID and HTTPLOCK_TEST_BOOT_TIME reach lockcore only in
 * a build with test hooks (--enable-test-hooks); any other build ignores
 * them, so that they cannot make a worker skip power-loss recovery.  (The
 * suite is built both ways: check_db with the configured flags,
 * check_db_nohooks without the hooks.)
 */
START_TEST(test_boot_hooks_only_in_test_builds)
{
	struct hl_conf c;
	struct db_conf dc;

	conf_defaults(&c);
	ck_assert_int_eq(setenv("HTTPLOCK_TEST_BOOT_ID", "boot-x", 1), 0);
	ck_assert_int_eq(setenv("HTTPLOCK_TEST_BOOT_TIME", "12345", 1), 0);
	db_conf_from(&dc, &c);
#ifdef HTTPLOCK_TEST_HOOKS
	ck_assert_ptr_nonnull(dc.opts.boot_id);
	ck_assert_str_eq(dc.opts.boot_id, "boot-x");
	ck_assert_int_eq(dc.opts.boot_time_ms, 12345);
#else
	ck_assert_ptr_null(dc.opts.boot_id);
	ck_assert_int_eq(dc.opts.boot_time_ms, 0);
#endif
}
END_TEST

static Suite *
db_suite(void)
{
	Suite *s = suite_create("db");
	TCase *tc = tcase_create("gate");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_batch_commits_together);
	tcase_add_test(tc, test_failed_commit_fails_every_member);
	tcase_add_test(tc, test_member_failure_undoes_only_itself);
	tcase_add_test(tc, test_batch_ends_at_its_cap);
	tcase_add_test(tc, test_many_members);
	tcase_add_test(tc, test_read_first_alone);
	tcase_add_test(tc, test_boot_hooks_only_in_test_builds);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	log_init("check_db", 0);
	return unit_run(db_suite(), "/tmp/check_db.XXXXXX");
}
