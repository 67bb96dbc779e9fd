/*
 * acquire: an acquire that a signal can interrupt, for the acquire and run
 * commands.  The request runs on a thread of its own, so that the main
 * thread stays free to read signals; the first SIGINT, SIGTERM or SIGHUP
 * starts a third thread that cancels the request by its request_id (which
 * is why we make the id ourselves) instead of leaving the lock to be
 * granted to nobody.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "hlclock.h"
#include "reqid.h"

#define CANCEL_RETRY    0.2     /* seconds between cancels of an interrupted acquire */

/*
 * One acquire and what it gave.  Fields after `mu` are under mu.
 */
struct acq_job {
	struct httplock             *h;
	const char                  *name;
	struct httplock_acquire_opts ao;
	int                          donefd;   /* written to when done */
	struct httplock_grant        grant;    /* OUT */
	struct httplock_error        err;      /* OUT */
	enum httplock_code           rc;       /* OUT */

	pthread_mutex_t              mu;
	pthread_cond_t               cv;       /* broadcast when done is set */
	int                          done;     /* the acquire has returned */
};

static void *
acquire_main(void *arg)
{
	struct acq_job *j = arg;

	j->rc = httplock_acquire(j->h, j->name, &j->ao, &j->grant, &j->err);
	pthread_mutex_lock(&j->mu);
	j->done = 1;
	pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->mu);
	if (write(j->donefd, "", 1) == -1) {
		/* The reader polls the pipe; it cannot be full after one byte. */
	}
	return NULL;
}

/* Cancels the job's request by its request_id until the acquire returns:
 * the request may not have reached the server at the first try. */
static void *
cancel_main(void *arg)
{
	struct acq_job *j = arg;
	struct httplock_error err;
	struct timespec ts;

	pthread_mutex_lock(&j->mu);
	while (!j->done) {
		pthread_mutex_unlock(&j->mu);
		(void)httplock_cancel(j->h, j->name, j->ao.request_id, NULL, &err);
		pthread_mutex_lock(&j->mu);
		ts = hlclock_timespec(hlclock_mono() + CANCEL_RETRY);
		while (!j->done &&
		    pthread_cond_timedwait(&j->cv, &j->mu, &ts) == 0)
			;
	}
	pthread_mutex_unlock(&j->mu);
	return NULL;
}

/* Fills *err for a local failure and returns its code. */
static enum httplock_code
local_error(struct httplock_error *err, const char *what)
{
	memset(err, 0, sizeof(*err));
	err->code = HTTPLOCK_NOMEM;
	snprintf(err->message, sizeof(err->message), "%s: %s", what,
	    strerror(errno));
	return HTTPLOCK_NOMEM;
}

/* Says that signal `sig` interrupted the acquire of `name` and returns the
 * exit status for it. */
int
acquire_interrupted(const char *name, int sig)
{
	fprintf(stderr, "httplock: acquire %s: interrupted by %s\n", name,
	    signals_name(sig));
	return XS_SIGNAL + sig;
}

/*
 * Acquires `name` as the options in `a` say, reading signals from `sfd`
 * meanwhile.  The first SIGINT, SIGTERM or SIGHUP cancels the request by
 * its request_id; a grant that arrives anyway is released.  Returns the
 * library's code with *g and *err filled, and *sig the signal that
 * interrupted it (0 if none).  A second signal exits at once with
 * XS_SIGNAL plus its number.
 */
enum httplock_code
acquire_interruptible(struct httplock *h, const struct args *a, int sfd,
    struct httplock_grant *g, struct httplock_error *err, int *sig)
{
	struct acq_job j;
	char reqid[HTTPLOCK_REQUEST_ID_MAX + 1];
	struct pollfd pfd[2];
	struct httplock_error rerr;
	pthread_condattr_t ca;
	pthread_t tid, ctid;
	int p[2], s, cancelling = 0;
	char c;

	memset(&j, 0, sizeof(j));
	*sig = 0;
	j.h = h;
	j.name = a->pos[0];
	j.ao.timeout = a->wait;
	j.ao.ttl = a->ttl;
	j.ao.owner = a->owner;
	j.ao.request_id = a->request_id;
	if (j.ao.request_id == NULL) {
		if (reqid_make(reqid, sizeof(reqid), "") == -1)
			return local_error(err, "getrandom");
		j.ao.request_id = reqid;
	}
	if (pipe2(p, O_CLOEXEC) == -1)
		return local_error(err, "pipe");
	j.donefd = p[1];
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&j.cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&j.mu, NULL);
	if (pthread_create(&tid, NULL, acquire_main, &j) != 0) {
		/* No thread: wait in this one, uninterruptibly. */
		j.rc = httplock_acquire(h, j.name, &j.ao, &j.grant, &j.err);
		goto out;
	}
	pfd[0].fd = p[0];
	pfd[0].events = POLLIN;
	pfd[1].fd = sfd;
	pfd[1].events = POLLIN;
	for (;;) {
		if (poll(pfd, 2, -1) == -1 && errno != EINTR)
			break;          /* cannot happen: then just wait */
		if ((pfd[0].revents & POLLIN) && read(p[0], &c, 1) == 1)
			break;
		if (!(pfd[1].revents & POLLIN) || (s = signals_read(sfd)) == 0)
			continue;
		if (*sig != 0) {
			/* Insisted: leave at once, maybe still queued. */
			_exit(acquire_interrupted(j.name, s));
		}
		*sig = s;
		if (pthread_create(&ctid, NULL, cancel_main, &j) == 0)
			cancelling = 1;
	}
	pthread_join(tid, NULL);
	if (cancelling)
		pthread_join(ctid, NULL);
out:
	pthread_cond_destroy(&j.cv);
	pthread_mutex_destroy(&j.mu);
	close(p[0]);
	close(p[1]);
	if (*sig != 0 && j.rc == HTTPLOCK_OK)
		(void)httplock_release(h, j.name, j.grant.token, &rerr);
	*g = j.grant;
	*err = j.err;
	return j.rc;
}
