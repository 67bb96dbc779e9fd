/*
 * wakeup.c: waking a parked request of this very process without the
 * coordinator.  A parked acquire (wait.c) registers its waiter id here
 * while it waits; a thread of the same process whose transaction granted
 * that waiter (a handoff) marks its slot, puts it on the ready list and
 * makes one eventfd readable, which the parking thread polls beside its
 * other descriptors.  This saves two process hops (worker -> coordinator
 * -> worker) per handoff between requests served by one process.  The
 * waker also hands over the grant it committed, so the waiter answers
 * without a look at the database (the grant is the one its
 * lock_wait_poll() would read).  A lost wake is covered by the
 * coordinator's WAKE and the waiter's own timers as before.
 */
#include <sys/eventfd.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "worker.h"

#define WAKE_BUCKETS 4096       /* a power of two */

static pthread_mutex_t wake_mu = PTHREAD_MUTEX_INITIALIZER;
static struct wake_slot *wake_tab[WAKE_BUCKETS];
static struct wake_slot *ready;         /* woken slots, newest first */
static int wake_efd = -1;

int
wakeup_init(void)
{
	wake_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (wake_efd < 0) {
		log_warn("%s: eventfd", __func__);
		return -1;
	}
	return 0;
}

int
wakeup_fd(void)
{
	return wake_efd;
}

static struct wake_slot **
bucket(int64_t waiter_id)
{
	return &wake_tab[(uint64_t)waiter_id & (WAKE_BUCKETS - 1)];
}

void
wakeup_add(struct wake_slot *s, int64_t waiter_id, uint64_t key, void *owner)
{
	struct wake_slot **b;

	s->waiter_id = waiter_id;
	s->key = key;
	s->owner = owner;
	s->pending = s->woken = false;
	s->grant = NULL;
	s->rnext = NULL;
	pthread_mutex_lock(&wake_mu);
	b = bucket(waiter_id);
	s->next = *b;
	*b = s;
	s->added = true;
	pthread_mutex_unlock(&wake_mu);
}

void
wakeup_del(struct wake_slot *s)
{
	struct wake_slot **p;

	if (!s->added)
		return;
	pthread_mutex_lock(&wake_mu);
	for (p = bucket(s->waiter_id); *p != NULL; p = &(*p)->next)
		if (*p == s) {
			*p = s->next;
			break;
		}
	if (s->pending)
		for (p = &ready; *p != NULL; p = &(*p)->rnext)
			if (*p == s) {
				*p = s->rnext;
				break;
			}
	free(s->grant);
	s->grant = NULL;
	s->added = s->pending = false;
	pthread_mutex_unlock(&wake_mu);
}

/* Wakes the requests registered for waiter_id; with `ho`, the one whose
 * key it names is given its grant; without, any grant given before is
 * taken back, so the woken request looks in the database. */
static bool
wake(int64_t waiter_id, const struct lock_handoff *ho)
{
	struct wake_slot *s;
	uint64_t one = 1;
	ssize_t n;
	bool found = false;

	if (waiter_id <= 0)
		return false;
	pthread_mutex_lock(&wake_mu);
	for (s = *bucket(waiter_id); s != NULL; s = s->next) {
		if (s->waiter_id != waiter_id)
			continue;
		if (ho != NULL && s->key == ho->key) {
			if (s->grant == NULL &&
			    (s->grant = malloc(sizeof(*s->grant))) == NULL)
				continue;   /* it finds the grant when it looks */
			memcpy(s->grant, &ho->grant, sizeof(*s->grant));
		} else if (ho == NULL) {
			/* A plain wake (cancel, takeover) may come after a
			 * handoff: the database decides. */
			free(s->grant);
			s->grant = NULL;
		}
		s->woken = true;
		if (!s->pending) {
			s->pending = true;
			s->rnext = ready;
			ready = s;
		}
		found = true;
	}
	pthread_mutex_unlock(&wake_mu);
	/* Failing only when the counter is full, which means the parking
	 * thread has wakes to read already. */
	if (found) {
		n = write(wake_efd, &one, sizeof(one));
		(void)n;
	}
	return found;
}

bool
wakeup_signal(int64_t waiter_id)
{
	return wake(waiter_id, NULL);
}

bool
wakeup_grant(const struct lock_handoff *ho)
{
	return wake(ho->waiter_id, ho);
}

void
wakeup_drain(void)
{
	uint64_t n;

	if (read(wake_efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_warn("%s: read", __func__);
}

struct wake_slot *
wakeup_next(void)
{
	struct wake_slot *s;

	pthread_mutex_lock(&wake_mu);
	if ((s = ready) != NULL) {
		ready = s->rnext;
		s->pending = false;
	}
	pthread_mutex_unlock(&wake_mu);
	return s;
}

int
wakeup_read(struct wake_slot *s, struct lock_grant *g)
{
	int r = 0;

	pthread_mutex_lock(&wake_mu);
	if (s->woken) {
		r = 1;
		if (s->grant != NULL) {
			memcpy(g, s->grant, sizeof(*g));
			free(s->grant);
			s->grant = NULL;
			r = 2;
		}
		s->woken = false;
	}
	pthread_mutex_unlock(&wake_mu);
	return r;
}
