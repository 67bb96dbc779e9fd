/*
 * wait: acquires that wait, parked without a thread (wait.c).
 */
#ifndef HTTPLOCK_WAIT_H
#define HTTPLOCK_WAIT_H

#include <stdatomic.h>
#include <stdint.h>

#include "lockcore.h"
#include "lockref.h"

struct wait_conf {
	int64_t            poll_ms;        /* poll_interval */
	int                max_waiting;    /* per process */
	int                max_waiting_per_client;
	int                max_threads;    /* descriptors kept for them */
	const char        *coord_socket;   /* kept, not copied */
	int                stop_rd;        /* readable once the worker stops */
	const atomic_bool *stopping;       /* set once the worker stops */
};

/*
 * Starts the thread that holds parked acquires; exits on failure.  The
 * thread inherits the caller's signal mask: call it with the stop signals
 * blocked.  Call once.
 */
void wait_init(const struct wait_conf *wc);

/* Why wait_park() could not park a request. */
#define WAIT_PARK_FULL   (-1)   /* max_waiting, or the descriptors */
#define WAIT_PARK_CLIENT (-2)   /* max_waiting_per_client for its address */
#define WAIT_PARK_NOMEM  (-3)   /* no memory */

/*
 * Parks the queued acquire of lock `ref` (copied) whose FastCGI connection
 * is `fd`, FastCGI request `reqid`, from client address `addr` (may be
 * NULL): its waiter row `info`, made for `who`, wall-clock `deadline`
 * (turned into monotonic time here, once), arrived at `started` (wall).
 * 0: the parking thread owns fd from now on and answers the request when
 * the wait ends; the caller frees its libfcgi request without closing fd.
 * Otherwise WAIT_PARK_* and nothing was taken.
 */
int wait_park(int fd, int reqid, const char *addr, const struct lockref *ref,
    const struct lock_waiter_ident *who, int64_t deadline,
    const struct lock_wait_info *info, int64_t started);
/* Acquires parked right now. */
int wait_count(void);
/* Withdraws a waiter row (best effort), and hands the lock on if that
 * freed it. */
void wait_withdraw(const struct lockref *ref,
    const struct lock_waiter_ident *who, int64_t waiter_id);

#ifdef HTTPLOCK_TEST_HOOKS
/* Test builds: the clocks the parking module reads (NULL: the real ones),
 * so that a test can step the wall clock.  Before wait_init(). */
void wait_set_clocks(int64_t (*wall)(void), int64_t (*mono)(void));
#endif

#endif /* HTTPLOCK_WAIT_H */
