/*
 * pgtx.c: the transactions of lockcore's PostgreSQL store (store_pg.c
 * says how they run; pgstore.h).
 */
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include "clock.h"
#include "pgstore.h"

static void
read_clock(void *arg, const PGresult *r)
{
	struct pgstore *q = arg;

	if (PQntuples(r) == 1 && q->now_out != NULL) {
		*q->now_out = pgc_col_i64(r, 0, 0);
		note_clock(q, *q->now_out);
	}
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
 * which a look at the socket, without waiting, tells: the end of the
 * stream (POLLRDHUP), or what libpq makes of the message.
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
	pfd.events = POLLIN | POLLRDHUP;
	if (pfd.fd < 0)
		return false;
	if (poll(&pfd, 1, 0) == 0)
		return true;
	if (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
		return false;
	return PQconsumeInput(q->pc.conn) && PQstatus(q->pc.conn) ==
	    CONNECTION_OK;
}

/* What a transaction knows of its lock: nothing yet. */
static void
tx_forget(struct pgstore *q)
{
	q->locked = 0;
	q->locked_name[0] = '\0';
	q->nwait0 = 0;
	q->insert_lost = false;
	q->flush = false;
	q->returning = NULL;
	q->hc.valid = false;
	q->qc.valid = false;
	q->wc.valid = false;
	q->wake_lock = 0;
	q->kick = 0;
	q->ndel = 0;
	q->nunknown = 0;
}

/*
 * BEGIN goes with the transaction's first statement, unless the server's
 * clock is wanted now (a live clock and a `now` to set): then BEGIN and
 * the clock take one round trip here.  With a NULL `now` the clock comes
 * with the lock's row (lock_state).  A connection idle for
 * PG_IDLE_CHECK_MS is tried with the BEGIN alone first: a server that
 * restarted meanwhile closed it, which a look at its socket (conn_fit)
 * does not always show yet.  A connection found broken here is replaced
 * once: nothing of the transaction was done on it; so is one that the
 * first round trip of a transaction begun without a sync finds broken
 * (pgtx_again).
 */
int
pgtx_begin(struct store *st, bool write, int64_t *now)
{
	struct pgstore *q = (struct pgstore *)st;
	int rc, tries;
	bool check;

	q->implicit = false;
	q->fresh = false;
	tx_forget(q);
	q->write = write;
	q->clock_due = now == NULL && q->live_clock;
	q->now_out = now;
	if (q->batch) {
		if (q->batch_failed || q->pc.conn == NULL)
			return LC_E_DB;
		if ((rc = pgc_queue_sql(&q->pc, "SAVEPOINT op", NULL,
		    NULL)) == 0 && q->live_clock && now != NULL &&
		    ((rc = pgc_queue(&q->pc, S_CLOCK, NULL, read_clock,
		    q)) < 0 || (rc = pgc_sync(&q->pc, "begin", NULL)) < 0))
			q->batch_failed = true;
		if (rc < 0)
			return LC_E_DB;
		q->in_tx = true;
		return 0;
	}
	check = (q->live_clock && now != NULL) ||
	    clock_mono_ms() - q->used_at >= PG_IDLE_CHECK_MS;
	/* A read begun without a clock is a waiter's look, one statement
	 * (waiter_look in store.h): its own snapshot, in the implicit
	 * transaction that its Sync ends. */
	q->implicit = !write && now == NULL && !check;
	q->fresh = now == NULL && !check;
	for (tries = 0; tries < 2; tries++) {
		if (!conn_fit(q) && (rc = pgc_connect(&q->pc)) < 0)
			return rc;
		if (q->implicit) {
			q->in_tx = true;
			return 0;
		}
		rc = pgc_queue(&q->pc, write ? S_BEGIN : S_BEGIN_RO, NULL,
		    NULL, NULL);
		if (rc == 0 && q->live_clock && now != NULL)
			rc = pgc_queue(&q->pc, S_CLOCK, NULL, read_clock, q);
		if (rc == 0 && check)
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

int
pgtx_again(struct pgstore *q)
{
	if (!q->pc.ended || q->pc.conn != NULL || !q->in_tx || q->batch)
		return -1;
	tx_forget(q);
	if (pgc_connect(&q->pc) < 0)
		return -1;
	if (!q->implicit && pgc_queue(&q->pc, q->write ? S_BEGIN :
	    S_BEGIN_RO, NULL, NULL, NULL) < 0)
		return -1;
	return 0;
}

/*
 * Waking across hosts.  A transaction that freed room in a lock (deleted
 * a holder, or a waiter row, which may have been ahead of others) tells
 * the other hosts when it commits, if the lock has a waiter on one of
 * them: NOTIFY httplock, "<our host id> <waiter id> <lock key in hex>",
 * where the waiter id is that of another host's row it deleted (a
 * cancelled waiter, or one granted by a handoff), to be woken by its id,
 * or 0.  Each host's coordinator listens (coord/pglisten.c) and wakes its
 * waiters of that lock as a local release would.  The NOTIFY is a
 * transaction of its own after the COMMIT: a notifying commit takes a
 * database-wide lock until its WAL is flushed, which in the lock's own
 * transaction would serialise every commit that wakes, and its trouble
 * must not make a committed call look failed.  It goes in the COMMIT's
 * round trip when whom to tell is known before (every waiter row deleted
 * was read by a walk: a handoff), behind a flush request that has the
 * server send the COMMIT's answer first; else in a round trip of its own
 * once the COMMIT has answered.  Notifications are not durable (a
 * dropped connection or a failover loses them): waiters then find their
 * turn by their own timers and polls, as they do without a coordinator.
 * (S_PUBLISH, pgschema.c.)
 */
/*
 * Whether a committed transaction tells the other hosts: not unless it
 * deleted another host's row (granted by a handoff, or cancelled) or
 * freed room in a lock that had waiter rows when it took it (whoever
 * queues after it sees it free).  Also when it granted the lock again to
 * a waiter of its own: the other hosts' waiters then look, and learn
 * when the new lease ends, which their timers wait for.
 */
static bool
must_tell(const struct pgstore *q)
{
	return q->write && q->wake_lock != 0 && q->host_id != 0 &&
	    (q->kick != 0 || q->wake_lock != q->nwait0);
}

/* Queues the NOTIFY (S_PUBLISH); its failure (a full notify queue, a lost
 * connection) costs only the wake, never the committed call, and is logged
 * by no one: the waiters' timers and polls cover it. */
static int
queue_tell(struct pgstore *q)
{
	struct pgc_args a = { 0 };

	pgc_arg_i64(&a, q->host_id);
	pgc_arg_i64(&a, q->kick);
	pgc_arg_i64(&a, q->wake_lock);
	return pgc_queue(&q->pc, S_PUBLISH, &a, NULL, NULL);
}

static void
read_status(void *arg, const PGresult *r)
{
	(void)snprintf(arg, 16, "%s", PQcmdStatus((PGresult *)r));
}

int
pgtx_end(struct store *st, int rc)
{
	struct pgstore *q = (struct pgstore *)st;
	char status[16] = "", keep[STORE_ERR_LEN];
	int erc;
	bool early;

	if (!q->in_tx)
		return rc < 0 ? rc : LC_E_DB;
	q->in_tx = false;
	q->locked = 0;
	q->used_at = clock_mono_ms();
	if (q->implicit) {
		q->implicit = false;
		erc = q->pc.npend > 0 ? pgc_sync(&q->pc, "read", NULL) : 0;
		return rc < 0 ? rc : erc < 0 ? erc : rc;
	}
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
	/* Whom to tell may be known already (every waiter row deleted was
	 * one a walk read): then the NOTIFY goes right after the COMMIT, in
	 * its round trip. */
	early = q->nunknown == 0 && must_tell(q);
	/* A commit whose answer is lost may or may not have happened:
	 * LC_E_DB, never a definite "not done". */
	erc = 0;
	if (q->write && !q->flush)
		erc = pgc_queue(&q->pc, S_NO_FLUSH, NULL, NULL, NULL);
	/* The COMMIT's answer is flushed before the NOTIFY runs: a NOTIFY
	 * that waits (for the database-wide notify lock) or fails cannot
	 * make a committed call look failed. */
	if (erc == 0 && (erc = pgc_queue(&q->pc, S_COMMIT, NULL, read_status,
	    status)) == 0 && early && (erc = pgc_flush_request(&q->pc)) == 0)
		erc = queue_tell(q);
	if (erc == 0)
		erc = pgc_sync(&q->pc, "commit", NULL);
	q->ndel = 0;
	q->nunknown = 0;
	/* Committed, whatever became of a NOTIFY after it. */
	if (strcmp(status, "COMMIT") == 0) {
		if (q->insert_lost)
			return pgc_fail(&q->pc, "insert", "lock row vanished");
		if (!early && must_tell(q)) {
			(void)memcpy(keep, q->base.err, sizeof(keep));
			if (queue_tell(q) == 0)
				(void)pgc_sync(&q->pc, "notify", NULL);
			(void)memcpy(q->base.err, keep, sizeof(keep));
		}
		return rc;
	}
	if (erc < 0) {
		abort_tx(q);
		return erc;
	}
	/* A COMMIT of a transaction that failed is answered ROLLBACK. */
	return pgc_fail(&q->pc, "commit", "rolled back");
}

int
pgtx_batch_begin(struct store *st)
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

int
pgtx_batch_end(struct store *st, int rc)
{
	struct pgstore *q = (struct pgstore *)st;
	char status[16] = "";
	int erc;

	if (!q->batch)
		return LC_E_INVAL;
	q->batch = false;
	if (q->in_tx)
		(void)pgtx_end(st, LC_E_DB);
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

