/*
 * pgconn.c: a PostgreSQL connection with deadlines (pgconn.h).
 */
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "lockcore.h"
#include "pgconn.h"

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000


void
pgc_arg_i64(struct pgc_args *a, int64_t x)
{
	uint64_t be = htobe64((uint64_t)x);

	memcpy(a->buf[a->n], &be, 8);
	a->v[a->n] = a->buf[a->n];
	a->len[a->n] = 8;
	a->fmt[a->n++] = 1;
}

void
pgc_arg_bool(struct pgc_args *a, bool x)
{
	a->buf[a->n][0] = x ? 1 : 0;
	a->v[a->n] = a->buf[a->n];
	a->len[a->n] = 1;
	a->fmt[a->n++] = 1;
}

/* Text (or NULL), sent as its bytes; len < 0: strlen. */
void
pgc_arg_txt(struct pgc_args *a, const char *s, int len)
{
	a->v[a->n] = s;
	a->len[a->n] = s == NULL ? 0 : len < 0 ? (int)strlen(s) : len;
	a->fmt[a->n++] = 1;
}

/* Text in the text format: an array literal. */
void
pgc_arg_str(struct pgc_args *a, const char *s)
{
	a->v[a->n] = s;
	a->len[a->n] = 0;
	a->fmt[a->n++] = 0;
}

void
pgc_arg_blob(struct pgc_args *a, const void *p, size_t n)
{
	a->v[a->n] = p;
	a->len[a->n] = (int)n;
	a->fmt[a->n++] = 1;
}

void
pgc_arg_null(struct pgc_args *a)
{
	a->v[a->n] = NULL;
	a->len[a->n] = 0;
	a->fmt[a->n++] = 1;
}

/* Columns of a binary result; NULL reads as 0 or false. */
int64_t
pgc_col_i64(const PGresult *r, int row, int col)
{
	uint64_t be;

	if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8)
		return 0;
	memcpy(&be, PQgetvalue(r, row, col), 8);
	return (int64_t)be64toh(be);
}

bool
pgc_col_bool(const PGresult *r, int row, int col)
{
	return !PQgetisnull(r, row, col) && PQgetlength(r, row, col) == 1 &&
	    PQgetvalue(r, row, col)[0] != 0;
}

/* Copies a text column into dst[size]; LC_E_DB if it does not fit. */
int
pgc_col_txt(struct pgconn *q, const PGresult *r, int row, int col, char *dst,
    size_t size)
{
	int n = PQgetlength(r, row, col);

	if (PQgetisnull(r, row, col)) {
		dst[0] = '\0';
		return 0;
	}
	if (n < 0 || (size_t)n >= size) {
		(void)snprintf(q->err, q->errlen,
		    "a stored string is too long");
		return LC_E_DB;
	}
	memcpy(dst, PQgetvalue(r, row, col), (size_t)n);
	dst[n] = '\0';
	return 0;
}

/* Copies a bytea column of exactly n bytes; false if NULL or not n. */
bool
pgc_col_blob(const PGresult *r, int row, int col, void *dst, size_t n)
{
	if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != (int)n)
		return false;
	memcpy(dst, PQgetvalue(r, row, col), n);
	return true;
}

void
pgc_close(struct pgconn *q)
{
	if (q->conn != NULL)
		PQfinish(q->conn);
	q->conn = NULL;
	memset(q->prepared, 0, (size_t)q->nstmt * sizeof(q->prepared[0]));
	q->npend = 0;
}

int
pgc_fail(struct pgconn *q, const char *what, const char *msg)
{
	size_t n;

	(void)snprintf(q->err, q->errlen, "PostgreSQL: %s: %s",
	    what, msg != NULL && msg[0] != '\0' ? msg : "failed");
	/* libpq's messages end in a newline. */
	n = strlen(q->err);
	while (n > 0 && q->err[n - 1] == '\n')
		q->err[--n] = '\0';
	return LC_E_DB;
}

/* Drops the connection after a failure that leaves it unusable. */
static int
conn_fail(struct pgconn *q, const char *what)
{
	int rc = pgc_fail(q, what, q->conn != NULL ? PQerrorMessage(q->conn) :
	    "not connected");

	pgc_close(q);
	return rc;
}

/*
 * Waits until the socket is ready for `events` or the deadline (monotonic
 * ms) passes: 1 ready, 0 timed out, -1 error.
 */
static int
wait_sock(struct pgconn *q, short events, int64_t deadline)
{
	struct pollfd pfd;
	int64_t left;
	int n;

	pfd.fd = PQsocket(q->conn);
	pfd.events = events;
	if (pfd.fd < 0)
		return -1;
	for (;;) {
		left = deadline - clock_mono_ms();
		if (left <= 0)
			return 0;
		n = poll(&pfd, 1, left > 1000 ? 1000 : (int)left);
		if (n > 0)
			return 1;
		if (n < 0 && errno != EINTR)
			return -1;
	}
}

static void
ignore_notice(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

/*
 * Connects within the timeout and sets the session up: search path,
 * timeouts on the server, synchronous commits.  Session settings go
 * after the caller's connection string, so they are ours whatever it
 * says; target_session_attrs=read-write goes before, as a default it may
 * override.
 */
static int
connect_once(struct pgconn *q)
{
	static const char setup_sql[] =
	    "SET search_path TO httplock;"
	    "SET synchronous_commit TO on;"
	    "SET client_encoding TO 'UTF8';"
	    "SET lock_timeout TO %d;"
	    "SET statement_timeout TO %d;"
	    "SET idle_in_transaction_session_timeout TO %d;"
	    /* Every statement finds its rows by a plain index scan.  The
	     * generic plan a prepared statement gets, made while a table is
	     * small, would otherwise scan it whole, for ever, through every
	     * dead version that each grant's insert and delete leaves until
	     * autovacuum; and only a plain index scan marks the dead entries
	     * it meets, so that the next one skips them. */
	    "SET enable_seqscan TO off;"
	    "SET enable_bitmapscan TO off;";
	const char *keys[] = { "target_session_attrs", "connect_timeout",
	    "application_name", "keepalives", "keepalives_idle",
	    "keepalives_interval", "keepalives_count", "dbname", NULL };
	const char *vals[] = { "read-write", "2", "httplock", "1", "5", "1",
	    "3", q->conninfo, NULL };
	char sql[sizeof(setup_sql) + 64];
	int64_t deadline = clock_mono_ms() + q->timeout_ms;
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	PGresult *r;
	int w, rc = 0;

	pgc_close(q);
	if ((q->conn = PQconnectStartParams(keys, vals, 1)) == NULL)
		return pgc_fail(q, "connect", "out of memory");
	if (PQstatus(q->conn) == CONNECTION_BAD)
		return conn_fail(q, "connect");
	while (st != PGRES_POLLING_OK) {
		if (st == PGRES_POLLING_FAILED)
			return conn_fail(q, "connect");
		w = wait_sock(q, st == PGRES_POLLING_READING ? POLLIN :
		    POLLOUT, deadline);
		if (w == 0) {
			pgc_close(q);
			return pgc_fail(q, "connect", "timed out");
		}
		if (w < 0)
			return conn_fail(q, "connect");
		st = PQconnectPoll(q->conn);
	}
	if (PQsetnonblocking(q->conn, 1) != 0)
		return conn_fail(q, "connect");
	/* Notices ("already exists, skipping") are not errors. */
	(void)PQsetNoticeProcessor(q->conn, ignore_notice, NULL);
	/* A wait for a lock row ends before the exchange's deadline, so the
	 * server says why; a transaction left open by a process that hangs
	 * is rolled back, and its row locks freed, soon after. */
	(void)snprintf(sql, sizeof(sql), setup_sql, q->timeout_ms / 2,
	    q->timeout_ms, q->timeout_ms * 2 + 1000);
	if (!PQsendQuery(q->conn, sql))
		return conn_fail(q, "set-up");
	/* The results, read as any exchange (below). */
	for (;;) {
		while (PQisBusy(q->conn)) {
			if (PQflush(q->conn) < 0 ||
			    wait_sock(q, POLLIN, deadline) != 1 ||
			    !PQconsumeInput(q->conn))
				return conn_fail(q, "set-up");
		}
		if ((r = PQgetResult(q->conn)) == NULL)
			break;
		if (PQresultStatus(r) != PGRES_COMMAND_OK && rc == 0)
			rc = pgc_fail(q, "set-up", PQresultErrorField(r,
			    PG_DIAG_MESSAGE_PRIMARY));
		PQclear(r);
	}
	if (rc == 0 && !PQenterPipelineMode(q->conn))
		rc = pgc_fail(q, "set-up", "pipeline mode");
	if (rc < 0)
		pgc_close(q);
	return rc;
}

/*
 * After a failed attempt, the next is not made before a backoff (from
 * BACKOFF_MIN_MS doubling to BACKOFF_MAX_MS): meanwhile every call fails
 * at once with the last attempt's error, so requests get their 503 fast
 * and a server that comes back is not met by every thread at once.
 */
int
pgc_connect(struct pgconn *q)
{
	int64_t now = clock_mono_ms();
	int rc;

	if (now < q->retry_at) {
		if (q->conn != NULL)
			pgc_close(q);
		return LC_E_DB;            /* q->err still says why */
	}
	if ((rc = connect_once(q)) == 0) {
		q->backoff_ms = 0;
		q->retry_at = 0;
		return 0;
	}
	q->backoff_ms = q->backoff_ms == 0 ? BACKOFF_MIN_MS :
	    q->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS :
	    q->backoff_ms * 2;
	q->retry_at = clock_mono_ms() + q->backoff_ms;
	return rc;
}

/* Connection-level trouble: the server went away, is shutting down or
 * starting, or is read-only (a standby). */
static bool
sqlstate_drops(const char *state)
{
	return state == NULL || strncmp(state, "08", 2) == 0 ||
	    strncmp(state, "57P", 3) == 0 || strcmp(state, "25006") == 0 ||
	    strcmp(state, "53300") == 0;
}

/* The next result, read up to the deadline; NULL when a query's results
 * end, or with *broken set when the connection failed or timed out. */
static PGresult *
next_result(struct pgconn *q, int64_t deadline, bool *broken)
{
	while (PQisBusy(q->conn)) {
		if (wait_sock(q, POLLIN, deadline) != 1 ||
		    !PQconsumeInput(q->conn)) {
			*broken = true;
			return NULL;
		}
	}
	return PQgetResult(q->conn);
}

/* Notes the error of result r as the call's (the first one counts). */
static int
result_error(struct pgconn *q, const char *what, const PGresult *r,
    bool *drop)
{
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	int rc = pgc_fail(q, what, PQresultErrorField(r,
	    PG_DIAG_MESSAGE_PRIMARY));

	/* Not UTF-8, or a character PostgreSQL cannot store. */
	if (state != NULL && (strcmp(state, "22021") == 0 ||
	    strcmp(state, "22P05") == 0))
		rc = LC_E_INVAL;
	if (sqlstate_drops(state))
		*drop = true;
	return rc;
}

/* Queues one more expected result. */
static int
pend(struct pgconn *q, int id, bool prepare, pgc_result_fn *fn, void *arg)
{
	struct pgc_pending *p = &q->pend[q->npend++];

	p->id = id;
	p->prepare = prepare;
	p->fn = fn;
	p->arg = arg;
	return 0;
}

int
pgc_queue(struct pgconn *q, int id, const struct pgc_args *a,
    pgc_result_fn *fn, void *arg)
{
	char name[16];
	int rc;

	if (q->conn == NULL)
		return pgc_fail(q, "query", "not connected");
	if (q->npend + 2 > PGC_PENDING_MAX &&
	    (rc = pgc_sync(q, "query", NULL)) < 0)
		return rc;
	(void)snprintf(name, sizeof(name), "hl%d", id);
	if (!q->prepared[id]) {
		if (!PQsendPrepare(q->conn, name, q->sqltab[id], 0, NULL))
			return conn_fail(q, "prepare");
		q->prepared[id] = true;
		(void)pend(q, id, true, NULL, NULL);
	}
	if (!PQsendQueryPrepared(q->conn, name, a != NULL ? a->n : 0,
	    a != NULL ? a->v : NULL, a != NULL ? a->len : NULL,
	    a != NULL ? a->fmt : NULL, 1))
		return conn_fail(q, "query");
	return pend(q, id, false, fn, arg);
}

int
pgc_queue_sql(struct pgconn *q, const char *sql, pgc_result_fn *fn,
    void *arg)
{
	int rc;

	if (q->conn == NULL)
		return pgc_fail(q, "query", "not connected");
	if (q->npend + 1 > PGC_PENDING_MAX &&
	    (rc = pgc_sync(q, "query", NULL)) < 0)
		return rc;
	if (!PQsendQueryParams(q->conn, sql, 0, NULL, NULL, NULL, NULL, 1))
		return conn_fail(q, "query");
	return pend(q, -1, false, fn, arg);
}

int
pgc_flush_request(struct pgconn *q)
{
	if (q->conn == NULL)
		return pgc_fail(q, "flush", "not connected");
	if (!PQsendFlushRequest(q->conn))
		return conn_fail(q, "flush");
	return 0;
}

/*
 * Sends what is queued with a Sync and reads every result: each queued
 * statement's goes to its callback; the last one's, with `out`, to the
 * caller (who clears it).  The first error is the call's: the server
 * skipped what followed it (PGRES_PIPELINE_ABORTED), and the transaction
 * is aborted.  A statement that failed to prepare is prepared again when
 * next queued.
 */
int
pgc_sync(struct pgconn *q, const char *what, PGresult **out)
{
	int64_t deadline = clock_mono_ms() + q->timeout_ms;
	PGresult *r, *keep = NULL, *x;
	ExecStatusType es;
	bool broken = false, drop = false;
	int i, f, rc = 0;

	if (out != NULL)
		*out = NULL;
	q->ended = false;
	if (q->conn == NULL)
		return pgc_fail(q, what, "not connected");
	if (q->npend == 0)
		return 0;
	if (!PQpipelineSync(q->conn))
		return conn_fail(q, what);
	while ((f = PQflush(q->conn)) > 0)
		if (wait_sock(q, POLLIN | POLLOUT, deadline) != 1 ||
		    !PQconsumeInput(q->conn))
			goto broken;
	if (f < 0)
		goto broken;
	for (i = 0; i < q->npend; i++) {
		struct pgc_pending *p = &q->pend[i];

		if ((r = next_result(q, deadline, &broken)) == NULL)
			goto broken;
		es = PQresultStatus(r);
		if (es == PGRES_COMMAND_OK || es == PGRES_TUPLES_OK) {
			if (p->fn != NULL)
				p->fn(p->arg, r);
		} else {
			if (p->prepare)
				q->prepared[p->id] = false;
			if (rc == 0 && es != PGRES_PIPELINE_ABORTED)
				rc = result_error(q, what, r, &drop);
			else if (rc == 0)
				rc = pgc_fail(q, what, "aborted");
		}
		if (i == q->npend - 1 && out != NULL && rc == 0)
			keep = r;
		else
			PQclear(r);
		/* The end of this statement's results. */
		while ((x = next_result(q, deadline, &broken)) != NULL)
			PQclear(x);
		if (broken)
			goto broken;
	}
	q->npend = 0;
	/* The Sync's own result. */
	do {
		if ((r = next_result(q, deadline, &broken)) == NULL && broken)
			goto broken;
		es = r != NULL ? PQresultStatus(r) : PGRES_PIPELINE_SYNC;
		PQclear(r);
	} while (es != PGRES_PIPELINE_SYNC);
	if (drop) {
		pgc_close(q);
		q->ended = true;
	}
	if (rc < 0) {
		PQclear(keep);
		return rc;
	}
	if (out != NULL)
		*out = keep;
	return 0;
broken:
	PQclear(keep);
	q->npend = 0;
	if (clock_mono_ms() >= deadline) {
		pgc_close(q);
		return pgc_fail(q, what, "timed out");
	}
	q->ended = true;
	return conn_fail(q, what);
}

PGresult *
pgc_run(struct pgconn *q, int id, const struct pgc_args *a, int *rc)
{
	PGresult *r;

	if ((*rc = pgc_queue(q, id, a, NULL, NULL)) < 0 ||
	    (*rc = pgc_sync(q, "query", &r)) < 0)
		return NULL;
	return r;
}

/*
 * Runs SQL text with no parameters, several statements allowed, outside
 * pipeline mode (the schema's set-up): the last statement's result.
 */
PGresult *
pgc_sql(struct pgconn *q, const char *what, const char *sql, int *rc)
{
	int64_t deadline = clock_mono_ms() + q->timeout_ms;
	PGresult *r, *keep = NULL;
	ExecStatusType es;
	bool broken = false, drop = false;

	*rc = 0;
	if (q->conn == NULL) {
		*rc = pgc_fail(q, what, "not connected");
		return NULL;
	}
	if (PQpipelineStatus(q->conn) != PQ_PIPELINE_OFF &&
	    (q->npend != 0 || !PQexitPipelineMode(q->conn))) {
		*rc = pgc_fail(q, what, "results pending");
		return NULL;
	}
	if (!PQsendQuery(q->conn, sql)) {
		*rc = conn_fail(q, what);
		return NULL;
	}
	while (!broken && PQflush(q->conn) > 0)
		if (wait_sock(q, POLLIN | POLLOUT, deadline) != 1 ||
		    !PQconsumeInput(q->conn))
			broken = true;
	while (!broken && (r = next_result(q, deadline, &broken)) != NULL) {
		es = PQresultStatus(r);
		if (*rc == 0 && (es == PGRES_COMMAND_OK ||
		    es == PGRES_TUPLES_OK)) {
			PQclear(keep);
			keep = r;
			continue;
		}
		if (*rc == 0)
			*rc = result_error(q, what, r, &drop);
		PQclear(r);
	}
	if (broken) {
		PQclear(keep);
		if (clock_mono_ms() >= deadline) {
			pgc_close(q);
			*rc = pgc_fail(q, what, "timed out");
		} else
			*rc = conn_fail(q, what);
		return NULL;
	}
	if (drop || !PQenterPipelineMode(q->conn)) {
		PQclear(keep);
		pgc_close(q);
		if (*rc == 0)
			*rc = pgc_fail(q, what, "pipeline mode");
		return NULL;
	}
	if (*rc < 0) {
		PQclear(keep);
		return NULL;
	}
	if (keep == NULL)
		*rc = pgc_fail(q, what, "no result");
	return keep;
}

/* Statement helpers: run and drop the result; one row's int8. */
int
pgc_exec(struct pgconn *q, int id, const struct pgc_args *a, int *n)
{
	PGresult *r;
	int rc;

	if ((r = pgc_run(q, id, a, &rc)) == NULL)
		return rc;
	if (n != NULL)
		*n = atoi(PQcmdTuples(r));
	PQclear(r);
	return 0;
}

int
pgc_int(struct pgconn *q, int id, const struct pgc_args *a, int64_t *v,
    bool *found)
{
	PGresult *r;
	int rc;

	*v = 0;
	if ((r = pgc_run(q, id, a, &rc)) == NULL)
		return rc;
	if (found != NULL)
		*found = PQntuples(r) > 0;
	if (PQntuples(r) > 0)
		*v = pgc_col_i64(r, 0, 0);
	PQclear(r);
	return 0;
}

