/*
 * pgrows.c: rows of the PostgreSQL store, and a transaction's copy of
 * what it read of its lock (pgrows.h).
 */
#include <string.h>

#include "lockcore.h"
#include "pgrows.h"

void
pgr_secret(const PGresult *r, int row, int th_col, int seal_col,
    struct hsecret *sec)
{
	if (!pgc_col_blob(r, row, th_col, sec->token_hash, SECRET_HASH_LEN))
		memset(sec->token_hash, 0, SECRET_HASH_LEN);  /* no match */
	sec->has_seal = pgc_col_blob(r, row, seal_col, sec->seal,
	    SECRET_SEAL_LEN);
}

int
pgr_holder(struct pgconn *pc, const PGresult *r, int row, int col,
    struct hrow *h)
{
	h->lock_id = pgc_col_i64(r, row, col);
	h->fence = pgc_col_i64(r, row, col + 2);
	h->acquired_at = pgc_col_i64(r, row, col + 4);
	h->expires_at = pgc_col_i64(r, row, col + 5);
	h->waiter_id = pgc_col_i64(r, row, col + 6);
	h->wkey = (uint64_t)pgc_col_i64(r, row, col + 7);
	h->ttl_ms = pgc_col_i64(r, row, col + 9);
	pgr_secret(r, row, col + 1, col + 8, &h->sec);
	return pgc_col_txt(pc, r, row, col + 3, h->owner, sizeof(h->owner));
}

/* S_W_GET's columns: lock_id, owner, rid_hash, ttl_ms, wkey, the lock's
 * name, deadline, token_hash, seal. */
int
pgr_wrow(struct pgconn *pc, const PGresult *r, int row, int col,
    struct wrow *w)
{
	int rc;

	w->lock_id = pgc_col_i64(r, row, col);
	w->has_rid = pgc_col_blob(r, row, col + 2, w->rid_hash,
	    SECRET_HASH_LEN);
	w->ttl_ms = pgc_col_i64(r, row, col + 3);
	w->wkey = (uint64_t)pgc_col_i64(r, row, col + 4);
	w->deadline = pgc_col_i64(r, row, col + 6);
	pgr_secret(r, row, col + 7, col + 8, &w->sec);
	if ((rc = pgc_col_txt(pc, r, row, col + 1, w->owner,
	    sizeof(w->owner))) < 0)
		return rc;
	return pgc_col_txt(pc, r, row, col + 5, w->name, sizeof(w->name));
}

int
pgr_holders_keep(struct pgr_holders *c, struct pgconn *pc, const PGresult *r,
    int col, int64_t lock_id, int64_t now, int live)
{
	int i, rc;

	c->valid = false;
	if (live > PGR_HOLDERS_MAX || PQntuples(r) < live)
		return 0;
	for (i = 0; i < live; i++) {
		if ((rc = pgr_holder(pc, r, i, col, &c->h[i])) < 0)
			return rc;
		if (c->h[i].expires_at <= now)
			return 0;       /* not the order asked for: no copy */
	}
	c->n = live;
	c->lock_id = lock_id;
	c->now = now;
	c->valid = true;
	return 0;
}

bool
pgr_holders_has(const struct pgr_holders *c, int64_t lock_id, int64_t now)
{
	return c->valid && c->lock_id == lock_id && now >= c->now;
}

void
pgr_holders_state(const struct pgr_holders *c, int64_t now, struct hstate *hs)
{
	int i;

	hs->count = 0;
	hs->min_expires = 0;
	for (i = 0; i < c->n; i++) {
		if (c->h[i].expires_at <= now)
			continue;
		if (hs->count++ == 0 || c->h[i].expires_at < hs->min_expires)
			hs->min_expires = c->h[i].expires_at;
	}
}

int
pgr_holders_walk(const struct pgr_holders *c, int64_t now,
    store_holder_fn *fn, void *arg)
{
	struct hrow h;
	int i;

	for (i = 0; i < c->n; i++) {
		if (c->h[i].expires_at <= now)
			continue;
		h = c->h[i];          /* fn may change what it is given */
		if (fn(&h, arg) != 0)
			break;
	}
	return 0;
}

static void
drop_at(struct pgr_holders *c, int i)
{
	memmove(&c->h[i], &c->h[i + 1], (size_t)(c->n - i - 1) *
	    sizeof(c->h[0]));
	c->n--;
}

void
pgr_holders_drop(struct pgr_holders *c, int64_t lock_id, int64_t fence)
{
	int i;

	if (!c->valid || c->lock_id != lock_id)
		return;
	for (i = 0; i < c->n; i++) {
		if (c->h[i].fence == fence) {
			drop_at(c, i);
			return;
		}
	}
}

void
pgr_holders_purge(struct pgr_holders *c, int64_t lock_id, int64_t now)
{
	int i;

	if (!c->valid || c->lock_id != lock_id)
		return;
	for (i = c->n - 1; i >= 0; i--) {
		if (c->h[i].expires_at <= now)
			drop_at(c, i);
	}
}

/* S_W_WALK's columns: id, pid, pstart, deadline, remote, host seen,
 * owner, rid_hash, ttl_ms, wkey, token_hash, seal. */
int
pgr_qrow(struct pgconn *pc, const PGresult *r, int row, struct pgr_qrow *w)
{
	w->s.id = pgc_col_i64(r, row, 0);
	w->s.pid = (pid_t)pgc_col_i64(r, row, 1);
	w->s.pstart = (uint64_t)pgc_col_i64(r, row, 2);
	w->s.deadline = pgc_col_i64(r, row, 3);
	w->s.remote = pgc_col_bool(r, row, 4);
	w->s.host_seen = pgc_col_i64(r, row, 5);
	w->s.wkey = (uint64_t)pgc_col_i64(r, row, 9);
	w->has_rid = pgc_col_blob(r, row, 7, w->rid_hash, SECRET_HASH_LEN);
	w->ttl_ms = pgc_col_i64(r, row, 8);
	pgr_secret(r, row, 10, 11, &w->sec);
	return pgc_col_txt(pc, r, row, 6, w->owner, sizeof(w->owner));
}

void
pgr_qrow_whole(const struct pgr_qrow *w, int64_t lock_id, const char *name,
    struct wrow *out)
{
	size_t n = strlen(name);

	memset(out, 0, sizeof(*out));
	out->lock_id = lock_id;
	memcpy(out->owner, w->owner, sizeof(out->owner));
	memcpy(out->rid_hash, w->rid_hash, sizeof(out->rid_hash));
	out->has_rid = w->has_rid;
	out->sec = w->sec;
	out->ttl_ms = w->ttl_ms;
	out->wkey = w->s.wkey;
	out->deadline = w->s.deadline;
	if (n < sizeof(out->name))
		memcpy(out->name, name, n + 1);
}

void
pgr_queue_keep(struct pgr_queue *c, struct pgconn *pc, const PGresult *r,
    int64_t lock_id)
{
	int i, n = PQntuples(r);

	c->valid = false;
	if (n > PGR_QUEUE_MAX)
		return;
	for (i = 0; i < n; i++)
		if (pgr_qrow(pc, r, i, &c->row[i]) < 0)
			return;
	c->n = n;
	c->upto = n > 0 ? c->row[n - 1].s.id : 0;
	c->complete = n < PGR_QUEUE_MAX;
	c->lock_id = lock_id;
	c->valid = true;
}

const struct pgr_qrow *
pgr_queue_find(const struct pgr_queue *c, int64_t lock_id, int64_t id)
{
	int i;

	if (!c->valid || c->lock_id != lock_id)
		return NULL;
	for (i = 0; i < c->n; i++)
		if (c->row[i].s.id == id)
			return &c->row[i];
	return NULL;
}

void
pgr_queue_drop(struct pgr_queue *c, int64_t id)
{
	int i;

	if (!c->valid)
		return;
	for (i = 0; i < c->n; i++) {
		if (c->row[i].s.id == id) {
			memmove(&c->row[i], &c->row[i + 1],
			    (size_t)(c->n - i - 1) * sizeof(c->row[0]));
			c->n--;
			return;
		}
	}
}
