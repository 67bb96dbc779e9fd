/*
 * db: the worker's gate to its lockcore connection.  One connection per
 * process, opened on first use and again after it broke, used by one
 * thread at a time.  Writes are committed in groups (see db.c): a caller
 * acts on what a call reported only once db_leave() says it committed.
 */
#ifndef HTTPLOCK_DB_H
#define HTTPLOCK_DB_H

#include <stdint.h>

#include "conf.h"
#include "lockcore.h"
#include "lockref.h"
#include "proc.h"

/* A batch ends after BATCH_OPS_MAX requests or BATCH_MS (monotonic) of
 * age, so that it cannot grow for ever under a stream of arrivals. */
#define BATCH_OPS_MAX 32
#define BATCH_MS      2

struct db_conf {
	char    database[CONF_PATH_MAX];
	char    host_key[PROC_HOST_KEY_MAX];  /* opts.host_key points here */
	struct lockcore_opts opts;   /* boot_id: copied, may be NULL */
	int64_t idle_reclaim_ms;     /* db_sweep: idle lock rows go after it */
	int     batch_ops_max;       /* BATCH_OPS_MAX; 0: a transaction per
	                                call, never a batch (a shared store) */
	int64_t batch_ms;            /* BATCH_MS */
};

/* The gate's settings from the worker's configuration (and, in a build
 * with test hooks, HTTPLOCK_TEST_BOOT_ID / HTTPLOCK_TEST_BOOT_TIME /
 * HTTPLOCK_TEST_HOST_KEY). */
void db_conf_from(struct db_conf *dc, const struct hl_conf *c);
/* Sets the gate up; the database opens on the first db_enter().  Call
 * once, before the threads start.  0, or -1 (logged). */
int db_init(const struct db_conf *dc);
/* Closes the connection if no thread is inside the gate within `wait_ms`;
 * 0 if closed, -1 if a thread kept it.  Nothing may enter afterwards. */
int db_close(int64_t wait_ms);

/* How a call uses the database (db_enter). */
enum db_use {
	DB_WRITE,       /* writes: joins the open batch, or opens one */
	DB_READ_FIRST   /* reads first and writes only if it must: joins an
	                   open batch, else runs in lockcore's own
	                   transactions, whose read half in WAL never waits
	                   for another process's writer */
};

/*
 * Takes the gate (the process's database mutex) and returns the
 * connection, opening it on first use.  NULL (gate released) when the
 * database cannot be opened or a batch cannot begin.  Every non-NULL
 * return is paired with db_leave().
 */
struct lockcore *db_enter(enum db_use use);
/*
 * Ends this call's part of the batch and releases the gate; returns rc,
 * or LC_E_DB if the batch could not be committed.  Returns only once the
 * batch committed or failed.  A caller acts on nothing its call reported
 * (wakes, kicks, handoffs) unless this returns >= 0: a call that failed
 * was undone, and a batch that failed never happened.
 */
int db_leave(int rc);
/* Threads waiting to enter the gate right now. */
int db_waiting(void);

/* The end of the grace after an unclean shutdown (wall ms; 0: none), as
 * the last open found it. */
int64_t db_grace_until(void);
/*
 * A time the store gave (a grant's expires_at, a holder's expiry; 0:
 * none) on this host's wall clock: a shared store judges leases by its
 * server's clock, and a timer here, or the coordinator's, must wait for
 * the same instant whatever this host's clock says.
 */
int64_t db_local_ms(int64_t store_ms);

/* Housekeeping after a request, at most once a second per process: one
 * batch of lockcore_sweep (expired holders, idle locks' rows). */
void db_sweep(void);

/* On LC_E_DB, logs SQLite's reason (never a token) for a call on `db`
 * (gate held); x is a lockref or a request naming one lock. */
#define LOG_DB_ERROR(db, rc, op, x) do {				\
	if ((rc) == LC_E_DB)						\
		log_warnx("%s on " LOCK_FMT ": %s", (op), LOCK_ARGS(x),	\
		    lockcore_errmsg(db));				\
} while (0)

#endif /* HTTPLOCK_DB_H */
