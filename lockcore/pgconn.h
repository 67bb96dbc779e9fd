/*
 * pgconn: one connection to PostgreSQL for lockcore's store (store_pg.c),
 * on which nothing waits past a deadline.  Connecting is asynchronous
 * (libpq's connect_timeout cannot go below 2 s); every exchange is sent
 * and its results read with poll() against the connection's timeout; a
 * connection that misses its deadline, breaks, or finds the server
 * shutting down, starting or read-only is closed, so the server rolls back
 * its transaction and the next pgc_connect() starts afresh.  Statements
 * come from the caller's table, each prepared on the connection when
 * first used; parameters and results are binary.
 */
#ifndef HTTPLOCK_PGCONN_H
#define HTTPLOCK_PGCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#define PGC_PARAMS_MAX 12
#define PGC_PENDING_MAX 32

/* What a queued statement's result is given to (pgc_queue). */
typedef void pgc_result_fn(void *arg, const PGresult *r);

struct pgc_pending {
	int            id;        /* the statement, -1 for SQL text */
	bool           prepare;   /* its PREPARE, not its execution */
	pgc_result_fn *fn;
	void          *arg;
};

struct pgconn {
	PGconn            *conn;      /* NULL while not connected */
	const char        *conninfo;  /* the caller's, a libpq URI */
	int                timeout_ms;
	const char *const *sqltab;    /* the statements, by id */
	bool              *prepared;  /* nstmt flags: prepared on conn */
	int                nstmt;
	char              *err;       /* the last error, errlen bytes */
	size_t             errlen;
	int64_t            retry_at;  /* no connection attempt before this
	                                 (monotonic ms) */
	int64_t            backoff_ms;
	struct pgc_pending pend[PGC_PENDING_MAX];  /* sent, results unread */
	int                npend;
	bool               ended;     /* the last pgc_sync() found the
	                                 connection ended by the server (not
	                                 a missed deadline), and closed it */
};

/* Parameters of one statement, all sent in binary. */
struct pgc_args {
	int         n;
	const char *v[PGC_PARAMS_MAX];
	int         len[PGC_PARAMS_MAX];
	int         fmt[PGC_PARAMS_MAX];
	char        buf[PGC_PARAMS_MAX][8];
};

/* Appends a parameter: int8, bool, text (len < 0: strlen; NULL: SQL
 * NULL), a text-format literal (an array), bytea, or NULL. */
void pgc_arg_i64(struct pgc_args *a, int64_t x);
void pgc_arg_bool(struct pgc_args *a, bool x);
void pgc_arg_txt(struct pgc_args *a, const char *s, int len);
void pgc_arg_str(struct pgc_args *a, const char *s);
void pgc_arg_blob(struct pgc_args *a, const void *p, size_t n);
void pgc_arg_null(struct pgc_args *a);

/* Columns of a binary result; NULL reads as 0, false or "".
 * pgc_col_txt() fails (LC_E_DB) on a string that does not fit dst[size];
 * pgc_col_blob() is false unless the value has exactly n bytes. */
int64_t pgc_col_i64(const PGresult *r, int row, int col);
bool pgc_col_bool(const PGresult *r, int row, int col);
int pgc_col_txt(struct pgconn *q, const PGresult *r, int row, int col,
    char *dst, size_t size);
bool pgc_col_blob(const PGresult *r, int row, int col, void *dst, size_t n);

/* Connects (closing what was open) and sets the session up, within
 * timeout_ms; after a failure, fails at once for a backoff.  0 or LC_E_DB
 * with the reason in q->err. */
int pgc_connect(struct pgconn *q);
/* Closes the connection, if open. */
void pgc_close(struct pgconn *q);
/* Notes "PostgreSQL: what: msg" as the error; returns LC_E_DB. */
int pgc_fail(struct pgconn *q, const char *what, const char *msg);

/*
 * Pipelining.  The connection is in libpq's pipeline mode: pgc_queue()
 * sends statement `id` of the table with args a (NULL: none; copied
 * before it returns) without waiting, pgc_queue_sql() SQL text without
 * parameters; their results are read at the next pgc_sync(), in one
 * round trip, each given to fn (may be NULL).  pgc_sync() gives the last
 * statement's result to *out (may be NULL; the caller clears it).  The
 * first error is the call's: LC_E_INVAL for text the server cannot store,
 * else LC_E_DB.  pgc_run() is a queue and a sync: that statement's result,
 * or NULL with *rc set.
 */
int pgc_queue(struct pgconn *q, int id, const struct pgc_args *a,
    pgc_result_fn *fn, void *arg);
int pgc_queue_sql(struct pgconn *q, const char *sql, pgc_result_fn *fn,
    void *arg);
int pgc_sync(struct pgconn *q, const char *what, PGresult **out);
/* Has the server send the results of what is queued so far as soon as
 * they are ready, not at the next Sync (which a later statement in the
 * same round trip may hold back). */
int pgc_flush_request(struct pgconn *q);
PGresult *pgc_run(struct pgconn *q, int id, const struct pgc_args *a,
    int *rc);
/* Runs SQL text (several statements allowed) outside the pipeline: the
 * last statement's result. */
PGresult *pgc_sql(struct pgconn *q, const char *what, const char *sql,
    int *rc);
/* Runs a statement for its effect (*n: the rows it changed, may be
 * NULL), or for one int8 (*v, 0 if no row; *found may be NULL). */
int pgc_exec(struct pgconn *q, int id, const struct pgc_args *a, int *n);
int pgc_int(struct pgconn *q, int id, const struct pgc_args *a, int64_t *v,
    bool *found);

#endif /* HTTPLOCK_PGCONN_H */
