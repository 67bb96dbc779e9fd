/*
 * lockcore: the implementation of httplock's lock semantics on SQLite.
 *
 * One lock is a row of `locks`; a grant is a row of `holders`; a request
 * waiting for a lock is a row of `waiters`, and waiter ids (AUTOINCREMENT,
 * so they only grow) define the FIFO order.  Every read-modify-write runs in
 * one BEGIN IMMEDIATE transaction, so the database serialises all writers of
 * all processes; expired holders and dead waiters are treated as absent and
 * deleted lazily by whichever transaction next touches their lock.
 *
 * Statements are prepared once per connection from the table `sqltab` and
 * reset (with their bindings cleared) after every use.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "clock.h"
#include "lockcore.h"
#include "proc.h"
#include "secret.h"

_Static_assert(LC_TOKEN_LEN == SECRET_TOKEN_LEN, "a token is what secret.h makes");

#define SCHEMA_VERSION   5
#define BUSY_DEFAULT_MS  5000
#define BUSY_YIELDS      4      /* sched_yield() this often before sleeping */
#define BUSY_SLEEP_MIN   20     /* first sleep in the busy handler, µs */
#define BUSY_SLEEP_MAX   1000   /* longest sleep in the busy handler, µs */
#define ERRBUF_LEN       256
#define CKPT_FRAMES      1000   /* checkpoint when the WAL has this many
                                   frames (SQLite's own default) */
#define CKPT_WAIT_MS     20     /* longest wait of one checkpoint */
#define WAL_LIMIT        (8 * 1024 * 1024)  /* journal_size_limit, bytes:
                                   twice what CKPT_FRAMES frames take */
#define FENCE_JUMP       ((int64_t)1 << 32)  /* fences skipped after an
                                   unclean shutdown (see below) */
#define BOOT_ID_LEN      64
#define SWEEP_WAITER_LATE_MS (60 * 1000)  /* lockcore_sweep deletes waiter
                                   rows this long past their deadline */

/*
 * Unclean shutdowns.  With synchronous=NORMAL in WAL mode a commit survives
 * the crash of its process (the OS still has it) but not an OS crash or a
 * power loss: the last commits before it may be gone from the file when
 * the machine comes back.  Those commits may have granted locks whose
 * clients still hold them (their processes ran on other machines), and
 * their fences were seen.  So every connection registers itself in
 * `sessions` with the kernel's boot id, in a transaction synced to disk
 * (synchronous=FULL for that commit) before it can grant anything, and
 * removes its row when closed.  A later open that finds a row of another
 * boot knows that the machine went down under a connection that was open:
 * if that connection ran with synchronous=NORMAL, commits may have been
 * lost, and in the same transaction that removes the stale rows it
 *  - raises meta.fence_floor to FENCE_JUMP above the highest fence on disk,
 *    so no fence that a lost commit issued is issued again (the lost tail
 *    of the WAL holds far fewer than 2^32 grants), and
 *  - unless no_crash_grace, sets meta.grace_until to the time this boot
 *    began plus the longest lease any of those connections could grant:
 *    every lost grant was made before the crash, hence before the boot,
 *    and has expired by then.  Until then no new grant is made
 *    (LC_E_RECOVERING); renewals, releases and reads go on.
 * A row of this boot whose process is gone is a process crash, which
 * loses nothing, and is only removed.  A machine that was shut down
 * cleanly closed its connections first and needs nothing.  With
 * synchronous=FULL every grant was on disk before it was answered.
 */

/*
 * Fences.  A fence must never be issued twice for a name, for as long as
 * the database exists, or a new grant could carry a fence an old holder
 * already showed to a resource.  Every fence is at least meta.fence_floor,
 * which only grows:
 *  - a lockcore_open that finds no other connection open (the first
 *    after a stop) raises it to the wall clock in microseconds, so a copy
 *    of the database restored from a backup (with the server stopped)
 *    issues fences above every fence the server issued after the copy
 *    was taken: those grew by one per grant from a floor set at an
 *    earlier start, far more slowly than the clock.  Later opens leave it,
 *    so fences of a running server go up by one per grant;
 *  - lockcore_sweep deletes the rows of locks idle for a while (no live
 *    holder, no waiter, no grant since `idle_ms`: locks.used_at) and
 *    raises it above their fence_seq in the same transaction, so a name
 *    used again starts above every fence it had;
 *  - an unclean shutdown raises it by FENCE_JUMP (above).
 * The grant's transaction reads it (S_FENCE_BUMP), so a floor raised by
 * another connection is in force at once.
 */
/*
 * Tokens and request ids are credentials and are stored only as SHA-256
 * hashes (secret.h): `token_hash` and `rid_hash`; `seal` lets a retry with
 * the request_id get its token back.  A waiter row carries the hash and
 * seal of the token its grant will have: the request that waits knows the
 * token (lock_wait_info.token), whoever grants the row copies the hashes.
 */
/*
 * `holders`, for schema_sql and the rebuild from version 4.  A grant is
 * found by its lock (and a fence is unique within its lock), so the table
 * is a b-tree keyed by (lock_id, fence), WITHOUT ROWID: a grant or a
 * release writes one leaf of it (bench/RESULTS.md, W1).  The partial
 * indexes are written only by grants with a request_id or made for a
 * waiter.  Expiry needs no index: expired holders are purged by whichever
 * transaction next looks at their lock (lock_id, the key), lockcore_sweep
 * walks the holders by lock, and lock_list reads every live holder anyway.
 * `ttl_ms` is the lease a renew without a ttl extends by.
 */
#define HOLDERS_TABLE "("                                           \
    " token_hash BLOB NOT NULL,"                                    \
    " lock_id INTEGER NOT NULL,"                                    \
    " fence INTEGER NOT NULL,"                                      \
    " owner TEXT NOT NULL DEFAULT '',"                              \
    " rid_hash BLOB,"                                               \
    " seal BLOB,"                                                   \
    " acquired_at INTEGER NOT NULL,"                                \
    " expires_at INTEGER NOT NULL,"                                 \
    " ttl_ms INTEGER NOT NULL,"                                     \
    " waiter_id INTEGER,"                                           \
    " wkey INTEGER,"                                                \
    " PRIMARY KEY (lock_id, fence)) WITHOUT ROWID"

#define LOCKS_TABLE                                                 \
    "CREATE TABLE IF NOT EXISTS locks("                             \
    " id INTEGER PRIMARY KEY,"                                      \
    " name TEXT NOT NULL UNIQUE,"                                   \
    " fence_seq INTEGER NOT NULL DEFAULT 0,"                        \
    " max_holders INTEGER NOT NULL DEFAULT 1,"                      \
    " nwait INTEGER NOT NULL DEFAULT 0,"                            \
    " used_at INTEGER NOT NULL DEFAULT 0);"

/* locks.nwait: the lock's waiter rows, dead ones included, so that an
 * enqueue need not count a long queue (O(n) under the write lock). */
#define NWAIT_TRIGGERS                                              \
    "CREATE TRIGGER IF NOT EXISTS waiters_ins AFTER INSERT ON waiters"\
    " BEGIN UPDATE locks SET nwait = nwait + 1 WHERE id = NEW.lock_id; END;"\
    "CREATE TRIGGER IF NOT EXISTS waiters_del AFTER DELETE ON waiters"\
    " BEGIN UPDATE locks SET nwait = nwait - 1 WHERE id = OLD.lock_id; END;"

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS meta("
    " key TEXT PRIMARY KEY,"
    " value INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', 5);"
    LOCKS_TABLE
    "CREATE TABLE IF NOT EXISTS holders" HOLDERS_TABLE ";"
    "CREATE UNIQUE INDEX IF NOT EXISTS holders_waiter ON holders(waiter_id)"
    " WHERE waiter_id IS NOT NULL;"
    "CREATE UNIQUE INDEX IF NOT EXISTS holders_rid ON holders(lock_id,"
    " rid_hash) WHERE rid_hash IS NOT NULL;"
    "CREATE TABLE IF NOT EXISTS waiters("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " lock_id INTEGER NOT NULL,"
    " rid_hash BLOB,"
    " owner TEXT NOT NULL DEFAULT '',"
    " ttl_ms INTEGER NOT NULL,"
    " deadline INTEGER NOT NULL,"
    " pid INTEGER NOT NULL,"
    " pstart INTEGER NOT NULL,"
    " wkey INTEGER NOT NULL,"
    " token_hash BLOB,"
    " seal BLOB);"
    "CREATE INDEX IF NOT EXISTS waiters_lock ON waiters(lock_id, id);"
    "CREATE UNIQUE INDEX IF NOT EXISTS waiters_rid ON waiters(lock_id,"
    " rid_hash) WHERE rid_hash IS NOT NULL;"
    NWAIT_TRIGGERS;

/* Sessions and the fence floor (see "Unclean shutdowns"), new in version 3. */
static const char sessions_sql[] =
    "INSERT OR IGNORE INTO meta(key, value) VALUES ('fence_floor', 0);"
    "INSERT OR IGNORE INTO meta(key, value) VALUES ('grace_until', 0);"
    "CREATE TABLE IF NOT EXISTS sessions("
    " id INTEGER PRIMARY KEY,"
    " boot_id TEXT NOT NULL,"
    " pid INTEGER NOT NULL,"
    " pstart INTEGER NOT NULL,"
    " sync_full INTEGER NOT NULL,"
    " max_ttl_ms INTEGER NOT NULL,"
    " opened_at INTEGER NOT NULL);";

/*
 * Upgrades.  Versions 1 to 3 are first brought to version 4 (the
 * statements below, which know version 4's tables), then version 4 to 5.
 * Version 4's `holders` is rebuilt from older ones: version 3 added
 * waiter_id and wkey (a waiter granted by someone else's transaction finds
 * its grant with a read) and dropped token's unique index (never used for
 * a lookup, yet every grant wrote a random leaf of it: bench/RESULTS.md,
 * W5); version 4 made the table WITHOUT ROWID; no two rows of a lock
 * share a fence, so the copy cannot fail on the new key unless the data
 * were already broken.  Version 4 added locks.nwait, counted once here.
 */
#define HOLDERS_V4_TABLE "("                                        \
    " token TEXT NOT NULL, lock_id INTEGER NOT NULL,"               \
    " fence INTEGER NOT NULL, owner TEXT NOT NULL DEFAULT '',"      \
    " request_id TEXT, acquired_at INTEGER NOT NULL,"               \
    " expires_at INTEGER NOT NULL, waiter_id INTEGER, wkey INTEGER,"\
    " PRIMARY KEY (lock_id, fence)) WITHOUT ROWID"
#define HOLDERS_V1_COLUMNS \
    "token, lock_id, fence, owner, request_id, acquired_at, expires_at"
#define REBUILD_HOLDERS_V4(cols)                                    \
    "CREATE TABLE holders_v4" HOLDERS_V4_TABLE ";"                  \
    "INSERT INTO holders_v4(" cols ") SELECT " cols " FROM holders;"\
    "DROP TABLE holders;"                                           \
    "ALTER TABLE holders_v4 RENAME TO holders;"

static const char rebuild_holders_v1[] = REBUILD_HOLDERS_V4(HOLDERS_V1_COLUMNS);
static const char rebuild_holders_v3[] =
    REBUILD_HOLDERS_V4(HOLDERS_V1_COLUMNS ", waiter_id, wkey");

/* Version 4's tables and indexes that older files may lack. */
static const char schema_v4_sql[] =
    LOCKS_TABLE
    "CREATE TABLE IF NOT EXISTS waiters("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, lock_id INTEGER NOT NULL,"
    " request_id TEXT, owner TEXT NOT NULL DEFAULT '',"
    " ttl_ms INTEGER NOT NULL, deadline INTEGER NOT NULL,"
    " pid INTEGER NOT NULL, pstart INTEGER NOT NULL,"
    " wkey INTEGER NOT NULL);";

static const char add_nwait_sql[] =
    "ALTER TABLE locks ADD COLUMN nwait INTEGER NOT NULL DEFAULT 0;";

/*
 * Version 5 keeps no token or request_id in plain text.  Holders are
 * rebuilt with the hashes, a seal for grants with a request_id (so a
 * retry still gets its token), and ttl_ms (the lease as granted).
 * Waiter rows are deleted: their requests were served by processes of an
 * older httplock, which cannot use this file, and without the token their
 * grant would carry nobody could answer them.  The functions hl_sha256
 * and hl_seal exist only on the connection that upgrades (upgrade_funcs).
 */
static const char upgrade_v5_sql[] =
    "CREATE TABLE holders_v5" HOLDERS_TABLE ";"
    "INSERT INTO holders_v5(token_hash, lock_id, fence, owner, rid_hash,"
    " seal, acquired_at, expires_at, ttl_ms, waiter_id, wkey)"
    " SELECT hl_sha256(token), lock_id, fence, owner, hl_sha256(request_id),"
    " hl_seal(token, request_id), acquired_at, expires_at,"
    " max(expires_at - acquired_at, 1), waiter_id, wkey FROM holders;"
    "DROP TABLE holders;"
    "ALTER TABLE holders_v5 RENAME TO holders;"
    "DELETE FROM waiters;"
    "ALTER TABLE locks ADD COLUMN used_at INTEGER NOT NULL DEFAULT 0;"
    "UPDATE locks SET nwait = 0;"
    "DROP INDEX IF EXISTS waiters_req;"
    "ALTER TABLE waiters RENAME COLUMN request_id TO rid_hash;"
    "ALTER TABLE waiters ADD COLUMN token_hash BLOB;"
    "ALTER TABLE waiters ADD COLUMN seal BLOB;"
    "INSERT OR REPLACE INTO meta(key, value) VALUES ('scrub_pending', 1);";

enum stmt_id {
	S_BEGIN,
	S_BEGIN_RO,
	S_COMMIT,
	S_ROLLBACK,
	S_VERSION,
	S_PING,
	S_LOCK_GET,
	S_LOCK_STATE,
	S_LOCK_ADD,
	S_FENCE_BUMP,
	S_FENCE_GET,
	S_H_PURGE,
	S_H_STATE,
	S_H_LIST,
	S_H_BY_REQ,
	S_H_BY_WAITER,
	S_H_ADD,
	S_H_DEL,
	S_H_RENEW,
	S_H_TAKE,
	S_W_GET,
	S_W_BY_REQ,
	S_W_TAKE,
	S_W_WALK,
	S_W_COUNT,
	S_W_ADD,
	S_W_DEL,
	S_LIST,
	S_Q_HELD,
	S_Q_WAIT,
	S_SWEEP_RANGE,
	S_SWEEP_PURGE,
	S_SWEEP_WAITERS,
	S_SWEEP_TOP,
	S_SWEEP_IDLE,
	S_SWEEP_FLOOR,
	S_COUNT
};

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

struct lockcore {
	sqlite3         *db;
	sqlite3_stmt    *st[S_COUNT];
	int              busy_ms;          /* give up waiting after this */
	int              live_clock;       /* read the time after BEGIN */
	struct timespec  busy_t0;          /* when the current wait began */
	char             err[ERRBUF_LEN];  /* last error, for lockcore_errmsg */
	int              wal_frames;       /* WAL frames after our last commit */
	int              ckpt_at;          /* checkpoint when wal_frames gets here */
	int64_t          session;          /* our row of `sessions`, 0 if none */
	struct lockcore_recovery rec;      /* fence floor and grace in force */
	pid_t            self_pid;         /* this process, as of self_pstart */
	uint64_t         self_pstart;      /* its start time, 0 if unknown */
	bool             batch;            /* in lockcore_batch_begin() */
	bool             batch_failed;     /* a savepoint could not be undone
	                                      or released: roll back at end */
	sqlite3_stmt    *sp[3];            /* savepoint, release, rollback to */
	int64_t          sweep_cursor;     /* lockcore_sweep's next batch
	                                      starts after this lock id */
	int64_t          max_ttl_ms;       /* the longest lease we grant (the
	                                      crash grace counts on it) */
};

/* The lock row a transaction works on. */
struct lockrow {
	int64_t id;
	int     max_holders;
	int64_t nwait;        /* its waiter rows, dead ones included */
};

/* What walk_waiters() found in a lock's queue. */
struct walk {
	int     live;     /* live waiters seen */
	int64_t head;     /* id of the first live waiter, 0 if none */
	pid_t   head_pid; /* its process */
	int     removed;  /* dead waiters deleted */
};

/* Live holders of a lock. */
struct hstate {
	int     count;
	int64_t min_expires;  /* 0 if count == 0 */
};

/* The secrets of a grant as stored (secret.h). */
struct hsecret {
	unsigned char token_hash[SECRET_HASH_LEN];
	unsigned char seal[SECRET_SEAL_LEN];
	bool    has_seal;
};

/* A holder row as HOLDER_COLS returns it. */
struct hrow {
	int64_t lock_id;     /* with fence, the row's key */
	struct hsecret sec;
	int64_t fence;
	char    owner[LC_OWNER_MAX + 1];
	int64_t acquired_at;
	int64_t expires_at;
	int64_t waiter_id;   /* the waiter row it was granted to, 0 if none */
	uint64_t wkey;       /* that row's wkey when it was granted */
	int64_t ttl_ms;      /* the lease as granted or last renewed */
};

/* A waiter row with the lock it waits for, as S_W_GET returns it. */
struct wrow {
	int64_t lock_id;
	char    owner[LC_OWNER_MAX + 1];
	unsigned char rid_hash[SECRET_HASH_LEN];
	bool    has_rid;
	struct hsecret sec;  /* of the token its grant will carry */
	int64_t ttl_ms;
	uint64_t wkey;
	char    name[LC_KEY_MAX + 1];
	int     max_holders;
	int64_t deadline;
};

/* Records the connection's error message and maps rc to an LC_E_ code. */
static int
dbfail(struct lockcore *lc, int rc)
{
	(void)snprintf(lc->err, sizeof(lc->err), "%s",
	    sqlite3_errmsg(lc->db));
	return (rc & 0xff) == SQLITE_NOMEM ? LC_E_NOMEM : LC_E_DB;
}

/* Resets `s` and clears its bindings, ready for the next use. */
static void
done(sqlite3_stmt *s)
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

/* Binds text, or NULL when v is NULL; the caller keeps v until done(). */
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

/* Binds n bytes, or NULL when v is NULL; the caller keeps v until done(). */
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
 * whether a row came back (read it, then call done()), or an LC_E_ code.
 */
static int
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
static int
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

/* Copies a NUL-terminated string; -1 if it does not fit. */
static int
copy_str(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);

	if (n >= size)
		return -1;
	memcpy(dst, src, n + 1);
	return 0;
}

/* True if s is a NUL-terminated string of 1..max bytes. */
static bool
valid_str(const char *s, size_t max)
{
	size_t n;

	if (s == NULL)
		return false;
	n = strnlen(s, max + 1);
	return n >= 1 && n <= max;
}

/* True if s is NULL or a string of at most max bytes. */
static bool
valid_opt(const char *s, size_t max)
{
	return s == NULL || strnlen(s, max + 1) <= max;
}

/* The request_id to store: NULL for none (NULL or ""). */
static const char *
opt_rid(const char *rid)
{
	return rid == NULL || rid[0] == '\0' ? NULL : rid;
}

/* Notes a failure of secret.h in lc->err.  LC_E_DB. */
static int
secretfail(struct lockcore *lc, const char *what)
{
	(void)snprintf(lc->err, sizeof(lc->err), "%s failed", what);
	return LC_E_DB;
}

/*
 * The secrets of a new grant or waiter row: a fresh token into token[],
 * its hash, and with a request_id its seal.  0 or LC_E_DB.
 */
static int
secret_new(struct lockcore *lc, const char *rid, char token[LC_TOKEN_LEN + 1],
    struct hsecret *sec)
{
	if (secret_token(token) < 0)
		return secretfail(lc, "getrandom");
	if (secret_hash(token, LC_TOKEN_LEN, sec->token_hash) < 0)
		return secretfail(lc, "SHA-256");
	sec->has_seal = rid != NULL;
	if (rid != NULL && secret_seal(token, rid, sec->seal) < 0)
		return secretfail(lc, "seal");
	return 0;
}

/* The hash of a request_id, or NULL for none.  0 or LC_E_DB. */
static int
rid_hash(struct lockcore *lc, const char *rid,
    unsigned char buf[SECRET_HASH_LEN], const unsigned char **out)
{
	*out = NULL;
	if (rid == NULL)
		return 0;
	if (secret_hash(rid, strlen(rid), buf) < 0)
		return secretfail(lc, "SHA-256");
	*out = buf;
	return 0;
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
static int
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
static int
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

static int
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
static int
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

/* True if `table` has a column `col` (both trusted identifiers). */
static bool
has_column(sqlite3 *db, const char *table, const char *col)
{
	sqlite3_stmt *s = NULL;
	char sql[128];
	bool yes;

	(void)snprintf(sql, sizeof(sql), "SELECT %s FROM %s LIMIT 0", col,
	    table);
	yes = sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK;
	(void)sqlite3_finalize(s);
	return yes;
}

/*
 * The schema's version, 0 if there is no schema.  Checked first because
 * creating or migrating it needs the write lock, which a busy database may
 * not give a new connection soon.
 */
static int64_t
schema_version(sqlite3 *db)
{
	sqlite3_stmt *s = NULL;
	int64_t v = 0;

	if (sqlite3_prepare_v2(db, "SELECT value FROM meta"
	    " WHERE key = 'schema_version'", -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	(void)sqlite3_finalize(s);
	return v;
}

/* hl_sha256(x): the SHA-256 of text x as a blob; NULL for NULL. */
static void
fn_sha256(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	unsigned char h[SECRET_HASH_LEN];
	const unsigned char *t;

	(void)argc;
	if (sqlite3_value_type(argv[0]) == SQLITE_NULL)
		return;
	if ((t = sqlite3_value_text(argv[0])) == NULL ||
	    secret_hash((const char *)t, (size_t)sqlite3_value_bytes(argv[0]),
	    h) < 0) {
		sqlite3_result_error(ctx, "hl_sha256 failed", -1);
		return;
	}
	sqlite3_result_blob(ctx, h, sizeof(h), SQLITE_TRANSIENT);
}

/* hl_seal(token, rid): the seal of token for rid; NULL when rid is. */
static void
fn_seal(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	unsigned char seal[SECRET_SEAL_LEN];
	const unsigned char *tok, *rid;

	(void)argc;
	if (sqlite3_value_type(argv[1]) == SQLITE_NULL)
		return;
	tok = sqlite3_value_text(argv[0]);
	rid = sqlite3_value_text(argv[1]);
	if (tok == NULL || rid == NULL ||
	    secret_seal((const char *)tok, (const char *)rid, seal) < 0) {
		sqlite3_result_error(ctx, "hl_seal failed", -1);
		return;
	}
	sqlite3_result_blob(ctx, seal, sizeof(seal), SQLITE_TRANSIENT);
}

/* Adds (or with `on` false removes) the functions of upgrade_v5_sql. */
static int
upgrade_funcs(sqlite3 *db, bool on)
{
	int rc;

	rc = sqlite3_create_function(db, "hl_sha256", 1, SQLITE_UTF8, NULL,
	    on ? fn_sha256 : NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_create_function(db, "hl_seal", 2, SQLITE_UTF8,
		    NULL, on ? fn_seal : NULL, NULL, NULL);
	return rc;
}

/*
 * After the upgrade to version 5 (meta.scrub_pending): pages that were free
 * before it may still hold plain tokens (secure_delete zeroes only what
 * the upgrade frees), and so may the WAL.  VACUUM rewrites the file, a
 * TRUNCATE checkpoint empties the WAL.  Either may fail (busy, disk
 * full, a reader in the WAL): then the flag stays, and every open tries
 * again until both have been done.
 */
static void
scrub(sqlite3 *db)
{
	sqlite3_stmt *s = NULL;
	int pending = 0, busy = 1;

	if (sqlite3_prepare_v2(db, "SELECT value FROM meta"
	    " WHERE key = 'scrub_pending'", -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		pending = sqlite3_column_int(s, 0);
	(void)sqlite3_finalize(s);
	s = NULL;
	if (!pending ||
	    sqlite3_exec(db, "VACUUM", NULL, NULL, NULL) != SQLITE_OK)
		return;
	if (sqlite3_prepare_v2(db, "PRAGMA wal_checkpoint(TRUNCATE)", -1, &s,
	    NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
		busy = sqlite3_column_int(s, 0);
	(void)sqlite3_finalize(s);
	if (busy == 0)
		(void)sqlite3_exec(db, "DELETE FROM meta"
		    " WHERE key = 'scrub_pending'", NULL, NULL, NULL);
}

/* Brings a file of version 1 to 3 to version 4 (see "Upgrades"). */
static int
upgrade_v4(sqlite3 *db)
{
	int rc = SQLITE_OK;

	/* Before version 4 `holders` had a rowid.  Version 2 was either of
	 * two halves of 3; the one with waiter_id existed only on a
	 * development branch. */
	if (has_column(db, "holders", "rowid"))
		rc = sqlite3_exec(db, has_column(db, "holders", "waiter_id") ?
		    rebuild_holders_v3 : rebuild_holders_v1, NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, schema_v4_sql, NULL, NULL, NULL);
	if (rc == SQLITE_OK && !has_column(db, "locks", "nwait"))
		rc = sqlite3_exec(db, add_nwait_sql, NULL, NULL, NULL);
	return rc;
}

/*
 * Creates the schema if absent, or upgrades versions 1 to 4 to 5, in one
 * transaction.  Another version is left for check_version() to refuse.
 * *upgraded is set when an existing file was upgraded.  0 or -1.
 */
static int
make_schema(sqlite3 *db, bool *upgraded, const char **why)
{
	static _Thread_local char schema_err[ERRBUF_LEN];
	int64_t v;
	int rc;

	*upgraded = false;
	if (schema_version(db) >= SCHEMA_VERSION) {
		scrub(db);
		return 0;
	}
	rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	/* Another process may have done it while we waited. */
	if (rc == SQLITE_OK && (v = schema_version(db)) < SCHEMA_VERSION) {
		if (v != 0 && v < 4)
			rc = upgrade_v4(db);
		if (rc == SQLITE_OK && v != 0) {
			/* Plain-text secrets must not stay behind in freed
			 * pages of the file. */
			rc = sqlite3_exec(db, "PRAGMA secure_delete=ON", NULL,
			    NULL, NULL);
			if (rc == SQLITE_OK)
				rc = upgrade_funcs(db, true);
			if (rc == SQLITE_OK)
				rc = sqlite3_exec(db, upgrade_v5_sql, NULL,
				    NULL, NULL);
			*upgraded = true;
		}
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(db, schema_sql, NULL, NULL, NULL);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(db, sessions_sql, NULL, NULL, NULL);
		if (rc == SQLITE_OK && v != 0)
			rc = sqlite3_exec(db, "UPDATE meta SET value = 5"
			    " WHERE key = 'schema_version'", NULL, NULL, NULL);
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		(void)snprintf(schema_err, sizeof(schema_err), "%s",
		    sqlite3_errmsg(db));
		*why = schema_err;
		if (!sqlite3_get_autocommit(db))
			(void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	}
	if (*upgraded) {
		(void)upgrade_funcs(db, false);
		(void)sqlite3_exec(db, "PRAGMA secure_delete=OFF", NULL, NULL,
		    NULL);
	}
	if (rc != SQLITE_OK)
		return -1;
	scrub(db);
	return 0;
}

/* Prepares every statement of sqltab.  0 or -1. */
static int
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
static int
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

/* Sessions: see "Unclean shutdowns" at the top. */

/* Prepares a statement kept by the caller.  0 or an LC_E_ code. */
static int
prepare1(struct lockcore *lc, const char *sql, sqlite3_stmt **out)
{
	int rc = sqlite3_prepare_v2(lc->db, sql, -1, out, NULL);

	return rc == SQLITE_OK ? 0 : dbfail(lc, rc);
}

static int
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

static int
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

/*
 * Removes the sessions that are over: those of another boot (noting in
 * *lost whether one of them ran with synchronous=NORMAL, and in *ttl the
 * longest lease one of them could grant) and those of this boot whose
 * process is gone.  *alone is set when no session is left.  Like walk_waiters(), the scan restarts after a delete.
 */
static int
reap_sessions(struct lockcore *lc, const char *boot, bool *lost,
    int64_t *ttl, bool *alone)
{
	sqlite3_stmt *s = NULL, *d = NULL;
	int64_t last = 0;
	int rc;

	*lost = false;
	*ttl = 0;
	*alone = true;
	if ((rc = prepare1(lc, "SELECT id, boot_id, pid, pstart, sync_full,"
	    " max_ttl_ms FROM sessions WHERE id > ?1 ORDER BY id", &s)) < 0 ||
	    (rc = prepare1(lc, "DELETE FROM sessions WHERE id = ?1", &d)) < 0)
		goto out;
	for (;;) {
		const char *b;
		int64_t id = 0;
		int brc = SQLITE_OK;
		bool found, other = false, drop = false;

		bind_i64(s, 1, last, &brc);
		if ((rc = step_row(lc, s, brc, &found)) < 0 || !found) {
			done(s);
			break;
		}
		id = sqlite3_column_int64(s, 0);
		b = (const char *)sqlite3_column_text(s, 1);
		other = b == NULL || strcmp(b, boot) != 0;
		drop = other || !proc_alive(
		    (pid_t)sqlite3_column_int64(s, 2),
		    (uint64_t)sqlite3_column_int64(s, 3));
		if (other) {
			lc->rec.stale_sessions++;
			if (sqlite3_column_int(s, 4) == 0)
				*lost = true;
			if (sqlite3_column_int64(s, 5) > *ttl)
				*ttl = sqlite3_column_int64(s, 5);
		}
		done(s);
		last = id;
		if (!drop) {
			*alone = false;
			continue;
		}
		bind_i64(d, 1, id, &brc);
		if ((rc = run(lc, d, brc)) < 0)
			break;
	}
out:
	(void)sqlite3_finalize(s);
	(void)sqlite3_finalize(d);
	return rc;
}

/*
 * The session transaction of lockcore_open(): reaps the sessions that are
 * over, recovers from an unclean shutdown if one of them says so, adds
 * ours and reads the floor and grace in force.  It is committed with
 * synchronous=FULL, so our row is on disk before we grant anything.
 */
static int
open_session(struct lockcore *lc, const struct lockcore_opts *opts,
    const char **why)
{
	char boot[BOOT_ID_LEN + 1];
	sqlite3_stmt *s = NULL;
	int64_t now = clock_wall_ms(), ttl, floor, top, until, my_ttl;
	int rc, brc = SQLITE_OK;
	bool lost, alone, found, full = opts != NULL && opts->synchronous_full;

	my_ttl = lc->max_ttl_ms;
	if (opts != NULL && opts->boot_id != NULL)
		(void)snprintf(boot, sizeof(boot), "%s", opts->boot_id);
	else
		proc_boot_id(boot, sizeof(boot));
	if (!full && sqlite3_exec(lc->db, "PRAGMA synchronous=FULL", NULL,
	    NULL, NULL) != SQLITE_OK) {
		*why = sqlite3_errmsg(lc->db);
		return -1;
	}
	if ((rc = tx_begin(lc, true, &now)) < 0)
		goto out;
	if ((rc = reap_sessions(lc, boot, &lost, &ttl, &alone)) < 0 ||
	    (rc = meta_get(lc, "fence_floor", &floor)) < 0 ||
	    (rc = meta_get(lc, "grace_until", &until)) < 0)
		goto end;
	/* The first connection after a stop: no fence below the wall clock
	 * in microseconds (see "Fences"). */
	if (alone && now < INT64_MAX / 1000 && floor < now * 1000) {
		floor = now * 1000;
		if ((rc = meta_set(lc, "fence_floor", floor)) < 0)
			goto end;
	}
	if (lost) {
		lc->rec.recovered = 1;
		if ((rc = prepare1(lc, "SELECT max(fence_seq) FROM locks",
		    &s)) < 0)
			goto end;
		rc = step_row(lc, s, SQLITE_OK, &found);
		top = rc == 0 && found ? sqlite3_column_int64(s, 0) : 0;
		(void)sqlite3_finalize(s);
		s = NULL;
		if (rc < 0)
			goto end;
		if (top < floor)
			top = floor;
		floor = top + FENCE_JUMP;
		if ((rc = meta_set(lc, "fence_floor", floor)) < 0)
			goto end;
		if (opts == NULL || !opts->no_crash_grace) {
			int64_t t = opts != NULL && opts->boot_time_ms > 0 ?
			    opts->boot_time_ms : proc_boot_time_ms();

			t += ttl > my_ttl ? ttl : my_ttl;
			if (t > until) {
				until = t;
				if ((rc = meta_set(lc, "grace_until",
				    until)) < 0)
					goto end;
			}
		}
	}
	if ((rc = prepare1(lc, "INSERT INTO sessions(boot_id, pid, pstart,"
	    " sync_full, max_ttl_ms, opened_at)"
	    " VALUES (?1, ?2, ?3, ?4, ?5, ?6)", &s)) < 0)
		goto end;
	bind_txt(s, 1, boot, &brc);
	bind_i64(s, 2, getpid(), &brc);
	bind_i64(s, 3, (int64_t)proc_start(getpid()), &brc);
	bind_i64(s, 4, full, &brc);
	bind_i64(s, 5, my_ttl, &brc);
	bind_i64(s, 6, now, &brc);
	if ((rc = run(lc, s, brc)) == 0)
		lc->session = sqlite3_last_insert_rowid(lc->db);
	(void)sqlite3_finalize(s);
	lc->rec.fence_floor = floor;
	lc->rec.grace_until = until > now ? until : 0;
end:
	rc = tx_end(lc, rc);
out:
	if (rc < 0)
		*why = lockcore_errmsg(lc);
	if (!full && sqlite3_exec(lc->db, "PRAGMA synchronous=NORMAL", NULL,
	    NULL, NULL) != SQLITE_OK && rc == 0) {
		*why = sqlite3_errmsg(lc->db);
		rc = -1;
	}
	return rc < 0 ? -1 : 0;
}

/*
 * The database and its -wal and -shm files hold grants: no other user may
 * read them, whatever the umask.  A new database file is created here
 * (SQLite gives its -wal and -shm the database file's mode) with mode
 * 0660 in a directory its group may write (the group shares the service,
 * docs/install.md), else 0600; files that exist lose every permission of
 * other users, and execute bits.  Names SQLite does not take as a plain
 * path (":memory:", URIs) are left alone.  0, or -1 with *why set.
 */
static int
secure_files(const char *path, const char **why)
{
	static const char *const sfx[] = { "", "-wal", "-shm" };
	char dir[PATH_MAX], name[PATH_MAX];
	const char *slash;
	struct stat st;
	mode_t mode = 0600;
	size_t i;
	int fd;

	if (path[0] == '\0' || strcmp(path, ":memory:") == 0 ||
	    strncmp(path, "file:", 5) == 0)
		return 0;
	slash = strrchr(path, '/');
	if (slash == NULL)
		(void)snprintf(dir, sizeof(dir), ".");
	else if ((size_t)(slash - path) < sizeof(dir))
		(void)snprintf(dir, sizeof(dir), "%.*s",
		    slash == path ? 1 : (int)(slash - path), path);
	else {
		*why = "path too long";
		return -1;
	}
	if (stat(dir, &st) == 0 && (st.st_mode & S_IWGRP))
		mode = 0660;
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    mode);
	if (fd >= 0) {
		/* The umask may have taken bits the group needs. */
		(void)fchmod(fd, mode);
		(void)close(fd);
		return 0;
	}
	if (errno != EEXIST) {
		*why = strerror(errno);
		return -1;
	}
	for (i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		if ((size_t)snprintf(name, sizeof(name), "%s%s", path,
		    sfx[i]) >= sizeof(name))
			continue;
		fd = open(name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		    (st.st_mode & (S_IRWXO | S_IXUSR | S_IXGRP)) != 0 &&
		    st.st_uid == geteuid())
			(void)fchmod(fd, st.st_mode & 0660);
		(void)close(fd);
	}
	return 0;
}

int
lockcore_open(struct lockcore **out, const char *path,
    const struct lockcore_opts *opts, char *err, size_t errlen)
{
	struct lockcore *lc = NULL;
	const char *what = "sqlite3_open_v2", *why = NULL;
	char pragma[64];
	int rc = LC_E_DB;
	bool upgraded;

	if (out == NULL || path == NULL)
		return LC_E_INVAL;
	*out = NULL;
	if ((lc = calloc(1, sizeof(*lc))) == NULL) {
		what = "calloc";
		why = strerror(errno);
		rc = LC_E_NOMEM;
		goto out;
	}
	lc->busy_ms = opts != NULL ? opts->busy_timeout_ms : BUSY_DEFAULT_MS;
	lc->max_ttl_ms = opts != NULL && opts->max_ttl_ms > 0 ?
	    opts->max_ttl_ms : LC_GRACE_DEFAULT_MS;
	lc->live_clock = opts != NULL && opts->live_clock;
	lc->self_pid = getpid();
	lc->self_pstart = proc_start(lc->self_pid);
	if (lc->busy_ms < 0)
		lc->busy_ms = 0;
	what = "permissions";
	if (secure_files(path, &why) < 0)
		goto out;
	what = "sqlite3_open_v2";
	if (sqlite3_open_v2(path, &lc->db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW,
	    NULL) != SQLITE_OK) {
		why = lc->db != NULL ? sqlite3_errmsg(lc->db) :
		    "out of memory";
		goto out;
	}
	if (sqlite3_busy_handler(lc->db, busy_wait, lc) != SQLITE_OK) {
		why = sqlite3_errmsg(lc->db);
		goto out;
	}
	what = "journal_mode";
	if (set_wal(lc, &why) < 0)
		goto out;
	what = "synchronous";
	(void)snprintf(pragma, sizeof(pragma), "PRAGMA synchronous=%s",
	    opts != NULL && opts->synchronous_full ? "FULL" : "NORMAL");
	if (sqlite3_exec(lc->db, pragma, NULL, NULL, NULL) != SQLITE_OK) {
		why = sqlite3_errmsg(lc->db);
		goto out;
	}
	what = "journal_size_limit";
	lc->ckpt_at = CKPT_FRAMES;
	(void)sqlite3_wal_hook(lc->db, wal_hook, lc);
	(void)snprintf(pragma, sizeof(pragma),
	    "PRAGMA journal_size_limit=%d", WAL_LIMIT);
	if (sqlite3_exec(lc->db, pragma, NULL, NULL, NULL) != SQLITE_OK) {
		why = sqlite3_errmsg(lc->db);
		goto out;
	}
	what = "schema";
	if (make_schema(lc->db, &upgraded, &why) < 0 ||
	    prepare_all(lc, &why) < 0 ||
	    check_version(lc, &why) < 0)
		goto out;
	what = "session";
	/* A read-only file would refuse every write later, and quietly. */
	if (sqlite3_db_readonly(lc->db, "main") == 1) {
		why = "the database is read-only";
		goto out;
	}
	if (open_session(lc, opts, &why) < 0)
		goto out;
	*out = lc;
	lc = NULL;
	rc = 0;
out:
	if (rc < 0 && err != NULL && errlen > 0)
		(void)snprintf(err, errlen, "%s: %s: %s", path, what,
		    why != NULL ? why : "failed");
	lockcore_close(lc);
	return rc;
}

void
lockcore_recovery(struct lockcore *lc, struct lockcore_recovery *r)
{
	*r = lc->rec;
}

/* Removes our session row; a failure leaves it to the next opener. */
static void
close_session(struct lockcore *lc)
{
	sqlite3_stmt *s = NULL;
	int64_t now = 0;
	int rc, brc = SQLITE_OK;

	if (lc->session == 0 || lc->st[S_BEGIN] == NULL)
		return;
	if (tx_begin(lc, true, &now) < 0)
		return;
	if ((rc = prepare1(lc, "DELETE FROM sessions WHERE id = ?1",
	    &s)) == 0) {
		bind_i64(s, 1, lc->session, &brc);
		rc = run(lc, s, brc);
	}
	(void)sqlite3_finalize(s);
	(void)tx_end(lc, rc);
	lc->session = 0;
}

void
lockcore_close(struct lockcore *lc)
{
	int i;

	if (lc == NULL)
		return;
	if (lc->batch && lockcore_batch_end(lc, LC_E_DB) < 0) {
		/* Rolled back, as asked: a batch left open is not done. */
	}
	close_session(lc);
	for (i = 0; i < S_COUNT; i++)
		(void)sqlite3_finalize(lc->st[i]);
	for (i = 0; i < 3; i++)
		(void)sqlite3_finalize(lc->sp[i]);
	(void)sqlite3_close_v2(lc->db);
	free(lc);
}

int
lockcore_batch_begin(struct lockcore *lc)
{
	static const char *const sql[3] = {
		"SAVEPOINT op", "RELEASE op", "ROLLBACK TO op"
	};
	int i, rc;

	if (lc->batch)
		return LC_E_INVAL;
	for (i = 0; i < 3; i++)
		if (lc->sp[i] == NULL && (rc = prepare1(lc, sql[i],
		    &lc->sp[i])) < 0)
			return rc;
	if ((rc = run(lc, lc->st[S_BEGIN], SQLITE_OK)) < 0)
		return rc;
	lc->batch = true;
	lc->batch_failed = false;
	return 0;
}

int
lockcore_batch_end(struct lockcore *lc, int rc)
{
	if (!lc->batch)
		return LC_E_INVAL;
	lc->batch = false;
	/* An error may have ended the transaction early, or left it
	 * untrustworthy. */
	if (rc >= 0 && (lc->batch_failed || sqlite3_get_autocommit(lc->db)))
		rc = LC_E_DB;
	lc->batch_failed = false;
	return tx_end(lc, rc);
}

const char *
lockcore_errmsg(struct lockcore *lc)
{
	if (lc == NULL)
		return "no connection";
	if (lc->err[0] != '\0')
		return lc->err;
	return sqlite3_errmsg(lc->db);
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
static int
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
static int
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
static int
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
static int
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
static int
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

/*
 * Finds the live holder of a lock whose token is `token`.  The token's
 * hash is compared with every holder's, in constant time, so neither SQL
 * nor an early exit tells how much of a guess was right.
 */
static int
holder_by_token(struct lockcore *lc, int64_t lock_id, const char *token,
    int64_t now, struct hrow *out, bool *found)
{
	sqlite3_stmt *s = lc->st[S_H_LIST];
	unsigned char th[SECRET_HASH_LEN];
	struct hrow h;
	int rc = SQLITE_OK;

	*found = false;
	if (secret_hash(token, LC_TOKEN_LEN, th) < 0)
		return secretfail(lc, "SHA-256");
	bind_i64(s, 1, lock_id, &rc);
	bind_i64(s, 2, now, &rc);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((rc = read_holder(s, &h)) < 0)
			goto out;
		if (secret_equal(h.sec.token_hash, th, SECRET_HASH_LEN)) {
			*out = h;
			*found = true;
		}
		rc = SQLITE_OK;
	}
	rc = rc == SQLITE_DONE ? 0 : dbfail(lc, rc);
out:
	done(s);
	return rc;
}

/* Finds the live holder of a lock that was granted to request_id. */
static int
holder_by_rid(struct lockcore *lc, int64_t lock_id, const char *rid,
    int64_t now, struct hrow *h, bool *found)
{
	sqlite3_stmt *s = lc->st[S_H_BY_REQ];
	unsigned char buf[SECRET_HASH_LEN];
	const unsigned char *rh;
	int rc, brc = SQLITE_OK;

	*found = false;
	if ((rc = rid_hash(lc, rid, buf, &rh)) < 0)
		return rc;
	bind_i64(s, 1, lock_id, &brc);
	bind_blob(s, 2, rh, SECRET_HASH_LEN, &brc);
	bind_i64(s, 3, now, &brc);
	rc = step_row(lc, s, brc, found);
	if (rc == 0 && *found)
		rc = read_holder(s, h);
	done(s);
	return rc;
}

static int
holder_delete(struct lockcore *lc, const struct hrow *h)
{
	int brc = SQLITE_OK;

	bind_i64(lc->st[S_H_DEL], 1, h->lock_id, &brc);
	bind_i64(lc->st[S_H_DEL], 2, h->fence, &brc);
	return run(lc, lc->st[S_H_DEL], brc);
}

/*
 * Fills a grant from a holder row of lock `name`, with `token` (which the
 * row keeps only as a hash; NULL: the caller does not know it, and
 * g->token is "").
 */
static int
fill_grant(struct lock_grant *g, const char *name, const struct hrow *h,
    const char *token)
{
	if (copy_str(g->name, sizeof(g->name), name) < 0 ||
	    copy_str(g->owner, sizeof(g->owner), h->owner) < 0 ||
	    copy_str(g->token, sizeof(g->token), token != NULL ? token : "") < 0)
		return LC_E_INVAL;
	g->ttl_ms = h->ttl_ms;
	g->fence = h->fence;
	g->acquired_at = h->acquired_at;
	g->expires_at = h->expires_at;
	return 0;
}

/*
 * Increments the lock's fence_seq (to at least the fence floors: this
 * connection's and meta's, see "Fences") and returns the new value in
 * *fence.
 */
static int
next_fence(struct lockcore *lc, int64_t lock_id, int64_t now, int64_t *fence)
{
	sqlite3_stmt *s = lc->st[S_FENCE_GET];
	int rc, brc = SQLITE_OK;
	bool found;

	bind_i64(lc->st[S_FENCE_BUMP], 1, lock_id, &brc);
	bind_i64(lc->st[S_FENCE_BUMP], 2, lc->rec.fence_floor, &brc);
	bind_i64(lc->st[S_FENCE_BUMP], 3, now, &brc);
	if ((rc = run(lc, lc->st[S_FENCE_BUMP], brc)) < 0)
		return rc;
	bind_i64(s, 1, lock_id, &brc);
	rc = step_row(lc, s, brc, &found);
	if (rc == 0 && !found) {
		(void)snprintf(lc->err, sizeof(lc->err), "lock row vanished");
		rc = LC_E_DB;
	}
	if (rc == 0)
		*fence = sqlite3_column_int64(s, 0);
	done(s);
	return rc;
}

/*
 * Grants lock `lock_id` of `name`: a new holder row with the next fence,
 * valid until now + ttl_ms, keeping the secrets `sec` of its token and
 * the hash of its request_id (rh, NULL for none).  Fills *g with `token`
 * (NULL: unknown to the caller).  Every grant is made here.  waiter_id
 * and wkey (0: none) name the waiter row it is made for.
 */
static int
grant_new(struct lockcore *lc, int64_t lock_id, const char *name,
    const char *owner, const unsigned char *rh, const struct hsecret *sec,
    const char *token, int64_t ttl_ms, int64_t now, int64_t waiter_id,
    uint64_t wkey, struct lock_grant *g)
{
	sqlite3_stmt *s = lc->st[S_H_ADD];
	struct hrow h;
	int rc, brc = SQLITE_OK;

	/* Every grant passes here, whoever makes it. */
	if (now < lc->rec.grace_until)
		return LC_E_RECOVERING;
	memset(&h, 0, sizeof(h));
	if (__builtin_add_overflow(now, ttl_ms, &h.expires_at) ||
	    copy_str(h.owner, sizeof(h.owner), owner) < 0)
		return LC_E_INVAL;
	h.acquired_at = now;
	h.ttl_ms = ttl_ms;
	h.lock_id = lock_id;
	if ((rc = next_fence(lc, lock_id, now, &h.fence)) < 0)
		return rc;
	bind_blob(s, 1, sec->token_hash, SECRET_HASH_LEN, &brc);
	bind_i64(s, 2, lock_id, &brc);
	bind_i64(s, 3, h.fence, &brc);
	bind_txt(s, 4, h.owner, &brc);
	bind_blob(s, 5, rh, SECRET_HASH_LEN, &brc);
	bind_blob(s, 6, sec->has_seal ? sec->seal : NULL, SECRET_SEAL_LEN,
	    &brc);
	bind_i64(s, 7, h.acquired_at, &brc);
	bind_i64(s, 8, h.expires_at, &brc);
	bind_i64(s, 9, ttl_ms, &brc);
	if (waiter_id != 0)
		bind_i64(s, 10, waiter_id, &brc);
	if (wkey != 0)
		bind_i64(s, 11, (int64_t)wkey, &brc);
	if ((rc = run(lc, s, brc)) < 0)
		return rc;
	return fill_grant(g, name, &h, token);
}

/* Loads waiter `id` with its lock.  0 with *found, or an LC_E_ code. */
static int
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

/*
 * Finds the waiter row of a lock with request_id; *id is 0 if none.  The
 * row's secrets go to *sec (sec may be NULL).
 */
static int
waiter_by_rid(struct lockcore *lc, int64_t lock_id, const char *rid,
    int64_t *id, struct hsecret *sec)
{
	sqlite3_stmt *s = lc->st[S_W_BY_REQ];
	unsigned char buf[SECRET_HASH_LEN];
	const unsigned char *rh;
	int rc, brc = SQLITE_OK;
	bool found;

	*id = 0;
	if ((rc = rid_hash(lc, rid, buf, &rh)) < 0)
		return rc;
	bind_i64(s, 1, lock_id, &brc);
	bind_blob(s, 2, rh, SECRET_HASH_LEN, &brc);
	rc = step_row(lc, s, brc, &found);
	if (rc == 0 && found) {
		*id = sqlite3_column_int64(s, 0);
		if (sec != NULL) {
			if (!copy_blob(sec->token_hash, SECRET_HASH_LEN, s, 1))
				memset(sec->token_hash, 0, SECRET_HASH_LEN);
			sec->has_seal = copy_blob(sec->seal, SECRET_SEAL_LEN,
			    s, 2);
		}
	}
	done(s);
	return rc;
}

static int
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
static int
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

/* The liveness of the previous waiter, since one process often has many. */
struct alive_cache {
	pid_t    pid;
	uint64_t pstart;
	bool     alive;
	bool     valid;
};

/*
 * A waiter is live iff its deadline is ahead and its process runs.  The
 * waiters of this very process need no look at /proc: it runs (unless it
 * forked since lockcore_open, which getpid() tells).
 */
static bool
waiter_live(const struct lockcore *lc, struct alive_cache *c, pid_t pid,
    uint64_t pstart, int64_t deadline, int64_t now)
{
	if (deadline <= now)
		return false;
	if (pid == lc->self_pid && lc->self_pstart != 0 && getpid() == pid)
		return pstart == 0 || pstart == lc->self_pstart;
	if (!c->valid || c->pid != pid || c->pstart != pstart) {
		c->pid = pid;
		c->pstart = pstart;
		c->alive = proc_alive(pid, pstart);
		c->valid = true;
	}
	return c->alive;
}

/*
 * Walks the waiters of a lock with id < below in FIFO order, deleting dead
 * ones.  With `all` unset it stops at the first live waiter, which is all
 * a grant decision needs: it saves a /proc read per queued waiter in every
 * transaction, and dead waiters further back are removed when they reach
 * the head (or, long past their deadline, by lockcore_sweep()).  The SELECT is restarted after each
 * delete rather than stepped across a change to the table it scans.
 */
static int
walk_waiters(struct lockcore *lc, int64_t lock_id, int64_t below,
    int64_t now, bool all, struct walk *w)
{
	sqlite3_stmt *s = lc->st[S_W_WALK];
	struct alive_cache cache = { 0, 0, false, false };
	int64_t cursor = 0, id, dead;
	int rc;

	memset(w, 0, sizeof(*w));
	for (;;) {
		dead = 0;
		rc = SQLITE_OK;
		bind_i64(s, 1, lock_id, &rc);
		bind_i64(s, 2, cursor, &rc);
		bind_i64(s, 3, below, &rc);
		while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
			rc = SQLITE_OK;
			cursor = id = sqlite3_column_int64(s, 0);
			if (!waiter_live(lc, &cache,
			    (pid_t)sqlite3_column_int64(s, 1),
			    (uint64_t)sqlite3_column_int64(s, 2),
			    sqlite3_column_int64(s, 3), now)) {
				dead = id;
				break;
			}
			if (w->live++ == 0) {
				w->head = id;
				w->head_pid = (pid_t)sqlite3_column_int64(s, 1);
			}
			if (!all)
				break;
		}
		rc = rc == SQLITE_DONE || rc == SQLITE_OK ? 0 : dbfail(lc, rc);
		done(s);
		if (rc < 0 || dead == 0 || (!all && w->live > 0))
			return rc;
		if ((rc = waiter_delete(lc, dead)) < 0)
			return rc;
		w->removed++;
	}
}

/*
 * Fills *info for waiter `id` (0: a request not queued) of a lock whose
 * queue walk_waiters() left in *w: the first live waiter is known to be
 * live; waiters behind it count if their deadline is ahead.
 */
static int
wait_info(struct lockcore *lc, int64_t lock_id, int64_t id,
    const struct walk *w, const struct hstate *hs, int64_t now,
    struct lock_wait_info *info)
{
	int rest = 0, rc = 0;

	info->waiter_id = id;
	info->holder_expires = hs->min_expires;
	info->ahead = w->live;
	info->handed = false;
	if (w->head != 0 && w->live == 1)
		rc = waiter_count(lc, lock_id, w->head, id != 0 ? id : INT64_MAX,
		    now, LC_AHEAD_MAX, &rest);
	info->ahead += rest;
	return rc;
}

/*
 * wait_info() for a request not queued yet, which would go to the tail:
 * the waiters ahead are estimated from the lock's row count (lr->nwait,
 * less the dead rows walk_waiters() just removed), which counts dead rows
 * further back too.  Counting them exactly is O(queue) under the write
 * lock, for every arrival: 10,000 waiters on one lock took 24 s to queue.
 */
static void
wait_info_new(const struct lockrow *lr, const struct walk *w,
    const struct hstate *hs, struct lock_wait_info *info)
{
	int64_t n = lr->nwait - w->removed;

	info->waiter_id = 0;
	info->holder_expires = hs->min_expires;
	info->ahead = n < w->live ? w->live : n > INT_MAX ? INT_MAX : (int)n;
	info->handed = false;
}

/* Clears the OUT fields of a handoff (NULL: nothing). */
static void
handoff_clear(struct lock_handoff *ho)
{
	if (ho != NULL) {
		ho->waiter_id = 0;
		ho->pid = 0;
		ho->key = 0;
		ho->expires_at = 0;
		memset(&ho->grant, 0, sizeof(ho->grant));
	}
}

/*
 * Finds the live grant made for waiter row `waiter_id` (by a handoff, or
 * by the waiter itself) and fills *g from it.  *wkey is the key of the
 * request that owned the row then.
 */
static int
holder_by_waiter(struct lockcore *lc, int64_t waiter_id, int64_t now,
    struct hrow *h, struct lock_grant *g, bool *found)
{
	sqlite3_stmt *s = lc->st[S_H_BY_WAITER];
	const char *name;
	int rc, brc = SQLITE_OK;

	bind_i64(s, 1, waiter_id, &brc);
	bind_i64(s, 2, now, &brc);
	rc = step_row(lc, s, brc, found);
	if (rc == 0 && *found && (rc = read_holder(s, h)) == 0) {
		name = (const char *)sqlite3_column_text(s, 10);
		rc = name != NULL ? fill_grant(g, name, h, NULL) : LC_E_NOMEM;
	}
	done(s);
	return rc;
}

/*
 * A lock lost a holder: grant its first live waiter in this transaction
 * if `ho` allows (see struct lock_handoff), the same grant poll_tx() would
 * make for that waiter.  *wake_next is set if live waiters remain that the
 * lock has room for and that were not granted here.  `queued` false says
 * the lock is known to have no waiter row, so there is nothing to do.
 */
static int
handoff(struct lockcore *lc, const struct lockrow *lr, bool queued,
    int64_t now, bool *wake_next, struct lock_handoff *ho)
{
	struct hstate hs;
	struct wrow wr;
	struct walk w;
	int n, rc;
	bool found;

	handoff_clear(ho);
	if (!queued) {
		*wake_next = false;
		return 0;
	}
	/* No grant during a grace (lockcore_open): the release still goes. */
	if (ho == NULL || now < lc->rec.grace_until) {
		if ((rc = waiter_count(lc, lr->id, 0, INT64_MAX, now, 1,
		    &n)) < 0)
			return rc;
		*wake_next = n > 0;
		return 0;
	}
	if ((rc = holder_state(lc, lr->id, now, &hs)) < 0 ||
	    (rc = walk_waiters(lc, lr->id, INT64_MAX, now, false, &w)) < 0)
		return rc;
	*wake_next = false;
	if (w.head == 0 || hs.count >= lr->max_holders)
		return 0;
	if (ho->only_pid != 0 && w.head_pid != ho->only_pid) {
		*wake_next = true;      /* the first waiter grants itself */
		return 0;
	}
	if ((rc = waiter_get(lc, w.head, &wr, &found)) < 0)
		return rc;
	if (!found) {
		(void)snprintf(lc->err, sizeof(lc->err), "waiter row vanished");
		return LC_E_DB;
	}
	/* The token is the waiting request's: only it knows it. */
	if ((rc = waiter_delete(lc, w.head)) < 0 ||
	    (rc = grant_new(lc, lr->id, wr.name, wr.owner,
	    wr.has_rid ? wr.rid_hash : NULL, &wr.sec, NULL, wr.ttl_ms, now,
	    w.head, wr.wkey, &ho->grant)) < 0)
		return rc;
	ho->waiter_id = w.head;
	ho->pid = w.head_pid;
	ho->key = wr.wkey;
	ho->expires_at = ho->grant.expires_at;
	if (hs.count + 1 < lr->max_holders) {
		if ((rc = waiter_count(lc, lr->id, w.head, INT64_MAX, now, 1,
		    &n)) < 0)
			return rc;
		*wake_next = n > 0;
	}
	return 0;
}

/* lock_acquire. */

/*
 * Opens the seal of a row made for request_id `rid` into token[].  0, or
 * LC_E_DB when it does not open (a row without a seal, damaged data).
 */
static int
unseal(struct lockcore *lc, const struct hsecret *sec, const char *rid,
    char token[LC_TOKEN_LEN + 1])
{
	if (!sec->has_seal ||
	    secret_unseal(sec->seal, rid, sec->token_hash, token) < 0) {
		(void)snprintf(lc->err, sizeof(lc->err),
		    "the token of a request_id's row cannot be unsealed");
		return LC_E_DB;
	}
	return 0;
}

/*
 * The request_id half of lock_acquire: a live grant for request_id is
 * returned again (its token unsealed with the request_id), a waiter row
 * is taken over by req->who.  *handled is false if neither exists.
 */
static int
acquire_retry(struct lockcore *lc, const struct lock_acquire_req *req,
    const char *rid, const struct lockrow *lr, int64_t now,
    struct lock_grant *grant, struct lock_wait_info *info, bool *handled)
{
	sqlite3_stmt *s = lc->st[S_W_TAKE];
	char token[LC_TOKEN_LEN + 1];
	struct hsecret sec;
	struct hrow h;
	struct hstate hs;
	struct walk w;
	int64_t id;
	int rc, brc = SQLITE_OK;
	bool found;

	*handled = true;
	if ((rc = holder_by_rid(lc, lr->id, rid, now, &h, &found)) < 0)
		return rc;
	if (found) {
		if ((rc = unseal(lc, &h.sec, rid, token)) < 0)
			return rc;
		/* The grant is now this request's: the one it was made for
		 * (still waiting, or sending it) must not undo it. */
		if (h.wkey != req->who.key) {
			bind_i64(lc->st[S_H_TAKE], 1, h.lock_id, &brc);
			bind_i64(lc->st[S_H_TAKE], 2, h.fence, &brc);
			bind_i64(lc->st[S_H_TAKE], 3, (int64_t)req->who.key,
			    &brc);
			if ((rc = run(lc, lc->st[S_H_TAKE], brc)) < 0)
				return rc;
		}
		return (rc = fill_grant(grant, req->name, &h, token)) < 0 ?
		    rc : LC_GRANTED;
	}
	if ((rc = waiter_by_rid(lc, lr->id, rid, &id, &sec)) < 0 || id == 0) {
		*handled = false;
		return rc;
	}
	if ((rc = unseal(lc, &sec, rid, info->token)) < 0)
		return rc;
	bind_i64(s, 1, id, &brc);
	bind_i64(s, 2, req->who.pid, &brc);
	bind_i64(s, 3, (int64_t)req->who.pstart, &brc);
	bind_i64(s, 4, (int64_t)req->who.key, &brc);
	bind_i64(s, 5, req->deadline, &brc);
	if ((rc = run(lc, s, brc)) < 0 ||
	    (rc = walk_waiters(lc, lr->id, id, now, false, &w)) < 0 ||
	    (rc = holder_state(lc, lr->id, now, &hs)) < 0 ||
	    (rc = wait_info(lc, lr->id, id, &w, &hs, now, info)) < 0)
		return rc;
	return LC_QUEUED;
}

/*
 * Appends a waiter row for req and returns its id in *id and in token[]
 * the token its grant will carry.
 */
static int
enqueue(struct lockcore *lc, const struct lock_acquire_req *req,
    const char *rid, int64_t lock_id, int64_t *id,
    char token[LC_TOKEN_LEN + 1])
{
	sqlite3_stmt *s = lc->st[S_W_ADD];
	unsigned char buf[SECRET_HASH_LEN];
	const unsigned char *rh;
	struct hsecret sec;
	int rc, brc = SQLITE_OK;

	if ((rc = rid_hash(lc, rid, buf, &rh)) < 0 ||
	    (rc = secret_new(lc, rid, token, &sec)) < 0)
		return rc;
	bind_i64(s, 1, lock_id, &brc);
	bind_blob(s, 2, rh, SECRET_HASH_LEN, &brc);
	bind_txt(s, 3, req->owner != NULL ? req->owner : "", &brc);
	bind_i64(s, 4, req->ttl_ms, &brc);
	bind_i64(s, 5, req->deadline, &brc);
	bind_i64(s, 6, req->who.pid, &brc);
	bind_i64(s, 7, (int64_t)req->who.pstart, &brc);
	bind_i64(s, 8, (int64_t)req->who.key, &brc);
	bind_blob(s, 9, sec.token_hash, SECRET_HASH_LEN, &brc);
	bind_blob(s, 10, sec.has_seal ? sec.seal : NULL, SECRET_SEAL_LEN,
	    &brc);
	if ((rc = run(lc, s, brc)) == 0)
		*id = sqlite3_last_insert_rowid(lc->db);
	return rc;
}

static void prefix_end(const char *prefix, char hi[LC_KEY_MAX + 1], int *len);

/*
 * Whether req's namespace may have one more grant (st = S_Q_HELD) or
 * waiter (S_Q_WAIT) under `quota` (0: no limit).  0, `refusal`, or an
 * LC_E_ code.  Dead waiters count until removed: the count stops at the
 * quota, and its cost with it.
 */
static int
quota_check(struct lockcore *lc, const struct lock_acquire_req *req,
    enum stmt_id st, int quota, int64_t now, int refusal)
{
	sqlite3_stmt *s = lc->st[st];
	char hi[LC_KEY_MAX + 1];
	int rc, brc = SQLITE_OK, hilen, n = 0;
	bool found;

	if (quota <= 0 || req->quota_prefix == NULL ||
	    req->quota_prefix[0] == '\0')
		return 0;
	prefix_end(req->quota_prefix, hi, &hilen);
	bind_txt(s, 1, req->quota_prefix, &brc);
	if (brc == SQLITE_OK)
		brc = hilen < 0 ? sqlite3_bind_null(s, 2) :
		    sqlite3_bind_text(s, 2, hi, hilen, SQLITE_STATIC);
	bind_i64(s, 3, now, &brc);
	bind_i64(s, 4, quota, &brc);
	rc = step_row(lc, s, brc, &found);
	if (rc == 0 && found)
		n = sqlite3_column_int(s, 0);
	done(s);
	if (rc < 0)
		return rc;
	return n >= quota ? refusal : 0;
}

/*
 * The queue half of lock_acquire, for a request seen for the first time:
 * grant, report busy, or enqueue.
 */
static int
acquire_new(struct lockcore *lc, const struct lock_acquire_req *req,
    const char *rid, const struct lockrow *lr, const struct hstate *hsp,
    bool queued, int64_t now, struct lock_grant *grant,
    struct lock_wait_info *info)
{
	struct hstate hs = *hsp;
	struct walk w;
	int64_t id = 0;
	int rc;

	memset(&w, 0, sizeof(w));
	if (queued && (rc = walk_waiters(lc, lr->id, INT64_MAX, now, false,
	    &w)) < 0)
		return rc;
	if (hs.count < lr->max_holders && w.live == 0) {
		char token[LC_TOKEN_LEN + 1];
		unsigned char buf[SECRET_HASH_LEN];
		const unsigned char *rh;
		struct hsecret sec;

		if ((rc = quota_check(lc, req, S_Q_HELD, req->quota_held, now,
		    LC_E_QUOTA_HELD)) != 0 ||
		    (rc = rid_hash(lc, rid, buf, &rh)) < 0 ||
		    (rc = secret_new(lc, rid, token, &sec)) < 0)
			return rc;
		rc = grant_new(lc, lr->id, req->name,
		    req->owner != NULL ? req->owner : "", rh, &sec, token,
		    req->ttl_ms, now, 0, req->who.key, grant);
		return rc < 0 ? rc : LC_GRANTED;
	}
	wait_info_new(lr, &w, &hs, info);
	/* A waiter whose deadline has passed could never be granted. */
	if (!req->wait || req->deadline <= now)
		return LC_BUSY;
	if (info->ahead >= req->max_waiters) {
		/* Only a full walk tells whether dead waiters hold the room. */
		if ((rc = walk_waiters(lc, lr->id, INT64_MAX, now, true,
		    &w)) < 0)
			return rc;
		if (w.live >= req->max_waiters)
			return LC_E_TOO_MANY;
		info->ahead = w.live;
	}
	/* A namespace at its quota of grants may not queue for more. */
	if ((rc = quota_check(lc, req, S_Q_HELD, req->quota_held, now,
	    LC_E_QUOTA_HELD)) != 0 ||
	    (rc = quota_check(lc, req, S_Q_WAIT, req->quota_waiting, now,
	    LC_E_QUOTA_WAIT)) != 0 ||
	    (rc = enqueue(lc, req, rid, lr->id, &id, info->token)) < 0)
		return rc;
	info->waiter_id = id;
	return LC_QUEUED;
}

static bool
acquire_valid(const struct lock_acquire_req *req, int64_t now)
{
	int64_t end;

	return req != NULL && valid_str(req->name, LC_KEY_MAX) &&
	    valid_opt(req->owner, LC_OWNER_MAX) &&
	    valid_opt(req->request_id, LC_REQUEST_ID_MAX) &&
	    valid_opt(req->quota_prefix, LC_KEY_MAX) &&
	    req->quota_held >= 0 && req->quota_waiting >= 0 &&
	    req->ttl_ms > 0 && req->max_waiters > 0 &&
	    !__builtin_add_overflow(now, req->ttl_ms, &end);
}

int
lock_acquire(struct lockcore *lc, const struct lock_acquire_req *req,
    int64_t now, struct lock_grant *grant, struct lock_wait_info *info)
{
	const char *rid;
	struct lockrow lr;
	struct hstate hs;
	int rc;
	bool found, queued, handled = false;

	if (lc == NULL || grant == NULL || info == NULL ||
	    !acquire_valid(req, now))
		return LC_E_INVAL;
	rid = opt_rid(req->request_id);
	if ((rc = tx_begin(lc, true, &now)) < 0)
		return rc;
	/* Not even a queue: a waiter could not be granted before the grace
	 * ends, which is usually long after its deadline. */
	if (now < lc->rec.grace_until) {
		rc = LC_E_RECOVERING;
		goto out;
	}
	if ((rc = lock_state(lc, req->name, now, true, &lr, &hs, &queued,
	    &found)) < 0)
		goto out;
	/* acquire_retry() changes nothing unless it handles the request. */
	if (rid != NULL)
		rc = acquire_retry(lc, req, rid, &lr, now, grant, info,
		    &handled);
	if (rc >= 0 && !handled)
		rc = acquire_new(lc, req, rid, &lr, &hs, queued, now, grant,
		    info);
out:
	return tx_end(lc, rc);
}

/* lock_wait_poll and lock_wait_abandon. */

/*
 * The token of a grant made for the waiting request `who`: the one it
 * was told when it queued (who->token), if that is the one whose hash the
 * row keeps.  Copies it into token[]; LC_E_INVAL if it does not match.
 */
static int
own_token(struct lockcore *lc, const struct hsecret *sec,
    const struct lock_waiter_ident *who, char token[LC_TOKEN_LEN + 1])
{
	unsigned char th[SECRET_HASH_LEN];

	if (strnlen(who->token, LC_TOKEN_LEN + 1) != LC_TOKEN_LEN)
		return LC_E_INVAL;
	if (secret_hash(who->token, LC_TOKEN_LEN, th) < 0)
		return secretfail(lc, "SHA-256");
	if (!secret_equal(th, sec->token_hash, SECRET_HASH_LEN))
		return LC_E_INVAL;
	memcpy(token, who->token, LC_TOKEN_LEN + 1);
	return 0;
}

/*
 * For a waiter whose row is gone: LC_GRANTED with *grant if the row was
 * granted to `who` and the grant still lives, LC_E_SUPERSEDED if it was
 * granted to another request that owned the row then, else LC_E_GONE.
 */
static int
granted_or_gone(struct lockcore *lc, int64_t waiter_id,
    const struct lock_waiter_ident *who, int64_t now,
    struct lock_grant *grant, struct lock_wait_info *info)
{
	struct hrow h;
	int rc;
	bool found;

	if ((rc = holder_by_waiter(lc, waiter_id, now, &h, grant, &found)) < 0)
		return rc;
	if (!found)
		return LC_E_GONE;
	if (h.wkey != who->key)
		return LC_E_SUPERSEDED;
	if ((rc = own_token(lc, &h.sec, who, grant->token)) < 0)
		return rc;
	info->handed = true;
	return LC_GRANTED;
}

/*
 * The start of a waiter's look: loads its row into *wr.  0 to go on, or
 * the look's outcome when the row is gone (granted_or_gone) or belongs to
 * a newer request with the same request_id (LC_E_SUPERSEDED).
 */
static int
poll_row(struct lockcore *lc, int64_t waiter_id,
    const struct lock_waiter_ident *who, int64_t now,
    struct lock_grant *grant, struct lock_wait_info *info, struct wrow *wr)
{
	int rc;
	bool found;

	if ((rc = waiter_get(lc, waiter_id, wr, &found)) < 0)
		return rc;
	if (!found)
		return granted_or_gone(lc, waiter_id, who, now, grant, info);
	return wr->wkey != who->key ? LC_E_SUPERSEDED : 0;
}

/*
 * The read half of lock_wait_poll: decides without writing when the waiter
 * was granted already, is gone or superseded, or must go on waiting since
 * the lock is full (the release that frees it grants or wakes the first
 * waiter).  0 when only poll_tx() can decide.
 */
static int
poll_look(struct lockcore *lc, int64_t waiter_id,
    const struct lock_waiter_ident *who, int64_t now,
    struct lock_grant *grant, struct lock_wait_info *info)
{
	struct wrow wr;
	struct hstate hs;
	int rc;

	if ((rc = poll_row(lc, waiter_id, who, now, grant, info, &wr)) != 0)
		return rc;
	if ((rc = holder_state(lc, wr.lock_id, now, &hs)) < 0 ||
	    hs.count < wr.max_holders)
		return rc;
	info->waiter_id = waiter_id;
	info->holder_expires = hs.min_expires;
	if ((rc = waiter_count(lc, wr.lock_id, 0, waiter_id, now,
	    LC_AHEAD_MAX, &info->ahead)) < 0)
		return rc;
	return LC_QUEUED;
}

static int
poll_tx(struct lockcore *lc, int64_t waiter_id,
    const struct lock_waiter_ident *who, int64_t now,
    struct lock_grant *grant, struct lock_wait_info *info, bool *wake_next)
{
	char token[LC_TOKEN_LEN + 1];
	struct wrow wr;
	struct hstate hs;
	struct walk w;
	int rest, rc;

	if ((rc = poll_row(lc, waiter_id, who, now, grant, info, &wr)) != 0)
		return rc;
	if ((rc = purge_holders(lc, wr.lock_id, now, NULL)) < 0 ||
	    (rc = walk_waiters(lc, wr.lock_id, waiter_id, now, false, &w)) < 0 ||
	    (rc = holder_state(lc, wr.lock_id, now, &hs)) < 0)
		return rc;
	if (hs.count >= wr.max_holders || w.live > 0 || wr.deadline <= now) {
		/* Room, but someone live is ahead: that one must be told.
		 * A waiter past its deadline is never granted: its request
		 * times out (and withdraws) once it sees the clock. */
		*wake_next = hs.count < wr.max_holders && w.live > 0;
		rc = wait_info(lc, wr.lock_id, waiter_id, &w, &hs, now, info);
		return rc < 0 ? rc : LC_QUEUED;
	}
	if ((rc = own_token(lc, &wr.sec, who, token)) < 0 ||
	    (rc = waiter_delete(lc, waiter_id)) < 0 ||
	    (rc = grant_new(lc, wr.lock_id, wr.name, wr.owner,
	    wr.has_rid ? wr.rid_hash : NULL, &wr.sec, token, wr.ttl_ms, now,
	    waiter_id, wr.wkey, grant)) < 0)
		return rc;
	if (hs.count + 1 < wr.max_holders) {
		if ((rc = waiter_count(lc, wr.lock_id, waiter_id, INT64_MAX,
		    now, 1, &rest)) < 0)
			return rc;
		*wake_next = rest > 0;
	}
	return LC_GRANTED;
}

int
lock_wait_poll(struct lockcore *lc, int64_t waiter_id,
    const struct lock_waiter_ident *who, int64_t now,
    struct lock_grant *grant, struct lock_wait_info *info, bool *wake_next)
{
	int rc;

	if (lc == NULL || who == NULL || grant == NULL || info == NULL ||
	    wake_next == NULL || waiter_id <= 0)
		return LC_E_INVAL;
	*wake_next = false;
	info->handed = false;
	if ((rc = tx_begin(lc, false, &now)) < 0)
		return rc;
	rc = poll_look(lc, waiter_id, who, now, grant, info);
	if ((rc = tx_end(lc, rc)) != 0)
		return rc;
	if ((rc = tx_begin(lc, true, &now)) < 0)
		return rc;
	rc = poll_tx(lc, waiter_id, who, now, grant, info, wake_next);
	return tx_end(lc, rc);
}


/*
 * A waiter that leaves after a handoff granted its row: its grant is
 * released (nobody will be told of it) and handed on.
 */
static int
abandon_grant(struct lockcore *lc, int64_t waiter_id,
    const struct lock_waiter_ident *who, int64_t now, bool *wake_next,
    struct lock_handoff *ho)
{
	struct lock_grant g;
	struct lockrow lr;
	struct hrow h;
	int rc;
	bool found;

	if ((rc = holder_by_waiter(lc, waiter_id, now, &h, &g, &found)) < 0)
		return rc;
	if (!found)
		return LC_E_GONE;
	if (h.wkey != who->key)
		return LC_E_SUPERSEDED;
	if ((rc = lock_get(lc, g.name, false, &lr, &found)) < 0)
		return rc;
	if (!found) {
		(void)snprintf(lc->err, sizeof(lc->err), "lock row vanished");
		return LC_E_DB;
	}
	if ((rc = holder_delete(lc, &h)) < 0 ||
	    (rc = handoff(lc, &lr, true, now, wake_next, ho)) < 0)
		return rc;
	return LC_OK;
}

static int
abandon_tx(struct lockcore *lc, int64_t waiter_id,
    const struct lock_waiter_ident *who, int64_t now, bool *wake_next,
    struct lock_handoff *ho)
{
	struct wrow wr;
	int rest, rc;
	bool found;

	if ((rc = waiter_get(lc, waiter_id, &wr, &found)) < 0)
		return rc;
	if (!found)
		return abandon_grant(lc, waiter_id, who, now, wake_next, ho);
	if (wr.wkey != who->key)
		return LC_E_SUPERSEDED;
	if ((rc = waiter_delete(lc, waiter_id)) < 0 ||
	    (rc = waiter_count(lc, wr.lock_id, 0, INT64_MAX, now, 1,
	    &rest)) < 0)
		return rc;
	*wake_next = rest > 0;
	return LC_OK;
}

int
lock_wait_abandon(struct lockcore *lc, int64_t waiter_id,
    const struct lock_waiter_ident *who, int64_t now, bool *wake_next,
    struct lock_handoff *ho)
{
	int rc;

	if (lc == NULL || who == NULL || wake_next == NULL || waiter_id <= 0)
		return LC_E_INVAL;
	*wake_next = false;
	handoff_clear(ho);
	if ((rc = tx_begin(lc, true, &now)) < 0)
		return rc;
	rc = abandon_tx(lc, waiter_id, who, now, wake_next, ho);
	if ((rc = tx_end(lc, rc)) < 0)
		handoff_clear(ho);
	return rc;
}

/* lock_release, lock_renew, lock_cancel. */

/*
 * Finds the live holder of `name` with `token` for release and renew:
 * LC_E_NOT_HELD if there is none.  Expired holders are purged on the way;
 * *queued tells whether the lock has waiter rows (lock_state()).
 */
static int
find_holder(struct lockcore *lc, const char *name, const char *token,
    int64_t now, struct lockrow *lr, struct hrow *h, bool *queued)
{
	struct hstate hs;
	int rc;
	bool found;

	if ((rc = lock_state(lc, name, now, false, lr, &hs, queued,
	    &found)) < 0)
		return rc;
	if (!found || hs.count == 0)
		return LC_E_NOT_HELD;
	if ((rc = holder_by_token(lc, lr->id, token, now, h, &found)) < 0)
		return rc;
	return found ? 0 : LC_E_NOT_HELD;
}

/* Releases the grant with `token`; with key != 0 only if it is key's. */
static int
release_tx(struct lockcore *lc, const char *name, const char *token,
    uint64_t key, int64_t now, bool *wake_next, struct lock_handoff *ho)
{
	struct lockrow lr;
	struct hrow h;
	int rc;
	bool queued;

	if ((rc = find_holder(lc, name, token, now, &lr, &h, &queued)) < 0)
		return rc;
	if (key != 0 && h.wkey != key)
		return LC_E_SUPERSEDED;
	if ((rc = holder_delete(lc, &h)) < 0 ||
	    (rc = handoff(lc, &lr, queued, now, wake_next, ho)) < 0)
		return rc;
	return LC_OK;
}

/* True if token can be a token at all; others cannot be held. */
static bool
token_shape(const char *token)
{
	return strnlen(token, LC_TOKEN_LEN + 1) == LC_TOKEN_LEN;
}

static int
release(struct lockcore *lc, const char *name, const char *token,
    uint64_t key, int64_t now, bool *wake_next, struct lock_handoff *ho)
{
	int rc;

	if (lc == NULL || !valid_str(name, LC_KEY_MAX) || token == NULL ||
	    wake_next == NULL)
		return LC_E_INVAL;
	*wake_next = false;
	handoff_clear(ho);
	if (!token_shape(token))
		return LC_E_NOT_HELD;
	if ((rc = tx_begin(lc, true, &now)) < 0)
		return rc;
	rc = release_tx(lc, name, token, key, now, wake_next, ho);
	if ((rc = tx_end(lc, rc)) < 0)
		handoff_clear(ho);
	return rc;
}

int
lock_release(struct lockcore *lc, const char *name, const char *token,
    int64_t now, bool *wake_next, struct lock_handoff *ho)
{
	return release(lc, name, token, 0, now, wake_next, ho);
}

int
lock_undo(struct lockcore *lc, const char *name, const char *token,
    uint64_t key, int64_t now, bool *wake_next, struct lock_handoff *ho)
{
	if (key == 0)
		return LC_E_INVAL;
	return release(lc, name, token, key, now, wake_next, ho);
}

/*
 * Extends the grant with `token` by ttl_ms from now, or by its own lease
 * (as granted or last renewed) when ttl_ms is 0.
 */
static int
renew_tx(struct lockcore *lc, const char *name, const char *token,
    int64_t ttl_ms, int64_t now, struct lock_grant *grant)
{
	sqlite3_stmt *s = lc->st[S_H_RENEW];
	struct lockrow lr;
	struct hrow h;
	int64_t expires;
	int rc, brc = SQLITE_OK;
	bool queued;

	if ((rc = find_holder(lc, name, token, now, &lr, &h, &queued)) < 0)
		return rc;
	/* The grant's own lease, but never longer than we may grant now:
	 * the crash grace (open_session) is sized by max_ttl. */
	if (ttl_ms == 0) {
		ttl_ms = h.ttl_ms > 0 ? h.ttl_ms : h.expires_at - h.acquired_at;
		if (ttl_ms > lc->max_ttl_ms)
			ttl_ms = lc->max_ttl_ms;
	}
	if (ttl_ms <= 0 || __builtin_add_overflow(now, ttl_ms, &expires))
		return LC_E_INVAL;
	bind_i64(s, 1, h.lock_id, &brc);
	bind_i64(s, 2, h.fence, &brc);
	bind_i64(s, 3, expires, &brc);
	bind_i64(s, 4, ttl_ms, &brc);
	if ((rc = run(lc, s, brc)) < 0)
		return rc;
	h.expires_at = expires;
	h.ttl_ms = ttl_ms;
	return fill_grant(grant, name, &h, token);
}

int
lock_renew(struct lockcore *lc, const char *name, const char *token,
    int64_t ttl_ms, int64_t now, struct lock_grant *grant)
{
	int64_t expires;
	int rc;

	if (lc == NULL || !valid_str(name, LC_KEY_MAX) || token == NULL ||
	    grant == NULL || ttl_ms < 0 ||
	    __builtin_add_overflow(now, ttl_ms, &expires))
		return LC_E_INVAL;
	if (!token_shape(token))
		return LC_E_NOT_HELD;
	if ((rc = tx_begin(lc, true, &now)) < 0)
		return rc;
	rc = renew_tx(lc, name, token, ttl_ms, now, grant);
	return tx_end(lc, rc);
}

static int
cancel_tx(struct lockcore *lc, const char *name, const char *rid,
    int64_t now, bool *was_held, int64_t *kick_waiter, bool *wake_next,
    struct lock_handoff *ho)
{
	struct lockrow lr;
	struct hrow h;
	int64_t id;
	int rc;
	bool found;

	if ((rc = lock_get(lc, name, false, &lr, &found)) < 0)
		return rc;
	if (!found)
		return LC_E_NOT_HELD;
	if ((rc = waiter_by_rid(lc, lr.id, rid, &id, NULL)) < 0)
		return rc;
	if (id != 0) {
		if ((rc = waiter_delete(lc, id)) < 0)
			return rc;
		*kick_waiter = id;
		*wake_next = true;
		return LC_OK;
	}
	if ((rc = purge_holders(lc, lr.id, now, NULL)) < 0 ||
	    (rc = holder_by_rid(lc, lr.id, rid, now, &h, &found)) < 0)
		return rc;
	if (!found)
		return LC_E_NOT_HELD;
	if ((rc = holder_delete(lc, &h)) < 0 ||
	    (rc = handoff(lc, &lr, true, now, wake_next, ho)) < 0)
		return rc;
	/* A waiter granted by a handoff may not have seen its grant yet. */
	*kick_waiter = h.waiter_id;
	*was_held = true;
	return LC_OK;
}

int
lock_cancel(struct lockcore *lc, const char *name, const char *request_id,
    int64_t now, bool *was_held, int64_t *kick_waiter, bool *wake_next,
    struct lock_handoff *ho)
{
	int rc;

	if (lc == NULL || !valid_str(name, LC_KEY_MAX) ||
	    !valid_str(request_id, LC_REQUEST_ID_MAX) || was_held == NULL ||
	    kick_waiter == NULL || wake_next == NULL)
		return LC_E_INVAL;
	*was_held = false;
	*kick_waiter = 0;
	*wake_next = false;
	handoff_clear(ho);
	if ((rc = tx_begin(lc, true, &now)) < 0)
		return rc;
	rc = cancel_tx(lc, name, request_id, now, was_held, kick_waiter,
	    wake_next, ho);
	if ((rc = tx_end(lc, rc)) < 0)
		handoff_clear(ho);
	return rc;
}

/* lock_status and lock_list: reads only. */

static int
status_tx(struct lockcore *lc, const char *name, int64_t now,
    struct lock_status *st)
{
	sqlite3_stmt *s = lc->st[S_H_LIST];
	struct lock_holder *lh;
	struct lockrow lr;
	struct hrow h;
	int rc = SQLITE_OK;
	bool found;

	if ((rc = lock_get(lc, name, false, &lr, &found)) < 0 || !found)
		return rc;
	bind_i64(s, 1, lr.id, &rc);
	bind_i64(s, 2, now, &rc);
	while (rc == SQLITE_OK && st->nholders < LC_STATUS_HOLDERS_MAX &&
	    (rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((rc = read_holder(s, &h)) < 0)
			goto out;
		lh = &st->holders[st->nholders++];
		memcpy(lh->owner, h.owner, sizeof(lh->owner));
		lh->fence = h.fence;
		lh->acquired_at = h.acquired_at;
		lh->expires_at = h.expires_at;
		rc = SQLITE_OK;
	}
	rc = rc == SQLITE_DONE || rc == SQLITE_OK ? 0 : dbfail(lc, rc);
out:
	done(s);
	if (rc == 0)
		rc = waiter_count(lc, lr.id, 0, INT64_MAX, now, -1,
		    &st->waiters);
	return rc;
}

int
lock_status(struct lockcore *lc, const char *name, int64_t now,
    struct lock_status *st)
{
	int rc;

	if (lc == NULL || !valid_str(name, LC_KEY_MAX) || st == NULL)
		return LC_E_INVAL;
	memset(st, 0, sizeof(*st));
	if ((rc = tx_begin(lc, false, &now)) < 0)
		return rc;
	rc = status_tx(lc, name, now, st);
	return tx_end(lc, rc);
}

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
list_run(struct lockcore *lc, const char *prefix, const char *skip,
    const char *after, int limit, int64_t now,
    int (*fn)(const struct lock_list_entry *e, void *arg), void *arg,
    bool *more)
{
	sqlite3_stmt *s = lc->st[S_LIST];
	struct lock_list_entry e;
	char hi[LC_KEY_MAX + 1], skip_hi[LC_KEY_MAX + 1];
	int n = 0, hilen, rc = SQLITE_OK;
	bool stop = false;

	prefix_end(prefix, hi, &hilen);
	bind_i64(s, 1, now, &rc);
	bind_txt(s, 2, after, &rc);
	bind_txt(s, 3, prefix, &rc);
	if (rc == SQLITE_OK)
		rc = hilen < 0 ? sqlite3_bind_null(s, 4) :
		    sqlite3_bind_text(s, 4, hi, hilen, SQLITE_STATIC);
	bind_i64(s, 5, (int64_t)limit + 1, &rc);
	bind_prefix(s, 6, skip, skip_hi, &rc);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		rc = SQLITE_OK;
		if (n == limit || stop) {
			*more = true;
			break;
		}
		e.name = (const char *)sqlite3_column_text(s, 0);
		if (e.name == NULL) {
			rc = SQLITE_NOMEM;
			break;
		}
		e.holders = sqlite3_column_int(s, 1);
		e.waiters = sqlite3_column_int(s, 2);
		n++;
		stop = fn(&e, arg) != 0;
	}
	rc = rc == SQLITE_DONE || rc == SQLITE_OK ? 0 : dbfail(lc, rc);
	done(s);
	return rc;
}

int
lock_list(struct lockcore *lc, const char *prefix, const char *skip,
    const char *after, int limit, int64_t now,
    int (*fn)(const struct lock_list_entry *e, void *arg), void *arg,
    bool *more)
{
	int rc;

	if (lc == NULL || fn == NULL || more == NULL || limit <= 0 ||
	    !valid_opt(prefix, LC_KEY_MAX) || !valid_opt(skip, LC_KEY_MAX) ||
	    !valid_opt(after, LC_KEY_MAX))
		return LC_E_INVAL;
	*more = false;
	if ((rc = tx_begin(lc, false, &now)) < 0)
		return rc;
	rc = list_run(lc, prefix != NULL ? prefix : "",
	    skip != NULL ? skip : "", after != NULL ? after : "", limit, now,
	    fn, arg, more);
	return tx_end(lc, rc);
}

/*
 * Housekeeping: one batch of lock rows after the connection's cursor.
 * Their expired holders and the waiter rows long past their deadline
 * (SWEEP_WAITER_LATE_MS: their requests have answered by then, and the
 * processes of the others are gone) are deleted, then the rows of idle
 * locks (no holder, no waiter row, no grant for idle_ms), and the fence floor is raised above
 * the fences those rows had issued (see "Fences"), all in one
 * transaction.  The cursor starts over after the last row.
 */
static int
sweep_tx(struct lockcore *lc, int64_t now, int batch, int64_t idle_ms,
    int *changed)
{
	sqlite3_stmt *s = lc->st[S_SWEEP_RANGE];
	int64_t lo = lc->sweep_cursor, hi = 0, top = 0;
	int rc, brc = SQLITE_OK, n;
	bool found;

	for (;;) {
		bind_i64(s, 1, lo, &brc);
		bind_i64(s, 2, batch, &brc);
		rc = step_row(lc, s, brc, &found);
		if (rc == 0 && found)
			hi = sqlite3_column_int64(s, 0);   /* NULL (no row): 0 */
		done(s);
		if (rc < 0)
			return rc;
		if (hi != 0)
			break;
		lc->sweep_cursor = 0;
		if (lo == 0)
			return 0;          /* no lock rows at all */
		lo = 0;                    /* past the last: start over */
	}
	s = lc->st[S_SWEEP_PURGE];
	bind_i64(s, 1, lo, &brc);
	bind_i64(s, 2, hi, &brc);
	bind_i64(s, 3, now, &brc);
	if ((rc = run(lc, s, brc)) < 0)
		return rc;
	*changed += sqlite3_changes(lc->db);
	s = lc->st[S_SWEEP_WAITERS];
	bind_i64(s, 1, lo, &brc);
	bind_i64(s, 2, hi, &brc);
	bind_i64(s, 3, now - SWEEP_WAITER_LATE_MS, &brc);
	if ((rc = run(lc, s, brc)) < 0)
		return rc;
	*changed += sqlite3_changes(lc->db);
	s = lc->st[S_SWEEP_TOP];
	bind_i64(s, 1, lo, &brc);
	bind_i64(s, 2, hi, &brc);
	bind_i64(s, 3, now - idle_ms, &brc);
	rc = step_row(lc, s, brc, &found);
	if (rc == 0 && found)
		top = sqlite3_column_int64(s, 0);
	done(s);
	if (rc < 0)
		return rc;
	s = lc->st[S_SWEEP_IDLE];
	bind_i64(s, 1, lo, &brc);
	bind_i64(s, 2, hi, &brc);
	bind_i64(s, 3, now - idle_ms, &brc);
	if ((rc = run(lc, s, brc)) < 0)
		return rc;
	n = sqlite3_changes(lc->db);
	*changed += n;
	if (n > 0) {
		bind_i64(lc->st[S_SWEEP_FLOOR], 1, top + 1, &brc);
		if ((rc = run(lc, lc->st[S_SWEEP_FLOOR], brc)) < 0)
			return rc;
	}
	lc->sweep_cursor = hi;
	return 0;
}

int
lockcore_sweep(struct lockcore *lc, int64_t now, int batch, int64_t idle_ms,
    int *changed)
{
	int64_t cursor;
	int rc;

	if (lc == NULL || changed == NULL || batch <= 0 || idle_ms < 0 ||
	    idle_ms > now)
		return LC_E_INVAL;
	*changed = 0;
	cursor = lc->sweep_cursor;
	if ((rc = tx_begin(lc, true, &now)) < 0)
		return rc;
	rc = sweep_tx(lc, now, batch, idle_ms, changed);
	if ((rc = tx_end(lc, rc)) < 0) {
		*changed = 0;
		lc->sweep_cursor = cursor;
	}
	return rc;
}

int
lockcore_ping(struct lockcore *lc)
{
	int64_t now = 0;
	int rc, brc = SQLITE_OK;

	if (lc == NULL)
		return LC_E_INVAL;
	if ((rc = tx_begin(lc, true, &now)) < 0)
		return rc;
	bind_i64(lc->st[S_PING], 1, clock_wall_ms(), &brc);
	rc = run(lc, lc->st[S_PING], brc);
	return tx_end(lc, rc);
}
