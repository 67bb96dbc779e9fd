/*
 * pglisten.c: LISTEN on a shared PostgreSQL store for the coordinator
 * (pglisten.h).
 *
 * The thread owns the connection; the event loop owns the registrations.
 * Between them is a queue under a mutex and an eventfd: the thread
 * appends what it heard and adds 1 to the eventfd, the loop reads the
 * eventfd and drains the queue.  The queue is bounded: past QUEUE_MAX
 * entries it is replaced by one "wake everyone", which is what a flood
 * of notifications amounts to anyway.
 *
 * A notification is "<host id> <waiter id> <lock key in hex>"
 * (notify.h).
 * Those of our own host are dropped: the worker that made the change has
 * told us already over our socket.  Our host id is looked up by our host
 * key in httplock.hosts; until a worker of ours has registered the host,
 * nothing is dropped, which costs a spurious look at most.  The same
 * connection keeps our host's row fresh (beat()).
 */
#include <sys/eventfd.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "clock.h"
#include "log.h"
#include "notify.h"
#include "pglisten.h"
#include "proto.h"

#define QUEUE_MAX       10000
#define CONNECT_MS      2000     /* one connection attempt */
#define BACKOFF_MIN_MS  50
#define BACKOFF_MAX_MS  1000
#define QUERY_MS        2000     /* LISTEN, the host id, a beat */
#define BEAT_MS         1000

struct heard {
	struct heard *next;
	uint64_t      kick;
	bool          all;
	size_t        namelen;
	char          name[];
};

static struct {
	char           *conninfo;
	char           *host_key;
	pthread_t       thread;
	bool            started;
	atomic_bool     quit;
	int             efd;          /* the loop's: something was heard */
	int             stopfd;       /* the thread's: stop now */
	PGconn         *conn;         /* the thread's */
	int64_t         host_id;      /* ours, 0 until known */
	pthread_mutex_t mu;           /* guards the queue */
	struct heard   *head, **tail;
	size_t          len;
} pl = { .efd = -1, .stopfd = -1 };

/* Appends to the queue (the thread). */
static void
push(const char *name, size_t namelen, uint64_t kick, bool all)
{
	struct heard *h, *next;
	uint64_t one = 1;

	pthread_mutex_lock(&pl.mu);
	if (pl.len >= QUEUE_MAX) {
		for (h = pl.head; h != NULL; h = next) {
			next = h->next;
			free(h);
		}
		pl.head = NULL;
		pl.tail = &pl.head;
		pl.len = 0;
		all = true;
		namelen = 0;
	}
	if ((h = malloc(sizeof(*h) + namelen + 1)) != NULL) {
		h->next = NULL;
		h->kick = kick;
		h->all = all;
		h->namelen = all ? 0 : namelen;
		memcpy(h->name, name, h->namelen);
		h->name[h->namelen] = '\0';
		*pl.tail = h;
		pl.tail = &h->next;
		pl.len++;
	}
	pthread_mutex_unlock(&pl.mu);
	if (write(pl.efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("%s: eventfd", __func__);
}

void
pglisten_drain(pglisten_fn *fn, void *arg)
{
	struct heard *h, *next;
	uint64_t n;

	if (pl.efd < 0)
		return;
	while (read(pl.efd, &n, sizeof(n)) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&pl.mu);
	h = pl.head;
	pl.head = NULL;
	pl.tail = &pl.head;
	pl.len = 0;
	pthread_mutex_unlock(&pl.mu);
	for (; h != NULL; h = next) {
		next = h->next;
		fn(h->all ? NULL : h->name, h->namelen, h->kick, h->all, arg);
		free(h);
	}
}

/*
 * Waits until the connection's socket is ready for `events`, the
 * deadline (monotonic ms) passes or we are told to stop: 1 ready, 0 not.
 */
static int
wait_ready(short events, int64_t deadline)
{
	struct pollfd pfd[2];
	int64_t left;
	int n;

	pfd[0].fd = PQsocket(pl.conn);
	pfd[0].events = events;
	pfd[1].fd = pl.stopfd;
	pfd[1].events = POLLIN;
	while (!atomic_load(&pl.quit)) {
		if ((left = deadline - clock_mono_ms()) <= 0)
			return 0;
		n = poll(pfd, 2, left > 1000 ? 1000 : (int)left);
		if (n < 0 && errno != EINTR)
			return 0;
		if (n > 0 && pfd[1].revents != 0)
			return 0;
		if (n > 0 && pfd[0].revents != 0)
			return 1;
	}
	return 0;
}

static void
drop(void)
{
	if (pl.conn != NULL)
		PQfinish(pl.conn);
	pl.conn = NULL;
}

/* Runs one statement to its end (non-blocking connection); 0 or -1. */
static int
query(const char *sql, int nparams, const char *const *vals, PGresult **out)
{
	int64_t deadline = clock_mono_ms() + QUERY_MS;
	PGresult *r;
	int rc = 0;

	if (out != NULL)
		*out = NULL;
	if (!PQsendQueryParams(pl.conn, sql, nparams, NULL, vals, NULL, NULL,
	    0))
		return -1;
	while (PQflush(pl.conn) > 0)
		if (wait_ready(POLLOUT, deadline) != 1)
			return -1;
	for (;;) {
		while (PQisBusy(pl.conn))
			if (wait_ready(POLLIN, deadline) != 1 ||
			    !PQconsumeInput(pl.conn))
				return -1;
		if ((r = PQgetResult(pl.conn)) == NULL)
			break;
		if (PQresultStatus(r) != PGRES_COMMAND_OK &&
		    PQresultStatus(r) != PGRES_TUPLES_OK)
			rc = -1;
		if (out != NULL && *out == NULL && rc == 0)
			*out = r;
		else
			PQclear(r);
	}
	return rc;
}

/* Our row of httplock.hosts, if a worker of ours has made it. */
static void
find_host_id(void)
{
	const char *vals[1] = { pl.host_key };
	PGresult *r;

	if (query("SELECT id FROM httplock.hosts WHERE host_key = $1", 1,
	    vals, &r) == 0 && r != NULL && PQntuples(r) == 1)
		pl.host_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
}

/* Connects and LISTENs; 0, or -1 with nothing left open. */
static int
connect_listen(void)
{
	const char *keys[] = { "target_session_attrs", "connect_timeout",
	    "application_name", "keepalives", "keepalives_idle",
	    "keepalives_interval", "keepalives_count", "dbname", NULL };
	const char *vals[] = { "read-write", "2", "httplock-coord", "1", "5",
	    "1", "3", pl.conninfo, NULL };
	int64_t deadline = clock_mono_ms() + CONNECT_MS;
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;

	if ((pl.conn = PQconnectStartParams(keys, vals, 1)) == NULL)
		return -1;
	if (PQstatus(pl.conn) == CONNECTION_BAD)
		goto fail;
	while (st != PGRES_POLLING_OK) {
		if (st == PGRES_POLLING_FAILED ||
		    wait_ready(st == PGRES_POLLING_READING ? POLLIN : POLLOUT,
		    deadline) != 1)
			goto fail;
		st = PQconnectPoll(pl.conn);
	}
	if (PQsetnonblocking(pl.conn, 1) != 0 ||
	    query("LISTEN httplock", 0, NULL, NULL) != 0)
		goto fail;
	find_host_id();
	return 0;
fail:
	drop();
	return -1;
}

/*
 * Tells the other hosts that this one is alive (engine.c counts another
 * host's waiters live only while it is, HOST_TTL_MS): our row of hosts,
 * stamped with the server's clock, every BEAT_MS.  A failure drops the
 * connection, which the loop makes again.
 */
static void
beat(void)
{
	static bool said;
	const char *vals[1] = { pl.host_key };

	if (query("UPDATE httplock.hosts SET seen_at = greatest(seen_at,"
	    " floor(extract(epoch FROM clock_timestamp()) * 1000)::int8)"
	    " WHERE host_key = $1", 1, vals, NULL) == 0) {
		said = false;
		return;
	}
	/* A refusal (no schema yet, no right to write) keeps the
	 * connection and is said once; a broken connection is made again
	 * by the loop, with its backoff. */
	if (!said)
		log_warnx("store: cannot mark this host alive: %s",
		    pl.conn != NULL ? PQerrorMessage(pl.conn) : "no connection");
	said = true;
	if (pl.conn != NULL && PQstatus(pl.conn) != CONNECTION_OK)
		drop();
}

/* Parses and queues one notification (notify.h); drops what is not one
 * or is our own. */
static void
heard(const char *payload)
{
	char name[PROTO_NAME_MAX];
	int64_t host;
	uint64_t kick;
	size_t len;

	if (notify_parse(payload, &host, &kick, name, sizeof(name), &len) != 0)
		return;
	if (pl.host_id == 0)
		find_host_id();
	if (host == pl.host_id)
		return;
	push(name, len, kick, false);
}

/* Sleeps `ms` unless told to stop. */
static void
pause_ms(int64_t ms)
{
	struct pollfd pfd = { .fd = pl.stopfd, .events = POLLIN };

	(void)poll(&pfd, 1, (int)ms);
}

static void *
run(void *arg)
{
	PGnotify *n;
	int64_t backoff = BACKOFF_MIN_MS, beat_at = 0;
	bool said = false;

	(void)arg;
	while (!atomic_load(&pl.quit)) {
		if (pl.conn == NULL) {
			if (connect_listen() != 0) {
				if (!said)
					log_warnx("store: cannot listen for "
					    "other hosts' releases; retrying");
				said = true;
				pause_ms(backoff);
				backoff = backoff * 2 > BACKOFF_MAX_MS ?
				    BACKOFF_MAX_MS : backoff * 2;
				continue;
			}
			if (said)
				log_info("store: listening again");
			said = false;
			backoff = BACKOFF_MIN_MS;
			/* What was said while we were away is lost. */
			push(NULL, 0, 0, true);
		}
		if (clock_mono_ms() >= beat_at) {
			beat();
			beat_at = clock_mono_ms() + BEAT_MS;
		}
		/* What libpq read along with a query's answer first. */
		while (pl.conn != NULL && (n = PQnotifies(pl.conn)) != NULL) {
			heard(n->extra);
			PQfreemem(n);
		}
		if (pl.conn == NULL)
			continue;
		if (wait_ready(POLLIN, beat_at) == 1 &&
		    !PQconsumeInput(pl.conn)) {
			drop();
			continue;
		}
		while ((n = PQnotifies(pl.conn)) != NULL) {
			heard(n->extra);
			PQfreemem(n);
		}
		if (PQstatus(pl.conn) != CONNECTION_OK)
			drop();
	}
	drop();
	return NULL;
}

int
pglisten_start(const char *conninfo, const char *host_key)
{
	int rc;

	if ((pl.conninfo = strdup(conninfo)) == NULL ||
	    (pl.host_key = strdup(host_key)) == NULL) {
		log_warn("%s: strdup", __func__);
		goto fail;
	}
	pl.tail = &pl.head;
	if ((pl.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 ||
	    (pl.stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		log_warn("%s: eventfd", __func__);
		goto fail;
	}
	if ((rc = pthread_mutex_init(&pl.mu, NULL)) != 0 ||
	    (rc = pthread_create(&pl.thread, NULL, run, NULL)) != 0) {
		errno = rc;
		log_warn("%s: pthread", __func__);
		goto fail;
	}
	pl.started = true;
	return pl.efd;
fail:
	pglisten_stop();
	return -1;
}

void
pglisten_stop(void)
{
	struct heard *h, *next;
	uint64_t one = 1;

	if (pl.started) {
		atomic_store(&pl.quit, true);
		if (write(pl.stopfd, &one, sizeof(one)) < 0)
			log_warn("%s: eventfd", __func__);
		(void)pthread_join(pl.thread, NULL);
		pl.started = false;
	}
	for (h = pl.head; h != NULL; h = next) {
		next = h->next;
		free(h);
	}
	pl.head = NULL;
	pl.tail = &pl.head;
	if (pl.efd >= 0)
		(void)close(pl.efd);
	if (pl.stopfd >= 0)
		(void)close(pl.stopfd);
	pl.efd = pl.stopfd = -1;
	free(pl.conninfo);
	free(pl.host_key);
	pl.conninfo = pl.host_key = NULL;
}
