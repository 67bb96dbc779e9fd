/*
 * The storage layer of lockcore on SQLite: the statements (prepared once
 * per connection from `sqltab`, reset with their bindings cleared after
 * every use), the helpers that bind and read them, transactions (BEGIN
 * IMMEDIATE, or a savepoint inside a batch), the busy handler, the WAL
 * hook and the checkpoints it triggers, and the row helpers the engine
 * uses inside a transaction it opened.
 */
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "clock.h"
#include "lcint.h"

#define HOLDER_COLS                                                 \
    "lock_id, token_hash, fence, owner, acquired_at, expires_at,"    \
    " waiter_id, wkey, seal, ttl_ms"

static const char *const sqltab[S_COUNT] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_BEGIN_RO] = "BEGIN",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_VERSION] = "SELECT value FROM meta WHERE key = 'schema_version'",
	[S_PING] = "INSERT OR REPLACE INTO meta(key, value)"
	    " VALUES ('health_probe', ?1)",
	[S_LOCK_GET] = "SELECT id, max_holders, nwait FROM locks"
	    " WHERE name = ?1",
	/* The lock row with what the fast paths need to know of its holders
	 * and queue, in one statement: live holders, their first expiry,
	 * expired holders (to purge), and its waiter rows (locks.nwait).
	 * One row even without a lock row (id NULL). */
	[S_LOCK_STATE] = "SELECT l.id, l.max_holders,"
	    " count(h.expires_at) FILTER (WHERE h.expires_at > ?2),"
	    " min(h.expires_at) FILTER (WHERE h.expires_at > ?2),"
	    " count(h.expires_at) FILTER (WHERE h.expires_at <= ?2),"
	    " l.nwait"
	    " FROM locks l LEFT JOIN holders h ON h.lock_id = l.id"
	    " WHERE l.name = ?1",
	[S_LOCK_ADD] = "INSERT INTO locks(name) VALUES (?1)",
	/* Not one UPDATE ... RETURNING: SQLite buffers RETURNING rows in an
	 * ephemeral table, which cost more CPU than the second statement
	 * (bench/lcbench: +10 us per acquire, a malloc that trimmed and
	 * regrew the heap every time). */
	[S_FENCE_BUMP] = "UPDATE locks SET fence_seq = max(fence_seq + 1, ?2,"
	    " (SELECT value FROM meta WHERE key = 'fence_floor')), used_at = ?3"
	    " WHERE id = ?1",
	[S_FENCE_GET] = "SELECT fence_seq FROM locks WHERE id = ?1",
	[S_H_PURGE] =
	    "DELETE FROM holders WHERE lock_id = ?1 AND expires_at <= ?2",
	[S_H_STATE] = "SELECT count(*), min(expires_at) FROM holders"
	    " WHERE lock_id = ?1 AND expires_at > ?2",
	[S_H_LIST] = "SELECT " HOLDER_COLS " FROM holders"
	    " WHERE lock_id = ?1 AND expires_at > ?2 ORDER BY fence",
	[S_H_BY_REQ] = "SELECT " HOLDER_COLS " FROM holders"
	    " WHERE lock_id = ?1 AND rid_hash = ?2 AND expires_at > ?3",
	[S_H_BY_WAITER] = "SELECT " HOLDER_COLS ", (SELECT name FROM locks"
	    "  WHERE id = holders.lock_id) FROM holders"
	    " WHERE waiter_id = ?1 AND expires_at > ?2",
	[S_H_ADD] = "INSERT INTO holders(token_hash, lock_id, fence, owner,"
	    " rid_hash, seal, acquired_at, expires_at, ttl_ms, waiter_id, wkey)"
	    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
	[S_H_DEL] = "DELETE FROM holders WHERE lock_id = ?1 AND fence = ?2",
	[S_H_RENEW] = "UPDATE holders SET expires_at = ?3, ttl_ms = ?4"
	    " WHERE lock_id = ?1 AND fence = ?2",
	[S_H_TAKE] = "UPDATE holders SET wkey = ?3"
	    " WHERE lock_id = ?1 AND fence = ?2",
	[S_W_GET] = "SELECT w.lock_id, w.owner, w.rid_hash, w.ttl_ms,"
	    " w.wkey, l.name, l.max_holders, w.deadline, w.token_hash, w.seal"
	    " FROM waiters w JOIN locks l ON l.id = w.lock_id WHERE w.id = ?1",
	[S_W_BY_REQ] = "SELECT id, token_hash, seal FROM waiters"
	    " WHERE lock_id = ?1 AND rid_hash = ?2",
	[S_W_TAKE] = "UPDATE waiters SET pid = ?2, pstart = ?3, wkey = ?4,"
	    " deadline = ?5 WHERE id = ?1",
	[S_W_WALK] = "SELECT id, pid, pstart, deadline FROM waiters"
	    " WHERE lock_id = ?1 AND id > ?2 AND id < ?3 ORDER BY id",
	[S_W_COUNT] = "SELECT count(*) FROM (SELECT 1 FROM waiters"
	    " WHERE lock_id = ?1 AND id > ?2 AND id < ?3 AND deadline > ?4"
	    " LIMIT ?5)",
	[S_W_ADD] = "INSERT INTO waiters(lock_id, rid_hash, owner, ttl_ms,"
	    " deadline, pid, pstart, wkey, token_hash, seal)"
	    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
	[S_W_DEL] = "DELETE FROM waiters WHERE id = ?1",
	/* Driven by the live rows, not by `locks`, which only grows. */
	[S_LIST] = "WITH act(id) AS ("
	    " SELECT lock_id FROM holders WHERE expires_at > ?1"
	    " UNION SELECT lock_id FROM waiters WHERE deadline > ?1)"
	    " SELECT l.name,"
	    " (SELECT count(*) FROM holders h"
	    "  WHERE h.lock_id = l.id AND h.expires_at > ?1),"
	    " (SELECT count(*) FROM waiters w"
	    "  WHERE w.lock_id = l.id AND w.deadline > ?1)"
	    " FROM act JOIN locks l ON l.id = act.id"
	    " WHERE l.name > ?2 AND l.name >= ?3 AND (?4 IS NULL OR l.name < ?4)"
	    " AND (?6 IS NULL OR l.name < ?6"
	    "  OR (?7 IS NOT NULL AND l.name >= ?7))"
	    " ORDER BY l.name LIMIT ?5",
	/* lockcore_sweep: the last id of a batch of lock rows after ?1, its
	 * expired holders, the highest fence among its idle locks, and
	 * those idle locks (no holder left, no waiter row). */
	/* Quotas: live grants and live waiters of the locks whose keys lie
	 * in [?1, ?2) (?2 NULL: no end), counted up to ?4. */
	[S_Q_HELD] = "SELECT count(*) FROM (SELECT 1 FROM locks l"
	    " JOIN holders h ON h.lock_id = l.id WHERE l.name >= ?1"
	    " AND (?2 IS NULL OR l.name < ?2) AND h.expires_at > ?3 LIMIT ?4)",
	[S_Q_WAIT] = "SELECT count(*) FROM (SELECT 1 FROM locks l"
	    " JOIN waiters w ON w.lock_id = l.id WHERE l.name >= ?1"
	    " AND (?2 IS NULL OR l.name < ?2) AND w.deadline > ?3 LIMIT ?4)",
	[S_SWEEP_RANGE] = "SELECT max(id) FROM (SELECT id FROM locks"
	    " WHERE id > ?1 ORDER BY id LIMIT ?2)",
	[S_SWEEP_PURGE] = "DELETE FROM holders"
	    " WHERE lock_id > ?1 AND lock_id <= ?2 AND expires_at <= ?3",
	[S_SWEEP_WAITERS] = "DELETE FROM waiters"
	    " WHERE lock_id > ?1 AND lock_id <= ?2 AND deadline <= ?3",
	[S_SWEEP_TOP] = "SELECT coalesce(max(fence_seq), 0) FROM locks l"
	    " WHERE id > ?1 AND id <= ?2 AND nwait = 0 AND used_at <= ?3"
	    " AND NOT EXISTS (SELECT 1 FROM holders h WHERE h.lock_id = l.id)",
	[S_SWEEP_IDLE] = "DELETE FROM locks"
	    " WHERE id > ?1 AND id <= ?2 AND nwait = 0 AND used_at <= ?3"
	    " AND NOT EXISTS (SELECT 1 FROM holders h WHERE h.lock_id = locks.id)",
	[S_SWEEP_FLOOR] = "UPDATE meta SET value = max(value, ?1)"
	    " WHERE key = 'fence_floor'"
};

int
dbfail(struct lockcore *lc, int rc)
{
	(void)snprintf(lc->err, sizeof(lc->err), "%s",
	    sqlite3_errmsg(lc->db));
	return (rc & 0xff) == SQLITE_NOMEM ? LC_E_NOMEM : LC_E_DB;
}

/* Resets `s` and clears its bindings, ready for the next use. */
void
done(sqlite3_stmt *s)
{
	(void)sqlite3_reset(s);
	(void)sqlite3_clear_bindings(s);
}

/* Binds an integer unless an earlier bind failed (*rc != SQLITE_OK). */
void
bind_i64(sqlite3_stmt *s, int i, int64_t v, int *rc)
{
	if (*rc == SQLITE_OK)
		*rc = sqlite3_bind_int64(s, i, v);
}

/* Binds text, or NULL when v is NULL; the caller keeps v until done(). */
void
bind_txt(sqlite3_stmt *s, int i, const char *v, int *rc)
{
	if (*rc != SQLITE_OK)
		return;
	if (v == NULL)
		*rc = sqlite3_bind_null(s, i);
	else
		*rc = sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
}

/* Binds n bytes, or NULL when v is NULL; the caller keeps v until done(). */
void
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
int
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
 * whether a row came back (read it, then call done()), or an LC_E_ code.
 */
int
step_row(struct lockcore *lc, sqlite3_stmt *s, int brc, bool *found)
{
	int rc = brc;

	*found = false;
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*found = true;
	else if (rc != SQLITE_DONE)
		return dbfail(lc, rc);
	return 0;
}

/* Runs a statement that returns no rows and resets it.  0 or LC_E_. */
int
run(struct lockcore *lc, sqlite3_stmt *s, int brc)
{
	int rc = brc;

	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	rc = rc == SQLITE_DONE ? 0 : dbfail(lc, rc);
	done(s);
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

/*
 * SQLite's busy handler.  The default one sleeps in steps of 1-100 ms, and
 * under contention that starved whole processes; here a waiter yields a
 * few times, then sleeps from BUSY_SLEEP_MIN µs doubling up to
 * BUSY_SLEEP_MAX µs, until busy_ms have passed since this wait began
 * (count == 0).  Returns non-zero to retry, 0 to give up with SQLITE_BUSY.
 */
int
busy_wait(void *arg, int count)
{
	struct lockcore *lc = arg;
	struct timespec now, ts;
	int64_t elapsed_us, left_us, sleep_us;

	if (count == 0)
		(void)clock_gettime(CLOCK_MONOTONIC, &lc->busy_t0);
	(void)clock_gettime(CLOCK_MONOTONIC, &now);
	elapsed_us = (int64_t)(now.tv_sec - lc->busy_t0.tv_sec) * 1000000 +
	    (now.tv_nsec - lc->busy_t0.tv_nsec) / 1000;
	left_us = (int64_t)lc->busy_ms * 1000 - elapsed_us;
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
int
tx_begin(struct lockcore *lc, bool write, int64_t *now)
{
	int rc;

	if (lc->batch) {
		/* Inside a batch's transaction, each call is a savepoint.
		 * Some errors (I/O, full disk) end the whole transaction:
		 * then nothing more may run in it, or each statement would
		 * commit on its own. */
		if (lc->batch_failed || sqlite3_get_autocommit(lc->db))
			return LC_E_DB;
		rc = run(lc, lc->sp[0], SQLITE_OK);
	} else
		rc = run(lc, lc->st[write ? S_BEGIN : S_BEGIN_RO], SQLITE_OK);
	/* With a live clock the transaction's time is read once it has the
	 * database: the caller's `now` may predate a wait for the write
	 * lock, and a grant stamped with it would get a shorter lease and an
	 * acquired_at earlier than an older grant's. */
	if (rc == 0 && lc->live_clock) {
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
int
wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
	struct lockcore *lc = arg;

	(void)db;
	(void)name;
	lc->wal_frames = frames;
	return SQLITE_OK;
}

/*
 * Runs after a commit of ours when the WAL is long.  A failure is not the
 * caller's (its commit is done) and is only retried later.
 */
static void
checkpoint(struct lockcore *lc)
{
	int rc, busy_ms = lc->busy_ms;

	if (lc->busy_ms > CKPT_WAIT_MS)
		lc->busy_ms = CKPT_WAIT_MS;
	rc = sqlite3_wal_checkpoint_v2(lc->db, NULL, SQLITE_CHECKPOINT_RESTART,
	    NULL, NULL);
	lc->busy_ms = busy_ms;
	lc->ckpt_at = rc == SQLITE_OK ? CKPT_FRAMES :
	    lc->wal_frames + CKPT_FRAMES;
}

int
tx_end(struct lockcore *lc, int rc)
{
	if (lc->batch) {
		int crc;

		if (sqlite3_get_autocommit(lc->db))
			return rc < 0 ? rc : LC_E_DB;
		/* A call that failed must leave nothing behind: if its
		 * savepoint cannot be undone, or released, the batch's
		 * transaction is no longer trustworthy and is rolled back. */
		if (rc < 0 && run(lc, lc->sp[2], SQLITE_OK) < 0)
			lc->batch_failed = true;
		if ((crc = run(lc, lc->sp[1], SQLITE_OK)) < 0) {
			lc->batch_failed = true;
			if (rc >= 0)
				rc = crc;
		}
		return rc;
	}
	if (rc >= 0) {
		int crc = run(lc, lc->st[S_COMMIT], SQLITE_OK);

		if (crc < 0)
			rc = crc;
		else if (lc->wal_frames >= lc->ckpt_at)
			checkpoint(lc);
	}
	/* Some errors (I/O, full disk, no memory) roll back on their own. */
	if (rc < 0 && !sqlite3_get_autocommit(lc->db))
		(void)run(lc, lc->st[S_ROLLBACK], SQLITE_OK);
	return rc;
}

/* Opening. */

/*
 * PRAGMA journal_mode=WAL, checking that SQLite agreed.  When several
 * processes open a new database at once, the switch to WAL fails with
 * SQLITE_BUSY without consulting the busy handler, so that is retried here
 * on the busy handler's schedule.
 */
int
set_wal(struct lockcore *lc, const char **why)
{
	sqlite3_stmt *s = NULL;
	const unsigned char *mode;
	int rc, count = 0;

	rc = sqlite3_prepare_v2(lc->db, "PRAGMA journal_mode=WAL", -1, &s,
	    NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_BUSY &&
	    busy_wait(lc, count++)) {
		(void)sqlite3_reset(s);  /* repeats the SQLITE_BUSY */
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_ROW) {
		*why = sqlite3_errmsg(lc->db);
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

/* Prepares every statement of sqltab.  0 or -1. */
int
prepare_all(struct lockcore *lc, const char **why)
{
	int i, rc;

	for (i = 0; i < S_COUNT; i++) {
		rc = sqlite3_prepare_v3(lc->db, sqltab[i], -1,
		    SQLITE_PREPARE_PERSISTENT, &lc->st[i], NULL);
		if (rc != SQLITE_OK) {
			*why = sqlite3_errmsg(lc->db);
			return -1;
		}
	}
	return 0;
}

/* Checks meta.schema_version.  0 or -1. */
int
check_version(struct lockcore *lc, const char **why)
{
	sqlite3_stmt *s = lc->st[S_VERSION];
	int rc;

	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		*why = rc == SQLITE_DONE ? "no schema_version in meta" :
		    sqlite3_errmsg(lc->db);
		rc = -1;
	} else if (sqlite3_column_int64(s, 0) != SCHEMA_VERSION) {
		*why = "unsupported schema_version";
		rc = -1;
	} else
		rc = 0;
	done(s);
	return rc;
}

/* Prepares a statement kept by the caller.  0 or an LC_E_ code. */
int
prepare1(struct lockcore *lc, const char *sql, sqlite3_stmt **out)
{
	int rc = sqlite3_prepare_v2(lc->db, sql, -1, out, NULL);

	return rc == SQLITE_OK ? 0 : dbfail(lc, rc);
}

int
meta_get(struct lockcore *lc, const char *key, int64_t *v)
{
	sqlite3_stmt *s = NULL;
	int rc, brc = SQLITE_OK;
	bool found;

	if ((rc = prepare1(lc, "SELECT value FROM meta WHERE key = ?1",
	    &s)) < 0)
		return rc;
	bind_txt(s, 1, key, &brc);
	rc = step_row(lc, s, brc, &found);
	*v = rc == 0 && found ? sqlite3_column_int64(s, 0) : 0;
	(void)sqlite3_finalize(s);
	return rc;
}

int
meta_set(struct lockcore *lc, const char *key, int64_t v)
{
	sqlite3_stmt *s = NULL;
	int rc, brc = SQLITE_OK;

	if ((rc = prepare1(lc, "INSERT OR REPLACE INTO meta(key, value)"
	    " VALUES (?1, ?2)", &s)) < 0)
		return rc;
	bind_txt(s, 1, key, &brc);
	bind_i64(s, 2, v, &brc);
	rc = run(lc, s, brc);
	(void)sqlite3_finalize(s);
	return rc;
}

/* Row helpers, all inside a transaction the caller opened. */

/* Creates the lock row of `name` (unknown so far): 0 with *found, or an
 * LC_E_ code. */
static int
lock_add(struct lockcore *lc, const char *name, struct lockrow *lr,
    bool *found)
{
	int rc, brc = SQLITE_OK;

	bind_txt(lc->st[S_LOCK_ADD], 1, name, &brc);
	if ((rc = run(lc, lc->st[S_LOCK_ADD], brc)) < 0)
		return rc;
	lr->id = sqlite3_last_insert_rowid(lc->db);
	lr->max_holders = 1;
	lr->nwait = 0;
	*found = true;
	return 0;
}

/*
 * Finds the lock row of `name`, creating it when `create` is set.
 * 0 with *found, or an LC_E_ code.
 */
int
lock_get(struct lockcore *lc, const char *name, bool create,
    struct lockrow *lr, bool *found)
{
	sqlite3_stmt *s = lc->st[S_LOCK_GET];
	int rc, brc = SQLITE_OK;

	bind_txt(s, 1, name, &brc);
	rc = step_row(lc, s, brc, found);
	if (rc == 0 && *found) {
		lr->id = sqlite3_column_int64(s, 0);
		lr->max_holders = sqlite3_column_int(s, 1);
		lr->nwait = sqlite3_column_int64(s, 2);
	}
	done(s);
	if (rc < 0 || *found || !create)
		return rc;
	return lock_add(lc, name, lr, found);
}

/* Deletes the expired holders of a lock; *n (may be NULL) gets how many. */
int
purge_holders(struct lockcore *lc, int64_t lock_id, int64_t now, int *n)
{
	sqlite3_stmt *s = lc->st[S_H_PURGE];
	int rc, brc = SQLITE_OK;

	bind_i64(s, 1, lock_id, &brc);
	bind_i64(s, 2, now, &brc);
	rc = run(lc, s, brc);
	if (rc == 0 && n != NULL)
		*n = sqlite3_changes(lc->db);
	return rc;
}

/*
 * The fast paths' start: finds the lock row of `name` (creating it when
 * `create` is set) with its live holders in *hs, and *queued set if any
 * waiter row exists (live or not).  Expired holders are purged on the way.
 * One statement where lock_get(), purge_holders() and holder_state() are
 * three, and a fourth (the queue walk) is skipped when nobody is queued.
 * 0 with *found, or an LC_E_ code.
 */
int
lock_state(struct lockcore *lc, const char *name, int64_t now, bool create,
    struct lockrow *lr, struct hstate *hs, bool *queued, bool *found)
{
	sqlite3_stmt *s = lc->st[S_LOCK_STATE];
	int rc, brc = SQLITE_OK, expired = 0;

	hs->count = 0;
	hs->min_expires = 0;
	*queued = false;
	bind_txt(s, 1, name, &brc);
	bind_i64(s, 2, now, &brc);
	rc = step_row(lc, s, brc, found);
	/* An aggregate: one row, whose id is NULL when there is no lock. */
	if (rc == 0 && *found)
		*found = sqlite3_column_type(s, 0) != SQLITE_NULL;
	if (rc == 0 && *found) {
		lr->id = sqlite3_column_int64(s, 0);
		lr->max_holders = sqlite3_column_int(s, 1);
		hs->count = sqlite3_column_int(s, 2);
		hs->min_expires = sqlite3_column_int64(s, 3);  /* NULL: 0 */
		expired = sqlite3_column_int(s, 4);
		lr->nwait = sqlite3_column_int64(s, 5);
		*queued = lr->nwait > 0;
	}
	done(s);
	if (rc < 0)
		return rc;
	if (*found)
		return expired > 0 ? purge_holders(lc, lr->id, now, NULL) : 0;
	if (!create)
		return 0;
	return lock_add(lc, name, lr, found);
}

/* Counts the live holders of a lock and finds their earliest expiry. */
int
holder_state(struct lockcore *lc, int64_t lock_id, int64_t now,
    struct hstate *hs)
{
	sqlite3_stmt *s = lc->st[S_H_STATE];
	int rc, brc = SQLITE_OK;
	bool found;

	hs->count = 0;
	hs->min_expires = 0;
	bind_i64(s, 1, lock_id, &brc);
	bind_i64(s, 2, now, &brc);
	rc = step_row(lc, s, brc, &found);
	if (rc == 0 && found) {
		hs->count = sqlite3_column_int(s, 0);
		hs->min_expires = sqlite3_column_int64(s, 1);  /* NULL: 0 */
	}
	done(s);
	return rc;
}

/* Reads a row of HOLDER_COLS. */
int
read_holder(sqlite3_stmt *s, struct hrow *h)
{
	int rc;

	h->lock_id = sqlite3_column_int64(s, 0);
	h->fence = sqlite3_column_int64(s, 2);
	h->acquired_at = sqlite3_column_int64(s, 4);
	h->expires_at = sqlite3_column_int64(s, 5);
	h->waiter_id = sqlite3_column_int64(s, 6);      /* NULL: 0 */
	h->wkey = (uint64_t)sqlite3_column_int64(s, 7);
	h->ttl_ms = sqlite3_column_int64(s, 9);
	if (!copy_blob(h->sec.token_hash, SECRET_HASH_LEN, s, 1))
		memset(h->sec.token_hash, 0, SECRET_HASH_LEN);  /* no match */
	h->sec.has_seal = copy_blob(h->sec.seal, SECRET_SEAL_LEN, s, 8);
	rc = copy_col(h->owner, sizeof(h->owner), s, 3);
	return rc;
}

int
holder_delete(struct lockcore *lc, const struct hrow *h)
{
	int brc = SQLITE_OK;

	bind_i64(lc->st[S_H_DEL], 1, h->lock_id, &brc);
	bind_i64(lc->st[S_H_DEL], 2, h->fence, &brc);
	return run(lc, lc->st[S_H_DEL], brc);
}

/* Loads waiter `id` with its lock.  0 with *found, or an LC_E_ code. */
int
waiter_get(struct lockcore *lc, int64_t id, struct wrow *w, bool *found)
{
	sqlite3_stmt *s = lc->st[S_W_GET];
	int rc, brc = SQLITE_OK;

	bind_i64(s, 1, id, &brc);
	rc = step_row(lc, s, brc, found);
	if (rc == 0 && *found) {
		w->lock_id = sqlite3_column_int64(s, 0);
		w->has_rid = copy_blob(w->rid_hash, SECRET_HASH_LEN, s, 2);
		w->ttl_ms = sqlite3_column_int64(s, 3);
		w->wkey = (uint64_t)sqlite3_column_int64(s, 4);
		w->max_holders = sqlite3_column_int(s, 6);
		w->deadline = sqlite3_column_int64(s, 7);
		if (!copy_blob(w->sec.token_hash, SECRET_HASH_LEN, s, 8))
			memset(w->sec.token_hash, 0, SECRET_HASH_LEN);
		w->sec.has_seal = copy_blob(w->sec.seal, SECRET_SEAL_LEN, s, 9);
		rc = copy_col(w->owner, sizeof(w->owner), s, 1);
		if (rc == 0)
			rc = copy_col(w->name, sizeof(w->name), s, 5);
	}
	done(s);
	return rc;
}

int
waiter_delete(struct lockcore *lc, int64_t id)
{
	int brc = SQLITE_OK;

	bind_i64(lc->st[S_W_DEL], 1, id, &brc);
	return run(lc, lc->st[S_W_DEL], brc);
}

/*
 * Counts waiters of a lock with after < id < below and deadline > now, up
 * to `limit` of them (-1: all).  Counting is O(n) in the queue, and most
 * callers only need to know whether there is one, or a count that stops
 * mattering at LC_AHEAD_MAX.
 */
int
waiter_count(struct lockcore *lc, int64_t lock_id, int64_t after,
    int64_t below, int64_t now, int64_t limit, int *n)
{
	sqlite3_stmt *s = lc->st[S_W_COUNT];
	int rc, brc = SQLITE_OK;
	bool found;

	*n = 0;
	bind_i64(s, 1, lock_id, &brc);
	bind_i64(s, 2, after, &brc);
	bind_i64(s, 3, below, &brc);
	bind_i64(s, 4, now, &brc);
	bind_i64(s, 5, limit, &brc);
	rc = step_row(lc, s, brc, &found);
	if (rc == 0 && found)
		*n = sqlite3_column_int(s, 0);
	done(s);
	return rc;
}
