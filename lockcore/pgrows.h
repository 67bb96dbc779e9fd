/*
 * pgrows: rows of lockcore's PostgreSQL store (store_pg.c) read from
 * results into the engine's structs (store.h), and what a write
 * transaction has read of the one lock whose row it holds, so that a
 * later call of the same transaction is answered without a round trip.
 *
 * Every transaction that changes a lock's holders or waiters takes the
 * lock's row first (store_pg.c, "Transactions"), so while a transaction
 * holds that row what it read of the lock stays true, except for its own
 * writes: store_pg.c applies its holder deletions to the copy and drops
 * the copy on any other write.
 */
#ifndef HTTPLOCK_PGROWS_H
#define HTTPLOCK_PGROWS_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "pgconn.h"
#include "store.h"

#define PGR_HOLDERS_MAX 4     /* live holders a lock's look keeps */

/* Secrets from columns th_col (the token's hash) and seal_col. */
void pgr_secret(const PGresult *r, int row, int th_col, int seal_col,
    struct hsecret *sec);
/* A holder row from the 10 columns at `col` (HOLDER_COLS' order). */
int pgr_holder(struct pgconn *pc, const PGresult *r, int row, int col,
    struct hrow *h);

/*
 * The live holders of lock `lock_id` at `now`, in fence order, all of
 * them (a lock with more than PGR_HOLDERS_MAX is not kept): answers
 * holders_live() and holder_state() for that lock at any later `now`.
 */
struct pgr_holders {
	bool        valid;
	int64_t     lock_id;
	int64_t     now;
	int         n;
	struct hrow h[PGR_HOLDERS_MAX];
};

/* Keeps rows from `col` on of result r (S_LOCK_HOLDERS: live ones first,
 * `live` of them in all). */
int pgr_holders_keep(struct pgr_holders *c, struct pgconn *pc,
    const PGresult *r, int col, int64_t lock_id, int64_t now, int live);
bool pgr_holders_has(const struct pgr_holders *c, int64_t lock_id,
    int64_t now);
/* holder_state() and holders_live() from the copy (pgr_holders_has). */
void pgr_holders_state(const struct pgr_holders *c, int64_t now,
    struct hstate *hs);
int pgr_holders_walk(const struct pgr_holders *c, int64_t now,
    store_holder_fn *fn, void *arg);
/* This transaction deleted holder `fence`, or those expired at `now`. */
void pgr_holders_drop(struct pgr_holders *c, int64_t lock_id, int64_t fence);
void pgr_holders_purge(struct pgr_holders *c, int64_t lock_id, int64_t now);

/* A waiter row with its lock's name from the 9 columns at `col`
 * (S_W_GET's order). */
int pgr_wrow(struct pgconn *pc, const PGresult *r, int row, int col,
    struct wrow *w);

/* One row of a lock's queue as a walk reads it (S_W_WALK's columns):
 * what the walk shows (s) and the rest of the row. */
struct pgr_qrow {
	struct wslot  s;
	char          owner[LC_OWNER_MAX + 1];
	unsigned char rid_hash[SECRET_HASH_LEN];
	bool          has_rid;
	struct hsecret sec;
	int64_t       ttl_ms;
};

int pgr_qrow(struct pgconn *pc, const PGresult *r, int row,
    struct pgr_qrow *w);
/* The whole waiter row of w, of lock `lock_id` named `name`. */
void pgr_qrow_whole(const struct pgr_qrow *w, int64_t lock_id,
    const char *name, struct wrow *out);

/*
 * The first rows of the queue of lock `lock_id`, in id order, read with
 * the lock's row (complete: there are no others).  Answers a walk from
 * its start, and waiter_get() for the rows it holds.
 */
#define PGR_QUEUE_MAX 8

struct pgr_queue {
	bool            valid;
	bool            complete;
	int64_t         lock_id;
	int64_t         upto;       /* the last id read (rows up to it and
	                               not dropped are held) */
	int             n;
	struct pgr_qrow row[PGR_QUEUE_MAX];
};

/* From a result of S_W_WALK's columns (LIMIT PGR_QUEUE_MAX). */
void pgr_queue_keep(struct pgr_queue *c, struct pgconn *pc,
    const PGresult *r, int64_t lock_id);
/* Row `id` of the queue, or NULL. */
const struct pgr_qrow *pgr_queue_find(const struct pgr_queue *c,
    int64_t lock_id, int64_t id);
/* This transaction deleted row `id`. */
void pgr_queue_drop(struct pgr_queue *c, int64_t id);

/* The waiter row a walk stopped at, whole: answers waiter_get() for it. */
struct pgr_waiter {
	bool        valid;
	int64_t     id;
	bool        remote;     /* another host's */
	struct wrow w;
};

#endif /* HTTPLOCK_PGROWS_H */
