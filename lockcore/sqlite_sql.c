/*
 * sqlite_sql.c: the statements of the SQLite store (sqlite_sql.h); the
 * tables they use are made by sqlite_file.c.
 */
#include "sqlite_sql.h"

#define HOLDER_COLS                                                 \
    "lock_id, token_hash, fence, owner, acquired_at, expires_at,"    \
    " waiter_id, wkey, seal, ttl_ms"

const char *const sq_sql[S_COUNT] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_BEGIN_RO] = "BEGIN",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_VERSION] = "SELECT value FROM meta WHERE key = 'schema_version'",
	[S_META_GET] = "SELECT value FROM meta WHERE key = ?1",
	[S_META_SET] = "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
	[S_FLOOR_RAISE] = "INSERT INTO meta(key, value) VALUES ('fence_floor', ?1)"
	    " ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
	[S_SESS_NEXT] = "SELECT id, boot_id, pid, pstart, sync_full,"
	    " max_ttl_ms FROM sessions WHERE id > ?1 ORDER BY id LIMIT 1",
	[S_SESS_ADD] = "INSERT INTO sessions(boot_id, pid, pstart,"
	    " sync_full, max_ttl_ms, opened_at)"
	    " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[S_SESS_DEL] = "DELETE FROM sessions WHERE id = ?1",
	[S_LOCK_GET] = "SELECT id, nwait FROM locks WHERE name = ?1",
	/* The lock row with what the fast paths need to know of its holders
	 * and queue, in one statement: live holders, their first expiry,
	 * expired holders (to purge), and its waiter rows (locks.nwait).
	 * One row even without a lock row (id NULL). */
	[S_LOCK_STATE] = "SELECT l.id,"
	    " count(h.expires_at) FILTER (WHERE h.expires_at > ?2),"
	    " min(h.expires_at) FILTER (WHERE h.expires_at > ?2),"
	    " count(h.expires_at) FILTER (WHERE h.expires_at <= ?2),"
	    " l.nwait"
	    " FROM locks l LEFT JOIN holders h ON h.lock_id = l.id"
	    " WHERE l.name = ?1",
	[S_LOCK_ADD] = "INSERT INTO locks(name) VALUES (?1)",
	/* Not UPDATE ... RETURNING, whose ephemeral table cost more CPU than
	 * a second statement (bench/lcbench: +10 us per acquire). */
	[S_FENCE_BUMP] = "UPDATE locks SET fence_seq = max(fence_seq + 1, ?2,"
	    " (SELECT value FROM meta WHERE key = 'fence_floor')), used_at = ?3"
	    " WHERE id = ?1",
	[S_FENCE_GET] = "SELECT fence_seq FROM locks WHERE id = ?1",
	[S_FENCE_MAX] = "SELECT max(fence_seq) FROM locks",
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
	    " w.wkey, l.name, w.deadline, w.token_hash, w.seal"
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
	/* Quotas: live grants and live waiters of the locks whose keys lie
	 * in [?1, ?2) (?2 NULL: no end), counted up to ?4. */
	[S_Q_HELD] = "SELECT count(*) FROM (SELECT 1 FROM locks l"
	    " JOIN holders h ON h.lock_id = l.id WHERE l.name >= ?1"
	    " AND (?2 IS NULL OR l.name < ?2) AND h.expires_at > ?3 LIMIT ?4)",
	[S_Q_WAIT] = "SELECT count(*) FROM (SELECT 1 FROM locks l"
	    " JOIN waiters w ON w.lock_id = l.id WHERE l.name >= ?1"
	    " AND (?2 IS NULL OR l.name < ?2) AND w.deadline > ?3 LIMIT ?4)",
	/* lockcore_sweep: the last id of a batch of lock rows after ?1, its
	 * expired holders and late waiters, the highest fence among its
	 * idle locks, and those idle locks (no holder left, no waiter row). */
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
	    " AND NOT EXISTS (SELECT 1 FROM holders h WHERE h.lock_id = locks.id)"
};
