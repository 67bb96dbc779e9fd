/*
 * wakeup.c: waking a parked request of this very process without the
 * coordinator.  A parked acquire (wait.c) registers its waiter id here
 * while it waits.  A thread of the same process whose transaction granted
 * that waiter (a handoff) claims its slot and answers the request itself
 * (deliver.c): the grant goes out without another thread's
 * wake-up on the way.  It then hands the slot back, answered, on the
 * ready list, and the parking thread, which polls the ready list's
 * eventfd beside its other descriptors, closes the connection and frees
 * the request.  A plain wake (cancel, takeover, a request_id retry) puts
 * the slot on the ready list and the parking thread looks in the
 * database.  This saves two process hops (worker -> coordinator ->
 * worker) per handoff between requests served by one process, and a
 * thread hop.  A lost wake is covered by the coordinator's WAKE and the
 * waiter's own timers.
 */
#include <sys/eventfd.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "log.h"
#include "wakeup.h"

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
	s->pending = s->woken = s->claimed = s->answered = false;
	s->rnext = NULL;
	pthread_mutex_lock(&wake_mu);
	b = bucket(waiter_id);
	s->next = *b;
	*b = s;
	s->added = true;
	pthread_mutex_unlock(&wake_mu);
}

static enum wake_state
state(const struct wake_slot *s)
{
	return s->claimed ? WAKE_CLAIMED : s->answered ? WAKE_ANSWERED :
	    WAKE_FREE;
}

enum wake_state
wakeup_del(struct wake_slot *s)
{
	struct wake_slot **p;
	enum wake_state st;

	if (!s->added)
		return WAKE_FREE;
	pthread_mutex_lock(&wake_mu);
	if ((st = state(s)) == WAKE_CLAIMED) {
		pthread_mutex_unlock(&wake_mu);
		return st;
	}
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
	s->added = s->pending = false;
	pthread_mutex_unlock(&wake_mu);
	return st;
}

enum wake_state
wakeup_state(struct wake_slot *s)
{
	enum wake_state st;

	pthread_mutex_lock(&wake_mu);
	st = state(s);
	pthread_mutex_unlock(&wake_mu);
	return st;
}

/* Puts s on the ready list; true if the eventfd must be made readable.
 * Under wake_mu. */
static bool
make_ready(struct wake_slot *s)
{
	s->woken = true;
	if (s->pending)
		return false;
	s->pending = true;
	s->rnext = ready;
	ready = s;
	return true;
}

/* Fails only when the counter is full, which means the parking thread
 * has wakes to read already. */
void
wakeup_kick(void)
{
	uint64_t one = 1;
	ssize_t n = write(wake_efd, &one, sizeof(one));

	(void)n;
}

bool
wakeup_signal(int64_t waiter_id)
{
	struct wake_slot *s;
	bool found = false, k = false;

	if (waiter_id <= 0)
		return false;
	pthread_mutex_lock(&wake_mu);
	for (s = *bucket(waiter_id); s != NULL; s = s->next)
		if (s->waiter_id == waiter_id && !s->claimed &&
		    !s->answered) {
			k |= make_ready(s);
			found = true;
		}
	pthread_mutex_unlock(&wake_mu);
	if (k)
		wakeup_kick();
	return found;
}

struct wake_slot *
wakeup_claim(const struct lock_handoff *ho)
{
	struct wake_slot *s, *mine = NULL;
	bool k = false;

	if (ho->waiter_id <= 0)
		return NULL;
	pthread_mutex_lock(&wake_mu);
	for (s = *bucket(ho->waiter_id); s != NULL; s = s->next) {
		if (s->waiter_id != ho->waiter_id || s->claimed ||
		    s->answered)
			continue;
		if (s->key == ho->key && mine == NULL) {
			s->claimed = true;
			mine = s;
		} else
			k |= make_ready(s);
	}
	pthread_mutex_unlock(&wake_mu);
	if (k)
		wakeup_kick();
	return mine;
}

void
wakeup_answered(struct wake_slot *s)
{
	bool k;

	pthread_mutex_lock(&wake_mu);
	s->claimed = false;
	s->answered = true;
	k = make_ready(s);
	pthread_mutex_unlock(&wake_mu);
	if (k)
		wakeup_kick();
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

enum wake_read
wakeup_read(struct wake_slot *s)
{
	enum wake_read r = WAKE_READ_NONE;

	pthread_mutex_lock(&wake_mu);
	if (s->answered)
		r = WAKE_READ_ANSWERED;
	else if (s->woken && !s->claimed) {
		r = WAKE_READ_LOOK;
		s->woken = false;
	}
	pthread_mutex_unlock(&wake_mu);
	return r;
}
