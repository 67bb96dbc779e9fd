/*
 * sqlite_file.c: the file of lockcore's SQLite store: its permissions,
 * the creation of its schema, the upgrades of older files to the current
 * version, and the scrub of plain-text secrets an upgrade leaves in free
 * pages.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "secret.h"
#include "sqlite_file.h"

#define SCHEMA_ERR_LEN 256

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

/* locks.max_holders is read by nothing: a lock has one holder.  The
 * column stays so that files of every version have one shape. */
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
    "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', "
    SCHEMA_VERSION_SQL ");"
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

/* Creates or upgrades the schema (sqlite_schema.h). */
int
make_schema(sqlite3 *db, const char **why)
{
	static _Thread_local char schema_err[SCHEMA_ERR_LEN];
	int64_t v;
	int rc;
	bool upgrading = false;

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
			upgrading = true;
		}
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(db, schema_sql, NULL, NULL, NULL);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(db, sessions_sql, NULL, NULL, NULL);
		if (rc == SQLITE_OK && v != 0)
			rc = sqlite3_exec(db, "UPDATE meta SET value = "
			    SCHEMA_VERSION_SQL " WHERE key = 'schema_version'",
			    NULL, NULL, NULL);
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
	if (upgrading) {
		(void)upgrade_funcs(db, false);
		(void)sqlite3_exec(db, "PRAGMA secure_delete=OFF", NULL, NULL,
		    NULL);
	}
	if (rc != SQLITE_OK)
		return -1;
	scrub(db);
	return 0;
}

/*
 * Sets the permissions of the database file (sqlite_file.h).  The
 * database and its -wal and -shm files hold grants: no other user may
 * read them, whatever the umask.  A new database file is created here
 * (SQLite gives its -wal and -shm the database file's mode) with mode
 * 0660 in a directory its group may write (the group shares the service,
 * docs/install.md), else 0600; files that exist lose every permission of
 * other users, and execute bits.  Names SQLite does not take as a plain
 * path (":memory:", URIs) are left alone.  0, or -1 with *why set.
 */
int
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
