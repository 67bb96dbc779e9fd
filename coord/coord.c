/*
 * httplock-coord: the coordinator daemon.  Workers park each waiting
 * request on a connection here (WAIT) and tell us when a lock's state
 * changes (NOTIFY); we wake the waiter that should look at the database
 * next (WAKE), and wake one by ourselves when the holder's lease is due to
 * expire.  We never decide who holds a lock: SQLite does.  If we die,
 * waiters notice the closed socket and fall back to polling.
 *
 * One thread, one level-triggered epoll loop.  State: a hash table from
 * lock name to struct lock, each with its registrations sorted by
 * waiter_id, and a binary min-heap of the locks whose expiry timer is
 * armed.  A peer has at most one registration, embedded in struct peer.
 *
 * A peer that fails (EOF, socket error, bad frame, output overflow) is
 * only marked dead while the loop is busy; it is freed, and its
 * registration withdrawn, in reap() at the end of the loop iteration, so
 * no code ever holds a pointer to a freed peer.
 *
 * Hostile or broken peers cannot starve the others: every
 * legitimate peer sends a frame as soon as it connects (a WAIT, a NOTIFY,
 * a PING), so a peer that has not sent one complete valid frame within
 * HELLO_MS is dropped, and when accept() runs out of descriptors the
 * oldest such silent peers make room first.  Per-peer buffers are small
 * and capped, a timer can be set no further ahead than max_ttl allows,
 * and locks that only carry a timer are capped at TIMER_LOCKS_MAX, so
 * memory stays bounded by the descriptor limit.  The buffers exist only
 * while they hold something, so an idle waiter costs its struct peer
 * alone: about 150 bytes.
 *
 * With -i SECONDS (given by a worker that started us, see
 * fcgi/autostart.c) we exit once we have had nothing to do for that long:
 * no registration.  Timers do not count: one that fires wakes only a
 * registration, and a waiter that registers with our successor brings the
 * holder's expiry along.  Connected notifiers do not count either: every
 * worker keeps one open.
 *
 * The coordinator never opens the database: the workers sweep it
 * (lockcore_sweep, fcgi/db.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "conf.h"
#include "log.h"
#include "pglisten.h"
#include "proc.h"
#include "proto.h"

#define IN_MAX            (PROTO_FRAME_MAX * 4)  /* one read, all peers */
/*
 * Frames are decoded straight out of the one read buffer.  A peer keeps
 * only the start of a frame it has not finished sending, its tail, in a
 * buffer allocated on demand and freed once the frame is complete.  A
 * frame fits in TAIL_MAX (proto_decode() rejects an impossible header as
 * soon as it is complete), so a tail is always shorter.
 */
#define TAIL_MAX          PROTO_FRAME_MAX
#define TAIL_MIN          64           /* first allocation of a tail */
/*
 * A peer has one registration, so it is owed an ACK, a WAKE and a PONG or
 * two at most: a few KiB of pending output means it does not read.
 */
#define OUT_MAX           4096         /* per-peer output; more drops it */
#define OUT_MIN           256          /* first allocation of output */
#define EVENTS_MAX        256
#define READS_PER_EVENT   8            /* fairness between chatty peers */
#define ACCEPTS_PER_EVENT 64
#define ACCEPT_PAUSE_MS   100          /* after EMFILE and the like */
#define HELLO_MS          5000         /* first valid frame due within */
#define EVICT_PER_EMFILE  16           /* silent peers dropped to make room */
#define EVICT_AGE_MS      250          /* ... if connected at least this long */
#define TROUBLE_LOG_MS    10000        /* accept failures: one line per */
#define IDLE_MAX_MS       86400000     /* -i: at most a day */
#define TIMER_SLACK_MS    60000        /* timers: at most max_ttl + this ahead */
#define TIMER_LOCKS_MAX   16384        /* NOTIFY creates no lock beyond */
#define WAIT_MAX_MS       60000        /* look at the clock this often */
#define BUCKETS_MIN       256
#define SUN_PATH_LEN      sizeof(((struct sockaddr_un *)0)->sun_path)

struct lock;
struct peer;

/* A sleeping waiter: one per peer at most, linked into its lock's list. */
struct reg {
	struct reg  *prev, *next;    /* the lock's list, by waiter_id */
	struct lock *lock;           /* NULL: not registered */
	struct peer *peer;
	uint64_t     waiter_id;
};

struct peer {
	struct peer *prev, *next;    /* all peers */
	struct peer *dead_next;      /* the reap list */
	struct peer *sprev, *snext;  /* co.silent, oldest first, while silent */
	int          fd;
	bool         dead;           /* dropped; freed by reap() */
	bool         silent;         /* no valid frame yet: in co.silent */
	bool         want_out;       /* EPOLLOUT is armed */
	int64_t      hello_by;       /* monotonic ms: drop if still silent */
	struct reg   reg;
	uint8_t     *out;            /* unsent output, outlen of outcap bytes; */
	size_t       outlen, outcap; /* ... NULL while there is none */
	uint8_t     *in;             /* the tail, inlen of incap bytes; */
	size_t       inlen, incap;   /* ... NULL while there is none */
};

struct lock {
	struct lock *hnext;          /* hash chain */
	uint32_t     hash;
	struct reg  *head, *tail;
	int64_t      timer;          /* ms monotonic; 0: not armed */
	size_t       heap_idx;       /* position in co.heap while armed */
	size_t       namelen;
	char         name[];         /* not terminated */
};

static struct {
	int           lfd, efd, sfd, lockfd;
	struct stat   sock_st;       /* the socket file we created */
	const char   *path;
	bool          quit;
	bool          accept_paused;
	int64_t       accept_resume; /* monotonic ms */
	int64_t       idle_ms;       /* -i: exit after this long idle; 0: never */
	int64_t       busy_at;       /* monotonic ms we last had work */

	struct lock **buckets;
	size_t        nbuckets;      /* a power of two */
	uint32_t      seed;
	struct lock **heap;
	size_t        heaplen, heapcap;

	struct peer  *peers;
	struct peer  *dead;
	struct peer  *silent, *silent_tail;  /* peers yet to send a frame */
	int64_t       timer_horizon; /* ms: max_ttl + TIMER_SLACK_MS */
	uint32_t      npeers, nregs, nlocks;
} co = { .lfd = -1, .efd = -1, .sfd = -1, .lockfd = -1 };

/* Tags that tell the listener and the signalfd from peers in epoll data. */
static int listen_tag, signal_tag, store_tag;

static void peer_kill(struct peer *, const char *);

/* --------------------------------------------------------- silent peers */

/* Appends `p` (just accepted) to the silent list, the newest last. */
static void
silent_add(struct peer *p, int64_t now)
{
	p->silent = true;
	p->hello_by = now + HELLO_MS;
	p->snext = NULL;
	p->sprev = co.silent_tail;
	if (co.silent_tail != NULL)
		co.silent_tail->snext = p;
	else
		co.silent = p;
	co.silent_tail = p;
}

/* Takes `p` off the silent list: it spoke, or it is being freed. */
static void
silent_del(struct peer *p)
{
	if (!p->silent)
		return;
	if (p->sprev != NULL)
		p->sprev->snext = p->snext;
	else
		co.silent = p->snext;
	if (p->snext != NULL)
		p->snext->sprev = p->sprev;
	else
		co.silent_tail = p->sprev;
	p->sprev = p->snext = NULL;
	p->silent = false;
}

/*
 * Drops silent peers whose HELLO_MS ran out at `now`, and with `evict` up
 * to `evict` more of the oldest silent peers (to free descriptors), but
 * only those connected for EVICT_AGE_MS: a peer accepted a moment ago may
 * have its first frame waiting unread.  Returns how many were dropped.
 */
static int
silent_drop(int64_t now, int evict)
{
	struct peer *p;
	int n = 0;

	/* peer_kill() takes p off the list: the head is always the next. */
	while ((p = co.silent) != NULL) {
		/* The list is in hello_by order, that is by age. */
		if (p->hello_by > now && (n >= evict ||
		    p->hello_by - HELLO_MS + EVICT_AGE_MS > now))
			break;
		peer_kill(p, p->hello_by > now ?
		    "evicted: silent, out of descriptors" : "silent too long");
		n++;
	}
	return n;
}

/* ---------------------------------------------------------------- locks */

static uint32_t
hash_name(const char *name, size_t len)
{
	uint32_t h = 2166136261u ^ co.seed;          /* FNV-1a, seeded */
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= (uint8_t)name[i];
		h *= 16777619u;
	}
	return h;
}

/* Doubles the bucket array; on ENOMEM the table just stays denser. */
static void
rehash(void)
{
	size_t n = co.nbuckets * 2, i;
	struct lock **b, *l, *next;

	if ((b = calloc(n, sizeof(*b))) == NULL)
		return;
	for (i = 0; i < co.nbuckets; i++) {
		for (l = co.buckets[i]; l != NULL; l = next) {
			next = l->hnext;
			l->hnext = b[l->hash & (n - 1)];
			b[l->hash & (n - 1)] = l;
		}
	}
	free(co.buckets);
	co.buckets = b;
	co.nbuckets = n;
}

/*
 * Finds the lock `name`, creating it if `create`.  Returns NULL if it
 * does not exist, or on ENOMEM.
 */
static struct lock *
lock_get(const char *name, size_t len, bool create)
{
	uint32_t h = hash_name(name, len);
	struct lock *l, **bucket = &co.buckets[h & (co.nbuckets - 1)];

	for (l = *bucket; l != NULL; l = l->hnext)
		if (l->hash == h && l->namelen == len &&
		    memcmp(l->name, name, len) == 0)
			return l;
	if (!create)
		return NULL;
	if ((l = calloc(1, sizeof(*l) + len)) == NULL) {
		log_warn("%s: calloc", __func__);
		return NULL;
	}
	l->hash = h;
	l->namelen = len;
	memcpy(l->name, name, len);
	l->hnext = *bucket;
	*bucket = l;
	if (++co.nlocks > co.nbuckets)
		rehash();
	return l;
}

/* Frees `l` if nothing refers to it any more: no registration, no timer. */
static void
lock_maybe_free(struct lock *l)
{
	struct lock **pp;

	if (l->head != NULL || l->timer != 0)
		return;
	for (pp = &co.buckets[l->hash & (co.nbuckets - 1)]; *pp != l;
	    pp = &(*pp)->hnext)
		;
	*pp = l->hnext;
	co.nlocks--;
	free(l);
}

/* ---------------------------------------------------------------- timers */

/*
 * A binary min-heap of locks by timer.  Each armed lock knows its index,
 * so re-arming and disarming are O(log n) in place.
 */
static void
heap_put(size_t i, struct lock *l)
{
	co.heap[i] = l;
	l->heap_idx = i;
}

static void
heap_up(size_t i)
{
	struct lock *l = co.heap[i];

	while (i > 0 && co.heap[(i - 1) / 2]->timer > l->timer) {
		heap_put(i, co.heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	heap_put(i, l);
}

static void
heap_down(size_t i)
{
	struct lock *l = co.heap[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= co.heaplen)
			break;
		if (c + 1 < co.heaplen &&
		    co.heap[c + 1]->timer < co.heap[c]->timer)
			c++;
		if (co.heap[c]->timer >= l->timer)
			break;
		heap_put(i, co.heap[c]);
		i = c;
	}
	heap_put(i, l);
}

static void
timer_clear(struct lock *l)
{
	struct lock *last;
	size_t i = l->heap_idx;

	if (l->timer == 0)
		return;
	l->timer = 0;
	if (--co.heaplen == i)
		return;
	last = co.heap[co.heaplen];         /* fill the hole with the last */
	heap_put(i, last);
	heap_up(i);
	heap_down(last->heap_idx);
}

/*
 * Arms (or re-arms: the latest report wins) the expiry timer of `l` for
 * `when`, a wall-clock time (the lease's stored expiry).  The heap runs on
 * the monotonic clock, so the wall time is turned into a delay here, once:
 * a step of the system clock back afterwards does not stall the timer.
 * After a step forward the lease has ended by the wall clock before the
 * timer fires; the first waiter's own looks (every FIRST_LOOK_POLLS poll
 * intervals, fcgi/wait.c) hand it on meanwhile.  No lease lasts longer than max_ttl, so a later time is a peer's
 * nonsense: it is pulled in to the horizon (an early timer only makes the
 * first waiter look once more).
 */
static void
timer_set(struct lock *l, int64_t when)
{
	int64_t wall, delay;

	if (when == 0) {
		timer_clear(l);
		return;
	}
	wall = clock_wall_ms();
	/* Compared, never subtracted first: `when` comes from a peer, any
	 * int64 value. */
	if (when <= wall)
		delay = 0;
	else if (when - co.timer_horizon > wall)
		delay = co.timer_horizon;
	else
		delay = when - wall;
	when = clock_mono_ms() + delay;
	if (when == 0)
		when = 1;       /* 0 means "not armed" */
	if (l->timer != 0) {
		l->timer = when;
		heap_up(l->heap_idx);
		heap_down(l->heap_idx);
		return;
	}
	if (co.heaplen == co.heapcap) {
		size_t n = co.heapcap ? co.heapcap * 2 : 64;
		struct lock **h = reallocarray(co.heap, n, sizeof(*h));

		if (h == NULL) {
			/* The waiters' deadlines still bound their sleep. */
			log_warn("%s: reallocarray", __func__);
			return;
		}
		co.heap = h;
		co.heapcap = n;
	}
	l->timer = when;
	heap_put(co.heaplen, l);
	heap_up(co.heaplen++);
}

/* ------------------------------------------------------------ registrations */

/* Links `r` into `l`, after any registration with a waiter_id <= its own. */
static void
reg_insert(struct lock *l, struct reg *r)
{
	struct reg *at = l->tail;

	while (at != NULL && at->waiter_id > r->waiter_id)
		at = at->prev;
	r->lock = l;
	r->prev = at;
	r->next = (at != NULL ? at->next : l->head);
	if (r->next != NULL)
		r->next->prev = r;
	else
		l->tail = r;
	if (at != NULL)
		at->next = r;
	else
		l->head = r;
	co.nregs++;
}

static void
reg_unlink(struct reg *r)
{
	struct lock *l = r->lock;

	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		l->head = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	else
		l->tail = r->prev;
	r->prev = r->next = NULL;
	r->lock = NULL;
	co.nregs--;
}

/* --------------------------------------------------------------- output */

static void
peer_arm_out(struct peer *p, bool on)
{
	struct epoll_event ev;

	if (p->want_out == on)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN | (on ? EPOLLOUT : 0);
	ev.data.ptr = p;
	if (epoll_ctl(co.efd, EPOLL_CTL_MOD, p->fd, &ev) == -1) {
		peer_kill(p, "epoll_ctl");
		return;
	}
	p->want_out = on;
}

/* Sends what we can of p's pending output. */
static void
peer_flush(struct peer *p)
{
	while (p->outlen > 0) {
		ssize_t n = send(p->fd, p->out, p->outlen,
		    MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			peer_kill(p, "send");
			return;
		}
		memmove(p->out, p->out + n, p->outlen - (size_t)n);
		p->outlen -= (size_t)n;
	}
	if (p->outlen == 0) {
		/* A waiter is owed little, and rarely: do not keep room. */
		free(p->out);
		p->out = NULL;
		p->outcap = 0;
	}
	peer_arm_out(p, p->outlen > 0);
}

/*
 * Queues buf[0..len) for `p`, sending at once when nothing is pending.
 * A peer whose pending output would pass OUT_MAX is not reading: drop it.
 */
static void
peer_write(struct peer *p, const uint8_t *buf, size_t len)
{
	size_t need;

	if (p->dead)
		return;
	if (p->outlen == 0) {
		ssize_t n = send(p->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR) {
			peer_kill(p, "send");
			return;
		}
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
		}
		if (len == 0)
			return;
	}
	need = p->outlen + len;
	if (need > OUT_MAX) {
		peer_kill(p, "output overflow");
		return;
	}
	if (need > p->outcap) {
		size_t cap = p->outcap ? p->outcap : OUT_MIN;
		uint8_t *o;

		while (cap < need)
			cap *= 2;
		if ((o = realloc(p->out, cap)) == NULL) {
			peer_kill(p, "realloc");
			return;
		}
		p->out = o;
		p->outcap = cap;
	}
	memcpy(p->out + p->outlen, buf, len);
	p->outlen += len;
	peer_arm_out(p, true);
}

static void
peer_send(struct peer *p, const struct proto_msg *m)
{
	uint8_t buf[PROTO_FRAME_MAX];
	int n = proto_encode(m, buf, sizeof(buf));

	if (n < 0) {
		/* Only our own frames get here: a bug, not the peer's fault. */
		log_warnx("%s: proto_encode type %u: %d", __func__, m->type, n);
		return;
	}
	peer_write(p, buf, (size_t)n);
}

static void
peer_send_type(struct peer *p, uint8_t type, uint64_t waiter_id)
{
	struct proto_msg m;

	memset(&m, 0, sizeof(m));
	m.type = type;
	m.waiter_id = waiter_id;
	peer_send(p, &m);
}

/* ---------------------------------------------------------------- waking */

/*
 * Wakes `r` (one-shot: it is unregistered).  Returns false if its peer
 * is dead, or died on the send, so the wake did not reach anyone.
 */
static bool
wake_reg(struct reg *r)
{
	struct peer *p = r->peer;
	uint64_t id = r->waiter_id;

	reg_unlink(r);
	if (p->dead)
		return false;
	peer_send_type(p, PROTO_WAKE, id);
	return !p->dead;
}

/*
 * Wakes the first registrations of `l`: all those sharing the lowest
 * waiter_id (one request may be registered on two connections, briefly,
 * while it re-registers).  If none of them can be reached, the next
 * waiter_id is woken instead, and so on.  Does not free `l`.
 */
static void
wake_first(struct lock *l)
{
	bool reached = false;

	while (l->head != NULL && !reached) {
		uint64_t id = l->head->waiter_id;

		while (l->head != NULL && l->head->waiter_id == id)
			if (wake_reg(l->head))
				reached = true;
	}
}

/* Wakes every registration of `l` with waiter_id `id`.  Does not free `l`. */
static void
wake_id(struct lock *l, uint64_t id)
{
	struct reg *r, *next;

	for (r = l->head; r != NULL && r->waiter_id <= id; r = next) {
		next = r->next;
		if (r->waiter_id == id)
			(void)wake_reg(r);
	}
}

/*
 * Withdraws p's registration, if any.  With `wake_next`, a departing
 * first waiter hands its turn on: it may have been about to take the lock.
 */
static void
peer_unregister(struct peer *p, bool wake_next)
{
	struct lock *l = p->reg.lock;
	bool first;

	if (l == NULL)
		return;
	first = (l->head == &p->reg);
	reg_unlink(&p->reg);
	if (first && wake_next)
		wake_first(l);
	lock_maybe_free(l);
}

/* Fires every timer that is due at `now` (ms, monotonic clock). */
static void
run_timers(int64_t now)
{
	while (co.heaplen > 0 && co.heap[0]->timer <= now) {
		struct lock *l = co.heap[0];

		timer_clear(l);
		wake_first(l);
		lock_maybe_free(l);
	}
}

/* -------------------------------------------------------------- requests */

static void
do_wait(struct peer *p, const struct proto_msg *m)
{
	struct lock *l;

	peer_unregister(p, false);          /* a new WAIT replaces the old */
	if ((l = lock_get(m->name, m->namelen, true)) == NULL) {
		peer_kill(p, "out of memory");
		return;
	}
	p->reg.peer = p;
	p->reg.waiter_id = m->waiter_id;
	reg_insert(l, &p->reg);
	if (m->expires != 0)
		timer_set(l, m->expires);
	peer_send_type(p, PROTO_ACK, 0);
}

static void
do_notify(const struct proto_msg *m)
{
	struct lock *l;

	/*
	 * Only a timer needs a lock nobody waits for yet, and not much: a
	 * waiter that registers brings the holder's expiry along.  So such
	 * locks are capped, which bounds what a peer can make us keep.
	 */
	if ((l = lock_get(m->name, m->namelen, m->expires != 0 &&
	    co.nlocks < TIMER_LOCKS_MAX)) == NULL)
		return;
	if (m->flags & PROTO_NOTIFY_WAKE)
		wake_first(l);
	if (m->waiter_id != 0)
		wake_id(l, m->waiter_id);
	if (m->expires != 0)
		timer_set(l, m->expires);
	lock_maybe_free(l);
}

/*
 * What another host's worker did to a lock, heard on a shared store
 * (pglisten.h): its waiters here look, as after a NOTIFY from one of our
 * workers.  After the listener (re)connects, every lock's first waiter
 * looks, since what was said meanwhile is lost.
 */
static void
do_heard(const char *name, size_t namelen, uint64_t kick, bool all,
    void *arg)
{
	struct lock *l, *next;
	size_t i;

	(void)arg;
	if (all) {
		for (i = 0; i < co.nbuckets; i++)
			for (l = co.buckets[i]; l != NULL; l = next) {
				next = l->hnext;
				wake_first(l);
				lock_maybe_free(l);
			}
		return;
	}
	if (namelen == 0 || namelen > PROTO_NAME_MAX ||
	    (l = lock_get(name, namelen, false)) == NULL)
		return;
	wake_first(l);
	if (kick != 0)
		wake_id(l, kick);
	lock_maybe_free(l);
}

static void
do_ping(struct peer *p)
{
	struct proto_msg m;

	memset(&m, 0, sizeof(m));
	m.type = PROTO_PONG;
	m.peers = co.npeers;
	m.waiters = co.nregs;
	m.locks = co.nlocks;
	peer_send(p, &m);
}

/* Acts on one decoded frame from `p`. */
static void
peer_handle(struct peer *p, const struct proto_msg *m)
{
	switch (m->type) {
	case PROTO_WAIT:
		log_debug("%s: fd %d: WAIT \"%s\" id %llu expires %lld",
		    __func__, p->fd, LOG_ESCN(m->name, m->namelen),
		    (unsigned long long)m->waiter_id, (long long)m->expires);
		do_wait(p, m);
		break;
	case PROTO_NOTIFY:
		log_debug("%s: fd %d: NOTIFY \"%s\" flags %u kick %llu "
		    "expires %lld", __func__, p->fd,
		    LOG_ESCN(m->name, m->namelen),
		    m->flags, (unsigned long long)m->waiter_id,
		    (long long)m->expires);
		do_notify(m);
		break;
	case PROTO_PING:
		do_ping(p);
		break;
	case PROTO_UNWAIT:
		log_debug("%s: fd %d: UNWAIT", __func__, p->fd);
		peer_unregister(p, false);
		break;
	default:
		/* ACK, WAKE, PONG, ERROR: ours to send, not to receive. */
		peer_kill(p, "unexpected frame type");
		break;
	}
}

/*
 * Appends buf[0..len), the start of a frame not yet complete, to p's
 * tail, allocating or growing it.  Returns false, with `p` dropped, if the
 * tail would pass TAIL_MAX (it cannot: see TAIL_MAX) or on ENOMEM.
 */
static bool
tail_append(struct peer *p, const uint8_t *buf, size_t len)
{
	size_t need = p->inlen + len;

	if (need > TAIL_MAX) {
		peer_kill(p, "input overflow");
		return false;
	}
	if (need > p->incap) {
		size_t cap = p->incap ? p->incap : TAIL_MIN;
		uint8_t *in;

		while (cap < need)
			cap *= 2;
		if (cap > TAIL_MAX)
			cap = TAIL_MAX;
		if ((in = realloc(p->in, cap)) == NULL) {
			peer_kill(p, "realloc");
			return false;
		}
		p->in = in;
		p->incap = cap;
	}
	memcpy(p->in + p->inlen, buf, len);
	p->inlen = need;
	return true;
}

static void
tail_free(struct peer *p)
{
	free(p->in);
	p->in = NULL;
	p->inlen = p->incap = 0;
}

/*
 * Decodes the frame at buf[0..len) and acts on it.  Returns its size, or
 * 0 if it is incomplete or broken (then `p` is dropped) or if `p` died.
 */
static size_t
peer_frame(struct peer *p, const uint8_t *buf, size_t len)
{
	struct proto_msg m;
	size_t used;
	int rc = proto_decode(buf, len, &m, &used);

	if (rc == PROTO_E_SHORT)
		return 0;
	if (rc == PROTO_E_VERSION) {
		log_debug("%s: fd %d: version %u, not %u", __func__,
		    p->fd, m.version, PROTO_VERSION);
		peer_send_type(p, PROTO_ERROR, 0);
		peer_kill(p, "wrong version");
		return 0;
	}
	if (rc != PROTO_OK) {
		peer_kill(p, "malformed frame");
		return 0;
	}
	silent_del(p);
	peer_handle(p, &m);
	return p->dead ? 0 : used;
}

/*
 * Acts on buf[0..len), just read from `p`: first completes p's tail, if it
 * has one, then decodes whole frames in place.  The start of a frame left
 * incomplete at the end becomes p's tail.
 */
static void
peer_input(struct peer *p, const uint8_t *buf, size_t len)
{
	size_t off = 0, used;

	if (p->inlen > 0) {
		size_t old = p->inlen;
		size_t take = TAIL_MAX - old;

		if (take > len)
			take = len;
		if (!tail_append(p, buf, take))
			return;
		if ((used = peer_frame(p, p->in, p->inlen)) == 0) {
			/* Still incomplete: then all of buf fit in the tail. */
			if (!p->dead && take < len)
				peer_kill(p, "input overflow");
			return;
		}
		/* The old tail alone was incomplete, so used > old. */
		tail_free(p);
		off = used - old;
	}
	while (off < len && (used = peer_frame(p, buf + off, len - off)) > 0)
		off += used;
	if (off < len && !p->dead)
		(void)tail_append(p, buf + off, len - off);
}

/*
 * Reads from `p` into one buffer shared by all peers: each read is acted
 * upon before the next, and acting on a frame never reads.
 */
static void
peer_read(struct peer *p)
{
	static uint8_t buf[IN_MAX];
	int i;

	for (i = 0; i < READS_PER_EVENT && !p->dead; i++) {
		ssize_t n = recv(p->fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n == 0) {
			peer_kill(p, NULL);
			return;
		}
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				peer_kill(p, "recv");
			return;
		}
		peer_input(p, buf, (size_t)n);
		if ((size_t)n < sizeof(buf))
			return;             /* the socket is drained */
	}
}

/* ----------------------------------------------------------------- peers */

/*
 * Marks `p` dead: it gets no more input or output and is freed by reap().
 * `why` is NULL for an orderly close.
 */
static void
peer_kill(struct peer *p, const char *why)
{
	if (p->dead)
		return;
	if (why != NULL)
		log_debug("%s: fd %d: dropped: %s", __func__, p->fd, why);
	p->dead = true;
	silent_del(p);
	p->dead_next = co.dead;
	co.dead = p;
	co.npeers--;
}

static void
peer_free(struct peer *p)
{
	silent_del(p);
	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		co.peers = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	close(p->fd);
	free(p->out);
	free(p->in);
	free(p);
}

/* Frees the dead peers.  Withdrawing their registrations may wake others,
 * whose sends may fail and add to the list, so loop until it is empty. */
static void
reap(void)
{
	struct peer *p;

	while ((p = co.dead) != NULL) {
		co.dead = p->dead_next;
		peer_unregister(p, true);
		peer_free(p);
	}
}

static void
accept_pause(bool pause)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = pause ? 0 : EPOLLIN;
	ev.data.ptr = &listen_tag;
	if (epoll_ctl(co.efd, EPOLL_CTL_MOD, co.lfd, &ev) == -1)
		fatal("%s: epoll_ctl", __func__);
	co.accept_paused = pause;
	if (pause)
		co.accept_resume = clock_mono_ms() + ACCEPT_PAUSE_MS;
}

/*
 * accept4() failed with `err` for want of descriptors or memory: evict the
 * oldest silent peers, or pause accepting.  Logged once per episode, not
 * once per attempt.
 */
static void
accept_trouble(int err)
{
	static int64_t logged_at;
	int64_t now = clock_mono_ms();
	int n;

	n = silent_drop(now, EVICT_PER_EMFILE);
	if (logged_at == 0 || now - logged_at >= TROUBLE_LOG_MS) {
		errno = err;
		log_warn("%s: accept4 (%d silent peers dropped%s)", __func__, n,
		    n > 0 ? "" : ", pausing");
		logged_at = now;
	}
	if (n == 0)
		accept_pause(true);
}

static void
do_accept(void)
{
	int i;

	for (i = 0; i < ACCEPTS_PER_EVENT; i++) {
		struct epoll_event ev;
		struct peer *p;
		int fd;

		fd = accept4(co.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			switch (errno) {
			case EAGAIN:
#if EWOULDBLOCK != EAGAIN
			case EWOULDBLOCK:
#endif
				return;
			case EINTR:
			case ECONNABORTED:
			case EPROTO:
				continue;
			default:
				/*
				 * EMFILE, ENFILE, ENOBUFS, ENOMEM.  Peers
				 * that never spoke make room first (they
				 * are closed by reap(), and the listener,
				 * still readable, brings us back); with
				 * none, the listener would stay readable:
				 * rather than spin, stop accepting for a
				 * moment.
				 */
				accept_trouble(errno);
				return;
			}
		}
		if ((p = calloc(1, sizeof(*p))) == NULL) {
			log_warn("%s: calloc", __func__);
			close(fd);
			accept_pause(true);
			return;
		}
		p->fd = fd;
		silent_add(p, clock_mono_ms());
		memset(&ev, 0, sizeof(ev));
		ev.events = EPOLLIN;
		ev.data.ptr = p;
		if (epoll_ctl(co.efd, EPOLL_CTL_ADD, fd, &ev) == -1) {
			log_warn("%s: epoll_ctl", __func__);
			silent_del(p);
			close(fd);
			free(p);
			accept_pause(true);
			return;
		}
		p->next = co.peers;
		if (co.peers != NULL)
			co.peers->prev = p;
		co.peers = p;
		co.npeers++;
	}
}

static void
do_signal(void)
{
	struct signalfd_siginfo si;
	ssize_t n;

	while ((n = read(co.sfd, &si, sizeof(si))) == (ssize_t)sizeof(si)) {
		log_info("%s: signal %u, exiting", __func__, si.ssi_signo);
		co.quit = true;
	}
}

/*
 * With -i: notes whether we have work (a registration), and quits once we
 * have had none for idle_ms.
 */
static void
check_idle(void)
{
	int64_t now = clock_mono_ms();

	if (co.idle_ms == 0)
		return;
	if (co.nregs > 0)
		co.busy_at = now;
	else if (now - co.busy_at >= co.idle_ms) {
		log_info("%s: idle for %lld ms, exiting", __func__,
		    (long long)(now - co.busy_at));
		co.quit = true;
	}
}

/* epoll_wait's timeout: until the first timer, the accept pause or the
 * idle exit ends. */
static int
next_timeout(void)
{
	int64_t t = WAIT_MAX_MS;

	if (co.heaplen > 0) {
		int64_t first = co.heap[0]->timer;
		int64_t now = clock_mono_ms();

		if (first <= now)
			t = 0;
		else if (first - now < t)
			t = first - now;
	}
	if (co.silent != NULL) {
		int64_t d = co.silent->hello_by - clock_mono_ms();

		if (d < t)
			t = d;
	}
	if (co.accept_paused) {
		int64_t d = co.accept_resume - clock_mono_ms();

		if (d < t)
			t = d;
	}
	if (co.idle_ms > 0 && co.nregs == 0) {
		int64_t d = co.busy_at + co.idle_ms - clock_mono_ms();

		if (d < t)
			t = d;
	}
	return t < 0 ? 0 : (int)t;
}

static void
loop(void)
{
	struct epoll_event ev[EVENTS_MAX];

	while (!co.quit) {
		int i, n = epoll_wait(co.efd, ev, EVENTS_MAX, next_timeout());

		if (n == -1) {
			if (errno == EINTR)
				continue;
			fatal("%s: epoll_wait", __func__);
		}
		for (i = 0; i < n; i++) {
			struct peer *p = ev[i].data.ptr;

			if (ev[i].data.ptr == &listen_tag) {
				do_accept();
				continue;
			}
			if (ev[i].data.ptr == &store_tag) {
				pglisten_drain(do_heard, NULL);
				continue;
			}
			if (ev[i].data.ptr == &signal_tag) {
				do_signal();
				continue;
			}
			if (!p->dead && (ev[i].events & EPOLLOUT))
				peer_flush(p);
			/* EOF and errors show up as recv() results. */
			if (!p->dead &&
			    (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
				peer_read(p);
		}
		run_timers(clock_mono_ms());
		(void)silent_drop(clock_mono_ms(), 0);
		if (co.accept_paused &&
		    clock_mono_ms() >= co.accept_resume)
			accept_pause(false);
		reap();
		check_idle();
	}
}

/* ---------------------------------------------------------------- set-up */

static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		log_warn("%s: getrlimit", __func__);
		return;
	}
	if (rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
		log_warn("%s: setrlimit", __func__);
	else
		log_debug("%s: %llu descriptors", __func__,
		    (unsigned long long)rl.rlim_cur);
}

static void
fill_sun(struct sockaddr_un *sun, const char *path)
{
	size_t len = strlen(path);

	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (len == 0 || len >= sizeof(sun->sun_path))
		fatalx("%s: socket path \"%s\" is empty or too long",
		    __func__, path);
	memcpy(sun->sun_path, path, len + 1);
}

/*
 * Makes sure we are the only coordinator on `path`: hold an flock on
 * "<path>.lock" for our lifetime, then remove a socket file left by a
 * coordinator that died, but only once connecting to it is refused.
 * The lock file itself is never removed: unlinking it while another
 * instance opens it would let two instances lock two different files.
 */
static void
claim_path(const char *path)
{
	struct sockaddr_un sun;
	char lockpath[PATH_MAX];
	struct stat st;
	int fd, n;

	n = snprintf(lockpath, sizeof(lockpath), "%s.lock", path);
	if (n < 0 || (size_t)n >= sizeof(lockpath))
		fatalx("%s: %s: path too long", __func__, path);
	co.lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
	    0660);
	if (co.lockfd == -1)
		fatal("%s: open %s", __func__, lockpath);
	if (flock(co.lockfd, LOCK_EX | LOCK_NB) == -1) {
		if (errno == EWOULDBLOCK)
			fatalx("%s: a coordinator is already running on %s",
			    __func__, path);
		fatal("%s: flock %s", __func__, lockpath);
	}

	if (lstat(path, &st) == -1) {
		if (errno == ENOENT)
			return;
		fatal("%s: lstat %s", __func__, path);
	}
	if (!S_ISSOCK(st.st_mode))
		fatalx("%s: %s exists and is not a socket", __func__, path);
	fill_sun(&sun, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		fatal("%s: socket", __func__);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0 ||
	    errno == EAGAIN || errno == EINPROGRESS)
		fatalx("%s: a coordinator is already running on %s "
		    "(without holding %s)", __func__, path, lockpath);
	if (errno != ECONNREFUSED)
		fatal("%s: connect %s", __func__, path);
	close(fd);
	log_info("%s: removing stale socket %s", __func__, path);
	if (unlink(path) == -1 && errno != ENOENT)
		fatal("%s: unlink %s", __func__, path);
}

static void
listen_on(const char *path)
{
	struct sockaddr_un sun;
	mode_t old;
	int rc;

	fill_sun(&sun, path);
	co.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (co.lfd == -1)
		fatal("%s: socket", __func__);
	old = umask(0117);                  /* the socket is born 0660 */
	rc = bind(co.lfd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (rc == -1)
		fatal("%s: bind %s", __func__, path);
	if (stat(path, &co.sock_st) == -1)
		fatal("%s: stat %s", __func__, path);
	if (listen(co.lfd, SOMAXCONN) == -1)
		fatal("%s: listen %s", __func__, path);
}

static void
setup_events(void)
{
	struct epoll_event ev;
	sigset_t set;

	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		fatal("%s: signal", __func__);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
		fatal("%s: sigprocmask", __func__);
	if ((co.sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) == -1)
		fatal("%s: signalfd", __func__);
	if ((co.efd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		fatal("%s: epoll_create1", __func__);

	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = &listen_tag;
	if (epoll_ctl(co.efd, EPOLL_CTL_ADD, co.lfd, &ev) == -1)
		fatal("%s: epoll_ctl", __func__);
	ev.data.ptr = &signal_tag;
	if (epoll_ctl(co.efd, EPOLL_CTL_ADD, co.sfd, &ev) == -1)
		fatal("%s: epoll_ctl", __func__);

	co.nbuckets = BUCKETS_MIN;
	if ((co.buckets = calloc(co.nbuckets, sizeof(*co.buckets))) == NULL)
		fatal("%s: calloc", __func__);
	if (getrandom(&co.seed, sizeof(co.seed), GRND_NONBLOCK) !=
	    (ssize_t)sizeof(co.seed))
		co.seed = (uint32_t)getpid() ^
		    (uint32_t)clock_mono_ms();
}

/*
 * On a store shared by several hosts, hears the other hosts' releases
 * (pglisten.h).  Without the listener, waiters here still find their turn
 * by their timers and polls: a failure to start it is logged, not fatal.
 */
static void
listen_store(const char *conninfo)
{
	struct epoll_event ev;
	char key[PROC_HOST_KEY_MAX];
	const char *test_key = NULL;
	int fd;

#ifdef HTTPLOCK_TEST_HOOKS
	/* Test builds only: one of several hosts on one machine. */
	test_key = getenv("HTTPLOCK_TEST_HOST_KEY");
#endif
	if (test_key != NULL)
		(void)snprintf(key, sizeof(key), "%s", test_key);
	else
		proc_host_key(key, sizeof(key), NULL, co.path);
	if ((fd = pglisten_start(conninfo, key)) < 0)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = &store_tag;
	if (epoll_ctl(co.efd, EPOLL_CTL_ADD, fd, &ev) == -1)
		fatal("%s: epoll_ctl", __func__);
}

/* Closes everything and frees all state, so LeakSanitizer stays quiet. */
static void
teardown(void)
{
	struct peer *p;
	struct stat st;
	size_t i;

	pglisten_stop();
	while ((p = co.peers) != NULL) {
		p->reg.lock = NULL;          /* the locks go below, wholesale */
		peer_free(p);
	}
	for (i = 0; i < co.nbuckets; i++) {
		struct lock *l, *next;

		for (l = co.buckets[i]; l != NULL; l = next) {
			next = l->hnext;
			free(l);
		}
	}
	free(co.buckets);
	free(co.heap);
	close(co.efd);
	close(co.sfd);
	close(co.lfd);
	/* Unlink the socket only if it is still the one we bound. */
	if (stat(co.path, &st) == 0 && st.st_dev == co.sock_st.st_dev &&
	    st.st_ino == co.sock_st.st_ino && unlink(co.path) == -1)
		log_warn("%s: unlink %s", __func__, co.path);
	close(co.lockfd);                   /* and with it the flock */
}

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

static const char usage_text[] =
"usage: httplock-coord [-d] [-c config] [-i seconds] [-s socket]\n"
"\n"
"The httplock coordinator: wakes waiting acquires and runs lease-expiry\n"
"timers for the workers, on a Unix socket.\n"
"\n"
"  -c FILE     configuration (default: $HTTPLOCK_CONF, else " SYSCONFDIR "/httplock.conf)\n"
"  -s PATH     the Unix socket (default: coord_socket of the configuration)\n"
"  -i SECONDS  exit after SECONDS without a waiter (0: never, the default)\n"
"  -d          debug logging\n"
"  -h, --help     this text\n"
"  -V, --version  the version\n"
"\n"
"See httplock-coord(8).\n";

/* Prints the usage to stderr and exits 2. */
static noreturn void
usage(void)
{
	fputs(usage_text, stderr);
	exit(2);
}

int
main(int argc, char *argv[])
{
	static struct hl_conf conf;
	const char *confpath = NULL, *sockpath = NULL;
	char err[512];
	int ch, debug = 0;
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};

	while ((ch = getopt_long(argc, argv, "c:dhi:s:V", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'c': confpath = optarg; break;
		case 'd': debug = 1; break;
		case 'h':
			fputs(usage_text, stdout);
			exit(fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1);
		case 'V':
			printf("httplock-coord %s\n", PACKAGE_VERSION);
			exit(fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1);
		case 'i':
			if (parse_seconds(optarg, strlen(optarg), IDLE_MAX_MS,
			    &co.idle_ms) != 0)
				usage();
			break;
		case 's': sockpath = optarg; break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	log_init("httplock-coord", debug);
	if (sockpath != NULL &&
	    conf_check_sockpath(sockpath, err, sizeof(err)) != 0)
		fatalx("%s: -s %s", __func__, err);

	if (confpath == NULL)
		confpath = conf_default_path();
	if (conf_load(&conf, confpath, err, sizeof(err)) != 0)
		fatalx("%s", err);
	co.path = (sockpath != NULL ? sockpath : conf.coord_socket);
	co.timer_horizon = conf.max_ttl_ms + TIMER_SLACK_MS;
	if (co.path[0] == '\0' || strlen(co.path) >= SUN_PATH_LEN)
		fatalx("%s: socket path \"%s\" is empty or too long",
		    __func__, co.path);

	raise_nofile();
	claim_path(co.path);
	listen_on(co.path);
	setup_events();
	if (conf.store[0] != '\0')
		listen_store(conf.store);
	/* A worker looks for us again every poll_interval: let the one that
	 * started us (-i) register before we count ourselves idle. */
	co.busy_at = clock_mono_ms() + 2 * conf.poll_ms;
	log_info("%s: listening on %s", __func__, co.path);

	loop();

	teardown();
	log_info("%s: stopped", __func__);
	return 0;
}
