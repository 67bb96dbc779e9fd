/*
 * check_wait: unit tests for the parking thread (fcgi/wait.c) with a wall
 * clock the test controls (wait_set_clocks, in builds of this test only).
 * A queued acquire is parked on one end of a socket pair, as a pool thread
 * parks a FastCGI connection; the test reads the FastCGI records of its
 * answer on the other end.  The lock is held by another grant, the
 * coordinator is absent (the waiter polls the database), and the database
 * is a real lockcore on a temporary file.
 *
 * The cases that matter: the system clock steps back an hour while a
 * request waits.  Its timers run on the monotonic clock, so it still times
 * out at its deadline; timers on the wall clock would sleep for the hour.
 * And the clock steps forward an hour: lockcore then judges the waiter
 * rows by a wall deadline already past (never granted, deleted by other
 * waiters' walks), so the waits end at their next look, as timeouts, not
 * as cancellations, and not only when their monotonic deadline comes.
 */
#include <check.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fastcgi.h>

#include "clock.h"
#include "conf.h"
#include "coordlink.h"
#include "db.h"
#include "deliver.h"
#include "log.h"
#include "proc.h"
#include "reply.h"
#include "unit.h"
#include "wait.h"

#define ANSWER_MAX_MS 5000      /* an answer due after WAIT_MS comes by then */
#define WAIT_MS       300       /* the waiter's timeout */
#define STEP_MS       (3600 * 1000)
#define LONG_WAIT_MS  20000     /* a timeout the forward step must cut short */

static char dir[128];
static int stop_pipe[2] = { -1, -1 };
static atomic_bool stopping;

/* The test's wall clock: the real one plus `wall_offset`. */
static _Atomic int64_t wall_offset;

static int64_t
test_wall_ms(void)
{
	return clock_wall_ms() + atomic_load(&wall_offset);
}

/* The worker's modules, as serve() sets them up; no coordinator listens
 * at the socket named. */
static void
setup(void)
{
	static char sock[160];
	struct hl_conf c;
	struct db_conf dc;

	unit_testdir(dir, sizeof(dir));
	conf_defaults(&c);
	ck_assert_int_lt(snprintf(c.database, sizeof(c.database), "%s/lock.db",
	    dir), (int)sizeof(c.database));
	ck_assert_int_lt(snprintf(sock, sizeof(sock), "%s/no-coord.sock", dir),
	    (int)sizeof(sock));
	db_conf_from(&dc, &c);
	ck_assert_int_eq(db_init(&dc), 0);
	reply_init(c.max_waiters);
	coordlink_init(sock, c.poll_ms, getpid());
	deliver_init(getpid());
	ck_assert_int_eq(pipe(stop_pipe), 0);
	wait_set_clocks(test_wall_ms, NULL);
	wait_init(&(struct wait_conf){
		.poll_ms = c.poll_ms,
		.max_waiting = c.max_waiting,
		.max_waiting_per_client = c.max_waiting_per_client,
		.max_threads = c.max_threads,
		.coord_socket = sock,
		.stop_rd = stop_pipe[0],
		.stopping = &stopping,
	});
}

static struct lock_acquire_req
acquire_req(const char *name, uint64_t key, int64_t now, int64_t timeout)
{
	struct lock_acquire_req ar;

	memset(&ar, 0, sizeof(ar));
	ar.name = name;
	ar.ttl_ms = 60000;
	ar.deadline = now + timeout;
	ar.wait = timeout > 0;
	ar.max_waiters = 10;
	ar.who.pid = getpid();
	ar.who.pstart = proc_start(getpid());
	ar.who.key = key;
	return ar;
}

/* One acquire through the gate, as a handler makes it. */
static int
acquire(struct lock_acquire_req *ar, int64_t now, struct lock_wait_info *info)
{
	struct lock_grant g;
	struct lockcore *db;

	ck_assert_ptr_nonnull(db = db_enter(DB_WRITE));
	return db_leave(lock_acquire(db, ar, now, &g, info));
}

/*
 * Reads the FastCGI records on fd until the connection closes or
 * ANSWER_MAX_MS pass, and returns the FCGI_STDOUT content (NUL-ended, in
 * a static buffer); *ms gets the time it took.
 */
static const char *
read_answer(int fd, int64_t *ms)
{
	static char out[4096];
	static uint8_t raw[8192];
	size_t rlen = 0, olen = 0, off = 0;
	int64_t t0 = clock_mono_ms(), end = t0 + ANSWER_MAX_MS;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, clock_ms_left(end, clock_mono_ms())) != 1)
			break;
		n = read(fd, raw + rlen, sizeof(raw) - rlen);
		if (n <= 0)
			break;
		rlen += (size_t)n;
	}
	*ms = clock_mono_ms() - t0;
	while (off + FCGI_HEADER_LEN <= rlen) {
		const FCGI_Header *h = (const FCGI_Header *)(raw + off);
		size_t clen = (size_t)h->contentLengthB1 << 8 |
		    h->contentLengthB0;

		ck_assert_uint_le(off + FCGI_HEADER_LEN + clen +
		    h->paddingLength, rlen);
		if (h->type == FCGI_STDOUT && olen + clen < sizeof(out)) {
			memcpy(out + olen, raw + off + FCGI_HEADER_LEN, clen);
			olen += clen;
		}
		off += FCGI_HEADER_LEN + clen + h->paddingLength;
	}
	out[olen] = '\0';
	return out;
}

/* Grants `name` to another request, so that acquires of it queue. */
static void
hold(const char *name, int64_t now)
{
	struct lock_acquire_req holder = acquire_req(name, 1, now, 0);
	struct lock_wait_info info;

	ck_assert_int_eq(acquire(&holder, now, &info), LC_GRANTED);
}

/*
 * Queues an acquire of `name` (waiter key `key`, timeout `timeout` ms) and
 * parks it on one end of a socket pair, as a pool thread parks its FastCGI
 * connection; returns the other end, where its answer arrives.
 */
static int
park_waiter(const char *name, uint64_t key, int64_t now, int64_t timeout)
{
	struct lock_acquire_req w = acquire_req(name, key, now, timeout);
	struct lock_wait_info info;
	struct lockref ref = { name, name, false, 0 };
	int sv[2];

	ck_assert_int_eq(acquire(&w, now, &info), LC_QUEUED);
	memcpy(w.who.token, info.token, sizeof(w.who.token));
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ck_assert_int_eq(wait_park(sv[0], 1, "127.0.0.1", &ref, &w.who,
	    w.deadline, &info, now), 0);
	return sv[1];
}

/*
 * The wall clock steps back an hour right after the request parks: it
 * still times out (423) at its deadline, WAIT_MS later, not an hour later.
 */
START_TEST(test_wall_clock_steps_back)
{
	int64_t now = clock_wall_ms(), took;
	const char *answer;
	int fd;

	hold("x", now);
	fd = park_waiter("x", 2, now, WAIT_MS);
	atomic_store(&wall_offset, -STEP_MS);

	answer = read_answer(fd, &took);
	ck_assert_msg(strstr(answer, "Status: 423") != NULL,
	    "no 423 within %d ms of a %d ms wait (took %lld ms): '%s'",
	    ANSWER_MAX_MS, WAIT_MS, (long long)took, answer);
	ck_assert_int_ge(took, WAIT_MS / 2);
	close(fd);
}
END_TEST

/*
 * Two waiters queue behind a holder with a long timeout; the wall clock
 * steps forward an hour.  Both are answered 423 within ANSWER_MAX_MS: by
 * the wall clock their deadline has passed (the first one's row is deleted
 * by the second's look, which must not read as a cancellation).
 */
START_TEST(test_wall_clock_steps_forward)
{
	int64_t now = clock_wall_ms(), took;
	const char *answer;
	int fa, fb;

	hold("z", now);
	fa = park_waiter("z", 2, now, LONG_WAIT_MS);
	fb = park_waiter("z", 3, now, LONG_WAIT_MS);
	atomic_store(&wall_offset, STEP_MS);

	answer = read_answer(fa, &took);
	ck_assert_msg(strstr(answer, "Status: 423") != NULL,
	    "first waiter: no 423 within %d ms of the step (took %lld ms): "
	    "'%s'", ANSWER_MAX_MS, (long long)took, answer);
	answer = read_answer(fb, &took);
	ck_assert_msg(strstr(answer, "Status: 423") != NULL,
	    "second waiter: no 423 within %d ms of the step (took %lld ms): "
	    "'%s'", ANSWER_MAX_MS, (long long)took, answer);
	close(fa);
	close(fb);
}
END_TEST

/* Without a step, the same wait also ends at its deadline: the case above
 * measures the step, not the set-up. */
START_TEST(test_wait_times_out)
{
	int64_t now = clock_wall_ms(), took;
	const char *answer;
	int fd;

	hold("y", now);
	fd = park_waiter("y", 2, now, WAIT_MS);
	answer = read_answer(fd, &took);
	ck_assert_msg(strstr(answer, "Status: 423") != NULL, "'%s'", answer);
	ck_assert_int_ge(took, WAIT_MS / 2);
	close(fd);
}
END_TEST

static Suite *
wait_suite(void)
{
	Suite *s = suite_create("wait");
	TCase *tc = tcase_create("clock");

	/* Each case in a process of its own: the parking thread and the
	 * gate are one per process. */
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_wait_times_out);
	tcase_add_test(tc, test_wall_clock_steps_back);
	tcase_add_test(tc, test_wall_clock_steps_forward);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	log_init("check_wait", 0);
	return unit_run(wait_suite(), "/tmp/check_wait.XXXXXX");
}
