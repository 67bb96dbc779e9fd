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

#define HOLDER_COLS                                                 \
    "lock_id, token_hash, fence, owner, acquired_at, expires_at,"    \
    " waiter_id, wkey, seal, ttl_ms"
#define HOLDER_COLS_H                                               \
    "h.lock_id, h.token_hash, h.fence, h.owner, h.acquired_at,"      \
    " h.expires_at, h.waiter_id, h.wkey, h.seal, h.ttl_ms"

/* Every parameter is cast, so the server knows its type without our
 * OIDs; every result column is int8, bool, text or bytea. */
const char *const pg_sql[S_COUNT] = {
	/* Transactions, prepared as any statement: nothing is parsed twice
	 * on a connection. */
	[S_BEGIN] = "BEGIN",
	[S_BEGIN_RO] = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	/* store_pg.c, "Durability": a commit that a crash may undo. */
	[S_NO_FLUSH] = "SET LOCAL synchronous_commit TO off",
	[S_CLOCK] = "SELECT floor(extract(epoch FROM clock_timestamp())"
	    " * 1000)::int8",
	/* store_pg.c, "Waking across hosts": $1 our host, $2 the waiter row
	 * to name, $3 the lock. */
	[S_PUBLISH] = "SELECT pg_notify('httplock', $1::int8 || ' ' ||"
	    " $2::int8 || ' ' || encode(name, 'hex')) FROM locks"
	    " WHERE id = $3::int8 AND ($2::int8 <> 0 OR EXISTS (SELECT 1"
	    " FROM waiters WHERE lock_id = $3::int8 AND host_id <> $1::int8))",
	[S_META_GET] = "SELECT value FROM meta WHERE key = $1::text",
	[S_META_SET] = "INSERT INTO meta(key, value) VALUES ($1::text, $2::int8)"
	    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
	[S_FLOOR_RAISE] = "INSERT INTO meta(key, value)"
	    " VALUES ('fence_floor', $1::int8) ON CONFLICT (key)"
	    " DO UPDATE SET value = greatest(meta.value, EXCLUDED.value)",
	/* A session is live while the server backend that added it runs. */
	[S_SESS_NEXT] = "SELECT s.id, s.pid, s.pstart, s.sync_full,"
	    " s.max_ttl_ms, EXISTS (SELECT 1 FROM pg_stat_activity a"
	    "  WHERE a.pid = s.backend_pid"
	    "  AND a.backend_start = s.backend_start)"
	    " FROM sessions s WHERE s.id > $1::int8 ORDER BY s.id LIMIT 1",
	[S_SESS_ADD] = "INSERT INTO sessions(host_id, pid, pstart,"
	    " backend_pid, backend_start, sync_full, max_ttl_ms, opened_at)"
	    " SELECT $1::int8, $2::int8, $3::int8, a.pid, a.backend_start,"
	    " $4::bool, $5::int8, $6::int8 FROM pg_stat_activity a"
	    " WHERE a.pid = pg_backend_pid() RETURNING id",
	[S_SESS_DEL] = "DELETE FROM sessions WHERE id = $1::int8",
	[S_LOCK_GET] = "SELECT id, nwait FROM locks WHERE name = $1::bytea",
	[S_LOCK_GET_W] = "SELECT id, nwait FROM locks WHERE name = $1::bytea"
	    " FOR UPDATE",
	[S_LOCK_ID_W] = "SELECT id FROM locks WHERE id = $1::int8 FOR UPDATE",
	[S_LOCK_OF_WAITER] = "SELECT id FROM locks WHERE id ="
	    " (SELECT lock_id FROM waiters WHERE id = $1::int8) FOR UPDATE",
	[S_LOCK_OF_HOLDER] = "SELECT id FROM locks WHERE id ="
	    " (SELECT lock_id FROM holders WHERE waiter_id = $1::int8)"
	    " FOR UPDATE",
	/* By the lock's name, so that it goes in one round trip with the
	 * statement that takes the lock's row: run after it, it sees what
	 * the transactions before it on the lock committed.  The time is $2,
	 * or the server's clock when $2 is NULL (read after the row lock's
	 * wait); then the counts of live and expired holders, the earliest
	 * live expiry, and the first holder rows, live ones first (none:
	 * one row of NULLs). */
	[S_LOCK_HOLDERS] = "SELECT c.now,"
	    " count(h.fence) FILTER (WHERE h.expires_at > c.now) OVER (),"
	    " min(h.expires_at) FILTER (WHERE h.expires_at > c.now) OVER (),"
	    " count(h.fence) FILTER (WHERE h.expires_at <= c.now) OVER (),"
	    " h.lock_id, h.token_hash, h.fence, h.owner, h.acquired_at,"
	    " h.expires_at, h.waiter_id, h.wkey, h.seal, h.ttl_ms"
	    " FROM (SELECT coalesce($2::int8, floor(extract(epoch FROM"
	    "  clock_timestamp()) * 1000)::int8)) c(now)"
	    " LEFT JOIN holders h ON h.lock_id ="
	    "  (SELECT id FROM locks WHERE name = $1::bytea)"
	    " ORDER BY h.expires_at <= c.now, h.fence LIMIT $3::int8",
	/* Returns the row, locked, also when another transaction created
	 * it first; xmax tells which. */
	[S_LOCK_ADD] = "INSERT INTO locks(name) VALUES ($1::bytea)"
	    " ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name"
	    " RETURNING id, nwait, xmax::text <> '0'",
	[S_FENCE_MAX] = "SELECT coalesce(max(fence_seq), 0) FROM locks",
	[S_H_PURGE] = "DELETE FROM holders"
	    " WHERE lock_id = $1::int8 AND expires_at <= $2::int8",
	[S_H_STATE] = "SELECT count(*), min(expires_at) FROM holders"
	    " WHERE lock_id = $1::int8 AND expires_at > $2::int8",
	[S_H_LIST] = "SELECT " HOLDER_COLS " FROM holders"
	    " WHERE lock_id = $1::int8 AND expires_at > $2::int8 ORDER BY fence",
	[S_H_BY_REQ] = "SELECT " HOLDER_COLS " FROM holders"
	    " WHERE lock_id = $1::int8 AND rid_hash = $2::bytea"
	    " AND expires_at > $3::int8",
	[S_H_BY_WAITER] = "SELECT " HOLDER_COLS ", (SELECT name FROM locks"
	    "  WHERE id = holders.lock_id) FROM holders"
	    " WHERE waiter_id = $1::int8 AND expires_at > $2::int8",
	/* The lock's next fence and the holder row with it ($3: the
	 * connection's fence floor): no row if the lock row is gone. */
	[S_H_GRANT] = "WITH f AS (UPDATE locks SET fence_seq ="
	    " greatest(fence_seq + 1, $3::int8, coalesce((SELECT value"
	    "  FROM meta WHERE key = 'fence_floor'), 0)), used_at = $7::int8"
	    " WHERE id = $2::int8 RETURNING fence_seq)"
	    " INSERT INTO holders(token_hash, lock_id, fence, owner,"
	    " rid_hash, seal, acquired_at, expires_at, ttl_ms, waiter_id, wkey)"
	    " SELECT $1::bytea, $2::int8, f.fence_seq, $4::text, $5::bytea,"
	    " $6::bytea, $7::int8, $8::int8, $9::int8, $10::int8, $11::int8"
	    " FROM f RETURNING fence",
	[S_H_DEL] = "DELETE FROM holders"
	    " WHERE lock_id = $1::int8 AND fence = $2::int8",
	[S_H_RENEW] = "UPDATE holders SET expires_at = $3::int8,"
	    " ttl_ms = $4::int8 WHERE lock_id = $1::int8 AND fence = $2::int8",
	[S_H_TAKE] = "UPDATE holders SET wkey = $3::int8"
	    " WHERE lock_id = $1::int8 AND fence = $2::int8",
	[S_W_GET] = "SELECT w.lock_id, w.owner, w.rid_hash, w.ttl_ms,"
	    " w.wkey, l.name, w.deadline, w.token_hash, w.seal"
	    " FROM waiters w JOIN locks l ON l.id = w.lock_id"
	    " WHERE w.id = $1::int8",
	/* A waiter's look (store.h, waiter_look): $1 the row, $2 the time
	 * (NULL: the server's clock), $3 the most waiters ahead to count;
	 * then S_W_GET's columns (NULL if there is no row), the live holders'
	 * count and earliest expiry, the waiters ahead, and without the row
	 * the live grant made for it (HOLDER_COLS, its lock's name). */
	[S_W_LOOK] = "SELECT c.now, w.lock_id, w.owner, w.rid_hash, w.ttl_ms,"
	    " w.wkey, l.name, w.deadline, w.token_hash, w.seal,"
	    " (SELECT count(*) FROM holders h WHERE h.lock_id = w.lock_id"
	    "  AND h.expires_at > c.now),"
	    " (SELECT min(h.expires_at) FROM holders h"
	    "  WHERE h.lock_id = w.lock_id AND h.expires_at > c.now),"
	    " (SELECT count(*) FROM (SELECT 1 FROM waiters x"
	    "  WHERE x.lock_id = w.lock_id AND x.id < w.id"
	    "  AND x.deadline > c.now LIMIT $3::int8) k), hw.*"
	    " FROM (SELECT coalesce($2::int8, floor(extract(epoch FROM"
	    "  clock_timestamp()) * 1000)::int8)) c(now)"
	    " LEFT JOIN waiters w ON w.id = $1::int8"
	    " LEFT JOIN locks l ON l.id = w.lock_id"
	    " LEFT JOIN LATERAL (SELECT " HOLDER_COLS_H ", g.name"
	    "  FROM holders h JOIN locks g ON g.id = h.lock_id"
	    "  WHERE w.id IS NULL AND h.waiter_id = $1::int8"
	    "  AND h.expires_at > c.now) hw ON true",
	[S_W_BY_REQ] = "SELECT id, token_hash, seal FROM waiters"
	    " WHERE lock_id = $1::int8 AND rid_hash = $2::bytea",
	[S_W_TAKE] = "UPDATE waiters SET host_id = $6::int8, pid = $2::int8,"
	    " pstart = $3::int8, wkey = $4::int8, deadline = $5::int8"
	    " WHERE id = $1::int8",
	/* A page of a lock's queue, each row whole (as S_W_GET's) for the
	 * one the walk stops at. */
	[S_W_WALK] = "SELECT w.id, w.pid, w.pstart, w.deadline,"
	    " w.host_id <> $4::int8, coalesce(h.seen_at, 0),"
	    " w.owner, w.rid_hash, w.ttl_ms, w.wkey, w.token_hash, w.seal"
	    " FROM waiters w LEFT JOIN hosts h ON h.id = w.host_id"
	    " WHERE w.lock_id = $1::int8 AND w.id > $2::int8"
	    " AND w.id < $3::int8 ORDER BY w.id LIMIT $5::int8",
	/* S_W_WALK's first page from the start of the queue of lock $1 (by
	 * name: it goes with the statement that takes the lock's row). */
	[S_W_WALK_NAME] = "SELECT w.id, w.pid, w.pstart, w.deadline,"
	    " w.host_id <> $2::int8, coalesce(h.seen_at, 0),"
	    " w.owner, w.rid_hash, w.ttl_ms, w.wkey, w.token_hash, w.seal"
	    " FROM waiters w LEFT JOIN hosts h ON h.id = w.host_id"
	    " WHERE w.lock_id = (SELECT id FROM locks WHERE name = $1::bytea)"
	    " ORDER BY w.id LIMIT $3::int8",
	[S_W_MINE] = "SELECT id, pid, pstart, deadline, wkey FROM waiters"
	    " WHERE host_id = $1::int8 AND id > $2::int8 ORDER BY id"
	    " LIMIT $3::int8",
	[S_HOST_BEAT] = "UPDATE hosts SET seen_at = greatest(seen_at, $2::int8)"
	    " WHERE id = $1::int8",
	[S_W_COUNT] = "SELECT count(*) FROM (SELECT 1 FROM waiters"
	    " WHERE lock_id = $1::int8 AND id > $2::int8 AND id < $3::int8"
	    " AND deadline > $4::int8 LIMIT $5::int8) c",
	[S_W_ADD] = "INSERT INTO waiters(lock_id, rid_hash, owner, ttl_ms,"
	    " deadline, host_id, pid, pstart, wkey, token_hash, seal)"
	    " VALUES ($1::int8, $2::bytea, $3::text, $4::int8, $5::int8,"
	    " $11::int8, $6::int8, $7::int8, $8::int8, $9::bytea, $10::bytea)"
	    " RETURNING id",
	[S_W_DEL] = "DELETE FROM waiters WHERE id = $1::int8"
	    " RETURNING lock_id, host_id <> $2::int8",
	[S_LIST] = "WITH act(id) AS ("
	    " SELECT lock_id FROM holders WHERE expires_at > $1::int8"
	    " UNION SELECT lock_id FROM waiters WHERE deadline > $1::int8)"
	    " SELECT l.name,"
	    " (SELECT count(*) FROM holders h"
	    "  WHERE h.lock_id = l.id AND h.expires_at > $1::int8),"
	    " (SELECT count(*) FROM waiters w"
	    "  WHERE w.lock_id = l.id AND w.deadline > $1::int8)"
	    " FROM act JOIN locks l ON l.id = act.id"
	    " WHERE l.name > $2::bytea AND l.name >= $3::bytea"
	    " AND ($4::bytea IS NULL OR l.name < $4::bytea)"
	    " AND ($6::bytea IS NULL OR l.name < $6::bytea"
	    "  OR ($7::bytea IS NOT NULL AND l.name >= $7::bytea))"
	    " ORDER BY l.name LIMIT $5::int8",
	[S_Q_HELD] = "SELECT count(*) FROM (SELECT 1 FROM locks l"
	    " JOIN holders h ON h.lock_id = l.id WHERE l.name >= $1::bytea"
	    " AND ($2::bytea IS NULL OR l.name < $2::bytea)"
	    " AND h.expires_at > $3::int8 LIMIT $4::int8) c",
	[S_Q_WAIT] = "SELECT count(*) FROM (SELECT 1 FROM locks l"
	    " JOIN waiters w ON w.lock_id = l.id WHERE l.name >= $1::bytea"
	    " AND ($2::bytea IS NULL OR l.name < $2::bytea)"
	    " AND w.deadline > $3::int8 LIMIT $4::int8) c",
	[S_SWEEP_LOCK] = "SELECT id FROM locks WHERE id > $1::int8"
	    " ORDER BY id LIMIT $2::int8 FOR UPDATE SKIP LOCKED",
	[S_SWEEP_PURGE] = "DELETE FROM holders"
	    " WHERE lock_id = ANY ($1::int8[]) AND expires_at <= $2::int8",
	[S_SWEEP_WAITERS] = "DELETE FROM waiters"
	    " WHERE lock_id = ANY ($1::int8[]) AND deadline <= $2::int8",
	[S_SWEEP_IDLE] = "WITH d AS (DELETE FROM locks l"
	    " WHERE id = ANY ($1::int8[]) AND nwait = 0 AND used_at <= $2::int8"
	    " AND NOT EXISTS (SELECT 1 FROM holders h WHERE h.lock_id = l.id)"
	    " RETURNING fence_seq)"
	    " SELECT count(*), coalesce(max(fence_seq), 0) FROM d",
	[S_HOST_ADD] = "INSERT INTO hosts(host_key, name, started_at, seen_at)"
	    " VALUES ($1::text, $2::text, $3::int8, $3::int8)"
	    " ON CONFLICT (host_key) DO UPDATE SET name = EXCLUDED.name,"
	    " started_at = EXCLUDED.started_at, seen_at = EXCLUDED.seen_at"
	    " RETURNING id",
};


/*
 * The schema, version 1, made in one transaction under a transaction-
 * scoped advisory lock, so hosts that start at once do not race on
 * CREATE ... IF NOT EXISTS (which fails with a unique violation when two
 * run together).  The advisory lock guards only this idempotent set-up,
 * never a grant, and ends with the transaction.  A lock's name (its key)
 * is bytea, as in SQLite any bytes compared as bytes: the listing's order
 * and the prefix ranges are those of the SQLite store.  locks.nwait
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
    " name bytea NOT NULL UNIQUE,"
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

