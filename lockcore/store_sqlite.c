/*
 * store_sqlite.c: lockcore's store (store.h) on one SQLite database file.
 *
 * One lock is a row of `locks`; a grant is a row of `holders`; a request
 * waiting for a lock is a row of `waiters`, and waiter ids (AUTOINCREMENT,
 * so they only grow) define the FIFO order.  Every write transaction is
 * BEGIN IMMEDIATE, so the database serialises all writers of all
 * processes; inside a batch each transaction is a savepoint.
 *
 * Statements are prepared once per connection from the table `sq_sql`
 * (sqlite_sql.c) and reset (with their bindings cleared) after every
 * use.  This file also keeps the busy handler, the WAL hook and the
 * checkpoints it triggers, and opens the file (WAL mode, synchronous
 * mode; its permissions and schema: sqlite_file.c).
 */
#include <sys/types.h>

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "clock.h"
#include "sqlite_file.h"
#include "sqlite_sql.h"
#include "store.h"

#define BUSY_DEFAULT_MS  5000
#define BUSY_YIELDS      4      /* sched_yield() this often before sleeping */
#define BUSY_SLEEP_MIN   20     /* first sleep in the busy handler, µs */
#define BUSY_SLEEP_MAX   1000   /* longest sleep in the busy handler, µs */
#define CKPT_FRAMES      1000   /* checkpoint when the WAL has this many
                                   frames (SQLite's own default) */
#define CKPT_WAIT_MS     20     /* longest wait of one checkpoint */
#define WAL_LIMIT        (8 * 1024 * 1024)  /* journal_size_limit, bytes:
                                   twice what CKPT_FRAMES frames take */


/* A batch member's statements: each member's calls run in a savepoint,
 * released when they succeed and rolled back to when they fail. */
enum { SP_OPEN, SP_RELEASE, SP_UNDO, SP_COUNT };

struct sqstore {
	struct store     base;             /* first: a struct store * is us */
	sqlite3         *db;
	sqlite3_stmt    *st[S_COUNT];
	int              busy_ms;          /* give up waiting after this */
	int              live_clock;       /* read the time after BEGIN */
	bool             clock_due;        /* ... in lock_state() (begin(NULL)) */
	int              sync_full;        /* opened with synchronous=FULL */
	struct timespec  busy_t0;          /* when the current wait began */
	int              wal_frames;       /* WAL frames after our last commit */
	int              ckpt_at;          /* checkpoint when wal_frames gets here */
	bool             batch;            /* in batch_begin() */
	bool             batch_failed;     /* a savepoint could not be undone
	                                      or released: roll back at end */
	sqlite3_stmt    *sp[SP_COUNT];     /* a batch member's savepoint */
};

static const struct store_ops sqlite_ops;

/* Records the connection's error message and maps rc to an LC_E_ code. */
static int
dbfail(struct sqstore *q, int rc)
{
	(void)snprintf(q->base.err, sizeof(q->base.err), "%s",
	    sqlite3_errmsg(q->db));
	return (rc & 0xff) == SQLITE_NOMEM ? LC_E_NOMEM : LC_E_DB;
}

/* Resets `s` and clears its bindings, ready for the next use. */
static void
stmt_reset(sqlite3_stmt *s)
{
	(void)sqlite3_reset(s);
	(void)sqlite3_clear_bindings(s);
}

/* Binds an integer unless an earlier bind failed (*rc != SQLITE_OK). */
static void
bind_i64(sqlite3_stmt *s, int i, int64_t v, int *rc)
{
	if (*rc == SQLITE_OK)
		*rc = sqlite3_bind_int64(s, i, v);
}

/* Binds text, or NULL when v is NULL; v must last until stmt_reset(). */
static void
bind_txt(sqlite3_stmt *s, int i, const char *v, int *rc)
{
	if (*rc != SQLITE_OK)
		return;
	if (v == NULL)
		*rc = sqlite3_bind_null(s, i);
	else
		*rc = sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
}

/* Binds n bytes, or NULL when v is NULL; v must last until stmt_reset(). */
static void
bind_blob(sqlite3_stmt *s, int i, const void *v, size_t n, int *rc)
{
	if (*rc != SQLITE_OK)
		return;
	if (v == NULL)
		*rc = sqlite3_bind_null(s, i);
	else
		*rc = sqlite3_bind_blob(s, i, v, (int)n, SQLITE_STATIC);
}

/*
 * Copies blob column `col` of exactly n bytes into dst: 1 if it did, 0 if
 * the column is NULL or has another size (rows of an older version).
 */
static int
copy_blob(void *dst, size_t n, sqlite3_stmt *s, int col)
{
	const void *b;

	if (sqlite3_column_type(s, col) != SQLITE_BLOB ||
	    (size_t)sqlite3_column_bytes(s, col) != n ||
	    (b = sqlite3_column_blob(s, col)) == NULL)
		return 0;
	memcpy(dst, b, n);
	return 1;
}

/*
 * Steps `s` once after binding returned brc.  Returns 0 with *found telling
 * whether a row came back (read it, then call stmt_reset()), or an LC_E_
 * code.
 */
static int
step_row(struct sqstore *q, sqlite3_stmt *s, int brc, bool *found)
{
	int rc = brc;

	*found = false;
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*found = true;
	else if (rc != SQLITE_DONE)
		return dbfail(q, rc);
	return 0;
}

/* Runs a statement that returns no rows and resets it.  0 or LC_E_. */
static int
stmt_exec(struct sqstore *q, sqlite3_stmt *s, int brc)
{
	int rc = brc;

	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	rc = rc == SQLITE_DONE ? 0 : dbfail(q, rc);
	stmt_reset(s);
	return rc;
}

/* stmt_exec(), then *n (may be NULL) gets the rows it changed. */
static int
stmt_exec_count(struct sqstore *q, sqlite3_stmt *s, int brc, int *n)
{
	int rc = stmt_exec(q, s, brc);

	if (rc == 0 && n != NULL)
		*n = sqlite3_changes(q->db);
	return rc;
}

/* Steps a statement that returns one integer (NULL: 0) into *v. */
static int
stmt_int64(struct sqstore *q, sqlite3_stmt *s, int brc, int64_t *v)
{
	int rc;
	bool found;

	*v = 0;
	rc = step_row(q, s, brc, &found);
	if (rc == 0 && found)
		*v = sqlite3_column_int64(s, 0);
	stmt_reset(s);
	return rc;
}

/*
 * Copies text column `col` into dst (size bytes).  An SQL NULL gives "".
 * LC_E_DB if it does not fit (the data did not come from us), LC_E_NOMEM
 * if SQLite could not convert it.
 */
static int
copy_col(char *dst, size_t size, sqlite3_stmt *s, int col)
{
	const unsigned char *t;
	int n;

	dst[0] = '\0';
	if (sqlite3_column_type(s, col) == SQLITE_NULL)
		return 0;
	t = sqlite3_column_text(s, col);
	if (t == NULL)
		return LC_E_NOMEM;
	n = sqlite3_column_bytes(s, col);
	if (n < 0 || (size_t)n >= size)
		return LC_E_DB;
	memcpy(dst, t, (size_t)n);
	dst[n] = '\0';
	return 0;
}

/* Copies the secrets of a row from columns th_col and seal_col. */
static void
read_secret(sqlite3_stmt *s, int th_col, int seal_col, struct hsecret *sec)
{
	if (!copy_blob(sec->token_hash, SECRET_HASH_LEN, s, th_col))
		memset(sec->token_hash, 0, SECRET_HASH_LEN);  /* no match */
	sec->has_seal = copy_blob(sec->seal, SECRET_SEAL_LEN, s, seal_col);
}

/*
 * SQLite's busy handler.  The default one sleeps in steps of 1-100 ms, and
 * under contention that starved whole processes; here a waiter yields a
 * few times, then sleeps from BUSY_SLEEP_MIN µs doubling up to
 * BUSY_SLEEP_MAX µs, until busy_ms have passed since this wait began
 * (count == 0).  Returns non-zero to retry, 0 to give up with SQLITE_BUSY.
 */
static int
busy_wait(void *arg, int count)
{
	struct sqstore *q = arg;
	struct timespec now, ts;
	int64_t elapsed_us, left_us, sleep_us;

	if (count == 0)
		(void)clock_gettime(CLOCK_MONOTONIC, &q->busy_t0);
	(void)clock_gettime(CLOCK_MONOTONIC, &now);
	elapsed_us = (int64_t)(now.tv_sec - q->busy_t0.tv_sec) * 1000000 +
	    (now.tv_nsec - q->busy_t0.tv_nsec) / 1000;
	left_us = (int64_t)q->busy_ms * 1000 - elapsed_us;
	if (left_us <= 0)
		return 0;
	if (count < BUSY_YIELDS) {
		(void)sched_yield();
		return 1;
	}
	sleep_us = BUSY_SLEEP_MIN;
	if (count - BUSY_YIELDS < 6)
		sleep_us <<= count - BUSY_YIELDS;
	else
		sleep_us = BUSY_SLEEP_MAX;
	if (sleep_us > BUSY_SLEEP_MAX)
		sleep_us = BUSY_SLEEP_MAX;
	if (sleep_us > left_us)
		sleep_us = left_us;
	ts.tv_sec = 0;
	ts.tv_nsec = (long)(sleep_us * 1000);
	(void)nanosleep(&ts, NULL);
	return 1;
}

/*
 * Transactions.  tx_end() commits when rc >= 0 and rolls back otherwise
 * (or when the commit fails); it returns rc, or the commit's error.
 */
static int
tx_begin(struct store *st, bool write, int64_t *now)
{
	struct sqstore *q = (struct sqstore *)st;
	int rc;

	if (q->batch) {
		/* Inside a batch's transaction, each call is a savepoint.
		 * Some errors (I/O, full disk) end the whole transaction:
		 * then nothing more may run in it, or each statement would
		 * commit on its own. */
		if (q->batch_failed || sqlite3_get_autocommit(q->db))
			return LC_E_DB;
		rc = stmt_exec(q, q->sp[SP_OPEN], SQLITE_OK);
	} else
		rc = stmt_exec(q, q->st[write ? S_BEGIN : S_BEGIN_RO],
		    SQLITE_OK);
	/* With a live clock the transaction's time is read once it has the
	 * database: the caller's `now` may predate a wait for the write
	 * lock, and a grant stamped with it would get a shorter lease and an
	 * acquired_at earlier than an older grant's. */
	q->clock_due = rc == 0 && q->live_clock && now == NULL;
	if (rc == 0 && q->live_clock && now != NULL) {
		int64_t t = clock_wall_ms();

		if (t > *now)
			*now = t;
	}
	return rc;
}

/*
 * Checkpoints.  SQLite's automatic checkpoint is PASSIVE: it copies back
 * only the frames no reader still needs and never waits.  With two worker
 * processes committing back to back there is always a newer frame than
 * the one it copied, so the WAL was never fully copied back, never started
 * over from its beginning, and grew by ~100 MB a second while every
 * commit past 1,000 frames retried the checkpoint (and its fsyncs).
 * Instead the wal hook notes the WAL's size after each of our commits and,
 * past CKPT_FRAMES, the connection that committed runs one RESTART
 * checkpoint: it takes the write lock (so no frame is appended meanwhile),
 * copies everything back, and waits for readers to leave the WAL, so the
 * next writer starts the WAL over.  Its waits are capped at CKPT_WAIT_MS
 * because it holds the write lock while it waits; if it cannot finish, the
 * next attempt comes CKPT_FRAMES later.  journal_size_limit then keeps the
 * file itself from staying at the size a long reader once let it reach.
 * Durability is unchanged: the checkpoint syncs the WAL before copying and
 * the database after, as the automatic one does.
 */
static int
wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
	struct sqstore *q = arg;

	(void)db;
	(void)name;
	q->wal_frames = frames;
	return SQLITE_OK;
}

/*
 * Runs after a commit of ours when the WAL is long.  A failure is not the
 * caller's (its commit is done) and is only retried later.
 */
static void
checkpoint(struct sqstore *q)
{
	int rc, busy_ms = q->busy_ms;

	if (q->busy_ms > CKPT_WAIT_MS)
		q->busy_ms = CKPT_WAIT_MS;
	rc = sqlite3_wal_checkpoint_v2(q->db, NULL, SQLITE_CHECKPOINT_RESTART,
	    NULL, NULL);
	q->busy_ms = busy_ms;
	q->ckpt_at = rc == SQLITE_OK ? CKPT_FRAMES :
	    q->wal_frames + CKPT_FRAMES;
}

static int
tx_end(struct store *st, int rc)
{
	struct sqstore *q = (struct sqstore *)st;

	if (q->batch) {
		int crc;

		if (sqlite3_get_autocommit(q->db))
			return rc < 0 ? rc : LC_E_DB;
		/* A call that failed must leave nothing behind: if its
		 * savepoint cannot be undone, or released, the batch's
		 * transaction is no longer trustworthy and is rolled back. */
		if (rc < 0 && stmt_exec(q, q->sp[SP_UNDO], SQLITE_OK) < 0)
			q->batch_failed = true;
		if ((crc = stmt_exec(q, q->sp[SP_RELEASE], SQLITE_OK)) < 0) {
			q->batch_failed = true;
			if (rc >= 0)
				rc = crc;
		}
		return rc;
	}
	if (rc >= 0) {
		int crc = stmt_exec(q, q->st[S_COMMIT], SQLITE_OK);

		if (crc < 0)
			rc = crc;
		else if (q->wal_frames >= q->ckpt_at)
			checkpoint(q);
	}
	/* Some errors (I/O, full disk, no memory) roll back on their own. */
	if (rc < 0 && !sqlite3_get_autocommit(q->db))
		(void)stmt_exec(q, q->st[S_ROLLBACK], SQLITE_OK);
	return rc;
}

/* Prepares a statement kept by the caller.  0 or an LC_E_ code. */
static int
prepare1(struct sqstore *q, const char *sql, sqlite3_stmt **out)
{
	int rc = sqlite3_prepare_v2(q->db, sql, -1, out, NULL);

	return rc == SQLITE_OK ? 0 : dbfail(q, rc);
}

static int
batch_begin(struct store *st)
{
	static const char *const sql[SP_COUNT] = {
		[SP_OPEN] = "SAVEPOINT op",
		[SP_RELEASE] = "RELEASE op",
		[SP_UNDO] = "ROLLBACK TO op",
	};
	struct sqstore *q = (struct sqstore *)st;
	int i, rc;

	if (q->batch)
		return LC_E_INVAL;
	for (i = 0; i < SP_COUNT; i++)
		if (q->sp[i] == NULL && (rc = prepare1(q, sql[i],
		    &q->sp[i])) < 0)
			return rc;
	if ((rc = stmt_exec(q, q->st[S_BEGIN], SQLITE_OK)) < 0)
		return rc;
	q->batch = true;
	q->batch_failed = false;
	return 0;
}

static int
batch_end(struct store *st, int rc)
{
	struct sqstore *q = (struct sqstore *)st;

	if (!q->batch)
		return LC_E_INVAL;
	q->batch = false;
	/* An error may have ended the transaction early, or left it
	 * untrustworthy. */
	if (rc >= 0 && (q->batch_failed || sqlite3_get_autocommit(q->db)))
		rc = LC_E_DB;
	q->batch_failed = false;
	return tx_end(st, rc);
}

/* synchronous=FULL for the commits that follow, or the mode we opened with. */
static int
durable(struct store *st, bool on)
{
	struct sqstore *q = (struct sqstore *)st;
	int rc;

	if (q->sync_full)
		return 0;
	rc = sqlite3_exec(q->db, on ? "PRAGMA synchronous=FULL" :
	    "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : dbfail(q, rc);
}

static const char *
errmsg(struct store *st)
{
	struct sqstore *q = (struct sqstore *)st;

	if (q->base.err[0] != '\0')
		return q->base.err;
	return sqlite3_errmsg(q->db);
}

/* Frees q and its connection (an open transaction is rolled back). */
static void
sq_free(struct sqstore *q)
{
	int i;

	if (q == NULL)
		return;
	for (i = 0; i < S_COUNT; i++)
		(void)sqlite3_finalize(q->st[i]);
	for (i = 0; i < SP_COUNT; i++)
		(void)sqlite3_finalize(q->sp[i]);
	(void)sqlite3_close_v2(q->db);
	free(q);
}

static void
sq_close(struct store *st)
{
	sq_free((struct sqstore *)st);
}

/* Opening. */

/*
 * PRAGMA journal_mode=WAL, checking that SQLite agreed.  When several
 * processes open a new database at once, the switch to WAL fails with
 * SQLITE_BUSY without consulting the busy handler, so that is retried here
 * on the busy handler's schedule.
 */
static int
set_wal(struct sqstore *q, const char **why)
{
	sqlite3_stmt *s = NULL;
	const unsigned char *mode;
	int rc, count = 0;

	rc = sqlite3_prepare_v2(q->db, "PRAGMA journal_mode=WAL", -1, &s,
	    NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_BUSY &&
	    busy_wait(q, count++)) {
		(void)sqlite3_reset(s);  /* repeats the SQLITE_BUSY */
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_ROW) {
		*why = sqlite3_errmsg(q->db);
		rc = -1;
		goto out;
	}
	mode = sqlite3_column_text(s, 0);
	rc = 0;
	/* An in-memory database (tests) cannot do WAL and needs not. */
	if (mode == NULL || (strcmp((const char *)mode, "wal") != 0 &&
	    strcmp((const char *)mode, "memory") != 0)) {
		*why = "the database refused journal_mode=WAL";
		rc = -1;
	}
out:
	(void)sqlite3_finalize(s);
	return rc;
}

/* Prepares every statement of sq_sql.  0 or -1. */
static int
prepare_all(struct sqstore *q, const char **why)
{
	int i, rc;

	for (i = 0; i < S_COUNT; i++) {
		rc = sqlite3_prepare_v3(q->db, sq_sql[i], -1,
		    SQLITE_PREPARE_PERSISTENT, &q->st[i], NULL);
		if (rc != SQLITE_OK) {
			*why = sqlite3_errmsg(q->db);
			return -1;
		}
	}
	return 0;
}

/* Checks meta.schema_version.  0 or -1. */
static int
check_version(struct sqstore *q, const char **why)
{
	sqlite3_stmt *s = q->st[S_VERSION];
	int rc;

	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		*why = rc == SQLITE_DONE ? "no schema_version in meta" :
		    sqlite3_errmsg(q->db);
		rc = -1;
	} else if (sqlite3_column_int64(s, 0) != SCHEMA_VERSION) {
		*why = "unsupported schema_version";
		rc = -1;
	} else
		rc = 0;
	stmt_reset(s);
	return rc;
}

int
store_sqlite_open(struct store **out, const char *path,
    const struct lockcore_opts *opts, char *err, size_t errlen)
{
	struct sqstore *q = NULL;
	const char *what = "sqlite3_open_v2", *why = NULL;
	char pragma[64];
	int rc = LC_E_DB;

	*out = NULL;
	if ((q = calloc(1, sizeof(*q))) == NULL) {
		what = "calloc";
		why = strerror(errno);
		rc = LC_E_NOMEM;
		goto out;
	}
	q->base.ops = &sqlite_ops;
	q->busy_ms = opts != NULL ? opts->busy_timeout_ms : BUSY_DEFAULT_MS;
	q->live_clock = opts != NULL && opts->live_clock;
	q->sync_full = opts != NULL && opts->synchronous_full;
	if (q->busy_ms < 0)
		q->busy_ms = 0;
	what = "permissions";
	if (secure_files(path, &why) < 0)
		goto out;
	what = "sqlite3_open_v2";
	if (sqlite3_open_v2(path, &q->db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW,
	    NULL) != SQLITE_OK) {
		why = q->db != NULL ? sqlite3_errmsg(q->db) :
		    "out of memory";
		goto out;
	}
	if (sqlite3_busy_handler(q->db, busy_wait, q) != SQLITE_OK) {
		why = sqlite3_errmsg(q->db);
		goto out;
	}
	what = "journal_mode";
	if (set_wal(q, &why) < 0)
		goto out;
	what = "synchronous";
	(void)snprintf(pragma, sizeof(pragma), "PRAGMA synchronous=%s",
	    q->sync_full ? "FULL" : "NORMAL");
	if (sqlite3_exec(q->db, pragma, NULL, NULL, NULL) != SQLITE_OK) {
		why = sqlite3_errmsg(q->db);
		goto out;
	}
	what = "journal_size_limit";
	q->ckpt_at = CKPT_FRAMES;
	(void)sqlite3_wal_hook(q->db, wal_hook, q);
	(void)snprintf(pragma, sizeof(pragma),
	    "PRAGMA journal_size_limit=%d", WAL_LIMIT);
	if (sqlite3_exec(q->db, pragma, NULL, NULL, NULL) != SQLITE_OK) {
		why = sqlite3_errmsg(q->db);
		goto out;
	}
	what = "schema";
	if (make_schema(q->db, &why) < 0 ||
	    prepare_all(q, &why) < 0 ||
	    check_version(q, &why) < 0)
		goto out;
	what = "session";
	/* A read-only file would refuse every write later, and quietly. */
	if (sqlite3_db_readonly(q->db, "main") == 1) {
		why = "the database is read-only";
		goto out;
	}
	*out = &q->base;
	q = NULL;
	rc = 0;
out:
	if (rc < 0 && err != NULL && errlen > 0)
		(void)snprintf(err, errlen, "%s: %s: %s", path, what,
		    why != NULL ? why : "failed");
	sq_free(q);
	return rc;
}

/* meta and sessions. */

static int
meta_get(struct store *st, const char *key, int64_t *v)
{
	struct sqstore *q = (struct sqstore *)st;
	int brc = SQLITE_OK;

	bind_txt(q->st[S_META_GET], 1, key, &brc);
	return stmt_int64(q, q->st[S_META_GET], brc, v);
}

static int
meta_set(struct store *st, const char *key, int64_t v)
{
	struct sqstore *q = (struct sqstore *)st;
	sqlite3_stmt *s = q->st[S_META_SET];
	int brc = SQLITE_OK;

	bind_txt(s, 1, key, &brc);
	bind_i64(s, 2, v, &brc);
	return stmt_exec(q, s, brc);
}

static int
floor_raise(struct store *st, int64_t floor)
{
	struct sqstore *q = (struct sqstore *)st;
	int brc = SQLITE_OK;

	bind_i64(q->st[S_FLOOR_RAISE], 1, floor, &brc);
	return stmt_exec(q, q->st[S_FLOOR_RAISE], brc);
}

static int
session_next(struct store *st, int64_t after, struct session_row *r,
    bool *found)
{
	struct sqstore *q = (struct sqstore *)st;
	sqlite3_stmt *s = q->st[S_SESS_NEXT];
	int rc, brc = SQLITE_OK;

	bind_i64(s, 1, after, &brc);
	rc = step_row(q, s, brc, found);
	if (rc == 0 && *found) {
		memset(r, 0, sizeof(*r));
		r->id = sqlite3_column_int64(s, 0);
		r->pid = (pid_t)sqlite3_column_int64(s, 2);
		r->pstart = (uint64_t)sqlite3_column_int64(s, 3);
		r->sync_full = sqlite3_column_int(s, 4) != 0;
		r->max_ttl_ms = sqlite3_column_int64(s, 5);
		r->server_alive = -1;
		/* A boot id that does not fit is of another boot all the
		 * same: keep its first bytes. */
		if (sqlite3_column_text(s, 1) != NULL)
			(void)snprintf(r->boot_id, sizeof(r->boot_id), "%s",
			    (const char *)sqlite3_column_text(s, 1));
	}
	stmt_reset(s);
	return rc;
}

static int
session_add(struct store *st, const struct session_row *r, int64_t *id)
{
	struct sqstore *q = (struct sqstore *)st;
	sqlite3_stmt *s = q->st[S_SESS_ADD];
	int rc, brc = SQLITE_OK;

	bind_txt(s, 1, r->boot_id, &brc);
	bind_i64(s, 2, r->pid, &brc);
	bind_i64(s, 3, (int64_t)r->pstart, &brc);
	bind_i64(s, 4, r->sync_full, &brc);
	bind_i64(s, 5, r->max_ttl_ms, &brc);
	bind_i64(s, 6, r->opened_at, &brc);
	if ((rc = stmt_exec(q, s, brc)) == 0)
		*id = sqlite3_last_insert_rowid(q->db);
	return rc;
}

static int
session_delete(struct store *st, int64_t id)
{
	struct sqstore *q = (struct sqstore *)st;
	int brc = SQLITE_OK;

	bind_i64(q->st[S_SESS_DEL], 1, id, &brc);
	return stmt_exec(q, q->st[S_SESS_DEL], brc);
}

/* Lock rows. */

static int
lock_add(struct store *st, const char *name, struct lockrow *lr,
    bool *existed)
{
	struct sqstore *q = (struct sqstore *)st;
	int rc, brc = SQLITE_OK;

	bind_txt(q->st[S_LOCK_ADD], 1, name, &brc);
	if ((rc = stmt_exec(q, q->st[S_LOCK_ADD], brc)) < 0)
		return rc;
	lr->id = sqlite3_last_insert_rowid(q->db);
	lr->nwait = 0;
	*existed = false;        /* BEGIN IMMEDIATE: no other writer */
	return 0;
}

static int
lock_get(struct store *st, const char *name, struct lockrow *lr, bool *found)
{
	struct sqstore *q = (struct sqstore *)st;
	sqlite3_stmt *s = q->st[S_LOCK_GET];
	int rc, brc = SQLITE_OK;

	bind_txt(s, 1, name, &brc);
	rc = step_row(q, s, brc, found);
	if (rc == 0 && *found) {
		lr->id = sqlite3_column_int64(s, 0);
		lr->nwait = sqlite3_column_int64(s, 1);
	}
	stmt_reset(s);
	return rc;
}

static int
lock_state(struct store *st, const char *name, int64_t *now,
    struct lockrow *lr, struct hstate *hs, int *expired, bool *found)
{
	struct sqstore *q = (struct sqstore *)st;
	sqlite3_stmt *s = q->st[S_LOCK_STATE];
	int rc, brc = SQLITE_OK;

	if (q->clock_due) {
		int64_t t = clock_wall_ms();

		q->clock_due = false;
		if (t > *now)
			*now = t;
	}
	hs->count = 0;
	hs->min_expires = 0;
	*expired = 0;
	bind_txt(s, 1, name, &brc);
	bind_i64(s, 2, *now, &brc);
	rc = step_row(q, s, brc, found);
	/* An aggregate: one row, whose id is NULL when there is no lock. */
	if (rc == 0 && *found)
		*found = sqlite3_column_type(s, 0) != SQLITE_NULL;
	if (rc == 0 && *found) {
		lr->id = sqlite3_column_int64(s, 0);
		hs->count = sqlite3_column_int(s, 1);
		hs->min_expires = sqlite3_column_int64(s, 2);  /* NULL: 0 */
		*expired = sqlite3_column_int(s, 3);
		lr->nwait = sqlite3_column_int64(s, 4);
	}
	stmt_reset(s);
	return rc;
}

static int
fence_max(struct store *st, int64_t *top)
{
	struct sqstore *q = (struct sqstore *)st;

	return stmt_int64(q, q->st[S_FENCE_MAX], SQLITE_OK, top);
}

/* Holders. */

static int
holder_state(struct store *st, int64_t lock_id, int64_t now,
    struct hstate *hs)
{
	struct sqstore *q = (struct sqstore *)st;
	sqlite3_stmt *s = q->st[S_H_STATE];
	int rc, brc = SQLITE_OK;
	bool found;

	hs->count = 0;
	hs->min_expires = 0;
	bind_i64(s, 1, lock_id, &brc);
	bind_i64(s, 2, now, &brc);
	rc = step_row(q, s, brc, &found);
	if (rc == 0 && found) {
		hs->count = sqlite3_column_int(s, 0);
		hs->min_expires = sqlite3_column_int64(s, 1);  /* NULL: 0 */
	}
	stmt_reset(s);
	return rc;
}

static int
holders_purge(struct store *st, int64_t lock_id, int64_t now, int *n)
{
	struct sqstore *q = (struct sqstore *)st;
	sqlite3_stmt *s = q->st[S_H_PURGE];
	int brc = SQLITE_OK;

	bind_i64(s, 1, lock_id, &brc);
	bind_i64(s, 2, now, &brc);
	return stmt_exec_count(q, s, brc, n);
}

/* Reads a row of HOLDER_COLS. */
static int
read_holder(sqlite3_stmt *s, struct hrow *h)
{
	h->lock_id = sqlite3_column_int64(s, 0);
	h->fence = sqlite3_column_int64(s, 2);
	h->acquired_at = sqlite3_column_int64(s, 4);
	h->expires_at = sqlite3_column_int64(s, 5);
	h->waiter_id = sqlite3_column_int64(s, 6);      /* NULL: 0 */
	h->wkey = (uint64_t)sqlite3_column_int64(s, 7);
	h->ttl_ms = sqlite3_column_int64(s, 9);
	read_secret(s, 1, 8, &h->sec);
	return copy_col(h->owner, sizeof(h->owner), s, 3);
}

static int
holders_live(struct store *st, int64_t lock_id, int64_t now,
    store_holder_fn *fn, void *arg)
{
	struct sqstore *q = (struct sqstore *)st;
	sqlite3_stmt *s = q->st[S_H_LIST];
	struct hrow h;
	int rc = SQLITE_OK;

	bind_i64(s, 1, lock_id, &rc);
	bind_i64(s, 2, now, &rc);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((rc = read_holder(s, &h)) < 0)
			goto out;
		rc = fn(&h, arg) != 0 ? SQLITE_DONE : SQLITE_OK;
	}
	rc = rc == SQLITE_DONE || rc == SQLITE_OK ? 0 : dbfail(q, rc);
out:
	stmt_reset(s);
	return rc;
}

static int
holder_by_rid(struct store *st, int64_t lock_id, const unsigned char *rh,
    int64_t now, struct hrow *h, bool *found)
{
	struct sqstore *q = (struct sqstore *)st;
	sqlite3_stmt *s = q->st[S_H_BY_REQ];
	int rc, brc = SQLITE_OK;

	bind_i64(s, 1, lock_id, &brc);
	bind_blob(s, 2, rh, SECRET_HASH_LEN, &brc);
	bind_i64(s, 3, now, &brc);
	rc = step_row(q, s, brc, found);
	if (rc == 0 && *found)
		rc = read_holder(s, h);
	stmt_reset(s);
	return rc;
}

static int
holder_by_waiter(struct store *st, int64_t waiter_id, int64_t now,
    struct hrow *h, char name[LC_KEY_MAX + 1], bool *found)
{
	struct sqstore *q = (struct sqstore *)st;
	sqlite3_stmt *s = q->st[S_H_BY_WAITER];
	int rc, brc = SQLITE_OK;

	bind_i64(s, 1, waiter_id, &brc);
	bind_i64(s, 2, now, &brc);
	rc = step_row(q, s, brc, found);
	if (rc == 0 && *found && (rc = read_holder(s, h)) == 0)
		rc = sqlite3_column_type(s, 10) == SQLITE_NULL ? LC_E_NOMEM :
		    copy_col(name, LC_KEY_MAX + 1, s, 10);
	stmt_reset(s);
	return rc;
}

/* The fence first (S_FENCE_BUMP, S_FENCE_GET), then the row with it. */
static int
holder_grant(struct store *st, const struct hrow *h, const unsigned char *rh,
    int64_t floor, int64_t *fence)
{
	struct sqstore *q = (struct sqstore *)st;
	sqlite3_stmt *g = q->st[S_FENCE_GET], *s = q->st[S_H_ADD];
	int rc, brc = SQLITE_OK;
	bool found;

	bind_i64(q->st[S_FENCE_BUMP], 1, h->lock_id, &brc);
	bind_i64(q->st[S_FENCE_BUMP], 2, floor, &brc);
	bind_i64(q->st[S_FENCE_BUMP], 3, h->acquired_at, &brc);
	if ((rc = stmt_exec(q, q->st[S_FENCE_BUMP], brc)) < 0)
		return rc;
	bind_i64(g, 1, h->lock_id, &brc);
	rc = step_row(q, g, brc, &found);
	if (rc == 0 && !found) {
		(void)snprintf(q->base.err, sizeof(q->base.err),
		    "lock row vanished");
		rc = LC_E_DB;
	}
	if (rc == 0)
		*fence = sqlite3_column_int64(g, 0);
	stmt_reset(g);
	if (rc < 0)
		return rc;
	bind_blob(s, 1, h->sec.token_hash, SECRET_HASH_LEN, &brc);
	bind_i64(s, 2, h->lock_id, &brc);
	bind_i64(s, 3, *fence, &brc);
	bind_txt(s, 4, h->owner, &brc);
	bind_blob(s, 5, rh, SECRET_HASH_LEN, &brc);
	bind_blob(s, 6, h->sec.has_seal ? h->sec.seal : NULL, SECRET_SEAL_LEN,
	    &brc);
	bind_i64(s, 7, h->acquired_at, &brc);
	bind_i64(s, 8, h->expires_at, &brc);
	bind_i64(s, 9, h->ttl_ms, &brc);
	if (h->waiter_id != 0)
		bind_i64(s, 10, h->waiter_id, &brc);
	if (h->wkey != 0)
		bind_i64(s, 11, (int64_t)h->wkey, &brc);
	return stmt_exec(q, s, brc);
}

static int
holder_delete(struct store *st, int64_t lock_id, int64_t fence)
{
	struct sqstore *q = (struct sqstore *)st;
	int brc = SQLITE_OK;

	bind_i64(q->st[S_H_DEL], 1, lock_id, &brc);
	bind_i64(q->st[S_H_DEL], 2, fence, &brc);
	return stmt_exec(q, q->st[S_H_DEL], brc);
}

static int
holder_renew(struct store *st, int64_t lock_id, int64_t fence,
    int64_t expires_at, int64_t ttl_ms)
{
	struct sqstore *q = (struct sqstore *)st;
	sqlite3_stmt *s = q->st[S_H_RENEW];
	int brc = SQLITE_OK;

	bind_i64(s, 1, lock_id, &brc);
	bind_i64(s, 2, fence, &brc);
	bind_i64(s, 3, expires_at, &brc);
	bind_i64(s, 4, ttl_ms, &brc);
	return stmt_exec(q, s, brc);
}

static int
holder_take(struct store *st, int64_t lock_id, int64_t fence, uint64_t wkey)
{
	struct sqstore *q = (struct sqstore *)st;
	sqlite3_stmt *s = q->st[S_H_TAKE];
	int brc = SQLITE_OK;

	bind_i64(s, 1, lock_id, &brc);
	bind_i64(s, 2, fence, &brc);
	bind_i64(s, 3, (int64_t)wkey, &brc);
	return stmt_exec(q, s, brc);
}

/* Waiters. */

static int
waiter_get(struct store *st, int64_t id, struct wrow *w, bool *found)
{
	struct sqstore *q = (struct sqstore *)st;
	sqlite3_stmt *s = q->st[S_W_GET];
	int rc, brc = SQLITE_OK;

	bind_i64(s, 1, id, &brc);
	rc = step_row(q, s, brc, found);
	if (rc == 0 && *found) {
		w->lock_id = sqlite3_column_int64(s, 0);
		w->has_rid = copy_blob(w->rid_hash, SECRET_HASH_LEN, s, 2);
		w->ttl_ms = sqlite3_column_int64(s, 3);
		w->wkey = (uint64_t)sqlite3_column_int64(s, 4);
		w->deadline = sqlite3_column_int64(s, 6);
		read_secret(s, 7, 8, &w->sec);
		rc = copy_col(w->owner, sizeof(w->owner), s, 1);
		if (rc == 0)
			rc = copy_col(w->name, sizeof(w->name), s, 5);
	}
	stmt_reset(s);
	return rc;
}

static int
waiter_by_rid(struct store *st, int64_t lock_id, const unsigned char *rh,
    int64_t *id, struct hsecret *sec)
{
	struct sqstore *q = (struct sqstore *)st;
	sqlite3_stmt *s = q->st[S_W_BY_REQ];
	int rc, brc = SQLITE_OK;
	bool found;

	*id = 0;
	bind_i64(s, 1, lock_id, &brc);
	bind_blob(s, 2, rh, SECRET_HASH_LEN, &brc);
	rc = step_row(q, s, brc, &found);
	if (rc == 0 && found) {
		*id = sqlite3_column_int64(s, 0);
		if (sec != NULL)
			read_secret(s, 1, 2, sec);
	}
	stmt_reset(s);
	return rc;
}

static int
waiter_add(struct store *st, const struct wrow *w, pid_t pid, uint64_t pstart,
    int64_t *id)
{
	struct sqstore *q = (struct sqstore *)st;
	sqlite3_stmt *s = q->st[S_W_ADD];
	int rc, brc = SQLITE_OK;

	bind_i64(s, 1, w->lock_id, &brc);
	bind_blob(s, 2, w->has_rid ? w->rid_hash : NULL, SECRET_HASH_LEN,
	    &brc);
	bind_txt(s, 3, w->owner, &brc);
	bind_i64(s, 4, w->ttl_ms, &brc);
	bind_i64(s, 5, w->deadline, &brc);
	bind_i64(s, 6, pid, &brc);
	bind_i64(s, 7, (int64_t)pstart, &brc);
	bind_i64(s, 8, (int64_t)w->wkey, &brc);
	bind_blob(s, 9, w->sec.token_hash, SECRET_HASH_LEN, &brc);
	bind_blob(s, 10, w->sec.has_seal ? w->sec.seal : NULL,
	    SECRET_SEAL_LEN, &brc);
	if ((rc = stmt_exec(q, s, brc)) == 0)
		*id = sqlite3_last_insert_rowid(q->db);
	return rc;
}

static int
waiter_take(struct store *st, int64_t id, const struct lock_waiter_ident *who,
    int64_t deadline)
{
	struct sqstore *q = (struct sqstore *)st;
	sqlite3_stmt *s = q->st[S_W_TAKE];
	int brc = SQLITE_OK;

	bind_i64(s, 1, id, &brc);
	bind_i64(s, 2, who->pid, &brc);
	bind_i64(s, 3, (int64_t)who->pstart, &brc);
	bind_i64(s, 4, (int64_t)who->key, &brc);
	bind_i64(s, 5, deadline, &brc);
	return stmt_exec(q, s, brc);
}

static int
waiter_delete(struct store *st, int64_t id)
{
	struct sqstore *q = (struct sqstore *)st;
	int brc = SQLITE_OK;

	bind_i64(q->st[S_W_DEL], 1, id, &brc);
	return stmt_exec(q, q->st[S_W_DEL], brc);
}

static int
waiter_count(struct store *st, int64_t lock_id, int64_t after, int64_t below,
    int64_t now, int64_t limit, int *n)
{
	struct sqstore *q = (struct sqstore *)st;
	sqlite3_stmt *s = q->st[S_W_COUNT];
	int64_t v;
	int rc, brc = SQLITE_OK;

	bind_i64(s, 1, lock_id, &brc);
	bind_i64(s, 2, after, &brc);
	bind_i64(s, 3, below, &brc);
	bind_i64(s, 4, now, &brc);
	bind_i64(s, 5, limit, &brc);
	rc = stmt_int64(q, s, brc, &v);
	*n = (int)v;
	return rc;
}

/*
 * The walk is one execution of S_W_WALK: a caller that changes the queue
 * (deletes a dead waiter) stops the walk first and starts a new one after
 * that row, rather than step a SELECT across a change to its table.
 */
static int
waiters_walk(struct store *st, int64_t lock_id, int64_t after, int64_t below,
    store_waiter_fn *fn, void *arg)
{
	struct sqstore *q = (struct sqstore *)st;
	sqlite3_stmt *s = q->st[S_W_WALK];
	struct wslot w = { 0 };       /* every row is local */
	int rc = SQLITE_OK;

	bind_i64(s, 1, lock_id, &rc);
	bind_i64(s, 2, after, &rc);
	bind_i64(s, 3, below, &rc);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		w.id = sqlite3_column_int64(s, 0);
		w.pid = (pid_t)sqlite3_column_int64(s, 1);
		w.pstart = (uint64_t)sqlite3_column_int64(s, 2);
		w.deadline = sqlite3_column_int64(s, 3);
		rc = fn(&w, arg) != 0 ? SQLITE_DONE : SQLITE_OK;
	}
	rc = rc == SQLITE_DONE || rc == SQLITE_OK ? 0 : dbfail(q, rc);
	stmt_reset(s);
	return rc;
}

/* Across locks. */

/*
 * The smallest string greater than every string starting with prefix:
 * drop trailing 0xff bytes, then add one to the last byte.  *len is -1 if
 * there is none (prefix empty or all 0xff), i.e. no upper bound.
 */
static void
prefix_end(const char *prefix, char hi[LC_KEY_MAX + 1], int *len)
{
	size_t n = strlen(prefix);

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

/*
 * Binds the range [lo, hi) of strings starting with `pfx` to parameters
 * lo_i and lo_i + 1: NULLs for an empty pfx, hi NULL when it has no end.
 * The strings bound are lo (the caller's) and hi[], which must outlive the
 * statement's use.
 */
static void
bind_prefix(sqlite3_stmt *s, int lo_i, const char *pfx,
    char hi[LC_KEY_MAX + 1], int *rc)
{
	int hilen;

	prefix_end(pfx, hi, &hilen);
	if (*rc != SQLITE_OK)
		return;
	*rc = pfx[0] == '\0' ? sqlite3_bind_null(s, lo_i) :
	    sqlite3_bind_text(s, lo_i, pfx, -1, SQLITE_STATIC);
	if (*rc == SQLITE_OK)
		*rc = hilen < 0 ? sqlite3_bind_null(s, lo_i + 1) :
		    sqlite3_bind_text(s, lo_i + 1, hi, hilen, SQLITE_STATIC);
}

static int
quota_count(struct store *st, bool waiting, const char *prefix, int64_t now,
    int limit, int *n)
{
	struct sqstore *q = (struct sqstore *)st;
	sqlite3_stmt *s = q->st[waiting ? S_Q_WAIT : S_Q_HELD];
	char hi[LC_KEY_MAX + 1];
	int64_t v;
	int rc, brc = SQLITE_OK, hilen;

	prefix_end(prefix, hi, &hilen);
	bind_txt(s, 1, prefix, &brc);
	if (brc == SQLITE_OK)
		brc = hilen < 0 ? sqlite3_bind_null(s, 2) :
		    sqlite3_bind_text(s, 2, hi, hilen, SQLITE_STATIC);
	bind_i64(s, 3, now, &brc);
	bind_i64(s, 4, limit, &brc);
	rc = stmt_int64(q, s, brc, &v);
	*n = (int)v;
	return rc;
}

static int
list(struct store *st, int64_t now, const char *after, const char *prefix,
    const char *skip, int64_t limit, store_list_fn *fn, void *arg)
{
	struct sqstore *q = (struct sqstore *)st;
	sqlite3_stmt *s = q->st[S_LIST];
	struct lock_list_entry e;
	char hi[LC_KEY_MAX + 1], skip_hi[LC_KEY_MAX + 1];
	int hilen, rc = SQLITE_OK;

	prefix_end(prefix, hi, &hilen);
	bind_i64(s, 1, now, &rc);
	bind_txt(s, 2, after, &rc);
	bind_txt(s, 3, prefix, &rc);
	if (rc == SQLITE_OK)
		rc = hilen < 0 ? sqlite3_bind_null(s, 4) :
		    sqlite3_bind_text(s, 4, hi, hilen, SQLITE_STATIC);
	bind_i64(s, 5, limit, &rc);
	bind_prefix(s, 6, skip, skip_hi, &rc);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		e.name = (const char *)sqlite3_column_text(s, 0);
		if (e.name == NULL) {
			rc = SQLITE_NOMEM;
			break;
		}
		e.holders = sqlite3_column_int(s, 1);
		e.waiters = sqlite3_column_int(s, 2);
		rc = fn(&e, arg) != 0 ? SQLITE_DONE : SQLITE_OK;
	}
	rc = rc == SQLITE_DONE || rc == SQLITE_OK ? 0 : dbfail(q, rc);
	stmt_reset(s);
	return rc;
}

/* Sweep. */

static int
sweep_range(struct store *st, int64_t lo, int batch, int64_t *hi)
{
	struct sqstore *q = (struct sqstore *)st;
	sqlite3_stmt *s = q->st[S_SWEEP_RANGE];
	int brc = SQLITE_OK;

	bind_i64(s, 1, lo, &brc);
	bind_i64(s, 2, batch, &brc);
	return stmt_int64(q, s, brc, hi);       /* NULL (no row): 0 */
}

static int
sweep_expired(struct store *st, int64_t lo, int64_t hi, int64_t now,
    int64_t late, int *n)
{
	struct sqstore *q = (struct sqstore *)st;
	sqlite3_stmt *s = q->st[S_SWEEP_PURGE];
	int rc, brc = SQLITE_OK, k = 0;

	*n = 0;
	bind_i64(s, 1, lo, &brc);
	bind_i64(s, 2, hi, &brc);
	bind_i64(s, 3, now, &brc);
	if ((rc = stmt_exec_count(q, s, brc, &k)) < 0)
		return rc;
	*n += k;
	s = q->st[S_SWEEP_WAITERS];
	bind_i64(s, 1, lo, &brc);
	bind_i64(s, 2, hi, &brc);
	bind_i64(s, 3, late, &brc);
	if ((rc = stmt_exec_count(q, s, brc, &k)) < 0)
		return rc;
	*n += k;
	return 0;
}

static int
sweep_idle(struct store *st, int64_t lo, int64_t hi, int64_t used_before,
    int64_t *top, int *n)
{
	struct sqstore *q = (struct sqstore *)st;
	sqlite3_stmt *s = q->st[S_SWEEP_TOP];
	int rc, brc = SQLITE_OK;

	*n = 0;
	bind_i64(s, 1, lo, &brc);
	bind_i64(s, 2, hi, &brc);
	bind_i64(s, 3, used_before, &brc);
	if ((rc = stmt_int64(q, s, brc, top)) < 0)
		return rc;
	s = q->st[S_SWEEP_IDLE];
	bind_i64(s, 1, lo, &brc);
	bind_i64(s, 2, hi, &brc);
	bind_i64(s, 3, used_before, &brc);
	return stmt_exec_count(q, s, brc, n);
}

static const struct store_ops sqlite_ops = {
	.begin = tx_begin,
	.end = tx_end,
	.batch_begin = batch_begin,
	.batch_end = batch_end,
	.durable = durable,
	.errmsg = errmsg,
	.kind = "sqlite",
	.close = sq_close,
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
	.quota_count = quota_count,
	.list = list,
	.sweep_range = sweep_range,
	.sweep_expired = sweep_expired,
	.sweep_idle = sweep_idle,
};
