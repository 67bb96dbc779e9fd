/*
 * wakeup.c: waking a waiting request of this very process without the
 * coordinator.  A waiting thread registers its waiter id with an eventfd
 * for the time it sleeps; a thread of the same process whose transaction
 * granted that waiter (a handoff) writes to the eventfd, which the waiter
 * polls beside its other descriptors.  This saves two process hops
 * (worker -> coordinator -> worker) per handoff between requests served by
 * one process.  The waker also hands over the grant it committed, so the
 * waiter answers without a look at the database (the grant is the one its
 * lock_wait_poll() would read).  A lost wake is covered by the
 * coordinator's WAKE and the waiter's own timers as before.
 */
#include <sys/eventfd.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "worker.h"

#define WAKE_BUCKETS 256        /* a power of two */

static pthread_mutex_t wake_mu = PTHREAD_MUTEX_INITIALIZER;
static struct wake_slot *wake_tab[WAKE_BUCKETS];

static struct wake_slot **
bucket(int64_t waiter_id)
{
	return &wake_tab[(uint64_t)waiter_id & (WAKE_BUCKETS - 1)];
}

int
wakeup_add(struct wake_slot *s, int64_t waiter_id, uint64_t key)
{
	struct wake_slot **b;

	s->granted = false;
	s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->efd < 0) {
		log_warn("%s: eventfd", __func__);
		return -1;
	}
	s->waiter_id = waiter_id;
	s->key = key;
	pthread_mutex_lock(&wake_mu);
	b = bucket(waiter_id);
	s->next = *b;
	*b = s;
	pthread_mutex_unlock(&wake_mu);
	return 0;
}

void
wakeup_del(struct wake_slot *s)
{
	struct wake_slot **p;

	if (s->efd < 0)
		return;
	pthread_mutex_lock(&wake_mu);
	for (p = bucket(s->waiter_id); *p != NULL; p = &(*p)->next)
		if (*p == s) {
			*p = s->next;
			break;
		}
	pthread_mutex_unlock(&wake_mu);
	(void)close(s->efd);
	s->efd = -1;
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
	for (s = *bucket(waiter_id); s != NULL; s = s->next)
		if (s->waiter_id == waiter_id) {
			if (ho != NULL && s->key == ho->key) {
				s->grant = ho->grant;
				s->granted = true;
			} else if (ho == NULL)
				/* A plain wake (cancel, takeover) may come
				 * after a handoff: the database decides. */
				s->granted = false;
			/* Failing only when the counter is full, which
			 * means the waiter has wakes to read already. */
			n = write(s->efd, &one, sizeof(one));
			(void)n;
			found = true;
		}
	pthread_mutex_unlock(&wake_mu);
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

int
wakeup_read(struct wake_slot *s, struct lock_grant *g)
{
	uint64_t n;
	int r;

	if (s->efd < 0 || read(s->efd, &n, sizeof(n)) != sizeof(n))
		return 0;
	pthread_mutex_lock(&wake_mu);
	r = s->granted ? 2 : 1;
	if (s->granted)
		memcpy(g, &s->grant, sizeof(*g));
	pthread_mutex_unlock(&wake_mu);
	return r;
}
