/*
 * pgschema.c: the tables of lockcore's PostgreSQL store (pgschema.h).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lockcore.h"
#include "pgconn.h"
#include "pgschema.h"

#define PG_SCHEMA_VERSION     1
#define PG_LOCK_KEY1          0x6874746c   /* "httl": the xact advisory */
#define PG_LOCK_KEY2          0x6f636b31   /* lock around schema DDL */
#define SCHEMA_MS             10000

/*
 * The schema, version 1, made in one transaction under a transaction-
 * scoped advisory lock, so hosts that start at once do not race on
 * CREATE ... IF NOT EXISTS (which fails with a unique violation when two
 * run together).  The advisory lock guards only this idempotent set-up,
 * never a grant, and ends with the transaction.  Names sort by bytes
 * (COLLATE "C"), as the listing and the prefix ranges need.  locks.nwait
 * counts a lock's waiter rows, kept by triggers as in the SQLite store.
 */
static const char schema_sql[] =
    "CREATE TABLE meta (key text PRIMARY KEY, value bigint NOT NULL);"
    "CREATE TABLE hosts ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " host_key text NOT NULL UNIQUE, name text NOT NULL,"
    " started_at bigint NOT NULL, seen_at bigint NOT NULL);"
    "CREATE TABLE sessions ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " host_id bigint NOT NULL, pid bigint NOT NULL, pstart bigint NOT NULL,"
    " backend_pid integer NOT NULL, backend_start timestamptz NOT NULL,"
    " sync_full boolean NOT NULL, max_ttl_ms bigint NOT NULL,"
    " opened_at bigint NOT NULL);"
    "CREATE TABLE locks ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " name text COLLATE \"C\" NOT NULL UNIQUE,"
    " fence_seq bigint NOT NULL DEFAULT 0,"
    " nwait bigint NOT NULL DEFAULT 0,"
    " used_at bigint NOT NULL DEFAULT 0) WITH (fillfactor = 70);"
    "CREATE TABLE holders ("
    " lock_id bigint NOT NULL, fence bigint NOT NULL,"
    " token_hash bytea NOT NULL, owner text NOT NULL DEFAULT '',"
    " rid_hash bytea, seal bytea,"
    " acquired_at bigint NOT NULL, expires_at bigint NOT NULL,"
    " ttl_ms bigint NOT NULL, waiter_id bigint, wkey bigint,"
    " PRIMARY KEY (lock_id, fence));"
    "CREATE UNIQUE INDEX holders_waiter ON holders (waiter_id)"
    " WHERE waiter_id IS NOT NULL;"
    "CREATE UNIQUE INDEX holders_rid ON holders (lock_id, rid_hash)"
    " WHERE rid_hash IS NOT NULL;"
    /* Identity ids are handed out one at a time (CACHE 1, the default):
     * with a cache, two connections would take ids from two ranges and
     * a later waiter could get a smaller id.  Every insert of a lock's
     * waiter runs under that lock's row lock, so per lock the ids grow
     * in commit order, which is the FIFO order. */
    "CREATE TABLE waiters ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " lock_id bigint NOT NULL, rid_hash bytea,"
    " owner text NOT NULL DEFAULT '', ttl_ms bigint NOT NULL,"
    " deadline bigint NOT NULL, host_id bigint NOT NULL,"
    " pid bigint NOT NULL, pstart bigint NOT NULL, wkey bigint NOT NULL,"
    " token_hash bytea, seal bytea);"
    "CREATE INDEX waiters_lock ON waiters (lock_id, id);"
    "CREATE UNIQUE INDEX waiters_rid ON waiters (lock_id, rid_hash)"
    " WHERE rid_hash IS NOT NULL;"
    "CREATE INDEX waiters_host ON waiters (host_id);"
    "CREATE FUNCTION nwait_count() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN"
    "  IF TG_OP = 'INSERT' THEN"
    "   UPDATE locks SET nwait = nwait + 1 WHERE id = NEW.lock_id;"
    "  ELSE"
    "   UPDATE locks SET nwait = nwait - 1 WHERE id = OLD.lock_id;"
    "  END IF;"
    "  RETURN NULL;"
    " END $$;"
    "CREATE TRIGGER waiters_nwait AFTER INSERT OR DELETE ON waiters"
    " FOR EACH ROW EXECUTE FUNCTION nwait_count();"
    "ALTER TABLE locks SET (autovacuum_vacuum_scale_factor = 0.01);"
    "ALTER TABLE holders SET (autovacuum_vacuum_scale_factor = 0.01);"
    "ALTER TABLE waiters SET (autovacuum_vacuum_scale_factor = 0.01);"
    "INSERT INTO meta(key, value) VALUES ('schema_version', 1);";

/*
 * Creates the schema if it is missing, in one transaction under the
 * advisory lock; refuses a schema newer than this program.
 */
static int make(struct pgconn *q);

int
pgschema_make(struct pgconn *q)
{
	int rc;

	int saved = q->timeout_ms;

	/* DDL may wait for another host's, and takes longer than a lock's
	 * transaction: SCHEMA_MS for each step. */
	q->timeout_ms = SCHEMA_MS;
	rc = make(q);
	q->timeout_ms = saved;
	return rc;
}

static int
make(struct pgconn *q)
{
	char sql[160];
	PGresult *r;
	int64_t version = 0;
	int rc;

	(void)snprintf(sql, sizeof(sql), "BEGIN; SET LOCAL lock_timeout TO"
	    " %d; SET LOCAL statement_timeout TO %d;"
	    " SELECT pg_advisory_xact_lock(%d, %d)", SCHEMA_MS - 1000,
	    SCHEMA_MS - 500, PG_LOCK_KEY1, PG_LOCK_KEY2);
	if ((r = pgc_sql(q, "schema", sql, &rc)) == NULL)
		return rc;
	PQclear(r);
	r = pgc_sql(q, "schema", "CREATE SCHEMA IF NOT EXISTS httplock;"
	    " SELECT to_regclass('meta') IS NOT NULL", &rc);
	if (r == NULL)
		goto rollback;
	if (strcmp(PQgetvalue(r, 0, 0), "t") == 0) {
		PQclear(r);
		r = pgc_sql(q, "schema", "SELECT value FROM meta"
		    " WHERE key = 'schema_version'", &rc);
		if (r == NULL)
			goto rollback;
		if (PQntuples(r) == 1)
			version = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	}
	PQclear(r);
	if (version > PG_SCHEMA_VERSION) {
		rc = pgc_fail(q, "schema", "made by a newer httplock");
		goto rollback;
	}
	if (version == 0) {
		if ((r = pgc_sql(q, "schema", schema_sql, &rc)) == NULL)
			goto rollback;
		PQclear(r);
	}
	if ((r = pgc_sql(q, "schema", "COMMIT", &rc)) == NULL)
		return rc;
	PQclear(r);
	return 0;
rollback:
	if (q->conn != NULL && (r = pgc_sql(q, "schema", "ROLLBACK",
	    &(int){ 0 })) != NULL)
		PQclear(r);
	return rc;
}

