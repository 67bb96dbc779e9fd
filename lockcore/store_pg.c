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
 * Durability.  A transaction that grants (a new holder row, so a new
 * fence), renews or takes over a grant, queues a waiter or takes one
 * over (a request told it waits keeps its place), or changes meta or
 * sessions or adds a host, commits only once its WAL is flushed
 * (synchronous_commit = on, and on synchronous standbys where the server
 * has them): once a client
 * is told it holds a lock, neither a crash nor a failover undoes it, and
 * no fence is issued twice.  The others (a release, a waiter withdrawn
 * or removed, expired holders purged) commit without waiting for the
 * flush (S_NO_FLUSH): a crash of the server may undo the last of them,
 * which leaves a lock held until its lease ends, or a row of a waiter
 * that left, never two holders.  Any later commit that waits for the flush makes every earlier one durable too
 * (the WAL is one sequence), so a grant made after a release was seen
 * never outlives it.  A release's commit then does not hold the lock's
 * row through a disk flush, which is what bounds one lock's handoffs.
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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "clock.h"
#include "pgstore.h"

static const struct store_ops pg_ops;

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
	return defer_lossy(q, S_LOCK_ID_W, &a);
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
	q->flush = true;
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

/* The time a statement judges by: `now`, or the server's clock, which it
 * reads itself when begin(NULL) left the clock to it (column 0 of its
 * result: take_now). */
static void
arg_now(const struct pgstore *q, struct pgc_args *a, int64_t now)
{
	if (q->clock_due)
		pgc_arg_null(a);
	else
		pgc_arg_i64(a, now);
}

static void
take_now(struct pgstore *q, const PGresult *r, int64_t *now)
{
	if (q->clock_due) {
		*now = pgc_col_i64(r, 0, 0);
		note_clock(q, *now);
		q->clock_due = false;
	}
}

/* The row of lock_get()/lock_state(), from S_LOCK_GET(_W). */
struct lock_look {
	struct pgstore *q;
	const char     *name;
	struct lockrow *lr;
	bool           *found;
};

/* A write transaction notes the row it took, and whether it had waiters. */
/*
 * Whether the queue of lock `name` had waiter rows when this connection
 * last took it: a hint (a table of name hashes, one per slot) for
 * lock_state() to read the queue's first page with the lock's row, in its
 * round trip, where the engine is likely to walk it.  A wrong hint costs
 * a statement, or the round trip it would have saved.
 */
static uint32_t
name_hash(const char *name)
{
	uint32_t h = 2166136261u;               /* FNV-1a */

	for (; *name != '\0'; name++)
		h = (h ^ (unsigned char)*name) * 16777619u;
	return h | 1;                           /* 0: an empty slot */
}

static void
note_locked(struct pgstore *q, const char *name, const struct lockrow *lr)
{
	size_t n = strlen(name);
	uint32_t h = name_hash(name);

	q->locked = lr->id;
	q->nwait0 = lr->nwait == 0 ? lr->id : 0;
	if (n < sizeof(q->locked_name))
		memcpy(q->locked_name, name, n + 1);
	q->busy[h % PG_BUSY_SLOTS] = lr->nwait > 0 ? h : 0;
}

static bool
likely_queued(const struct pgstore *q, const char *name)
{
	uint32_t h = name_hash(name);

	return q->busy[h % PG_BUSY_SLOTS] == h;
}

static void
read_queue(void *arg, const PGresult *r)
{
	struct pgstore *q = arg;

	if (q->locked != 0)
		pgr_queue_keep(&q->qc, &q->pc, r, q->locked);
}

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
		note_locked(lk->q, lk->name, lk->lr);
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
	struct lock_look lk = { q, name, lr, found };
	int rc;

	if ((rc = queue_lock(q, name, &lk)) < 0)
		return rc;
	return pgc_sync(&q->pc, "lock", NULL);
}

/*
 * One round trip: the lock's row, then its holders with the time (the
 * server's clock after begin(NULL)), and the live ones kept for the calls
 * that follow (pgrows.h).
 */
static int
lock_state(struct store *st, const char *name, int64_t *now,
    struct lockrow *lr, struct hstate *hs, int *expired, bool *found)
{
	struct pgstore *q = (struct pgstore *)st;
	struct lock_look lk = { q, name, lr, found };
	struct pgc_args a = { 0 };
	PGresult *r;
	int rc;
	bool first = q->fresh;

	q->fresh = false;
again:
	hs->count = 0;
	hs->min_expires = 0;
	*expired = 0;
	a.n = 0;
	if ((rc = queue_lock(q, name, &lk)) < 0)
		return rc;
	if (q->write && likely_queued(q, name)) {
		pgc_arg_txt(&a, name, -1);
		pgc_arg_i64(&a, q->host_id);
		pgc_arg_i64(&a, PGR_QUEUE_MAX);
		if ((rc = pgc_queue(&q->pc, S_W_WALK_NAME, &a, read_queue,
		    q)) < 0)
			return rc;
		a.n = 0;
	}
	pgc_arg_txt(&a, name, -1);
	arg_now(q, &a, *now);
	pgc_arg_i64(&a, PGR_HOLDERS_MAX);
	if ((r = pgc_run(&q->pc, S_LOCK_HOLDERS, &a, &rc)) == NULL) {
		if (first && pgtx_again(q) == 0) {
			first = false;
			goto again;
		}
		return rc;
	}
	if (PQntuples(r) < 1) {
		PQclear(r);
		return pgc_fail(&q->pc, "lock_state", "no row");
	}
	take_now(q, r, now);
	if (*found) {
		hs->count = (int)pgc_col_i64(r, 0, 1);
		hs->min_expires = pgc_col_i64(r, 0, 2);
		*expired = (int)pgc_col_i64(r, 0, 3);
		if (q->write && lr->id == q->locked)
			rc = pgr_holders_keep(&q->hc, &q->pc, r, 4, lr->id,
			    *now, hs->count);
	}
	PQclear(r);
	return rc;
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
	q->flush = true;
	if ((r = pgc_run(&q->pc, S_LOCK_ADD, &a, &rc)) == NULL)
		return rc;
	if (PQntuples(r) != 1) {
		PQclear(r);
		return pgc_fail(&q->pc, "lock_add", "no row");
	}
	lr->id = pgc_col_i64(r, 0, 0);
	lr->nwait = pgc_col_i64(r, 0, 1);
	*existed = pgc_col_bool(r, 0, 2);
	note_locked(q, name, lr);
	PQclear(r);
	return 0;
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
	if (pgr_holders_has(&q->hc, lock_id, now)) {
		pgr_holders_state(&q->hc, now, hs);
		return 0;
	}
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
	pgr_holders_purge(&q->hc, lock_id, now);
	if (n == NULL)
		return defer_lossy(q, S_H_PURGE, &a);
	return pgc_exec(&q->pc, S_H_PURGE, &a, n);
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

	if (pgr_holders_has(&q->hc, lock_id, now))
		return pgr_holders_walk(&q->hc, now, fn, arg);
	if ((rc = lock_row(q, lock_id)) < 0)
		return rc;
	pgc_arg_i64(&a, lock_id);
	pgc_arg_i64(&a, now);
	if ((r = pgc_run(&q->pc, S_H_LIST, &a, &rc)) == NULL)
		return rc;
	for (i = 0; i < PQntuples(r); i++) {
		if ((rc = pgr_holder(&q->pc, r, i, 0, &h)) < 0 || fn(&h, arg) != 0)
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
		rc = pgr_holder(&q->pc, r, 0, 0, h);
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
	if (*found && (rc = pgr_holder(&q->pc, r, 0, 0, h)) == 0)
		rc = pgc_col_txt(&q->pc, r, 0, 10, name, LC_KEY_MAX + 1);
	PQclear(r);
	return rc;
}

/*
 * An insert whose returned value (a grant's fence, a new waiter's id) the
 * caller reads only after the transaction: queued with the next
 * statement, and *out written when its result arrives.  One at a time:
 * another one waits for the result of the first.  No row back (the lock
 * row vanished) fails the transaction's end.
 */
static void
read_returning(void *arg, const PGresult *r)
{
	struct pgstore *q = arg;

	if (PQntuples(r) == 1 && q->returning != NULL)
		*q->returning = pgc_col_i64(r, 0, 0);
	else
		q->insert_lost = true;
	q->returning = NULL;
}

static int
queue_returning(struct pgstore *q, enum stmt_id id, const struct pgc_args *a,
    int64_t *out)
{
	int rc;

	if (q->returning != NULL && q->pc.npend > 0 &&
	    (rc = pgc_sync(&q->pc, "insert", NULL)) < 0)
		return rc;
	q->returning = out;
	return pgc_queue(&q->pc, id, a, read_returning, q);
}

/* One statement, sent with the next (the COMMIT, usually): queue_returning. */
static int
holder_grant(struct store *st, const struct hrow *h, const unsigned char *rh,
    int64_t floor, int64_t *fence)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	int rc;

	if ((rc = lock_row(q, h->lock_id)) < 0)
		return rc;
	pgc_arg_blob(&a, h->sec.token_hash, SECRET_HASH_LEN);
	pgc_arg_i64(&a, h->lock_id);
	pgc_arg_i64(&a, floor);
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
	q->hc.valid = false;
	q->flush = true;
	return queue_returning(q, S_H_GRANT, &a, fence);
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
	pgr_holders_drop(&q->hc, lock_id, fence);
	return defer_lossy(q, S_H_DEL, &a);
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
	q->hc.valid = false;
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
	q->hc.valid = false;
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

	const struct pgr_qrow *qr;

	if (q->wc.valid && q->wc.id == id && q->wc.w.lock_id == q->locked) {
		*w = q->wc.w;
		*found = true;
		return 0;
	}
	if (q->locked_name[0] != '\0' &&
	    (qr = pgr_queue_find(&q->qc, q->locked, id)) != NULL) {
		pgr_qrow_whole(qr, q->locked, q->locked_name, w);
		*found = true;
		return 0;
	}
	if ((rc = lock_of(q, S_LOCK_OF_WAITER, id)) < 0)
		return rc;
	pgc_arg_i64(&a, id);
	if ((r = pgc_run(&q->pc, S_W_GET, &a, &rc)) == NULL)
		return rc;
	*found = PQntuples(r) > 0;
	if (*found)
		rc = pgr_wrow(&q->pc, r, 0, 0, w);
	PQclear(r);
	return rc;
}

/* One statement (S_W_LOOK), with the server's clock after begin(NULL). */
static int
waiter_look(struct store *st, int64_t id, int64_t *now, int limit,
    struct wlook *l)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	PGresult *r;
	int rc = 0;
	bool first = q->fresh;

	q->fresh = false;
again:
	memset(l, 0, sizeof(*l));
	a.n = 0;
	pgc_arg_i64(&a, id);
	arg_now(q, &a, *now);
	pgc_arg_i64(&a, limit);
	if ((r = pgc_run(&q->pc, S_W_LOOK, &a, &rc)) == NULL) {
		if (first && pgtx_again(q) == 0) {
			first = false;
			goto again;
		}
		return rc;
	}
	if (PQntuples(r) != 1) {
		PQclear(r);
		return pgc_fail(&q->pc, "waiter_look", "no row");
	}
	take_now(q, r, now);
	l->found = !PQgetisnull(r, 0, 1);
	l->granted = !l->found && !PQgetisnull(r, 0, 13);
	if (l->found) {
		rc = pgr_wrow(&q->pc, r, 0, 1, &l->w);
		l->hs.count = (int)pgc_col_i64(r, 0, 10);
		l->hs.min_expires = pgc_col_i64(r, 0, 11);
		l->ahead = (int)pgc_col_i64(r, 0, 12);
	} else if (l->granted &&
	    (rc = pgr_holder(&q->pc, r, 0, 13, &l->h)) == 0)
		rc = pgc_col_txt(&q->pc, r, 0, 23, l->w.name,
		    sizeof(l->w.name));
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
			pgr_secret(r, 0, 1, 2, sec);
	}
	PQclear(r);
	return 0;
}

/* Sent with the next statement (the COMMIT, usually): queue_returning. */
static int
waiter_add(struct store *st, const struct wrow *w, pid_t pid, uint64_t pstart,
    int64_t *id)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
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
	q->wc.valid = false;
	q->qc.valid = false;
	q->flush = true;
	return queue_returning(q, S_W_ADD, &a, id);
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
	q->wc.valid = false;
	q->qc.valid = false;
	return defer(q, S_W_TAKE, &a);
}

static void
read_deleted(void *arg, const PGresult *r)
{
	struct del_look *d = arg;

	if (!d->known)
		d->q->nunknown--;
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
	const struct pgr_qrow *qr;
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
	/* A row a walk read (a handoff's): whom to tell is known now, so
	 * the NOTIFY can go with the COMMIT (pgtx_end). */
	qr = pgr_queue_find(&q->qc, q->locked, id);
	d->known = (q->wc.valid && q->wc.id == id) || qr != NULL;
	if (d->known) {
		q->wake_lock = q->locked;
		if (qr != NULL ? qr->s.remote : q->wc.remote)
			q->kick = id;
	} else
		q->nunknown++;
	q->wc.valid = false;
	pgr_queue_drop(&q->qc, id);
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

/*
 * The rows the queue's first page holds (read with the lock's row), then
 * a page of PG_WALK_PAGE rows a statement, until fn stops or the rows
 * end.  In a write transaction the row fn stops at is kept whole
 * (pgrows.h): a grant decision's waiter_get() for it costs no round trip.
 * *stop is set when fn stopped.
 */
static int
walk_kept(struct pgstore *q, int64_t lock_id, int64_t *after, int64_t below,
    store_waiter_fn *fn, void *arg, bool *stop)
{
	const struct pgr_queue *c = &q->qc;
	struct wslot w;
	int i;

	*stop = false;
	if (!c->valid || c->lock_id != lock_id || lock_id != q->locked)
		return 0;
	for (i = 0; i < c->n; i++) {
		if (c->row[i].s.id <= *after)
			continue;
		if (c->row[i].s.id >= below) {
			*stop = true;
			return 0;
		}
		w = c->row[i].s;
		*after = w.id;
		if (fn(&w, arg) != 0) {
			*stop = true;
			return 0;
		}
	}
	if (c->complete)
		*stop = true;
	else if (c->upto > *after)
		*after = c->upto;
	return 0;
}

/* Keeps row `row` of a walk's page whole, for waiter_get(). */
static int
keep_stop(struct pgstore *q, const PGresult *r, int row, int64_t lock_id)
{
	struct pgr_qrow qr;
	int rc;

	q->wc.valid = false;
	if ((rc = pgr_qrow(&q->pc, r, row, &qr)) < 0)
		return rc;
	pgr_qrow_whole(&qr, lock_id, q->locked_name, &q->wc.w);
	q->wc.id = qr.s.id;
	q->wc.remote = qr.s.remote;
	q->wc.valid = true;
	return 0;
}

static int
waiters_walk(struct store *st, int64_t lock_id, int64_t after, int64_t below,
    store_waiter_fn *fn, void *arg)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };
	struct wslot w;
	PGresult *r;
	int rc, i, n;
	bool stop;

	if ((rc = lock_row(q, lock_id)) < 0 ||
	    (rc = walk_kept(q, lock_id, &after, below, fn, arg, &stop)) < 0 ||
	    stop)
		return rc;
	do {
		a.n = 0;
		pgc_arg_i64(&a, lock_id);
		pgc_arg_i64(&a, after);
		pgc_arg_i64(&a, below);
		pgc_arg_i64(&a, q->host_id);
		pgc_arg_i64(&a, PG_WALK_PAGE);
		if ((r = pgc_run(&q->pc, S_W_WALK, &a, &rc)) == NULL)
			return rc;
		n = PQntuples(r);
		for (i = 0; i < n; i++) {
			w.id = after = pgc_col_i64(r, i, 0);
			w.pid = (pid_t)pgc_col_i64(r, i, 1);
			w.pstart = (uint64_t)pgc_col_i64(r, i, 2);
			w.deadline = pgc_col_i64(r, i, 3);
			w.remote = pgc_col_bool(r, i, 4);
			w.host_seen = pgc_col_i64(r, i, 5);
			w.wkey = (uint64_t)pgc_col_i64(r, i, 9);
			if (fn(&w, arg) != 0)
				break;
		}
		if (i < n && q->write && lock_id == q->locked &&
		    q->locked_name[0] != '\0')
			rc = keep_stop(q, r, i, lock_id);
		PQclear(r);
	} while (rc == 0 && i == PG_WALK_PAGE);
	return rc;
}

/* Hosts. */

static int
host_beat(struct store *st, int64_t now)
{
	struct pgstore *q = (struct pgstore *)st;
	struct pgc_args a = { 0 };

	pgc_arg_i64(&a, q->host_id);
	pgc_arg_i64(&a, now);
	return defer_lossy(q, S_HOST_BEAT, &a);
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
	q->flush = true;
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
	rc = pgtx_begin(&q->base, true, &now);
	q->live_clock = live;
	if (rc < 0)
		return rc;
	pgc_arg_txt(&a, q->host_key, -1);
	pgc_arg_txt(&a, name, -1);
	pgc_arg_i64(&a, now);
	q->flush = true;
	if ((rc = pgc_int(&q->pc, S_HOST_ADD, &a, &q->host_id, &found)) == 0 &&
	    !found)
		rc = pgc_fail(&q->pc, "hosts", "no id");
	return pgtx_end(&q->base, rc);
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
	.begin = pgtx_begin,
	.end = pgtx_end,
	.batch_begin = pgtx_batch_begin,
	.batch_end = pgtx_batch_end,
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
	.fence_max = fence_max,
	.holder_state = holder_state,
	.holders_purge = holders_purge,
	.holders_live = holders_live,
	.holder_by_rid = holder_by_rid,
	.holder_by_waiter = holder_by_waiter,
	.holder_grant = holder_grant,
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
	.waiter_look = waiter_look,
	.host_beat = host_beat,
	.waiters_mine = waiters_mine,
	.quota_count = quota_count,
	.list = list,
	.sweep_range = sweep_range,
	.sweep_expired = sweep_expired,
	.sweep_idle = sweep_idle,
};
