/*
 * wait.c: acquires that wait, parked without a thread.  An acquire that
 * lockcore queued (handle_acquire) hands its FastCGI connection here: the
 * request's libfcgi streams are freed, and a struct park of a few hundred
 * bytes keeps what the wait needs.  One thread per worker process, the
 * parking thread, watches every parked request in one epoll set: its
 * FastCGI connection (the client went away), its coordinator connection
 * (a WAKE), the eventfd of direct wakes (wakeup.c), the stop pipe, and a
 * heap of timers (deadlines, safety looks, polling while the coordinator
 * is down).  When a wait ends the parking thread answers with FastCGI
 * records (reply_fcgi) -- libfcgi cannot answer a request whose streams
 * it freed -- and closes the connection.  A thread holding libfcgi's
 * ~18.5 KiB of buffers per waiter would cost 466 MB for 10,000 waiters.
 * The database work of a wait (looks, withdrawals) runs on the parking
 * thread through the database gate (db.h), as any request's does.
 *
 * Every timer here runs on the monotonic clock: a deadline arrives as wall
 * time and is turned into monotonic time once, when the request parks, so
 * that a step of the system clock back does not stall a wait.  The waiter
 * row keeps the wall deadline, and lockcore judges rows by it: once the
 * wall clock has passed it, nobody grants the row and other waiters'
 * walks delete it.  So a wait also ends, as a timeout, when the wall clock
 * passes its deadline (a step forward ends it at its next look).
 *
 * The correctness of a wait is the database's (lockcore): everything here
 * only decides when to look.  Registered waiters rely on the coordinator's
 * WAKE and look now and then anyway; unregistered ones (no coordinator)
 * poll every poll_interval, those further back more slowly.
 */
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autostart.h"
#include "clock.h"
#include "coordlink.h"
#include "db.h"
#include "deliver.h"
#include "log.h"
#include "rand.h"
#include "reply.h"
#include "wait.h"
#include "wakeup.h"

#define SAFETY_POLL_MS   5000   /* re-check now and then even when registered */
#define SAFETY_POLL_PER  100    /* ... less often per this many waiters ahead */
#define SAFETY_POLL_MAX  60000  /* ... but at least this often */
#define HOUSEKEEPING_MS  1000   /* db_sweep() while requests are parked */
#define FIRST_LOOK_POLLS 10     /* the first registered waiter looks every
                                   this many poll intervals */
#define EXPIRY_LOOK_MS   5      /* the first waiter looks this long after
                                   the holder's lease ends, when lockcore
                                   sees it expired */
#define POLL_BACKOFF_MAX 10     /* waiters far back poll up to 10x slower */
#define CW_POOL_MAX      128    /* idle coordinator connections kept */
#define EVENTS_MAX       256
#define EPOLL_RETRY_MS   10     /* after an epoll_wait error */
#define FDS_RESERVED     64     /* descriptors kept from waiters, beyond
                                   one per pool thread and pooled
                                   coordinator connection */
#define FDS_PER_WAITER   2      /* its FastCGI and coordinator connections */
#define PARKED_MAX       (1 << 22)
#define PARKED_MIN       16     /* however few descriptors there are */

/* epoll tags: a park's pointer, or'ed with which of its descriptors. */
#define EV_STOP          ((uint64_t)0)
#define EV_WAKE          ((uint64_t)2)
#define EV_FCGI          ((uint64_t)0)
#define EV_COORD         ((uint64_t)1)

/* Outcomes of a wait; WAIT_ON: it goes on. */
enum wait_end {
	WAIT_ON = -1,
	WAIT_GRANTED,
	WAIT_TIMEOUT,
	WAIT_CLIENT_GONE,
	WAIT_STOPPING,
	WAIT_ERROR,         /* rc holds the lockcore error */
	WAIT_ANSWERED       /* granted and answered by the thread that
	                       made the handoff (deliver.c) */
};

/* A parked acquire.  Only the parking thread touches it once adopted,
 * but for a thread that claimed its wake slot to answer a grant: that
 * one reads `pa`, which stays as it is while the request is parked. */
struct park {
	struct park          *prev, *next;  /* parked requests */
	struct park          *inext;        /* incoming, then dead list */
	size_t                hidx;         /* timer heap; SIZE_MAX: none */
	int64_t               due;          /* the timer, monotonic ms */
	struct parked_answer  pa;           /* connection, lock (name and
	                                       key owned), who, arrival */
	int64_t               deadline;     /* monotonic ms */
	int64_t               wall_deadline; /* the row's, wall ms */
	struct lock_wait_info info;
	struct coord_waiter  *cw;
	int                   cw_fd;        /* in the epoll set; -1: none */
	bool                  registered;   /* the coordinator acknowledged */
	bool                  look;         /* look at the database next */
	bool                  ended;        /* answered; freed after the batch */
	bool                  answered;     /* by the thread that handed it
	                                       the lock (deliver.h) */
	int64_t               retry_coord;  /* next registration attempt */
	int64_t               look_at;      /* a look after a database error */
	int                   db_err;       /* the last look's error */
	struct client        *client;       /* its share of the client's cap */
	struct wake_slot      ws;           /* owner: &pa */
};

/* The park a wake slot is embedded in. */
static struct park *
park_of(struct wake_slot *s)
{
	return (struct park *)(void *)((char *)s - offsetof(struct park, ws));
}

/*
 * Waiting requests per client address (REMOTE_ADDR, as the web server
 * saw it), so that one address cannot take every place this worker has
 * for waiters (max_waiting_per_client).  An entry lives while the address
 * has a parked request.  Pool threads add (wait_park), the parking thread
 * removes (park_end); both under client_mu.
 */
#define CLIENT_ADDR_MAX  64     /* an IPv6 address with a zone fits */
#define CLIENT_BUCKETS   1024

struct client {
	struct client *next;
	int            waiting;
	char           addr[CLIENT_ADDR_MAX];
};

static pthread_mutex_t client_mu = PTHREAD_MUTEX_INITIALIZER;
static struct client  *clients[CLIENT_BUCKETS];

static struct wait_conf conf;
static int           max_parked;        /* cap on nparked (max_waiting,
                                           descriptors) */
static atomic_int    nparked;

/* The clocks, replaced by tests only (wait_set_clocks). */
static int64_t     (*wall_ms)(void) = clock_wall_ms;
static int64_t     (*mono_ms)(void) = clock_mono_ms;

/* True once p's wait is over by either clock (`mono`: the monotonic now). */
static bool
past_deadline(const struct park *p, int64_t mono)
{
	return mono >= p->deadline || wall_ms() >= p->wall_deadline;
}

static int epfd = -1;
static pthread_mutex_t in_mu = PTHREAD_MUTEX_INITIALIZER;
static struct park *incoming;          /* parked, not adopted yet */

/* The parking thread's own state. */
static struct park  *parked;            /* all adopted */
static struct park  *dead;              /* to free after the event batch */
static struct park **heap;
static size_t        heaplen, heapcap;
static bool          stop_seen;
static int64_t       coord_retry_at;    /* no registration before (ms) */
static struct coord_waiter *cw_pool[CW_POOL_MAX];
static int           cw_npool;

/* The bucket of an address, by the bytes an entry keeps of it. */
static size_t
client_bucket(const char *addr)
{
	uint32_t h = 2166136261u;          /* FNV-1a */
	size_t i;

	for (i = 0; i < CLIENT_ADDR_MAX - 1 && addr[i] != '\0'; i++)
		h = (h ^ (unsigned char)addr[i]) * 16777619u;
	return h % CLIENT_BUCKETS;
}

/*
 * Counts one more waiting request for `addr`; NULL when the address has
 * max_waiting_per_client already (*full set), or on no memory.
 */
static struct client *
client_take(const char *addr, bool *full)
{
	struct client *c;
	size_t b;

	*full = false;
	if (addr == NULL)
		addr = "";
	b = client_bucket(addr);
	pthread_mutex_lock(&client_mu);
	for (c = clients[b]; c != NULL; c = c->next)
		if (strncmp(c->addr, addr, sizeof(c->addr) - 1) == 0)
			break;
	if (c == NULL) {
		if ((c = calloc(1, sizeof(*c))) != NULL) {
			/* A longer "address" shares the entry of its first
			 * 63 bytes; the web server sends none that long. */
			snprintf(c->addr, sizeof(c->addr), "%s", addr);
			c->next = clients[b];
			clients[b] = c;
		}
	} else if (c->waiting >= conf.max_waiting_per_client) {
		*full = true;
		c = NULL;
	}
	if (c != NULL)
		c->waiting++;
	pthread_mutex_unlock(&client_mu);
	return c;
}

/* Gives back a waiting request's share; frees the entry at zero. */
static void
client_give(struct client *c)
{
	struct client **pp;

	if (c == NULL)
		return;
	pthread_mutex_lock(&client_mu);
	if (--c->waiting == 0) {
		for (pp = &clients[client_bucket(c->addr)]; *pp != NULL;
		    pp = &(*pp)->next) {
			if (*pp == c) {
				*pp = c->next;
				free(c);
				break;
			}
		}
	}
	pthread_mutex_unlock(&client_mu);
}

/*
 * True once the client's request is over: the web server closed or reset
 * the connection, or sent something (an FCGI_ABORT_REQUEST) after the end
 * of the body.  `revents` is what poll() would report for the connection.
 */
static bool
client_gone(int fd, short revents)
{
	char c;
	ssize_t n;

	if (revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
		return true;
	if (!(revents & POLLIN))
		return false;
	n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n >= 0)
		return true;
	return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

/* One look at the database for a waiter; fills *g on LC_GRANTED. */
static int
wait_poll(const struct lockref *ref, const struct lock_waiter_ident *who,
    struct lock_wait_info *info, struct lock_grant *g)
{
	struct lockcore *db;
	bool wake = false;
	int rc;

	if ((db = db_enter(DB_READ_FIRST)) == NULL)
		return LC_E_DB;
	rc = lock_wait_poll(db, info->waiter_id, who, wall_ms(), g, info,
	    &wake);
	LOG_DB_ERROR(db, rc, "poll", ref);
	if ((rc = db_leave(rc)) < 0)
		wake = false;   /* undone or not committed */
	if (rc == LC_GRANTED && !info->handed)
		/* Re-arm the coordinator's expiry timer for the new lease, and
		 * pass the wake on if the lock still has room.  (A handoff's
		 * maker did that already.) */
		coordlink_notify(ref->key, wake, 0, db_local_ms(g->expires_at));
	else if (wake)
		coordlink_notify(ref->key, true, 0, 0);
	return rc;
}

void
wait_withdraw(const struct lockref *ref, const struct lock_waiter_ident *who,
    int64_t waiter_id)
{
	struct lockcore *db;
	struct lock_handoff ho;
	bool wake = false;
	int rc;

	if ((db = db_enter(DB_WRITE)) == NULL)
		return;
	coordlink_handoff_init(&ho);
	rc = lock_wait_abandon(db, waiter_id, who, wall_ms(), &wake, &ho);
	LOG_DB_ERROR(db, rc, "abandon", ref);
	if ((rc = db_leave(rc)) < 0) {
		/* Undone or not committed: nothing to act upon. */
		ho.waiter_id = 0;
		wake = false;
	}
	deliver_handed_on(ref->key, wake, &ho);
}

/*
 * How long to sleep before looking again without a wake.  Registered
 * waiters rely on the coordinator (and a long safety net); unregistered
 * ones poll, those further back more slowly.  The first waiter also wakes
 * itself at the holder's expiry in case the coordinator's timer is lost.
 */
static int64_t
sleep_ms(const struct lock_wait_info *info, bool registered, int64_t now,
    int64_t deadline)
{
	int64_t t = deadline - now;
	int64_t p, expiry_in;

	if (registered) {
		/* A look counts the waiters ahead, O(ahead): spaced out in
		 * proportion, a queue of n costs O(n) per SAFETY_POLL_MS,
		 * not O(n^2) (10,000 waiters on one lock saturated both
		 * CPUs).  Only a lost wake needs these looks at all. */
		p = info->ahead == 0 ? conf.poll_ms * FIRST_LOOK_POLLS :
		    SAFETY_POLL_MS * (1 + info->ahead / SAFETY_POLL_PER);
		if (p > SAFETY_POLL_MAX)
			p = SAFETY_POLL_MAX;
	} else {
		int back = info->ahead < POLL_BACKOFF_MAX ?
		    info->ahead + 1 : POLL_BACKOFF_MAX;
		p = conf.poll_ms * back;
		p += (int64_t)(random_u64() % (uint64_t)(conf.poll_ms / 4 + 1));
	}
	if (p < t)
		t = p;
	/* The holder's expiry is the store's wall time: it becomes a delay
	 * here.  (Only while that expiry is ahead: past it, the look that
	 * came after it decided, and a hint in the past would make us spin.) */
	if (info->ahead == 0 && info->holder_expires > 0) {
		expiry_in = db_local_ms(info->holder_expires) + EXPIRY_LOOK_MS -
		    wall_ms();
		if (expiry_in > 0 && expiry_in < t)
			t = expiry_in;
	}
	return t;
}

/*
 * Waiter connections to the coordinator are kept for the next wait rather
 * than closed: a wait then costs the WAIT/ACK exchange only, not a socket,
 * connect, accept and close on both sides.  A connection goes back only
 * when healthy, and unregistered (UNWAIT) since a registration left behind
 * would absorb the next wake of its lock.  Only the parking thread uses
 * the pool.
 */
static struct coord_waiter *
cw_take(void)
{
	return cw_npool > 0 ? cw_pool[--cw_npool] : NULL;
}

/* Gives `cw` (may be NULL) back to the pool, or closes it. */
static void
cw_put(struct coord_waiter *cw, bool registered)
{
	if (cw == NULL)
		return;
	if (registered && coord_waiter_unwait(cw, COORD_ACK_MS) != COORDC_OK) {
		coord_waiter_free(cw);
		return;
	}
	if (cw_npool < CW_POOL_MAX)
		cw_pool[cw_npool++] = cw;
	else
		coord_waiter_free(cw);
}

/*
 * Registers waiter `info` of lock `name` on `cw`, or on a pooled or new
 * connection when cw is NULL (a pooled one that fails may predate a
 * coordinator restart: a new one is tried then).  Returns the connection,
 * NULL if none could be made (the coordinator is then autostarted if so
 * configured); *ok is set when the registration was acknowledged.  On
 * failure the caller frees the connection.
 */
static struct coord_waiter *
coord_register(struct coord_waiter *cw, const char *name,
    const struct lock_wait_info *info, bool *ok)
{
	int64_t expires = db_local_ms(info->holder_expires);
	bool pooled = false;

	*ok = false;
	if (cw == NULL && (cw = cw_take()) != NULL)
		pooled = true;
	for (;;) {
		if (cw == NULL &&
		    (cw = coord_waiter_open(conf.coord_socket)) == NULL) {
			autostart_coord(errno);
			return NULL;
		}
		/* An expiry already past would have the coordinator wake us
		 * at once (and again after each registration, while a failing
		 * database keeps the lock from being granted). */
		if (coord_waiter_register(cw, name, info->waiter_id,
		    expires > wall_ms() ? expires : 0, COORD_ACK_MS) ==
		    COORDC_OK) {
			*ok = true;
			return cw;
		}
		if (!pooled)
			return cw;
		coord_waiter_free(cw);
		cw = NULL;
		pooled = false;
	}
}

/* The timer heap, ordered by due. */
static void
heap_swap(size_t i, size_t j)
{
	struct park *t = heap[i];

	heap[i] = heap[j];
	heap[j] = t;
	heap[i]->hidx = i;
	heap[j]->hidx = j;
}

static void
heap_fix(size_t i)
{
	while (i > 0 && heap[(i - 1) / 2]->due > heap[i]->due) {
		heap_swap(i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < heaplen && heap[l]->due < heap[m]->due)
			m = l;
		if (r < heaplen && heap[r]->due < heap[m]->due)
			m = r;
		if (m == i)
			break;
		heap_swap(i, m);
		i = m;
	}
}

static void
heap_del(struct park *p)
{
	size_t i = p->hidx;

	if (i == SIZE_MAX)
		return;
	p->hidx = SIZE_MAX;
	if (i != --heaplen) {
		heap[i] = heap[heaplen];
		heap[i]->hidx = i;
		heap_fix(i);
	}
}

/* Arms p's timer at p->due; -1 when out of memory. */
static int
heap_set(struct park *p)
{
	struct park **nh;
	size_t ncap;

	if (p->hidx != SIZE_MAX) {
		heap_fix(p->hidx);
		return 0;
	}
	if (heaplen == heapcap) {
		ncap = heapcap == 0 ? 256 : heapcap * 2;
		if ((nh = realloc(heap, ncap * sizeof(*nh))) == NULL)
			return -1;
		heap = nh;
		heapcap = ncap;
	}
	p->hidx = heaplen;
	heap[heaplen++] = p;
	heap_fix(p->hidx);
	return 0;
}

/* Watches p's coordinator connection, if it has another one than before. */
static void
cw_watch(struct park *p)
{
	struct epoll_event ev;
	int fd = p->cw != NULL ? coord_waiter_fd(p->cw) : -1;

	if (fd == p->cw_fd)
		return;
	if (p->cw_fd >= 0)
		(void)epoll_ctl(epfd, EPOLL_CTL_DEL, p->cw_fd, NULL);
	p->cw_fd = -1;
	if (fd < 0)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.u64 = (uint64_t)(uintptr_t)p | EV_COORD;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
		p->cw_fd = fd;
	else
		/* Not watched: its WAKEs go unseen, the looks remain. */
		log_warn("%s: epoll_ctl", __func__);
}

/* Drops p's coordinator connection (closed, not pooled). */
static void
cw_drop(struct park *p)
{
	struct coord_waiter *cw = p->cw;

	p->cw = NULL;
	cw_watch(p);            /* before the close: the number is reused */
	coord_waiter_free(cw);
	p->registered = false;
}

/*
 * Runs p's wait until it would sleep: looks at the database when due,
 * (re)registers with the coordinator, and sets p->due.  Returns WAIT_ON,
 * or how the wait ended (a grant in *g, a lockcore error in *rc).  A
 * database error while looking is taken as passing: the waiter looks again
 * every poll_interval, and only if the database is still failing at the
 * deadline does it end with WAIT_ERROR.  LC_E_GONE and LC_E_SUPERSEDED end
 * it at once, since the row is no longer this request's.
 */
static enum wait_end
park_step(struct park *p, struct lock_grant *g, int *rc)
{
	int64_t now, t;

	for (;;) {
		now = mono_ms();
		/* While the database fails, look every poll_interval only,
		 * whatever woke us. */
		if (p->look && p->db_err != LC_OK && now < p->look_at)
			p->look = false;
		if (p->look || (p->look_at != 0 && now >= p->look_at)) {
			p->look = false;
			p->look_at = 0;
			*rc = wait_poll(&p->pa.ref, &p->pa.who, &p->info, g);
			if (*rc == LC_GRANTED)
				return WAIT_GRANTED;
			if (*rc == LC_E_DB || *rc == LC_E_NOMEM) {
				p->db_err = *rc;
				p->look_at = mono_ms() + conf.poll_ms;
			} else if (*rc != LC_QUEUED)
				return WAIT_ERROR;
			else
				p->db_err = LC_OK;
			now = mono_ms();
		}
		if (past_deadline(p, now)) {
			*rc = p->db_err;
			return p->db_err != LC_OK ? WAIT_ERROR : WAIT_TIMEOUT;
		}
		if (stop_seen || atomic_load(conf.stopping))
			return WAIT_STOPPING;
		if (!p->registered && now >= p->retry_coord) {
			bool ok = false;

			/* After a failure, nobody tries for poll_interval: a
			 * hung coordinator costs COORD_ACK_MS per attempt. */
			if (now >= coord_retry_at) {
				p->cw = coord_register(p->cw, p->pa.ref.key,
				    &p->info, &ok);
				cw_watch(p);
			}
			if (ok) {
				/* A release that committed before the
				 * coordinator knew us woke nobody: look once
				 * more now that it does. */
				p->registered = true;
				p->look = true;
				coordlink_seen(true);
				continue;
			}
			if (now >= coord_retry_at) {
				coordlink_seen(false);
				coord_retry_at = mono_ms() + conf.poll_ms;
			}
			/* No coordinator: poll.  Its last wake may have gone
			 * to nobody, so look now as well. */
			if (p->retry_coord == 0 || p->cw != NULL)
				p->look = true;
			if (p->cw != NULL)
				cw_drop(p);
			p->retry_coord = now + conf.poll_ms;
			if (p->look)
				continue;
		}
		t = sleep_ms(&p->info, p->registered, now, p->deadline);
		if (p->look_at != 0 && p->look_at - now < t)
			t = p->look_at - now;
		if (!p->registered && p->retry_coord - now < t)
			t = p->retry_coord - now;
		p->due = now + (t < 1 ? 1 : t);
		return WAIT_ON;
	}
}

/* Closes a parked request's connection; the web server has its answer. */
static void
park_close(struct park *p)
{
	(void)epoll_ctl(epfd, EPOLL_CTL_DEL, p->pa.reply.fd, NULL);
	(void)close(p->pa.reply.fd);
	p->pa.reply.fd = -1;
}

/* Ends p's wait: withdraws its row unless granted, answers, and queues it
 * to be freed after the event batch. */
static void
park_end(struct park *p, enum wait_end end, int rc,
    const struct lock_grant *g)
{
	heap_del(p);
	switch (wakeup_del(&p->ws)) {
	case WAKE_CLAIMED:
		/* Another thread answers its grant right now and hands it
		 * back (park_wakes); until then nothing here may touch the
		 * connection, whose events are not watched meanwhile. */
		(void)epoll_ctl(epfd, EPOLL_CTL_DEL, p->pa.reply.fd, NULL);
		return;
	case WAKE_ANSWERED:
		p->answered = true;
		break;
	case WAKE_FREE:
		break;
	}
	if (p->answered)
		end = WAIT_ANSWERED;
	if (p->cw != NULL) {
		struct coord_waiter *cw = p->cw;

		p->cw = NULL;
		cw_watch(p);
		cw_put(cw, p->registered);
		p->registered = false;
	}
	switch (end) {
	case WAIT_ANSWERED:
		goto out;
	case WAIT_ON:
	case WAIT_GRANTED:
		rc = LC_GRANTED;
		break;
	case WAIT_TIMEOUT:
		wait_withdraw(&p->pa.ref, &p->pa.who, p->info.waiter_id);
		rc = LC_BUSY;
		break;
	case WAIT_CLIENT_GONE:
		park_close(p);
		wait_withdraw(&p->pa.ref, &p->pa.who, p->info.waiter_id);
		log_debug(LOCK_FMT ": waiter %" PRId64 " withdrawn after %"
		    PRId64 " ms: client gone", LOCK_ARGS(&p->pa.ref),
		    p->info.waiter_id, wall_ms() - p->pa.started);
		goto out;
	case WAIT_STOPPING:
		/* Answered first: the database may be slow to let us
		 * withdraw, and a stop must be quick.  (stop_all() did both
		 * for the requests parked when the stop came.) */
		if (p->pa.reply.fd >= 0) {
			reply_error(&p->pa.reply, 503, "unavailable",
			    "the server is shutting down; retry", NULL, false);
			park_close(p);
			wait_withdraw(&p->pa.ref, &p->pa.who, p->info.waiter_id);
		}
		goto out;
	case WAIT_ERROR:
		if (rc != LC_E_GONE && rc != LC_E_SUPERSEDED)
			wait_withdraw(&p->pa.ref, &p->pa.who, p->info.waiter_id);
		/* Another waiter removes rows past their deadline: a row
		 * gone after our deadline timed out, it was not cancelled. */
		if (rc == LC_E_GONE && past_deadline(p, mono_ms()))
			rc = LC_BUSY;
		break;
	}
	deliver_acquire(&p->pa.reply, &p->pa.ref, rc, g, p->pa.who.key,
	    p->pa.started, true);
out:
	if (p->pa.reply.fd >= 0)
		park_close(p);
	p->ended = true;
	if (p->prev != NULL)
		p->prev->next = p->next;
	else if (parked == p)
		parked = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	p->prev = p->next = NULL;
	p->inext = dead;
	dead = p;
	client_give(p->client);
	p->client = NULL;
	atomic_fetch_sub(&nparked, 1);
}

/* Runs p's wait and ends it or arms its timer. */
static void
park_resume(struct park *p)
{
	struct lock_grant g;
	enum wait_end end;
	int rc = LC_OK;

	if (p->ended)
		return;
	if (wakeup_state(&p->ws) != WAKE_FREE) {
		/* Another thread answers (answered) its grant. */
		park_end(p, WAIT_ANSWERED, LC_OK, NULL);
		return;
	}
	end = park_step(p, &g, &rc);
	if (end == WAIT_ON && heap_set(p) == 0)
		return;
	if (end == WAIT_ON) {
		end = WAIT_ERROR;
		rc = LC_E_NOMEM;
	}
	park_end(p, end, rc, &g);
}

/* Takes over a parked request handed in by a pool thread. */
static void
park_adopt(struct park *p)
{
	struct epoll_event ev;

	p->next = parked;
	p->prev = NULL;
	if (parked != NULL)
		parked->prev = p;
	parked = p;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN | EPOLLRDHUP;
	ev.data.u64 = (uint64_t)(uintptr_t)p | EV_FCGI;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, p->pa.reply.fd, &ev) == -1) {
		log_warn("%s: epoll_ctl", __func__);
		park_end(p, WAIT_ERROR, LC_E_NOMEM, NULL);
		return;
	}
	/* Before any look: a handoff committed after that look finds us. */
	wakeup_add(&p->ws, p->info.waiter_id, p->pa.who.key, &p->pa);
	park_resume(p);
}

/* The worker stops: every parked request is answered 503 at once, then
 * withdrawn (the database may be slow to let us, and a stop is quick),
 * oldest first, so that a lock freed meanwhile is not handed down the
 * queue from one leaving waiter to the next. */
static void
stop_all(void)
{
	struct park *p, *prev, *oldest = NULL;

	for (p = parked; p != NULL; p = p->next) {
		oldest = p;
		/* Not one another thread answers (or has) its grant. */
		switch (wakeup_del(&p->ws)) {
		case WAKE_CLAIMED:
			continue;
		case WAKE_ANSWERED:
			p->answered = true;
			continue;
		case WAKE_FREE:
			break;
		}
		reply_error(&p->pa.reply, 503, "unavailable",
		    "the server is shutting down; retry", NULL, false);
		park_close(p);
	}
	for (p = oldest; p != NULL; p = prev) {
		prev = p->prev;
		if (p->pa.reply.fd < 0) {
			wait_withdraw(&p->pa.ref, &p->pa.who, p->info.waiter_id);
			log_debug(LOCK_FMT ": waiter %" PRId64 " withdrawn: "
			    "worker stopping", LOCK_ARGS(&p->pa.ref),
			    p->info.waiter_id);
		}
		park_end(p, WAIT_STOPPING, LC_OK, NULL);
	}
}

static void
park_free(struct park *p)
{
	free((char *)p->pa.ref.key);
	free((char *)p->pa.ref.name);
	free(p);
}

/* An event on p's FastCGI connection or coordinator connection. */
static void
park_event(struct park *p, uint64_t which, uint32_t events)
{
	short rev = 0;
	int r;

	if (p->ended)
		return;
	if (which == EV_FCGI) {
		rev = (short)((events & EPOLLIN ? POLLIN : 0) |
		    (events & EPOLLRDHUP ? POLLRDHUP : 0) |
		    (events & EPOLLHUP ? POLLHUP : 0) |
		    (events & EPOLLERR ? POLLERR : 0));
		if (client_gone(p->pa.reply.fd, rev))
			park_end(p, WAIT_CLIENT_GONE, LC_OK, NULL);
		return;
	}
	if (p->cw == NULL)
		return;
	r = coord_waiter_read(p->cw);
	if (r == COORDC_WOKEN) {
		p->registered = false;
		p->look = true;
	} else if (r < 0) {
		/* The coordinator went away: poll until it comes back, and
		 * look now in case its last word was lost. */
		cw_drop(p);
		p->retry_coord = mono_ms() + conf.poll_ms;
		p->look = true;
		coordlink_seen(false);
	}
	park_resume(p);
}

/* Direct wakes, and requests parked since the last batch. */
static void
park_wakes(void)
{
	struct wake_slot *s;
	struct park *p, *in;
	enum wake_read r;

	wakeup_drain();
	pthread_mutex_lock(&in_mu);
	in = incoming;
	incoming = NULL;
	pthread_mutex_unlock(&in_mu);
	/* Oldest first, so timers and looks keep arrival order. */
	for (p = NULL; in != NULL; ) {
		struct park *n = in->inext;

		in->inext = p;
		p = in;
		in = n;
	}
	while (p != NULL) {
		struct park *n = p->inext;

		p->inext = NULL;
		park_adopt(p);
		p = n;
	}
	while ((s = wakeup_next()) != NULL) {
		p = park_of(s);
		if (p->ended)
			continue;
		r = wakeup_read(s);
		if (r == WAKE_READ_ANSWERED)
			park_end(p, WAIT_ANSWERED, LC_OK, NULL);
		else if (r == WAKE_READ_LOOK) {
			p->look = true;
			park_resume(p);
		}
	}
}

static void *
park_main(void *arg)
{
	struct epoll_event evs[EVENTS_MAX];
	int64_t now;
	int i, n, t;

	(void)arg;
	for (;;) {
		bool wakes = false, stop = false;

		now = mono_ms();
		t = SAFETY_POLL_MAX;
		if (heaplen > 0 && heap[0]->due - now < SAFETY_POLL_MAX)
			t = clock_ms_left(heap[0]->due, now);
		/* While requests wait here, the housekeeping goes on without
		 * new requests: on a shared store it also tells the other
		 * hosts that this one, and so its waiters, is alive. */
		if (atomic_load(&nparked) > 0) {
			db_sweep();
			if (t > HOUSEKEEPING_MS)
				t = HOUSEKEEPING_MS;
		}
		n = epoll_wait(epfd, evs, EVENTS_MAX, t);
		if (n < 0) {
			if (errno != EINTR) {
				log_warn("%s: epoll_wait", __func__);
				poll(NULL, 0, EPOLL_RETRY_MS);
			}
			n = 0;
		}
		for (i = 0; i < n; i++) {
			uint64_t tag = evs[i].data.u64;

			if (tag == EV_STOP)
				stop = true;
			else if (tag == EV_WAKE)
				wakes = true;
			else
				park_event((struct park *)(uintptr_t)
				    (tag & ~(uint64_t)3), tag & 3,
				    evs[i].events);
		}
		if (wakes)
			park_wakes();
		now = mono_ms();
		while (heaplen > 0 && heap[0]->due <= now) {
			struct park *p = heap[0];

			heap_del(p);
			p->look = true;         /* timer ran out: look again */
			park_resume(p);
		}
		if (stop && !stop_seen) {
			stop_seen = true;
			(void)epoll_ctl(epfd, EPOLL_CTL_DEL, conf.stop_rd, NULL);
			stop_all();
		}
		while (dead != NULL) {
			struct park *p = dead;

			dead = p->inext;
			park_free(p);
		}
	}
	return NULL;
}

#ifdef HTTPLOCK_TEST_HOOKS
void
wait_set_clocks(int64_t (*wall)(void), int64_t (*mono)(void))
{
	wall_ms = wall != NULL ? wall : clock_wall_ms;
	mono_ms = mono != NULL ? mono : clock_mono_ms;
}
#endif

int
wait_count(void)
{
	return atomic_load(&nparked);
}

void
wait_init(const struct wait_conf *wc)
{
	struct epoll_event ev;
	struct rlimit rl;
	rlim_t lim = 1024, reserve;
	pthread_attr_t attr;
	pthread_t tid;
	int rc;

	/* A waiter holds two descriptors: take what the hard limit allows. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		if (rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			if (setrlimit(RLIMIT_NOFILE, &rl) == -1 ||
			    getrlimit(RLIMIT_NOFILE, &rl) == -1)
				rl.rlim_cur = 1024;
		}
		lim = rl.rlim_cur;
	}
	if (lim == RLIM_INFINITY || lim > PARKED_MAX * FDS_PER_WAITER)
		lim = PARKED_MAX * FDS_PER_WAITER;
	/* Keep what the pool threads' requests (one connection each) and
	 * the idle coordinator connections need: releases must get in. */
	conf = *wc;
	reserve = (rlim_t)conf.max_threads + CW_POOL_MAX + FDS_RESERVED;
	max_parked = lim > reserve + FDS_PER_WAITER * PARKED_MIN ?
	    (int)((lim - reserve) / FDS_PER_WAITER) : PARKED_MIN;
	/* max_waiting is what the web server in front can hold: each
	 * waiter also takes one of its connections (and under lighttpd two
	 * of its descriptors; under Apache one of its threads), and the
	 * worker must refuse before the web server runs out. */
	if (max_parked > conf.max_waiting)
		max_parked = conf.max_waiting;
	if (wakeup_init() == -1)
		fatalx("%s: cannot set up direct wakes", __func__);
	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		fatal("%s: epoll_create1", __func__);
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.u64 = EV_STOP;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, conf.stop_rd, &ev) == -1)
		fatal("%s: epoll_ctl", __func__);
	ev.data.u64 = EV_WAKE;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, wakeup_fd(), &ev) == -1)
		fatal("%s: epoll_ctl", __func__);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&tid, &attr, park_main, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		errno = rc;
		fatal("%s: pthread_create", __func__);
	}
}

int
wait_park(int fd, int reqid, const char *addr, const struct lockref *ref,
    const struct lock_waiter_ident *who, int64_t deadline,
    const struct lock_wait_info *info, int64_t started)
{
	struct park *p;
	struct client *c;
	bool full;

	if (atomic_fetch_add(&nparked, 1) >= max_parked) {
		atomic_fetch_sub(&nparked, 1);
		return WAIT_PARK_FULL;
	}
	if ((c = client_take(addr, &full)) == NULL) {
		atomic_fetch_sub(&nparked, 1);
		return full ? WAIT_PARK_CLIENT : WAIT_PARK_NOMEM;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL ||
	    (p->pa.ref.key = strdup(ref->key)) == NULL ||
	    (p->pa.ref.name = strdup(ref->name)) == NULL) {
		if (p != NULL)
			park_free(p);
		client_give(c);
		atomic_fetch_sub(&nparked, 1);
		return WAIT_PARK_NOMEM;
	}
	p->client = c;
	p->pa.ref.tenant = ref->tenant;
	p->pa.ref.nslen = ref->nslen;
	p->hidx = SIZE_MAX;
	p->pa.reply.fr = NULL;
	p->pa.reply.fd = fd;
	p->pa.reply.reqid = reqid;
	p->pa.who = *who;
	p->pa.started = started;
	p->wall_deadline = deadline;
	p->deadline = mono_ms() + (deadline - wall_ms());
	p->info = *info;
	p->cw_fd = -1;

	pthread_mutex_lock(&in_mu);
	p->inext = incoming;
	incoming = p;
	pthread_mutex_unlock(&in_mu);
	wakeup_kick();
	return 0;
}
