/*
 * db.c: the database gate and group commit (db.h).
 *
 * On a SQLite file:
 * Every request's database work is serialised on the gate's mutex.  A
 * thread that finishes while others wait for the gate does not commit: it
 * leaves the transaction open for the next one (lockcore_batch_begin) and
 * sleeps until the thread that ends the batch has committed it.  So under
 * load the BEGIN IMMEDIATE, the COMMIT and the pages several requests
 * touch in common (a lock's row, the index pages) are paid once per batch,
 * not once per request.  Nothing is answered, and no wake or handoff acted
 * upon, before the commit: db_leave() returns only then.
 *
 * On a store shared by several hosts (PostgreSQL): a pool of POOL_SIZE
 * connections, each a lockcore handle of its own, taken by one thread at
 * a time; every call is its own transaction (no batches: db_conf_from).
 * The server runs transactions on different locks at once and shares
 * the WAL flushes of concurrent commits, which is what batches buy on
 * SQLite.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "db.h"
#include "log.h"

#define SWEEP_EVERY_MS 1000     /* monotonic */
#define SWEEP_BATCH    1000     /* lock rows per sweep */
#define BOOT_ID_MAX    64
#define POOL_SIZE      4        /* connections per worker process to a
                                   shared store */

/* A call of the open batch that waits for its commit. */
struct batch_wait {
	int                rc;
	bool               committed;   /* the batch ended (rc says how) */
	struct batch_wait *next;
};

static struct {
	struct db_conf      conf;
	char                boot_id[BOOT_ID_MAX];
	char                name[CONF_PATH_MAX];  /* the database, as logged:
	                                    a URI without its password */
	pthread_mutex_t     mu;          /* the gate: serialises all of db */
	struct lockcore    *db;          /* NULL until opened, or broken */
	atomic_bool         open_failed; /* the last open failed (logged) */
	bool                failing;     /* transactions fail (logged) */
	_Atomic int64_t     grace_until;
	_Atomic int64_t     clock_ahead; /* the store's (db_local_ms) */
	atomic_int          want;        /* threads waiting for mu */
	/* Under mu: */
	bool                batch_open;
	bool                solo;        /* a DB_READ_FIRST outside a batch */
	int                 batch_ops;
	int64_t             batch_t0;    /* monotonic ms */
	struct batch_wait  *batch_waiting;
	/* The batch's members sleep on this until it ends. */
	pthread_mutex_t     end_mu;
	pthread_cond_t      end_cv;
	_Atomic int64_t     sweep_next;  /* monotonic ms */
	/* The pool (a shared store), under pool_mu: */
	bool                pooled;
	bool                closed;      /* db_close: nothing may enter */
	pthread_mutex_t     pool_mu;
	pthread_cond_t      pool_cv;     /* a slot came free (monotonic) */
	struct {
		struct lockcore *db;     /* NULL until opened */
		bool             busy;
	} slot[POOL_SIZE];
} g;

/* The slot this thread holds between db_enter() and db_leave(). */
static _Thread_local int my_slot = -1;

void
db_conf_from(struct db_conf *dc, const struct hl_conf *c)
{
	memset(dc, 0, sizeof(*dc));
	snprintf(dc->database, sizeof(dc->database), "%s",
	    c->store[0] != '\0' ? c->store : c->database);
	dc->opts.busy_timeout_ms = (int)c->busy_timeout_ms;
	dc->opts.synchronous_full = c->synchronous_full;
	dc->opts.live_clock = 1;
	dc->opts.no_crash_grace = !c->crash_grace;
	dc->opts.max_ttl_ms = c->max_ttl_ms;
	dc->idle_reclaim_ms = c->idle_reclaim_ms;
	/* One host per coordinator: the coordinator names itself alike. */
	proc_host_key(dc->host_key, sizeof(dc->host_key), NULL,
	    c->coord_socket);
	/* A shared store runs each request in a transaction of its own: a
	 * batch would hold the rows of several locks at once, and two hosts
	 * batching the same locks in another order would deadlock.  The
	 * server groups concurrent commits' WAL flushes itself. */
	dc->batch_ops_max = lockcore_path_is_pg(dc->database) ? 0 :
	    BATCH_OPS_MAX;
	dc->batch_ms = BATCH_MS;
#ifdef HTTPLOCK_TEST_HOOKS
	{
		const char *v;

		/* Test builds only: play a reboot without one, or one of
		 * several hosts on one machine. */
		dc->opts.boot_id = getenv("HTTPLOCK_TEST_BOOT_ID");
		if ((v = getenv("HTTPLOCK_TEST_HOST_KEY")) != NULL)
			(void)snprintf(dc->host_key, sizeof(dc->host_key),
			    "%s", v);
		if ((v = getenv("HTTPLOCK_TEST_BOOT_TIME")) != NULL)
			dc->opts.boot_time_ms = strtoll(v, NULL, 10);
	}
#endif
}

int
db_init(const struct db_conf *dc)
{
	pthread_condattr_t ca;
	int rc;

	memset(&g, 0, sizeof(g));
	g.conf = *dc;
	if (dc->opts.boot_id != NULL) {
		if (strlen(dc->opts.boot_id) >= sizeof(g.boot_id)) {
			log_warnx("%s: boot id too long", __func__);
			return -1;
		}
		memcpy(g.boot_id, dc->opts.boot_id,
		    strlen(dc->opts.boot_id) + 1);
		g.conf.opts.boot_id = g.boot_id;
	}
	g.conf.opts.host_key = g.conf.host_key;
	lockcore_store_name(dc->database, g.name, sizeof(g.name));
	g.pooled = g.conf.batch_ops_max == 0;
	if ((rc = pthread_mutex_init(&g.mu, NULL)) != 0 ||
	    (rc = pthread_mutex_init(&g.end_mu, NULL)) != 0 ||
	    (rc = pthread_cond_init(&g.end_cv, NULL)) != 0 ||
	    (rc = pthread_mutex_init(&g.pool_mu, NULL)) != 0 ||
	    (rc = pthread_condattr_init(&ca)) != 0 ||
	    (rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC)) != 0 ||
	    (rc = pthread_cond_init(&g.pool_cv, &ca)) != 0) {
		errno = rc;
		log_warn("%s: pthread", __func__);
		return -1;
	}
	(void)pthread_condattr_destroy(&ca);
	return 0;
}

/* db_close() of the pool: waits for every slot to come free. */
static int
pool_close(int64_t wait_ms)
{
	struct timespec ts = clock_after(CLOCK_MONOTONIC, wait_ms);
	int i, busy;

	pthread_mutex_lock(&g.pool_mu);
	g.closed = true;
	/* Threads waiting for a slot leave (NULL); those inside finish. */
	pthread_cond_broadcast(&g.pool_cv);
	for (;;) {
		for (busy = 0, i = 0; i < POOL_SIZE; i++)
			busy += g.slot[i].busy;
		if (busy == 0 ||
		    pthread_cond_timedwait(&g.pool_cv, &g.pool_mu, &ts) != 0)
			break;
	}
	for (busy = 0, i = 0; i < POOL_SIZE; i++)
		busy += g.slot[i].busy;
	if (busy == 0)
		for (i = 0; i < POOL_SIZE; i++) {
			lockcore_close(g.slot[i].db);
			g.slot[i].db = NULL;
		}
	pthread_mutex_unlock(&g.pool_mu);
	return busy == 0 ? 0 : -1;
}

int
db_close(int64_t wait_ms)
{
	struct timespec ts = clock_after(CLOCK_MONOTONIC, wait_ms);

	if (g.pooled)
		return pool_close(wait_ms);
	/* The gate stays taken: nothing may open the database again. */
	if (pthread_mutex_clocklock(&g.mu, CLOCK_MONOTONIC, &ts) != 0)
		return -1;
	lockcore_close(g.db);
	g.db = NULL;
	return 0;
}

int
db_waiting(void)
{
	return atomic_load(&g.want);
}

int64_t
db_local_ms(int64_t store_ms)
{
	return store_ms == 0 ? 0 : store_ms - atomic_load(&g.clock_ahead);
}

int64_t
db_grace_until(void)
{
	return atomic_load(&g.grace_until);
}

/* Opens a connection into *dbp (the gate or its pool slot held).  0, or
 * -1 when it cannot be opened. */
static int
db_open(struct lockcore **dbp)
{
	struct lockcore_recovery rec;
	const char *path = g.name;
	char err[256];

	if (lockcore_open(dbp, g.conf.database, &g.conf.opts, err,
	    sizeof(err)) != 0) {
		/* Said once per outage, not once per request. */
		if (!atomic_exchange(&g.open_failed, true))
			log_warnx("%s: %s", __func__, err);
		return -1;
	}
	if (atomic_exchange(&g.open_failed, false))
		log_info("%s: database %s open again", __func__, path);
	lockcore_recovery(*dbp, &rec);
	atomic_store(&g.grace_until, rec.grace_until);
	if (rec.recovered)
		log_warnx("database %s: %d connection(s) of an earlier boot "
		    "never closed (power loss or OS crash) and may have lost "
		    "their last commits; fences now start at %" PRId64 "%s",
		    path, rec.stale_sessions, rec.fence_floor,
		    rec.grace_until > 0 ? "" : ", no grace (crash_grace = no)");
	if (rec.grace_until > 0)
		log_warnx("database %s: no new grant for %" PRId64 " s, until "
		    "every lease granted before the crash has expired", path,
		    (rec.grace_until - clock_wall_ms() + 999) / 1000);
	return 0;
}

/* Says once per outage that transactions fail, and when they work again
 * (gate held). */
static void
db_failing(bool failing, const char *what)
{
	if (failing && !g.failing)
		log_warnx("database %s: %s: %s", g.name, what,
		    lockcore_errmsg(g.db));
	else if (!failing && g.failing)
		log_info("database %s: transactions commit again", g.name);
	g.failing = failing;
}

static int pool_leave(void);

/* db_enter() on a shared store: a free slot, preferably one whose
 * connection is open. */
static struct lockcore *
pool_enter(void)
{
	int i, pick = -1;

	atomic_fetch_add(&g.want, 1);
	pthread_mutex_lock(&g.pool_mu);
	while (!g.closed) {
		for (i = 0; i < POOL_SIZE; i++)
			if (!g.slot[i].busy && (pick < 0 ||
			    g.slot[i].db != NULL))
				pick = i;
		if (pick >= 0)
			break;
		pthread_cond_wait(&g.pool_cv, &g.pool_mu);
	}
	if (pick >= 0)
		g.slot[pick].busy = true;
	pthread_mutex_unlock(&g.pool_mu);
	atomic_fetch_sub(&g.want, 1);
	if (pick < 0)
		return NULL;
	my_slot = pick;
	if (g.slot[pick].db == NULL && db_open(&g.slot[pick].db) != 0) {
		(void)pool_leave();
		return NULL;
	}
	return g.slot[pick].db;
}

/* db_leave() on a shared store: the slot goes back, and the server's
 * clock as its connection last read it is noted for db_local_ms(). */
static int
pool_leave(void)
{
	if (g.slot[my_slot].db != NULL)
		atomic_store(&g.clock_ahead,
		    lockcore_clock_ahead(g.slot[my_slot].db));
	pthread_mutex_lock(&g.pool_mu);
	g.slot[my_slot].busy = false;
	/* Once closing, db_close waits on the same condition as the
	 * threads that want a slot: all of them hear it. */
	if (g.closed)
		pthread_cond_broadcast(&g.pool_cv);
	else
		pthread_cond_signal(&g.pool_cv);
	pthread_mutex_unlock(&g.pool_mu);
	my_slot = -1;
	return 0;
}

struct lockcore *
db_enter(enum db_use use)
{
	if (g.pooled)
		return pool_enter();
	atomic_fetch_add(&g.want, 1);
	pthread_mutex_lock(&g.mu);
	atomic_fetch_sub(&g.want, 1);
	if (g.db == NULL && db_open(&g.db) != 0) {
		pthread_mutex_unlock(&g.mu);
		return NULL;
	}
	if (!g.batch_open && (use == DB_READ_FIRST ||
	    g.conf.batch_ops_max == 0)) {
		g.solo = true;
		return g.db;
	}
	if (!g.batch_open) {
		/* BEGIN IMMEDIATE: may wait up to busy_timeout for another
		 * process's writer. */
		if (lockcore_batch_begin(g.db) != 0) {
			db_failing(true, "cannot begin a transaction");
			pthread_mutex_unlock(&g.mu);
			return NULL;
		}
		g.batch_open = true;
		g.batch_ops = 0;
		g.batch_t0 = clock_mono_ms();
	}
	g.batch_ops++;
	return g.db;
}

/* Commits the open batch and wakes its waiting members with the result
 * (gate held); returns the commit's result. */
static int
batch_commit(void)
{
	struct batch_wait *w;
	int crc;

	crc = lockcore_batch_end(g.db, 0);
	db_failing(crc != 0, "commit failed");
	g.batch_open = false;
	w = g.batch_waiting;
	g.batch_waiting = NULL;
	if (w != NULL) {
		pthread_mutex_lock(&g.end_mu);
		for (; w != NULL; w = w->next) {
			w->rc = crc;
			w->committed = true;
		}
		pthread_cond_broadcast(&g.end_cv);
		pthread_mutex_unlock(&g.end_mu);
	}
	return crc;
}

int
db_leave(int rc)
{
	struct batch_wait self;
	int crc;

	if (g.pooled)
		return pool_leave() == 0 ? rc : LC_E_DB;
	if (g.solo) {
		g.solo = false;
		pthread_mutex_unlock(&g.mu);
		return rc;
	}
	if (atomic_load(&g.want) > 0 && g.batch_ops < g.conf.batch_ops_max &&
	    clock_mono_ms() - g.batch_t0 < g.conf.batch_ms) {
		/* Someone is about to enter: it commits, or passes on. */
		self.committed = false;
		self.next = g.batch_waiting;
		g.batch_waiting = &self;
		pthread_mutex_unlock(&g.mu);
		pthread_mutex_lock(&g.end_mu);
		while (!self.committed)
			pthread_cond_wait(&g.end_cv, &g.end_mu);
		pthread_mutex_unlock(&g.end_mu);
		crc = self.rc;
	} else {
		crc = batch_commit();
		pthread_mutex_unlock(&g.mu);
	}
	return crc < 0 ? LC_E_DB : rc;
}

void
db_sweep(void)
{
	struct lockcore *db;
	int64_t t = clock_mono_ms(), due;
	int changed = 0, rc;

	due = atomic_load(&g.sweep_next);
	if (t < due || !atomic_compare_exchange_strong(&g.sweep_next, &due,
	    t + SWEEP_EVERY_MS))
		return;
	if ((db = db_enter(DB_WRITE)) == NULL)
		return;
	rc = lockcore_sweep(db, clock_wall_ms(), SWEEP_BATCH,
	    g.conf.idle_reclaim_ms, &changed);
	if (rc == LC_E_DB)
		log_warnx("sweep: %s", lockcore_errmsg(db));
	if (db_leave(rc) == 0 && changed > 0)
		log_debug("sweep: %d rows of expired grants and idle locks "
		    "deleted", changed);
}
