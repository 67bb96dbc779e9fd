/*
 * sqlite_sql: the statements of lockcore's SQLite store (store_sqlite.c),
 * by id.  Private to lockcore.
 */
#ifndef HTTPLOCK_SQLITE_SQL_H
#define HTTPLOCK_SQLITE_SQL_H

enum stmt_id {
	S_BEGIN,
	S_BEGIN_RO,
	S_COMMIT,
	S_ROLLBACK,
	S_VERSION,
	S_META_GET,
	S_META_SET,
	S_FLOOR_RAISE,
	S_SESS_NEXT,
	S_SESS_ADD,
	S_SESS_DEL,
	S_LOCK_GET,
	S_LOCK_STATE,
	S_LOCK_ADD,
	S_FENCE_BUMP,
	S_FENCE_GET,
	S_FENCE_MAX,
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
	S_COUNT
};

extern const char *const sq_sql[S_COUNT];

#endif /* HTTPLOCK_SQLITE_SQL_H */
