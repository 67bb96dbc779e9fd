/*
 * store_pg.c: lockcore's store (store.h) on a PostgreSQL database, shared
 * by any number of httplock hosts.
 *
 * The tables are those of the SQLite store (store_sqlite.c), in a schema
 * of their own (`httplock`), plus `hosts`: every host that opens the
 * store has a row, and its waiter rows name it, so that a host can tell
 * its own waiters (whose processes it can look at) from the others'.
 *
 * Transactions.  Writes run at READ COMMITTED, where every statement
 * sees what was committed before it started.  The engine's rules assume
 * that a write transaction is alone on the lock it names, which SQLite's
 * BEGIN IMMEDIATE gives for the whole file; here the first statement of a
 * write transaction that names a lock takes that lock's row with
 * SELECT ... FOR UPDATE, in a statement of its own, and every statement
 * after it sees every earlier transaction on that lock committed.  So
 * different locks proceed in parallel and one lock's transactions run one
 * at a time.  A lock named by a waiter or holder id is locked through a
 * subquery first, then read in a second statement (after a wait for the
 * row, the first statement's own snapshot is older than the lock).  A
 * name's first use inserts its row with ON CONFLICT DO UPDATE, which
 * returns the row (locked) when another transaction created it first.
 * Reads (status, listing, a waiter's look) run in REPEATABLE READ READ
 * ONLY transactions: one snapshot, no locks.  The sweep takes its batch
 * of lock rows with FOR UPDATE SKIP LOCKED, so it never waits for a busy
 * lock and never deadlocks with another host's sweep.
 *
 * One clock.  With a live clock (servers) a transaction's `now` is the
 * database server's clock_timestamp(), read when the transaction begins,
 * whatever the caller's clock says: every host judges leases by the same
 * clock, so skew between hosts cannot make two holders.  A `now` read
 * before a wait for a lock row is earlier than the time the decision is
 * taken, which only judges fewer leases over and grants a shorter one.
 *
 * Never hang.  Every exchange with the server has a deadline
 * (opts->busy_timeout_ms, at most PG_TIMEOUT_MAX_MS); connecting is
 * asynchronous (libpq's own connect_timeout cannot go below 2 s), and a
 * connection that misses a deadline or breaks is closed, its transaction
 * rolled back by the server, and opened again by the next transaction.
 * The session runs with statement_timeout, lock_timeout and
 * idle_in_transaction_session_timeout, so nothing on the server waits
 * for long on our behalf either.
 *
 * Statements are prepared on a connection when first used, with binary
 * parameters and results.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "clock.h"
#include "pgconn.h"
#include "pgschema.h"
#include "proc.h"
#include "store.h"

#define PG_TIMEOUT_MAX_MS     1000   /* every exchange, connecting too */
#define PG_SWEEP_MAX          1024         /* lock rows per sweep batch */

/* A deleted waiter row's lock may have room now; another host's row is
 * named in the NOTIFY (tx_end). */
struct del_look {
	struct pgstore *q;
	int64_t         id;
};

struct pgstore {
	struct store base;              /* first: a struct store * is us */
	struct pgconn pc;
	char        *conninfo;
	bool         prepared[S_COUNT]; /* on pc */
	int          live_clock;        /* now := the server's clock */
	bool         in_tx;
	bool         write;             /* the open transaction writes */
	int64_t      locked;            /* the lock row it holds, 0 if none */
	int64_t      wake_lock;         /* a lock it freed room in, 0 if none */
	int64_t      kick;              /* another host's waiter row it
	                                   deleted, 0 if none */
	struct del_look del[PGC_PENDING_MAX];  /* waiter_delete()s whose
	                                   results are not read yet */
	int          ndel;
	bool         batch;             /* in batch_begin() */
	bool         batch_failed;
	int64_t      host_id;           /* our row of `hosts` */
	char         host_key[PROC_HOST_KEY_MAX];
	char         sweep_ids[PG_SWEEP_MAX * 21 + 3]; /* "{1,2,...}" */
};

static const struct store_ops pg_ops;

static void
read_secret(const PGresult *r, int row, int th_col, int seal_col,
    struct hsecret *sec)
{
	if (!pgc_col_blob(r, row, th_col, sec->token_hash, SECRET_HASH_LEN))
		memset(sec->token_hash, 0, SECRET_HASH_LEN);  /* no match */
	sec->has_seal = pgc_col_blob(r, row, seal_col, sec->seal,
	    SECRET_SEAL_LEN);
}

/*
 * A write whose result the engine does not read: queued, sent with the
 * next statement whose result it reads (or the COMMIT), so it costs no
 * round trip of its own.  An error it meets is that later call's.
 */
static int
defer(struct pgstore *q, enum stmt_id id, const struct pgc_args *a)
{
	return pgc_queue(&q->pc, id, a, NULL, NULL);
}

static void
read_locked(void *arg, const PGresult *r)
{
	struct pgstore *q = arg;

	if (PQntuples(r) == 1)
		q->locked = pgc_col_i64(r, 0, 0);
}

/*
 * In a write transaction, takes the row of lock `id` unless this
 * transaction has it already: every statement about a lock's holders or
 * waiters then sees all earlier transactions on it.
 */
static int
lock_row(struct pgstore *q, int64_t id)
{
	struct pgc_args a = { 0 };

	if (!q->write || id == q->locked || id == 0)
		return 0;
	pgc_arg_i64(&a, id);
	q->locked = id;
	return defer(q, S_LOCK_ID_W, &a);
}

/* Transactions. */

static void
read_clock(void *arg, const PGresult *r)
{
	if (PQntuples(r) == 1)
		*(int64_t *)arg = pgc_col_i64(r, 0, 0);
}

/*
 * Ends what the server may hold open after a failed exchange: a
 * transaction left in the failed state is rolled back (errors ignored:
 * a broken connection is closed anyway).
 */
static void
abort_tx(struct pgstore *q)
{
	if (q->pc.conn != NULL &&
	    PQtransactionStatus(q->pc.conn) != PQTRANS_IDLE &&
	    pgc_queue(&q->pc, S_ROLLBACK, NULL, NULL, NULL) == 0)
		(void)pgc_sync(&q->pc, "rollback", NULL);
}

/*
 * True if the open connection is fit for a transaction: an idle one has
 * nothing to read, unless the server ended it (a restart, a failover,
 * pg_terminate_backend: an error message, then the end of the stream),
 * which a look at the socket, without waiting, tells.
 */
static bool
conn_fit(struct pgstore *q)
{
	struct pollfd pfd;

	if (q->pc.conn == NULL || PQstatus(q->pc.conn) != CONNECTION_OK)
		return false;
	if (q->pc.npend > 0)
		return true;
	pfd.fd = PQsocket(q->pc.conn);
	pfd.events = POLLIN;
	if (pfd.fd < 0)
		return false;
	if (poll(&pfd, 1, 0) == 0)
		return true;
	return PQconsumeInput(q->pc.conn) && PQstatus(q->pc.conn) ==
	    CONNECTION_OK;
}

/*
 * BEGIN goes with the transaction's first statement, unless the server's
 * clock is wanted now (a live clock): then BEGIN and the clock take one
 * round trip here.  A connection found broken here (the server restarted
 * since it was last used) is replaced once: nothing of the transaction
 * was done on it.
 */
static int
tx_begin(struct store *st, bool write, int64_t *now)
{
	struct pgstore *q = (struct pgstore *)st;
	int rc, tries;

	q->locked = 0;
	q->wake_lock = 0;
	q->kick = 0;
	q->ndel = 0;
	q->write = write;
	if (q->batch) {
		if (q->batch_failed || q->pc.conn == NULL)
			return LC_E_DB;
		if ((rc = pgc_queue_sql(&q->pc, "SAVEPOINT op", NULL,
		    NULL)) == 0 && q->live_clock &&
		    ((rc = pgc_queue(&q->pc, S_CLOCK, NULL, read_clock,
		    now)) < 0 || (rc = pgc_sync(&q->pc, "begin", NULL)) < 0))
			q->batch_failed = true;
		if (rc < 0)
			return LC_E_DB;
		q->in_tx = true;
		return 0;
	}
	for (tries = 0; tries < 2; tries++) {
		if (!conn_fit(q) && (rc = pgc_connect(&q->pc)) < 0)
			return rc;
		rc = pgc_queue(&q->pc, write ? S_BEGIN : S_BEGIN_RO, NULL,
		    NULL, NULL);
		if (rc == 0 && q->live_clock &&
		    (rc = pgc_queue(&q->pc, S_CLOCK, NULL, read_clock,
		    now)) == 0)
			rc = pgc_sync(&q->pc, "begin", NULL);
		if (rc == 0) {
			q->in_tx = true;
			return 0;
		}
		if (q->pc.conn != NULL)
			break;                /* the server refused it */
	}
	abort_tx(q);
	return LC_E_DB;
}

/*
 * Waking across hosts.  A transaction that freed room in a lock (deleted
 * a holder, or a waiter row, which may have been ahead of others) tells
 * the other hosts when it commits, if the lock has a waiter on one of
 * them: NOTIFY httplock, "<our host id> <waiter id> <lock key in hex>",
 * where the waiter id is that of another host's row it deleted (a
 * cancelled waiter, or one granted by a handoff), to be woken by its id,
 * or 0.  Each host's coordinator listens (coord/pglisten.c) and wakes its
 * waiters of that lock as a local release would.  The NOTIFY runs once
 * the COMMIT has answered, in a transaction and a round trip of its own:
 * a notifying commit takes a database-wide lock until its WAL is flushed,
 * which in the lock's own transaction would serialise every commit that
 * wakes, and its trouble must not make a committed call look failed.  Notifications are not durable (a dropped connection or a
 * failover loses them): waiters then find their turn by their own timers
 * and polls, as they do without a coordinator.  (S_PUBLISH, pgschema.c.)
 */
static void
read_status(void *arg, const PGresult *r)
{
	(void)snprintf(arg, 16, "%s", PQcmdStatus((PGresult *)r));
}

static int
tx_end(struct store *st, int rc)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	char status[16] = "", keep[STORE_ERR_LEN];
	int erc;

	if (!q->in_tx)
		return rc < 0 ? rc : LC_E_DB;
	q->in_tx = false;
	q->locked = 0;
	if (q->batch) {
		erc = pgc_queue_sql(&q->pc, rc >= 0 ? "RELEASE SAVEPOINT op" :
		    "ROLLBACK TO SAVEPOINT op", NULL, NULL);
		if (erc == 0 && rc < 0)
			erc = pgc_queue_sql(&q->pc, "RELEASE SAVEPOINT op",
			    NULL, NULL);
		if (erc < 0 || (erc = pgc_sync(&q->pc, "savepoint", NULL)) < 0) {
			q->batch_failed = true;
			return rc < 0 ? rc : erc;
		}
		return rc;
	}
	if (rc < 0) {
		/* The rollback's own trouble (a connection already closed)
		 * does not replace the error that led to it. */
		(void)memcpy(keep, q->base.err, sizeof(keep));
		if (q->pc.conn != NULL &&
		    pgc_queue(&q->pc, S_ROLLBACK, NULL, NULL, NULL) == 0 &&
		    pgc_sync(&q->pc, "rollback", NULL) < 0)
			abort_tx(q);
		(void)memcpy(q->base.err, keep, sizeof(keep));
		return rc;
	}
	/* Whom to tell depends on the waiter rows deleted: their results
	 * first (a round trip only when some are unread). */
	if (q->ndel > 0 && q->pc.npend > 0 &&
	    (erc = pgc_sync(&q->pc, "commit", NULL)) < 0) {
		abort_tx(q);
		return erc;
	}
	q->ndel = 0;
	/* A commit whose answer is lost may or may not have happened:
	 * LC_E_DB, never a definite "not done". */
	if ((erc = pgc_queue(&q->pc, S_COMMIT, NULL, read_status,
	    status)) == 0)
		erc = pgc_sync(&q->pc, "commit", NULL);
	if (erc < 0) {
		abort_tx(q);
		return erc;
	}
	/* A COMMIT of a transaction that failed is answered ROLLBACK. */
	if (strcmp(status, "COMMIT") != 0)
		return pgc_fail(&q->pc, "commit", "rolled back");
	/* Committed: the NOTIFY is a round trip of its own, whose failure
	 * (a full notify queue, a lost connection) costs only the wake, not
	 * the call, and is logged by no one: the waiters' timers and polls
	 * cover it. */
	if (q->write && q->wake_lock != 0 && q->host_id != 0) {
		(void)memcpy(keep, q->base.err, sizeof(keep));
		pgc_arg_i64(&a, q->host_id);
		pgc_arg_i64(&a, q->kick);
		pgc_arg_i64(&a, q->wake_lock);
		if (pgc_queue(&q->pc, S_PUBLISH, &a, NULL, NULL) == 0)
			(void)pgc_sync(&q->pc, "notify", NULL);
		(void)memcpy(q->base.err, keep, sizeof(keep));
	}
	return rc;
}

static int
batch_begin(struct store *st)
{
	struct pgstore *q = (struct pgstore *)st;
	int rc;

	if (q->batch)
		return LC_E_INVAL;
	if (q->pc.conn == NULL || PQstatus(q->pc.conn) != CONNECTION_OK)
		if ((rc = pgc_connect(&q->pc)) < 0)
			return rc;
	if ((rc = pgc_queue(&q->pc, S_BEGIN, NULL, NULL, NULL)) < 0 ||
	    (rc = pgc_sync(&q->pc, "begin", NULL)) < 0)
		return rc;
	q->batch = true;
	q->batch_failed = false;
	return 0;
}

static int
batch_end(struct store *st, int rc)
{
	struct pgstore *q = (struct pgstore *)st;
	char status[16] = "";
	int erc;

	if (!q->batch)
		return LC_E_INVAL;
	q->batch = false;
	if (q->in_tx)
		(void)tx_end(st, LC_E_DB);
	if (rc < 0 || q->batch_failed) {
		abort_tx(q);
		return rc < 0 ? rc : LC_E_DB;
	}
	if ((erc = pgc_queue(&q->pc, S_COMMIT, NULL, read_status, status)) < 0 ||
	    (erc = pgc_sync(&q->pc, "commit", NULL)) < 0) {
		abort_tx(q);
		return erc;
	}
	return strcmp(status, "COMMIT") == 0 ? 0 :
	    pgc_fail(&q->pc, "commit", "rolled back");
}

/* Every commit waits for the WAL flush (synchronous_commit=on, set for
 * the session), and for synchronous standbys where the server has them. */
static int
durable(struct store *st, bool on)
{
	(void)st;
	(void)on;
	return 0;
}

static const char *
errmsg(struct store *st)
{
	return st->err[0] != '\0' ? st->err : "no error";
}

static int
info(struct store *st, struct lockcore_store_info *si)
{
	struct pgstore *q = (struct pgstore *)st;
	const char *host, *port;
	PGresult *r;
	int rc;

	if (q->pc.conn == NULL || PQstatus(q->pc.conn) != CONNECTION_OK)
		return pgc_fail(&q->pc, "info", "not connected");
	host = PQhost(q->pc.conn);
	port = PQport(q->pc.conn);
	(void)snprintf(si->server, sizeof(si->server), "%s:%s",
	    host != NULL ? host : "", port != NULL ? port : "");
	if ((rc = pgc_queue_sql(&q->pc, "SELECT pg_is_in_recovery()", NULL,
	    NULL)) < 0 || (rc = pgc_sync(&q->pc, "info", &r)) < 0)
		return rc;
	if (r != NULL && PQntuples(r) == 1)
		si->primary = !pgc_col_bool(r, 0, 0);
	PQclear(r);
	return 0;
}

static void
pg_close(struct store *st)
{
	struct pgstore *q = (struct pgstore *)st;

	if (q == NULL)
		return;
	pgc_close(&q->pc);
	free(q->conninfo);
	free(q);
}

/* meta and sessions. */

static int
meta_get(struct store *st, const char *key, int64_t *v)
{
	struct pgc_args a = { 0 };

	pgc_arg_txt(&a, key, -1);
	return pgc_int(&((struct pgstore *)st)->pc, S_META_GET, &a, v, NULL);
}

static int
meta_set(struct store *st, const char *key, int64_t v)
{
	struct pgc_args a = { 0 };

	pgc_arg_txt(&a, key, -1);
	pgc_arg_i64(&a, v);
	return defer((struct pgstore *)st, S_META_SET, &a);
}

static int
floor_raise(struct store *st, int64_t floor)
{
	struct pgc_args a = { 0 };

	pgc_arg_i64(&a, floor);
	return defer((struct pgstore *)st, S_FLOOR_RAISE, &a);
}

static int
session_next(struct store *st, int64_t after, struct session_row *s,
    bool *found)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	PGresult *r;
	int rc;

	pgc_arg_i64(&a, after);
	if ((r = pgc_run(&q->pc, S_SESS_NEXT, &a, &rc)) == NULL)
		return rc;
	*found = PQntuples(r) > 0;
	if (*found) {
		memset(s, 0, sizeof(*s));
		s->id = pgc_col_i64(r, 0, 0);
		s->pid = (pid_t)pgc_col_i64(r, 0, 1);
		s->pstart = (uint64_t)pgc_col_i64(r, 0, 2);
		s->sync_full = pgc_col_bool(r, 0, 3);
		s->max_ttl_ms = pgc_col_i64(r, 0, 4);
		s->server_alive = pgc_col_bool(r, 0, 5) ? 1 : 0;
	}
	PQclear(r);
	return 0;
}

static int
session_add(struct store *st, const struct session_row *s, int64_t *id)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	bool found;
	int rc;

	pgc_arg_i64(&a, q->host_id);
	pgc_arg_i64(&a, s->pid);
	pgc_arg_i64(&a, (int64_t)s->pstart);
	pgc_arg_bool(&a, s->sync_full);
	pgc_arg_i64(&a, s->max_ttl_ms);
	pgc_arg_i64(&a, s->opened_at);
	if ((rc = pgc_int(&q->pc, S_SESS_ADD, &a, id, &found)) == 0 && !found)
		rc = pgc_fail(&q->pc, "session", "this backend is not in"
		    " pg_stat_activity");
	return rc;
}

static int
session_delete(struct store *st, int64_t id)
{
	struct pgc_args a = { 0 };

	pgc_arg_i64(&a, id);
	return defer((struct pgstore *)st, S_SESS_DEL, &a);
}

/* Lock rows. */

/* The row of lock_get()/lock_state(), from S_LOCK_GET(_W). */
struct lock_look {
	struct pgstore *q;
	struct lockrow *lr;
	bool           *found;
};

static void
read_lock(void *arg, const PGresult *r)
{
	struct lock_look *lk = arg;

	*lk->found = PQntuples(r) > 0;
	if (!*lk->found)
		return;
	lk->lr->id = pgc_col_i64(r, 0, 0);
	lk->lr->nwait = pgc_col_i64(r, 0, 1);
	if (lk->q->write)
		lk->q->locked = lk->lr->id;
}

/* Queues the look for lock `name` (taking its row in a write
 * transaction); *found and *lr are set at the next sync. */
static int
queue_lock(struct pgstore *q, const char *name, struct lock_look *lk)
{
	struct pgc_args a = { 0 };

	*lk->found = false;
	pgc_arg_txt(&a, name, -1);
	return pgc_queue(&q->pc, q->write ? S_LOCK_GET_W : S_LOCK_GET, &a,
	    read_lock, lk);
}

static int
lock_get(struct store *st, const char *name, struct lockrow *lr, bool *found)
{
	struct pgstore *q = (struct pgstore *)st;
	struct lock_look lk = { q, lr, found };
	int rc;

	if ((rc = queue_lock(q, name, &lk)) < 0)
		return rc;
	return pgc_sync(&q->pc, "lock", NULL);
}

/* One round trip: the lock's row, then its holders. */
static int
lock_state(struct store *st, const char *name, int64_t now,
    struct lockrow *lr, struct hstate *hs, int *expired, bool *found)
{
	struct pgstore *q = (struct pgstore *)st;
	struct lock_look lk = { q, lr, found };
	struct pgc_args a = { 0 };
	PGresult *r;
	int rc;

	hs->count = 0;
	hs->min_expires = 0;
	*expired = 0;
	if ((rc = queue_lock(q, name, &lk)) < 0)
		return rc;
	pgc_arg_txt(&a, name, -1);
	pgc_arg_i64(&a, now);
	if ((r = pgc_run(&q->pc, S_LOCK_HOLDERS, &a, &rc)) == NULL)
		return rc;
	if (*found && PQntuples(r) == 1) {
		hs->count = (int)pgc_col_i64(r, 0, 0);
		hs->min_expires = pgc_col_i64(r, 0, 1);
		*expired = (int)pgc_col_i64(r, 0, 2);
	}
	PQclear(r);
	return 0;
}

static int
lock_add(struct store *st, const char *name, struct lockrow *lr,
    bool *existed)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	PGresult *r;
	int rc;

	pgc_arg_txt(&a, name, -1);
	if ((r = pgc_run(&q->pc, S_LOCK_ADD, &a, &rc)) == NULL)
		return rc;
	if (PQntuples(r) != 1) {
		PQclear(r);
		return pgc_fail(&q->pc, "lock_add", "no row");
	}
	lr->id = pgc_col_i64(r, 0, 0);
	lr->nwait = pgc_col_i64(r, 0, 1);
	*existed = pgc_col_bool(r, 0, 2);
	q->locked = lr->id;
	PQclear(r);
	return 0;
}

static int
fence_next(struct store *st, int64_t lock_id, int64_t floor, int64_t now,
    int64_t *fence)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	bool found;
	int rc;

	if ((rc = lock_row(q, lock_id)) < 0)
		return rc;
	pgc_arg_i64(&a, lock_id);
	pgc_arg_i64(&a, floor);
	pgc_arg_i64(&a, now);
	if ((rc = pgc_int(&q->pc, S_FENCE_NEXT, &a, fence, &found)) == 0 && !found)
		rc = pgc_fail(&q->pc, "fence", "lock row vanished");
	return rc;
}

static int
fence_max(struct store *st, int64_t *top)
{
	return pgc_int(&((struct pgstore *)st)->pc, S_FENCE_MAX, NULL, top, NULL);
}

/* Holders. */

static int
holder_state(struct store *st, int64_t lock_id, int64_t now,
    struct hstate *hs)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	PGresult *r;
	int rc;

	hs->count = 0;
	hs->min_expires = 0;
	if ((rc = lock_row(q, lock_id)) < 0)
		return rc;
	pgc_arg_i64(&a, lock_id);
	pgc_arg_i64(&a, now);
	if ((r = pgc_run(&q->pc, S_H_STATE, &a, &rc)) == NULL)
		return rc;
	if (PQntuples(r) == 1) {
		hs->count = (int)pgc_col_i64(r, 0, 0);
		hs->min_expires = pgc_col_i64(r, 0, 1);
	}
	PQclear(r);
	return 0;
}

static int
holders_purge(struct store *st, int64_t lock_id, int64_t now, int *n)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	int rc;

	if ((rc = lock_row(q, lock_id)) < 0)
		return rc;
	pgc_arg_i64(&a, lock_id);
	pgc_arg_i64(&a, now);
	q->wake_lock = lock_id;
	if (n == NULL)
		return defer(q, S_H_PURGE, &a);
	return pgc_exec(&q->pc, S_H_PURGE, &a, n);
}

/* Reads row `row` of HOLDER_COLS. */
static int
read_holder(struct pgstore *q, const PGresult *r, int row, struct hrow *h)
{
	h->lock_id = pgc_col_i64(r, row, 0);
	h->fence = pgc_col_i64(r, row, 2);
	h->acquired_at = pgc_col_i64(r, row, 4);
	h->expires_at = pgc_col_i64(r, row, 5);
	h->waiter_id = pgc_col_i64(r, row, 6);
	h->wkey = (uint64_t)pgc_col_i64(r, row, 7);
	h->ttl_ms = pgc_col_i64(r, row, 9);
	read_secret(r, row, 1, 8, &h->sec);
	return pgc_col_txt(&q->pc, r, row, 3, h->owner, sizeof(h->owner));
}

static int
holders_live(struct store *st, int64_t lock_id, int64_t now,
    store_holder_fn *fn, void *arg)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	struct hrow h;
	PGresult *r;
	int rc, i;

	if ((rc = lock_row(q, lock_id)) < 0)
		return rc;
	pgc_arg_i64(&a, lock_id);
	pgc_arg_i64(&a, now);
	if ((r = pgc_run(&q->pc, S_H_LIST, &a, &rc)) == NULL)
		return rc;
	for (i = 0; i < PQntuples(r); i++) {
		if ((rc = read_holder(q, r, i, &h)) < 0 || fn(&h, arg) != 0)
			break;
	}
	PQclear(r);
	return rc;
}

static int
holder_by_rid(struct store *st, int64_t lock_id, const unsigned char *rh,
    int64_t now, struct hrow *h, bool *found)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	PGresult *r;
	int rc;

	if ((rc = lock_row(q, lock_id)) < 0)
		return rc;
	pgc_arg_i64(&a, lock_id);
	pgc_arg_blob(&a, rh, SECRET_HASH_LEN);
	pgc_arg_i64(&a, now);
	if ((r = pgc_run(&q->pc, S_H_BY_REQ, &a, &rc)) == NULL)
		return rc;
	*found = PQntuples(r) > 0;
	if (*found)
		rc = read_holder(q, r, 0, h);
	PQclear(r);
	return rc;
}

/*
 * The lock of a waiter row (S_LOCK_OF_WAITER) or of the holder granted
 * to one (S_LOCK_OF_HOLDER), taken in a write transaction before the row
 * is read.  A row's lock never changes, so the unlocked subquery cannot
 * name the wrong lock; if the row is gone, nothing is taken and the read
 * that follows finds nothing.
 */
static int
lock_of(struct pgstore *q, enum stmt_id id, int64_t row_id)
{
	struct pgc_args a = { 0 };

	if (!q->write)
		return 0;
	pgc_arg_i64(&a, row_id);
	return pgc_queue(&q->pc, id, &a, read_locked, q);
}

static int
holder_by_waiter(struct store *st, int64_t waiter_id, int64_t now,
    struct hrow *h, char name[LC_KEY_MAX + 1], bool *found)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	PGresult *r;
	int rc;

	if ((rc = lock_of(q, S_LOCK_OF_HOLDER, waiter_id)) < 0)
		return rc;
	pgc_arg_i64(&a, waiter_id);
	pgc_arg_i64(&a, now);
	if ((r = pgc_run(&q->pc, S_H_BY_WAITER, &a, &rc)) == NULL)
		return rc;
	*found = PQntuples(r) > 0;
	if (*found && (rc = read_holder(q, r, 0, h)) == 0)
		rc = pgc_col_txt(&q->pc, r, 0, 10, name, LC_KEY_MAX + 1);
	PQclear(r);
	return rc;
}

static int
holder_add(struct store *st, const struct hrow *h, const unsigned char *rh)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	int rc;

	if ((rc = lock_row(q, h->lock_id)) < 0)
		return rc;
	pgc_arg_blob(&a, h->sec.token_hash, SECRET_HASH_LEN);
	pgc_arg_i64(&a, h->lock_id);
	pgc_arg_i64(&a, h->fence);
	pgc_arg_txt(&a, h->owner, -1);
	if (rh != NULL)
		pgc_arg_blob(&a, rh, SECRET_HASH_LEN);
	else
		pgc_arg_null(&a);
	if (h->sec.has_seal)
		pgc_arg_blob(&a, h->sec.seal, SECRET_SEAL_LEN);
	else
		pgc_arg_null(&a);
	pgc_arg_i64(&a, h->acquired_at);
	pgc_arg_i64(&a, h->expires_at);
	pgc_arg_i64(&a, h->ttl_ms);
	if (h->waiter_id != 0)
		pgc_arg_i64(&a, h->waiter_id);
	else
		pgc_arg_null(&a);
	if (h->wkey != 0)
		pgc_arg_i64(&a, (int64_t)h->wkey);
	else
		pgc_arg_null(&a);
	return defer(q, S_H_ADD, &a);
}

static int
holder_delete(struct store *st, int64_t lock_id, int64_t fence)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	int rc;

	if ((rc = lock_row(q, lock_id)) < 0)
		return rc;
	pgc_arg_i64(&a, lock_id);
	pgc_arg_i64(&a, fence);
	q->wake_lock = lock_id;
	return defer(q, S_H_DEL, &a);
}

static int
holder_renew(struct store *st, int64_t lock_id, int64_t fence,
    int64_t expires_at, int64_t ttl_ms)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	int rc;

	if ((rc = lock_row(q, lock_id)) < 0)
		return rc;
	pgc_arg_i64(&a, lock_id);
	pgc_arg_i64(&a, fence);
	pgc_arg_i64(&a, expires_at);
	pgc_arg_i64(&a, ttl_ms);
	return defer(q, S_H_RENEW, &a);
}

static int
holder_take(struct store *st, int64_t lock_id, int64_t fence, uint64_t wkey)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	int rc;

	if ((rc = lock_row(q, lock_id)) < 0)
		return rc;
	pgc_arg_i64(&a, lock_id);
	pgc_arg_i64(&a, fence);
	pgc_arg_i64(&a, (int64_t)wkey);
	return defer(q, S_H_TAKE, &a);
}

/* Waiters. */

static int
waiter_get(struct store *st, int64_t id, struct wrow *w, bool *found)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	PGresult *r;
	int rc;

	if ((rc = lock_of(q, S_LOCK_OF_WAITER, id)) < 0)
		return rc;
	pgc_arg_i64(&a, id);
	if ((r = pgc_run(&q->pc, S_W_GET, &a, &rc)) == NULL)
		return rc;
	*found = PQntuples(r) > 0;
	if (*found) {
		w->lock_id = pgc_col_i64(r, 0, 0);
		w->has_rid = pgc_col_blob(r, 0, 2, w->rid_hash, SECRET_HASH_LEN);
		w->ttl_ms = pgc_col_i64(r, 0, 3);
		w->wkey = (uint64_t)pgc_col_i64(r, 0, 4);
		w->deadline = pgc_col_i64(r, 0, 6);
		read_secret(r, 0, 7, 8, &w->sec);
		rc = pgc_col_txt(&q->pc, r, 0, 1, w->owner, sizeof(w->owner));
		if (rc == 0)
			rc = pgc_col_txt(&q->pc, r, 0, 5, w->name, sizeof(w->name));
	}
	PQclear(r);
	return rc;
}

static int
waiter_by_rid(struct store *st, int64_t lock_id, const unsigned char *rh,
    int64_t *id, struct hsecret *sec)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	PGresult *r;
	int rc;

	*id = 0;
	if ((rc = lock_row(q, lock_id)) < 0)
		return rc;
	pgc_arg_i64(&a, lock_id);
	pgc_arg_blob(&a, rh, SECRET_HASH_LEN);
	if ((r = pgc_run(&q->pc, S_W_BY_REQ, &a, &rc)) == NULL)
		return rc;
	if (PQntuples(r) > 0) {
		*id = pgc_col_i64(r, 0, 0);
		if (sec != NULL)
			read_secret(r, 0, 1, 2, sec);
	}
	PQclear(r);
	return 0;
}

static int
waiter_add(struct store *st, const struct wrow *w, pid_t pid, uint64_t pstart,
    int64_t *id)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	bool found;
	int rc;

	if ((rc = lock_row(q, w->lock_id)) < 0)
		return rc;
	pgc_arg_i64(&a, w->lock_id);
	if (w->has_rid)
		pgc_arg_blob(&a, w->rid_hash, SECRET_HASH_LEN);
	else
		pgc_arg_null(&a);
	pgc_arg_txt(&a, w->owner, -1);
	pgc_arg_i64(&a, w->ttl_ms);
	pgc_arg_i64(&a, w->deadline);
	pgc_arg_i64(&a, pid);
	pgc_arg_i64(&a, (int64_t)pstart);
	pgc_arg_i64(&a, (int64_t)w->wkey);
	pgc_arg_blob(&a, w->sec.token_hash, SECRET_HASH_LEN);
	if (w->sec.has_seal)
		pgc_arg_blob(&a, w->sec.seal, SECRET_SEAL_LEN);
	else
		pgc_arg_null(&a);
	pgc_arg_i64(&a, q->host_id);
	if ((rc = pgc_int(&q->pc, S_W_ADD, &a, id, &found)) == 0 && !found)
		rc = pgc_fail(&q->pc, "waiter_add", "no id");
	return rc;
}

/* The row passes to a request of this host. */
static int
waiter_take(struct store *st, int64_t id, const struct lock_waiter_ident *who,
    int64_t deadline)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };

	pgc_arg_i64(&a, id);
	pgc_arg_i64(&a, who->pid);
	pgc_arg_i64(&a, (int64_t)who->pstart);
	pgc_arg_i64(&a, (int64_t)who->key);
	pgc_arg_i64(&a, deadline);
	pgc_arg_i64(&a, q->host_id);
	return defer(q, S_W_TAKE, &a);
}

static void
read_deleted(void *arg, const PGresult *r)
{
	struct del_look *d = arg;

	if (PQntuples(r) != 1)
		return;
	d->q->wake_lock = pgc_col_i64(r, 0, 0);
	if (pgc_col_bool(r, 0, 1))
		d->q->kick = d->id;
}

static int
waiter_delete(struct store *st, int64_t id)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	struct del_look *d;
	int rc;

	/* Its result is read with the next sync: the look lives in q. */
	if (q->ndel == PGC_PENDING_MAX &&
	    (rc = pgc_sync(&q->pc, "waiter_delete", NULL)) < 0)
		return rc;
	if (q->pc.npend == 0)
		q->ndel = 0;
	d = &q->del[q->ndel++];
	d->q = q;
	d->id = id;
	pgc_arg_i64(&a, id);
	pgc_arg_i64(&a, q->host_id);
	return pgc_queue(&q->pc, S_W_DEL, &a, read_deleted, d);
}

static int
waiter_count(struct store *st, int64_t lock_id, int64_t after, int64_t below,
    int64_t now, int64_t limit, int *n)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	int64_t v;
	int rc;

	*n = 0;
	if ((rc = lock_row(q, lock_id)) < 0)
		return rc;
	pgc_arg_i64(&a, lock_id);
	pgc_arg_i64(&a, after);
	pgc_arg_i64(&a, below);
	pgc_arg_i64(&a, now);
	if (limit >= 0)
		pgc_arg_i64(&a, limit);
	else
		pgc_arg_null(&a);               /* LIMIT NULL: no limit */
	if ((rc = pgc_int(&q->pc, S_W_COUNT, &a, &v, NULL)) == 0)
		*n = (int)v;
	return rc;
}

static int
waiters_walk(struct store *st, int64_t lock_id, int64_t after, int64_t below,
    store_waiter_fn *fn, void *arg)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	struct wslot w;
	PGresult *r;
	int rc, i;

	if ((rc = lock_row(q, lock_id)) < 0)
		return rc;
	pgc_arg_i64(&a, lock_id);
	pgc_arg_i64(&a, after);
	pgc_arg_i64(&a, below);
	pgc_arg_i64(&a, q->host_id);
	if ((r = pgc_run(&q->pc, S_W_WALK, &a, &rc)) == NULL)
		return rc;
	for (i = 0; i < PQntuples(r); i++) {
		w.id = pgc_col_i64(r, i, 0);
		w.pid = (pid_t)pgc_col_i64(r, i, 1);
		w.pstart = (uint64_t)pgc_col_i64(r, i, 2);
		w.deadline = pgc_col_i64(r, i, 3);
		w.remote = pgc_col_bool(r, i, 4);
		w.host_seen = pgc_col_i64(r, i, 5);
		w.wkey = 0;
		if (fn(&w, arg) != 0)
			break;
	}
	PQclear(r);
	return 0;
}

/* Hosts. */

static int
host_beat(struct store *st, int64_t now)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };

	pgc_arg_i64(&a, q->host_id);
	pgc_arg_i64(&a, now);
	return defer(q, S_HOST_BEAT, &a);
}

static int
waiters_mine(struct store *st, int64_t after, int limit, store_waiter_fn *fn,
    void *arg)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	struct wslot w = { 0 };
	PGresult *r;
	int rc, i;

	pgc_arg_i64(&a, q->host_id);
	pgc_arg_i64(&a, after);
	pgc_arg_i64(&a, limit);
	if ((r = pgc_run(&q->pc, S_W_MINE, &a, &rc)) == NULL)
		return rc;
	for (i = 0; i < PQntuples(r); i++) {
		w.id = pgc_col_i64(r, i, 0);
		w.pid = (pid_t)pgc_col_i64(r, i, 1);
		w.pstart = (uint64_t)pgc_col_i64(r, i, 2);
		w.deadline = pgc_col_i64(r, i, 3);
		w.wkey = (uint64_t)pgc_col_i64(r, i, 4);
		if (fn(&w, arg) != 0)
			break;
	}
	PQclear(r);
	return 0;
}

/* Across locks. */

#define PREFIX_HI_MAX LC_KEY_MAX

/*
 * The smallest string greater than every string starting with prefix, in
 * byte order (names are bytea): drop trailing 0xff bytes, then add one to
 * the last byte.  *len is -1 if there is none (prefix empty or all 0xff),
 * i.e. no upper bound.
 */
static void
prefix_end(const char *prefix, char hi[PREFIX_HI_MAX + 1], int *len)
{
	size_t n = strnlen(prefix, PREFIX_HI_MAX);

	while (n > 0 && (unsigned char)prefix[n - 1] == 0xff)
		n--;
	*len = -1;
	if (n == 0)
		return;
	memcpy(hi, prefix, n);
	hi[n - 1] = (char)((unsigned char)hi[n - 1] + 1);
	hi[n] = '\0';
	*len = (int)n;
}

static void
arg_prefix_end(struct pgc_args *a, const char *pfx, char hi[PREFIX_HI_MAX + 1])
{
	int n;

	prefix_end(pfx, hi, &n);
	if (n < 0)
		pgc_arg_null(a);
	else
		pgc_arg_txt(a, hi, n);
}

static int
quota_count(struct store *st, bool waiting, const char *prefix, int64_t now,
    int limit, int *n)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	char hi[PREFIX_HI_MAX + 1];
	int64_t v;
	int rc;

	*n = 0;
	pgc_arg_txt(&a, prefix, -1);
	arg_prefix_end(&a, prefix, hi);
	pgc_arg_i64(&a, now);
	pgc_arg_i64(&a, limit);
	if ((rc = pgc_int(&q->pc, waiting ? S_Q_WAIT : S_Q_HELD, &a, &v, NULL)) == 0)
		*n = (int)v;
	return rc;
}

static int
list(struct store *st, int64_t now, const char *after, const char *prefix,
    const char *skip, int64_t limit, store_list_fn *fn, void *arg)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	struct lock_list_entry e;
	char hi[PREFIX_HI_MAX + 1], skip_hi[PREFIX_HI_MAX + 1];
	char name[LC_KEY_MAX + 1];
	PGresult *r;
	int rc, i;

	pgc_arg_i64(&a, now);
	pgc_arg_txt(&a, after, -1);
	pgc_arg_txt(&a, prefix, -1);
	arg_prefix_end(&a, prefix, hi);
	pgc_arg_i64(&a, limit);
	if (skip[0] == '\0') {
		pgc_arg_null(&a);
		pgc_arg_null(&a);
	} else {
		pgc_arg_txt(&a, skip, -1);
		arg_prefix_end(&a, skip, skip_hi);
	}
	if ((r = pgc_run(&q->pc, S_LIST, &a, &rc)) == NULL)
		return rc;
	for (i = 0; i < PQntuples(r); i++) {
		if ((rc = pgc_col_txt(&q->pc, r, i, 0, name, sizeof(name))) < 0)
			break;
		e.name = name;
		e.holders = (int)pgc_col_i64(r, i, 1);
		e.waiters = (int)pgc_col_i64(r, i, 2);
		if (fn(&e, arg) != 0)
			break;
	}
	PQclear(r);
	return rc;
}

/*
 * Sweep.  sweep_range() takes (FOR UPDATE SKIP LOCKED) the rows of the
 * batch that no other transaction holds and remembers their ids; the two
 * calls after it touch those rows only, whatever their lo and hi say.
 */
static int
sweep_range(struct store *st, int64_t lo, int batch, int64_t *hi)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	PGresult *r;
	size_t off;
	int rc, i;

	*hi = 0;
	if (batch > PG_SWEEP_MAX)
		batch = PG_SWEEP_MAX;
	pgc_arg_i64(&a, lo);
	pgc_arg_i64(&a, batch);
	if ((r = pgc_run(&q->pc, S_SWEEP_LOCK, &a, &rc)) == NULL)
		return rc;
	off = 0;
	q->sweep_ids[off++] = '{';
	for (i = 0; i < PQntuples(r); i++) {
		*hi = pgc_col_i64(r, i, 0);
		off += (size_t)snprintf(q->sweep_ids + off,
		    sizeof(q->sweep_ids) - off, "%s%" PRId64, i > 0 ? "," : "",
		    *hi);
	}
	q->sweep_ids[off++] = '}';
	q->sweep_ids[off] = '\0';
	PQclear(r);
	return 0;
}

static int
sweep_expired(struct store *st, int64_t lo, int64_t hi, int64_t now,
    int64_t late, int *n)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	int rc, k = 0;

	(void)lo;
	(void)hi;
	*n = 0;
	pgc_arg_str(&a, q->sweep_ids);
	pgc_arg_i64(&a, now);
	if ((rc = pgc_exec(&q->pc, S_SWEEP_PURGE, &a, &k)) < 0)
		return rc;
	*n += k;
	a.n = 0;
	pgc_arg_str(&a, q->sweep_ids);
	pgc_arg_i64(&a, late);
	if ((rc = pgc_exec(&q->pc, S_SWEEP_WAITERS, &a, &k)) < 0)
		return rc;
	*n += k;
	return 0;
}

static int
sweep_idle(struct store *st, int64_t lo, int64_t hi, int64_t used_before,
    int64_t *top, int *n)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	PGresult *r;
	int rc;

	(void)lo;
	(void)hi;
	*n = 0;
	*top = 0;
	pgc_arg_str(&a, q->sweep_ids);
	pgc_arg_i64(&a, used_before);
	if ((r = pgc_run(&q->pc, S_SWEEP_IDLE, &a, &rc)) == NULL)
		return rc;
	if (PQntuples(r) == 1) {
		*n = (int)pgc_col_i64(r, 0, 0);
		*top = pgc_col_i64(r, 0, 1);
	}
	PQclear(r);
	return 0;
}

/* Opening. */

/* This host's key (proc_host_key), unless opts names one. */
static void
host_key(struct pgstore *q, const struct lockcore_opts *opts)
{
	if (opts != NULL && opts->host_key != NULL)
		(void)snprintf(q->host_key, sizeof(q->host_key), "%s",
		    opts->host_key);
	else
		proc_host_key(q->host_key, sizeof(q->host_key),
		    opts != NULL ? opts->boot_id : NULL, "");
}

/* Adds or refreshes our row of `hosts`. */
static int
add_host(struct pgstore *q)
{
	struct pgc_args a = { 0 };
	char name[256];
	int64_t now = 0;
	bool found;
	int rc, live = q->live_clock;

	if (gethostname(name, sizeof(name)) != 0)
		(void)snprintf(name, sizeof(name), "unknown");
	name[sizeof(name) - 1] = '\0';
	q->live_clock = 1;
	rc = tx_begin(&q->base, true, &now);
	q->live_clock = live;
	if (rc < 0)
		return rc;
	pgc_arg_txt(&a, q->host_key, -1);
	pgc_arg_txt(&a, name, -1);
	pgc_arg_i64(&a, now);
	if ((rc = pgc_int(&q->pc, S_HOST_ADD, &a, &q->host_id, &found)) == 0 &&
	    !found)
		rc = pgc_fail(&q->pc, "hosts", "no id");
	return tx_end(&q->base, rc);
}

int
store_pg_open(struct store **out, const char *conninfo,
    const struct lockcore_opts *opts, char *err, size_t errlen)
{
	struct pgstore *q;
	PQconninfoOption *opt;
	char name[256], *perr = NULL;
	int rc;

	*out = NULL;
	/* libpq's message about a URI it cannot parse quotes the URI, and
	 * with it any password: ours names neither. */
	if ((opt = PQconninfoParse(conninfo, &perr)) == NULL) {
		if (perr != NULL)
			PQfreemem(perr);
		if (err != NULL && errlen > 0)
			(void)snprintf(err, errlen, "the store's URI cannot be"
			    " read as a PostgreSQL connection URI");
		return LC_E_INVAL;
	}
	PQconninfoFree(opt);
	if ((q = calloc(1, sizeof(*q))) == NULL ||
	    (q->conninfo = strdup(conninfo)) == NULL) {
		free(q);
		if (err != NULL && errlen > 0)
			(void)snprintf(err, errlen, "out of memory");
		return LC_E_NOMEM;
	}
	q->base.ops = &pg_ops;
	q->pc.conninfo = q->conninfo;
	q->pc.sqltab = pg_sql;
	q->pc.prepared = q->prepared;
	q->pc.nstmt = S_COUNT;
	q->pc.err = q->base.err;
	q->pc.errlen = sizeof(q->base.err);
	q->pc.timeout_ms = opts != NULL && opts->busy_timeout_ms > 0 &&
	    opts->busy_timeout_ms < PG_TIMEOUT_MAX_MS ?
	    opts->busy_timeout_ms : PG_TIMEOUT_MAX_MS;
	q->live_clock = opts != NULL && opts->live_clock;
	host_key(q, opts);
	if ((rc = pgc_connect(&q->pc)) < 0 ||
	    (rc = pgschema_make(&q->pc)) < 0 || (rc = add_host(q)) < 0) {
		store_pg_name(conninfo, name, sizeof(name));
		if (err != NULL && errlen > 0)
			(void)snprintf(err, errlen, "%s: %s", name,
			    q->base.err);
		pg_close(&q->base);
		return rc;
	}
	*out = &q->base;
	return 0;
}

void
store_pg_name(const char *conninfo, char *buf, size_t size)
{
	PQconninfoOption *opt, *o;
	const char *user = "", *host = "", *port = "", *db = "";

	if ((opt = PQconninfoParse(conninfo, NULL)) == NULL) {
		(void)snprintf(buf, size, "postgresql://(unreadable URI)");
		return;
	}
	for (o = opt; o->keyword != NULL; o++) {
		if (o->val == NULL)
			continue;
		if (strcmp(o->keyword, "user") == 0)
			user = o->val;
		else if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			port = o->val;
		else if (strcmp(o->keyword, "dbname") == 0)
			db = o->val;
	}
	(void)snprintf(buf, size, "postgresql://%s%s%s%s%s/%s", user,
	    user[0] != '\0' ? "@" : "", host, port[0] != '\0' ? ":" : "",
	    port, db);
	PQconninfoFree(opt);
}

static const struct store_ops pg_ops = {
	.begin = tx_begin,
	.end = tx_end,
	.batch_begin = batch_begin,
	.batch_end = batch_end,
	.durable = durable,
	.errmsg = errmsg,
	.kind = "postgresql",
	.server_clock = true,
	.info = info,
	.close = pg_close,
	.meta_get = meta_get,
	.meta_set = meta_set,
	.floor_raise = floor_raise,
	.session_next = session_next,
	.session_add = session_add,
	.session_delete = session_delete,
	.lock_get = lock_get,
	.lock_state = lock_state,
	.lock_add = lock_add,
	.fence_next = fence_next,
	.fence_max = fence_max,
	.holder_state = holder_state,
	.holders_purge = holders_purge,
	.holders_live = holders_live,
	.holder_by_rid = holder_by_rid,
	.holder_by_waiter = holder_by_waiter,
	.holder_add = holder_add,
	.holder_delete = holder_delete,
	.holder_renew = holder_renew,
	.holder_take = holder_take,
	.waiter_get = waiter_get,
	.waiter_by_rid = waiter_by_rid,
	.waiter_add = waiter_add,
	.waiter_take = waiter_take,
	.waiter_delete = waiter_delete,
	.waiter_count = waiter_count,
	.waiters_walk = waiters_walk,
	.host_beat = host_beat,
	.waiters_mine = waiters_mine,
	.quota_count = quota_count,
	.list = list,
	.sweep_range = sweep_range,
	.sweep_expired = sweep_expired,
	.sweep_idle = sweep_idle,
};
