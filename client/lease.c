/*
 * lease: the lease that `run` keeps alive while its command runs.  A
 * thread of its own renews it every ttl/RENEW_EVERY and moves the deadline
 * on; the main thread asks lease_lost() whether the lease still stands and
 * stops the command when it does not.  The deadline is kept on the
 * monotonic clock from when we sent a request the server answered, so a
 * renewal stuck in a server that does not answer cannot hold it up.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "hlclock.h"

#define RENEW_EVERY     3       /* renew when 1/RENEW_EVERY of the lease has passed */
#define RETRY_SHARE     10      /* after a failed renewal, retry after ttl/RETRY_SHARE */
#define RETRY_MIN       0.05    /* seconds between failed renewals, at least */
#define RETRY_MAX       1.0     /* and at most */

/* The renew thread. */
static void *
renew_main(void *arg)
{
	struct lease *l = arg;
	struct httplock_grant g;
	struct httplock_error err;
	enum httplock_code rc;
	struct timespec ts;
	double next, sent, retry;

	retry = l->ttl / RETRY_SHARE;
	retry = retry < RETRY_MIN ? RETRY_MIN : retry > RETRY_MAX ? RETRY_MAX : retry;
	pthread_mutex_lock(&l->mu);
	next = l->base + (l->deadline - l->base) / RENEW_EVERY;
	while (!l->stop) {
		if (hlclock_mono() < next) {
			ts = hlclock_timespec(next);
			(void)pthread_cond_timedwait(&l->cv, &l->mu, &ts);
			continue;
		}
		if (hlclock_mono() >= l->deadline)
			break;                  /* the main thread stops the command */
		pthread_mutex_unlock(&l->mu);
		memset(&err, 0, sizeof(err));
		sent = hlclock_mono();
		rc = httplock_renew(l->h, l->name, l->token, l->ttl, &g, &err);
		pthread_mutex_lock(&l->mu);
		if (l->stop)
			break;
		if (rc == HTTPLOCK_OK) {
			l->last = HTTPLOCK_OK;
			if (sent + l->ttl > l->deadline) {
				l->base = sent;
				l->deadline = sent + l->ttl;
			}
			next = sent + l->ttl / RENEW_EVERY;
		} else {
			l->last = rc;
			l->err = err;
			if (rc == HTTPLOCK_NOT_HELD) {
				l->not_held = 1;
				break;
			}
			/* Unreachable or refused: try again until the deadline. */
			next = hlclock_mono() + retry;
		}
	}
	l->done = 1;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	if (write(l->wake[1], "", 1) == -1) {
		/* Nonblocking pipe, full: the main thread wakes anyway. */
	}
	return NULL;
}

/*
 * The lease's first deadline.  Counted from when we sent the acquire, the
 * lease surely lasts until t_send + ttl; after a long wait that is too
 * early, and we count from the server's expires_at (read at wall time
 * w_recv) instead, assuming the clocks agree, but never past t_recv + ttl
 * nor below t_recv + ttl/RENEW_EVERY.
 */
double
lease_first_deadline(const struct httplock_grant *g, double ttl,
    double t_send, double t_recv, double w_recv)
{
	double est = g->expires_at - w_recv;

	if (est > ttl)
		est = ttl;
	if (est < ttl / RENEW_EVERY)
		est = ttl / RENEW_EVERY;
	if (t_send + ttl > t_recv + est)
		return t_send + ttl;
	return t_recv + est;
}

/*
 * Sets up *l for the grant `g`, the lease lasting till `deadline`, counted
 * from `base` (both monotonic).  Returns 0, or -1 with errno set and
 * nothing to undo.
 */
int
lease_init(struct lease *l, struct httplock *h, const char *name,
    const struct httplock_grant *g, double ttl, double base, double deadline)
{
	pthread_condattr_t ca;
	int e;

	memset(l, 0, sizeof(*l));
	l->h = h;
	l->name = name;
	l->token = g->token;
	l->ttl = ttl;
	l->base = base;
	l->deadline = deadline;
	l->last = HTTPLOCK_OK;
	if (pipe2(l->wake, O_CLOEXEC | O_NONBLOCK) == -1)
		return -1;
	if ((e = pthread_condattr_init(&ca)) != 0)
		goto fail;
	if ((e = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC)) != 0 ||
	    (e = pthread_cond_init(&l->cv, &ca)) != 0) {
		pthread_condattr_destroy(&ca);
		goto fail;
	}
	pthread_condattr_destroy(&ca);
	if ((e = pthread_mutex_init(&l->mu, NULL)) != 0) {
		pthread_cond_destroy(&l->cv);
		goto fail;
	}
	return 0;
fail:
	close(l->wake[0]);
	close(l->wake[1]);
	errno = e;
	return -1;
}

/* Starts renewing.  Returns 0, or -1 with errno set (nothing started). */
int
lease_start(struct lease *l)
{
	int e;

	if ((e = pthread_create(&l->tid, NULL, renew_main, l)) != 0) {
		errno = e;
		return -1;
	}
	l->started = 1;
	return 0;
}

/* Says why the lease is lost (one line); *l is locked by the caller. */
static void
report_lost(const struct lease *l)
{
	char buf[OUT_LINE_MAX];

	if (l->not_held) {
		out_format_error(buf, sizeof(buf), l->last, &l->err, l->token);
		fprintf(stderr, "httplock: run %s: lease lost: %s; stopping the "
		    "command\n", l->name, buf);
	} else if (l->last != HTTPLOCK_OK) {
		out_format_error(buf, sizeof(buf), l->last, &l->err, l->token);
		fprintf(stderr, "httplock: run %s: lease lost: not renewed before "
		    "it expired (last error: %s); stopping the command\n",
		    l->name, buf);
	} else {
		fprintf(stderr, "httplock: run %s: lease lost: the server did not "
		    "answer before it expired; stopping the command\n", l->name);
	}
}

/*
 * Reads the lease's deadline into *deadline and returns 1 if the lease is
 * lost at monotonic time `now` (the server said it is gone, or the
 * deadline has passed), else 0.  With `report`, a loss is also said on
 * stderr, from the same reading.
 */
int
lease_lost(struct lease *l, double now, int report, double *deadline)
{
	int lost;

	pthread_mutex_lock(&l->mu);
	*deadline = l->deadline;
	lost = l->not_held || now >= l->deadline;
	if (lost && report)
		report_lost(l);
	pthread_mutex_unlock(&l->mu);
	return lost;
}

/* Stops renewing without waiting: no renewal starts after this returns
 * (one under way may still finish; lease_stop() waits for it). */
void
lease_halt(struct lease *l)
{
	pthread_mutex_lock(&l->mu);
	l->stop = 1;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

/*
 * Stops the renew thread, waiting at most `wait` seconds for it to leave
 * the request it may be in.  Returns 1 once it has ended (or never ran) and
 * *l is freed; 0 if it is still inside a request to a server that does not
 * answer: then the process must leave with _exit(), freeing nothing.
 */
int
lease_stop(struct lease *l, double wait)
{
	struct timespec ts;
	int done;

	pthread_mutex_lock(&l->mu);
	l->stop = 1;
	pthread_cond_broadcast(&l->cv);
	ts = hlclock_timespec(hlclock_mono() + wait);
	while (l->started && !l->done &&
	    pthread_cond_timedwait(&l->cv, &l->mu, &ts) == 0)
		;
	done = !l->started || l->done;
	pthread_mutex_unlock(&l->mu);
	if (!done)
		return 0;
	if (l->started)
		pthread_join(l->tid, NULL);
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mu);
	close(l->wake[0]);
	close(l->wake[1]);
	return 1;
}
