/*
 * db.c: the database gate and group commit (db.h).
 *
 * Every request's database work is serialised on the gate's mutex.  A
 * thread that finishes while others wait for the gate does not commit: it
 * leaves the transaction open for the next one (lockcore_batch_begin) and
 * sleeps until the thread that ends the batch has committed it.  So under
 * load the BEGIN IMMEDIATE, the COMMIT and the pages several requests
 * touch in common (a lock's row, the index pages) are paid once per batch,
 * not once per request.  Nothing is answered, and no wake or handoff acted
 * upon, before the commit: db_leave() returns only then.
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
	bool                open_failed; /* the last open failed (logged) */
	bool                failing;     /* transactions fail (logged) */
	_Atomic int64_t     grace_until;
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
} g;

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
	if ((rc = pthread_mutex_init(&g.mu, NULL)) != 0 ||
	    (rc = pthread_mutex_init(&g.end_mu, NULL)) != 0 ||
	    (rc = pthread_cond_init(&g.end_cv, NULL)) != 0) {
		errno = rc;
		log_warn("%s: pthread", __func__);
		return -1;
	}
	return 0;
}

int
db_close(int64_t wait_ms)
{
	struct timespec ts = clock_after(CLOCK_MONOTONIC, wait_ms);

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
db_grace_until(void)
{
	return atomic_load(&g.grace_until);
}

/* Opens the database (gate held).  0, or -1 when it cannot be opened. */
static int
db_open(void)
{
	struct lockcore_recovery rec;
	const char *path = g.name;
	char err[256];

	if (lockcore_open(&g.db, g.conf.database, &g.conf.opts, err,
	    sizeof(err)) != 0) {
		/* Said once per outage, not once per request. */
		if (!g.open_failed)
			log_warnx("%s: %s", __func__, err);
		g.open_failed = true;
		return -1;
	}
	if (g.open_failed)
		log_info("%s: database %s open again", __func__, path);
	g.open_failed = false;
	lockcore_recovery(g.db, &rec);
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

struct lockcore *
db_enter(enum db_use use)
{
	atomic_fetch_add(&g.want, 1);
	pthread_mutex_lock(&g.mu);
	atomic_fetch_sub(&g.want, 1);
	if (g.db == NULL && db_open() != 0) {
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
