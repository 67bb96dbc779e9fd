/*
 * check_wakeup: unit tests for the worker's table of direct wakes
 * (fcgi/wakeup.c): plain wakes, and the hand-over by which a thread that
 * granted a parked request answers it itself (wakeup_claim, then
 * wakeup_answered) while the parking thread keeps its hands off the
 * request until it gets it back.  The last case runs claiming threads
 * against a thread playing the parking thread, and checks that every
 * request ends exactly once: answered by the claimer, or ended by the
 * parking thread, never both and never neither.
 */
#include <check.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wakeup.h"

/* wakeup.c keeps one table per process: every case starts with it empty
 * (each deletes what it added) and the eventfd drained. */
static void
setup(void)
{
	static bool done;

	if (!done) {
		ck_assert_int_eq(wakeup_init(), 0);
		done = true;
	}
	wakeup_drain();
	ck_assert_ptr_null(wakeup_next());
}

static bool
fd_readable(void)
{
	struct pollfd p = { .fd = wakeup_fd(), .events = POLLIN };

	return poll(&p, 1, 0) == 1;
}

static struct lock_handoff
handoff(int64_t waiter_id, uint64_t key)
{
	struct lock_handoff ho;

	memset(&ho, 0, sizeof(ho));
	ho.waiter_id = waiter_id;
	ho.key = key;
	ho.pid = getpid();
	return ho;
}

START_TEST(test_signal_wakes_once)
{
	struct wake_slot s;
	int owner;

	wakeup_add(&s, 7, 70, &owner);
	ck_assert(!wakeup_signal(8));           /* nobody waits for 8 */
	ck_assert(!fd_readable());
	ck_assert(wakeup_signal(7));
	ck_assert(wakeup_signal(7));            /* twice: listed once */
	ck_assert(fd_readable());
	wakeup_drain();
	ck_assert_ptr_eq(wakeup_next(), &s);
	ck_assert_ptr_eq(s.owner, &owner);
	ck_assert_ptr_null(wakeup_next());
	ck_assert_int_eq(wakeup_read(&s), WAKE_READ_LOOK);
	ck_assert_int_eq(wakeup_read(&s), WAKE_READ_NONE);   /* consumed */
	ck_assert_int_eq(wakeup_del(&s), WAKE_FREE);
	ck_assert(!wakeup_signal(7));           /* gone */
	ck_assert(!wakeup_signal(0));
}
END_TEST

START_TEST(test_del_leaves_ready_list)
{
	struct wake_slot a, b;

	wakeup_add(&a, 11, 1, &a);
	wakeup_add(&b, 12, 2, &b);
	ck_assert(wakeup_signal(11));
	ck_assert(wakeup_signal(12));
	ck_assert_int_eq(wakeup_del(&a), WAKE_FREE);
	ck_assert_int_eq(wakeup_del(&a), WAKE_FREE);    /* a no-op now */
	wakeup_drain();
	ck_assert_ptr_eq(wakeup_next(), &b);
	ck_assert_ptr_null(wakeup_next());
	ck_assert_int_eq(wakeup_del(&b), WAKE_FREE);
}
END_TEST

START_TEST(test_claim_hand_over)
{
	struct wake_slot s;
	struct lock_handoff ho = handoff(21, 210);
	struct lock_handoff other = handoff(21, 999);

	wakeup_add(&s, 21, 210, &s);
	/* Another request's grant for the same waiter: s only looks. */
	ck_assert_ptr_null(wakeup_claim(&other));
	wakeup_drain();
	ck_assert_ptr_eq(wakeup_next(), &s);
	ck_assert_int_eq(wakeup_read(&s), WAKE_READ_LOOK);

	ck_assert_ptr_eq(wakeup_claim(&ho), &s);
	ck_assert_ptr_null(wakeup_claim(&ho));          /* claimed once */
	ck_assert_int_eq(wakeup_state(&s), WAKE_CLAIMED);
	/* The parking thread may not end it, nor look for it. */
	ck_assert_int_eq(wakeup_del(&s), WAKE_CLAIMED);
	ck_assert(!wakeup_signal(21));
	ck_assert_int_eq(wakeup_read(&s), WAKE_READ_NONE);
	ck_assert(!fd_readable());

	wakeup_answered(&s);
	ck_assert(fd_readable());
	ck_assert_int_eq(wakeup_state(&s), WAKE_ANSWERED);
	ck_assert(!wakeup_signal(21));                  /* answered: no look */
	ck_assert_ptr_null(wakeup_claim(&ho));
	wakeup_drain();
	ck_assert_ptr_eq(wakeup_next(), &s);
	ck_assert_int_eq(wakeup_read(&s), WAKE_READ_ANSWERED);
	ck_assert_int_eq(wakeup_del(&s), WAKE_ANSWERED);
	ck_assert_ptr_null(wakeup_claim(&ho));          /* gone */
}
END_TEST

START_TEST(test_claim_wakes_the_rest)
{
	struct wake_slot mine, older;
	struct lock_handoff ho = handoff(31, 310);

	/* A request_id retry took over waiter 31's place: both requests are
	 * registered.  The grant is the new one's; the old one must look
	 * (and find it lost its row). */
	wakeup_add(&older, 31, 300, &older);
	wakeup_add(&mine, 31, 310, &mine);
	ck_assert_ptr_eq(wakeup_claim(&ho), &mine);
	ck_assert(fd_readable());
	wakeup_drain();
	ck_assert_ptr_eq(wakeup_next(), &older);
	ck_assert_ptr_null(wakeup_next());
	ck_assert_int_eq(wakeup_read(&older), WAKE_READ_LOOK);
	ck_assert_int_eq(wakeup_del(&older), WAKE_FREE);
	wakeup_answered(&mine);
	ck_assert_int_eq(wakeup_del(&mine), WAKE_ANSWERED);
	ck_assert_ptr_null(wakeup_next());              /* del took it off */
}
END_TEST

START_TEST(test_no_claim_after_del)
{
	struct wake_slot s;
	struct lock_handoff ho = handoff(41, 410);

	/* The parking thread ends the request first (a timeout): a handoff
	 * committed meanwhile finds nobody to answer, and falls back to the
	 * coordinator's kick and the database. */
	wakeup_add(&s, 41, 410, &s);
	ck_assert_int_eq(wakeup_del(&s), WAKE_FREE);
	ck_assert_ptr_null(wakeup_claim(&ho));
	ck_assert(!fd_readable());
}
END_TEST

/*
 * Claimers against a parking thread.  Each request (slot) is granted once
 * by one of the claimer threads, in order, while the parking thread walks
 * every third request from the same start, ending it of its own accord (a
 * timeout), so the two meet on many requests.  Whoever ends a request
 * counts it; each must be counted exactly once.
 */
#define RACE_SLOTS   3000
#define RACE_THREADS 3
#define RACE_ROUNDS  5

struct race_req {
	struct wake_slot s;
	atomic_int       ended;     /* answered by a claimer or ended here */
	bool             claimer;   /* answered by a claimer */
	bool             gone;      /* the parking thread is done with it */
};

static struct race_req reqs[RACE_SLOTS];
static atomic_int next_grant;
static pthread_barrier_t race_start;

static void *
claimer(void *arg)
{
	int i;

	(void)arg;
	pthread_barrier_wait(&race_start);
	while ((i = atomic_fetch_add(&next_grant, 1)) < RACE_SLOTS) {
		struct lock_handoff ho = handoff(1000 + i, (uint64_t)i);
		struct wake_slot *s = wakeup_claim(&ho);

		if (s == NULL)
			continue;       /* the parking thread ended it first */
		ck_assert_ptr_eq(s, &reqs[i].s);
		/* "Write the answer": the parking thread must not have. */
		ck_assert_int_eq(atomic_fetch_add(&reqs[i].ended, 1), 0);
		reqs[i].claimer = true;
		wakeup_answered(s);
	}
	return NULL;
}

/* The parking thread's part: ends the request unless it is claimed, in
 * which case it comes back on the ready list, answered. */
static void
park_end_like(struct race_req *r)
{
	switch (wakeup_del(&r->s)) {
	case WAKE_CLAIMED:
		return;
	case WAKE_ANSWERED:
		ck_assert_int_eq(atomic_load(&r->ended), 1);
		r->gone = true;
		return;
	case WAKE_FREE:
		ck_assert_int_eq(atomic_fetch_add(&r->ended, 1), 0);
		r->gone = true;
		return;
	}
}

/* Takes the answered requests off the ready list. */
static void
park_wakes_like(void)
{
	struct wake_slot *s;

	wakeup_drain();
	while ((s = wakeup_next()) != NULL) {
		struct race_req *r = s->owner;

		ck_assert(!r->gone);
		ck_assert_int_eq(wakeup_read(s), WAKE_READ_ANSWERED);
		park_end_like(r);
	}
}

START_TEST(test_claim_race)
{
	pthread_t th[RACE_THREADS];
	int i, round, left, nclaimed = 0, met = 0;

	for (round = 0; round < RACE_ROUNDS; round++) {
		for (i = 0; i < RACE_SLOTS; i++) {
			memset(&reqs[i], 0, sizeof(reqs[i]));
			wakeup_add(&reqs[i].s, 1000 + i, (uint64_t)i,
			    &reqs[i]);
		}
		atomic_store(&next_grant, 0);
		ck_assert_int_eq(pthread_barrier_init(&race_start, NULL,
		    RACE_THREADS + 1), 0);
		for (i = 0; i < RACE_THREADS; i++)
			ck_assert_int_eq(pthread_create(&th[i], NULL, claimer,
			    NULL), 0);
		pthread_barrier_wait(&race_start);
		for (i = 0; i < RACE_SLOTS; i += 3) {
			if (!reqs[i].gone) {    /* not answered already */
				park_end_like(&reqs[i]);
				met += !reqs[i].gone;   /* claimed just then */
			}
			park_wakes_like();
		}
		for (i = 0; i < RACE_THREADS; i++)
			pthread_join(th[i], NULL);
		pthread_barrier_destroy(&race_start);
		/* Every grant is out: the rest come back answered. */
		park_wakes_like();
		for (left = 0, i = 0; i < RACE_SLOTS; i++) {
			ck_assert_int_eq(atomic_load(&reqs[i].ended), 1);
			ck_assert(reqs[i].gone);
			left += i % 3 != 0 && !reqs[i].claimer;
			nclaimed += reqs[i].claimer;
		}
		/* Only every third request may time out. */
		ck_assert_int_eq(left, 0);
		ck_assert_ptr_null(wakeup_next());
	}
	printf("claim race: of %d requests %d answered by claimers, %d "
	    "ended by the parking thread, %d found claimed by it\n",
	    RACE_ROUNDS * RACE_SLOTS, nclaimed,
	    RACE_ROUNDS * RACE_SLOTS - nclaimed, met);
}
END_TEST

static Suite *
wakeup_suite(void)
{
	Suite *s = suite_create("wakeup");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_signal_wakes_once);
	tcase_add_test(tc, test_del_leaves_ready_list);
	tcase_add_test(tc, test_claim_hand_over);
	tcase_add_test(tc, test_claim_wakes_the_rest);
	tcase_add_test(tc, test_no_claim_after_del);
	tcase_add_test(tc, test_claim_race);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(wakeup_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
