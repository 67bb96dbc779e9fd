/*
 * pgschema: the tables of lockcore's PostgreSQL store (store_pg.c), in the
 * schema `httplock` of the database: made by the first host that opens
 * the store, upgraded in place by a newer one, refused by an older one;
 * and the statements the store runs on them (pg_sql, by enum stmt_id).
 */
#ifndef HTTPLOCK_PGSCHEMA_H
#define HTTPLOCK_PGSCHEMA_H

#include "pgconn.h"

/* The statements, prepared on first use (pgconn.h). */
enum stmt_id {
	S_BEGIN,
	S_BEGIN_RO,
	S_COMMIT,
	S_ROLLBACK,
	S_NO_FLUSH,
	S_CLOCK,
	S_PUBLISH,
	S_META_GET,
	S_META_SET,
	S_FLOOR_RAISE,
	S_SESS_NEXT,
	S_SESS_ADD,
	S_SESS_DEL,
	S_LOCK_GET,
	S_LOCK_GET_W,
	S_LOCK_ID_W,
	S_LOCK_OF_WAITER,
	S_LOCK_OF_HOLDER,
	S_LOCK_HOLDERS,
	S_LOCK_ADD,
	S_FENCE_MAX,
	S_H_PURGE,
	S_H_STATE,
	S_H_LIST,
	S_H_BY_REQ,
	S_H_BY_WAITER,
	S_H_GRANT,
	S_H_DEL,
	S_H_RENEW,
	S_H_TAKE,
	S_W_GET,
	S_W_LOOK,
	S_W_BY_REQ,
	S_W_TAKE,
	S_W_WALK,
	S_W_WALK_NAME,
	S_W_MINE,
	S_HOST_BEAT,
	S_W_COUNT,
	S_W_ADD,
	S_W_DEL,
	S_LIST,
	S_Q_HELD,
	S_Q_WAIT,
	S_SWEEP_LOCK,
	S_SWEEP_PURGE,
	S_SWEEP_WAITERS,
	S_SWEEP_IDLE,
	S_HOST_ADD,
	S_COUNT
};

extern const char *const pg_sql[S_COUNT];

/* Creates or upgrades the schema on the connection (outside any
 * transaction).  0, or LC_E_DB with the reason in q->err. */
int pgschema_make(struct pgconn *q);

#endif /* HTTPLOCK_PGSCHEMA_H */
