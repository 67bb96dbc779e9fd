/*
 * engine.c: the lock semantics of lockcore: acquire, release, the FIFO
 * queue and the handoff of a freed lock, renew, cancel, a waiter's poll
 * and abandon, and the sweep.  They reach the rows through the store
 * (store.h) and decide everything here.
 *
 * The invariant they share.  Each call is one write transaction of the
 * store on the lock it names (a poll first looks in a read transaction,
 * and writes nothing there).  A holder whose lease has ended and a waiter
 * whose process is gone or whose deadline has passed count as absent, and
 * any transaction that meets one may delete it.  At every commit:
 *  - a lock has at most one live holder, and a grant's fence is above
 *    every fence the lock issued before and at least the fence floor
 *    (conn.c, "Fences");
 *  - waiters are served in the order of their ids: a new request is
 *    granted only when the lock is free and no live waiter is queued, and
 *    a waiter only when it is the first live one;
 *  - a transaction that frees a lock with live waiters (release, undo,
 *    cancel, abandon of a granted row) grants the first of them itself
 *    (the handoff, when the caller allows it) or tells the caller to wake
 *    it (wake_next), which then grants itself in its poll.  A lease that
 *    ends frees its lock without a transaction: the first waiter's poll
 *    at the holder's expiry (lock_wait_info.holder_expires) takes it.
 * Every grant is made by grant_new(), so the fence, the lease and the
 * grace after an unclean shutdown are decided in one place.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lcint.h"
#include "proc.h"
#include "secret.h"

_Static_assert(LC_TOKEN_LEN == SECRET_TOKEN_LEN,
    "a token is what secret.h makes");

/*
 * Tokens and request ids are credentials and are stored only as SHA-256
 * hashes (secret.h): `token_hash` and `rid_hash`; `seal` lets a retry with
 * the request_id get its token back.  A waiter row carries the hash and
 * seal of the token its grant will have: the request that waits knows the
 * token (lock_wait_info.token), whoever grants the row copies the hashes.
 */

/* What walk_waiters() found in a lock's queue. */
struct walk {
	int     live;     /* live waiters seen */
	int64_t head;     /* id of the first live waiter, 0 if none */
	pid_t   head_pid; /* its process */
	bool    head_remote; /* it waits on another host */
	int     removed;  /* dead waiters deleted */
};

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

/* The request_id to store: NULL for none (NULL or ""). */
static const char *
opt_rid(const char *rid)
{
	return rid == NULL || rid[0] == '\0' ? NULL : rid;
}

/* Notes a failure of secret.h for lockcore_errmsg.  LC_E_DB. */
static int
secretfail(struct lockcore *lc, const char *what)
{
	(void)snprintf(lc->st->err, sizeof(lc->st->err), "%s failed", what);
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
 * The fast paths' start: finds the lock row of `name` (creating it when
 * `create` is set) with its live holders in *hs, and *queued set if any
 * waiter row exists (live or not).  Expired holders are purged on the way.
 * As the first call of a transaction begun with begin(NULL) it sets *now.
 * 0 with *found, or an LC_E_ code.
 */
static int
lock_state(struct lockcore *lc, const char *name, int64_t *now, bool create,
    struct lockrow *lr, struct hstate *hs, bool *queued, bool *found)
{
	int rc, expired;
	bool existed;

	*queued = false;
	if ((rc = STORE(lc, lock_state, name, now, lr, hs, &expired,
	    found)) < 0)
		return rc;
	if (*found) {
		*queued = lr->nwait > 0;
		return expired > 0 ?
		    STORE(lc, holders_purge, lr->id, *now, NULL) : 0;
	}
	if (!create)
		return 0;
	if ((rc = STORE(lc, lock_add, name, lr, &existed)) < 0)
		return rc;
	*found = true;
	/* Created by another transaction since the look above: its state
	 * is read again, now that this transaction has the row. */
	return existed ? lock_state(lc, name, now, false, lr, hs, queued,
	    found) : 0;
}

/* holder_by_token()'s walk: the token's hash and what matched it. */
struct token_match {
	unsigned char th[SECRET_HASH_LEN];
	struct hrow  *out;
	bool         *found;
};

static int
token_cmp(const struct hrow *h, void *arg)
{
	struct token_match *m = arg;

	if (secret_equal(h->sec.token_hash, m->th, SECRET_HASH_LEN)) {
		*m->out = *h;
		*m->found = true;
	}
	return 0;
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
	struct token_match m = { .out = out, .found = found };

	*found = false;
	if (secret_hash(token, LC_TOKEN_LEN, m.th) < 0)
		return secretfail(lc, "SHA-256");
	return STORE(lc, holders_live, lock_id, now, token_cmp, &m);
}

/* Finds the live holder of a lock that was granted to request_id. */
static int
holder_by_rid(struct lockcore *lc, int64_t lock_id, const char *rid,
    int64_t now, struct hrow *h, bool *found)
{
	unsigned char buf[SECRET_HASH_LEN];
	const unsigned char *rh;
	int rc;

	*found = false;
	if ((rc = rid_hash(lc, rid, buf, &rh)) < 0)
		return rc;
	return STORE(lc, holder_by_rid, lock_id, rh, now, h, found);
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
 * Grants lock `lock_id` of `name`: a new holder row with the next fence
 * (the lock's fence counter + 1, at least the fence floors: this
 * connection's and meta's, see "Fences"), valid until now + ttl_ms,
 * keeping the secrets `sec` of its token and the hash of its request_id
 * (rh, NULL for none).  Fills *g with `token` (NULL: unknown to the
 * caller); g->fence is set by the end of the transaction at the latest
 * (holder_grant in store.h).  Every grant is made here.  waiter_id and
 * wkey (0: none) name the waiter row it is made for.
 */
static int
grant_new(struct lockcore *lc, int64_t lock_id, const char *name,
    const char *owner, const unsigned char *rh, const struct hsecret *sec,
    const char *token, int64_t ttl_ms, int64_t now, int64_t waiter_id,
    uint64_t wkey, struct lock_grant *g)
{
	struct hrow h;
	int rc;

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
	h.sec = *sec;
	h.waiter_id = waiter_id;
	h.wkey = wkey;
	if ((rc = fill_grant(g, name, &h, token)) < 0)
		return rc;
	return STORE(lc, holder_grant, &h, rh, lc->rec.fence_floor,
	    &g->fence);
}

/*
 * Finds the waiter row of a lock with request_id; *id is 0 if none.  The
 * row's secrets go to *sec (sec may be NULL).
 */
static int
waiter_by_rid(struct lockcore *lc, int64_t lock_id, const char *rid,
    int64_t *id, struct hsecret *sec)
{
	unsigned char buf[SECRET_HASH_LEN];
	const unsigned char *rh;
	int rc;

	*id = 0;
	if ((rc = rid_hash(lc, rid, buf, &rh)) < 0)
		return rc;
	return STORE(lc, waiter_by_rid, lock_id, rh, id, sec);
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

/* walk_waiters()'s state across the rows of one walk. */
struct walk_state {
	struct lockcore   *lc;
	struct alive_cache cache;
	struct walk       *w;
	int64_t            now;
	int64_t            cursor;  /* the last row seen */
	int64_t            dead;    /* a dead waiter found, 0 if none */
	bool               all;
};

static int
walk_one(const struct wslot *ws, void *arg)
{
	struct walk_state *ctx = arg;

	ctx->cursor = ws->id;
	/* Another host's waiter: its process is not ours to look at, so it
	 * is live until its deadline while its host is (the host removes
	 * its rows whose process is gone: reap_mine()). */
	if (ws->remote ? ws->deadline <= ctx->now ||
	    ws->host_seen <= ctx->now - HOST_TTL_MS :
	    !waiter_live(ctx->lc, &ctx->cache, ws->pid, ws->pstart,
	    ws->deadline, ctx->now)) {
		ctx->dead = ws->id;
		return 1;
	}
	if (ctx->w->live++ == 0) {
		ctx->w->head = ws->id;
		ctx->w->head_pid = ws->pid;
		ctx->w->head_remote = ws->remote;
	}
	return !ctx->all;
}

/*
 * Walks the waiters of a lock with id < below in FIFO order, deleting dead
 * ones.  With `all` unset it stops at the first live waiter, which is all
 * a grant decision needs: it saves a /proc read per queued waiter in every
 * transaction, and dead waiters further back are removed when they reach
 * the head, or long past their deadline by lockcore_sweep().  A walk
 * stops at a dead waiter and starts again after it once it is deleted,
 * rather than go on across a change to the rows it walks.
 */
static int
walk_waiters(struct lockcore *lc, int64_t lock_id, int64_t below,
    int64_t now, bool all, struct walk *w)
{
	struct walk_state ctx = {
		.lc = lc, .cache = { 0, 0, false, false }, .w = w, .now = now,
		.cursor = 0, .all = all
	};
	int rc;

	memset(w, 0, sizeof(*w));
	for (;;) {
		ctx.dead = 0;
		if ((rc = STORE(lc, waiters_walk, lock_id, ctx.cursor, below,
		    walk_one, &ctx)) < 0 || ctx.dead == 0 ||
		    (!all && w->live > 0))
			return rc;
		if ((rc = STORE(lc, waiter_delete, ctx.dead)) < 0)
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
		rc = STORE(lc, waiter_count, lock_id, w->head,
		    id != 0 ? id : INT64_MAX,
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
	char name[LC_KEY_MAX + 1];
	int rc;

	if ((rc = STORE(lc, holder_by_waiter, waiter_id, now, h, name,
	    found)) < 0 || !*found)
		return rc;
	return fill_grant(g, name, h, NULL);
}

/*
 * The grant step of a queue: waiter row `id` (loaded in *wr), the first
 * live waiter of its lock, which has no live holder, becomes a grant in
 * this transaction, with the secrets, owner, request_id and lease the row
 * was queued with.  The row is deleted and
 * the grant records the row and its wkey, so the waiter finds it by a
 * read (holder_by_waiter) if someone else made it.  `token` is the
 * grant's token if the caller knows it (the waiter's own poll), else NULL
 * (a handoff: only the waiting request knows it).  Used by the handoff of
 * a freed lock and by a waiter's poll alike.
 */
static int
grant_waiter(struct lockcore *lc, int64_t id, const struct wrow *wr,
    const char *token, int64_t now, struct lock_grant *g)
{
	int rc;

	if ((rc = STORE(lc, waiter_delete, id)) < 0)
		return rc;
	return grant_new(lc, wr->lock_id, wr->name, wr->owner,
	    wr->has_rid ? wr->rid_hash : NULL, &wr->sec, token, wr->ttl_ms, now,
	    id, wr->wkey, g);
}

/*
 * A lock lost its holder: grant its first live waiter in this transaction
 * if `ho` allows (see struct lock_handoff), by the grant step a waiter's
 * poll uses (grant_waiter).  *wake_next is set if live waiters wait and
 * none was granted here (no `ho`, a grace, or a first waiter `ho` does not
 * allow).  `queued` false says the lock is known to have no waiter row,
 * so there is nothing to do.
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
		if ((rc = STORE(lc, waiter_count, lr->id, 0, INT64_MAX, now, 1,
		    &n)) < 0)
			return rc;
		*wake_next = n > 0;
		return 0;
	}
	if ((rc = STORE(lc, holder_state, lr->id, now, &hs)) < 0 ||
	    (rc = walk_waiters(lc, lr->id, INT64_MAX, now, false, &w)) < 0)
		return rc;
	*wake_next = false;
	if (w.head == 0 || hs.count > 0)
		return 0;
	if (ho->only_pid != 0 && (w.head_remote ||
	    w.head_pid != ho->only_pid)) {
		*wake_next = true;      /* the first waiter grants itself */
		return 0;
	}
	if ((rc = STORE(lc, waiter_get, w.head, &wr, &found)) < 0)
		return rc;
	if (!found)
		return lc_fail(lc, "waiter row vanished");
	/* The token is the waiting request's: only it knows it. */
	if ((rc = grant_waiter(lc, w.head, &wr, NULL, now, &ho->grant)) < 0)
		return rc;
	ho->waiter_id = w.head;
	ho->pid = w.head_remote ? 0 : w.head_pid;
	ho->key = wr.wkey;
	ho->expires_at = ho->grant.expires_at;
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
		return lc_fail(lc,
		    "the token of a request_id's row cannot be unsealed");
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
	char token[LC_TOKEN_LEN + 1];
	struct hsecret sec;
	struct hrow h;
	struct hstate hs;
	struct walk w;
	int64_t id;
	int rc;
	bool found;

	*handled = true;
	if ((rc = holder_by_rid(lc, lr->id, rid, now, &h, &found)) < 0)
		return rc;
	if (found) {
		if ((rc = unseal(lc, &h.sec, rid, token)) < 0)
			return rc;
		/* The grant is now this request's: the one it was made for
		 * (still waiting, or sending it) must not undo it. */
		if (h.wkey != req->who.key && (rc = STORE(lc, holder_take,
		    h.lock_id, h.fence, req->who.key)) < 0)
			return rc;
		return (rc = fill_grant(grant, req->name, &h, token)) < 0 ?
		    rc : LC_GRANTED;
	}
	if ((rc = waiter_by_rid(lc, lr->id, rid, &id, &sec)) < 0 || id == 0) {
		*handled = false;
		return rc;
	}
	if ((rc = unseal(lc, &sec, rid, info->token)) < 0)
		return rc;
	if ((rc = STORE(lc, waiter_take, id, &req->who, req->deadline)) < 0 ||
	    (rc = walk_waiters(lc, lr->id, id, now, false, &w)) < 0 ||
	    (rc = STORE(lc, holder_state, lr->id, now, &hs)) < 0 ||
	    (rc = wait_info(lc, lr->id, id, &w, &hs, now, info)) < 0)
		return rc;
	return LC_QUEUED;
}

/*
 * Appends a waiter row for req and returns in token[] the token its grant
 * will carry, and its id in *id by the end of the transaction (waiter_add
 * in store.h).
 */
static int
enqueue(struct lockcore *lc, const struct lock_acquire_req *req,
    const char *rid, int64_t lock_id, int64_t *id,
    char token[LC_TOKEN_LEN + 1])
{
	const unsigned char *rh;
	struct wrow w;
	int rc;

	memset(&w, 0, sizeof(w));
	if ((rc = rid_hash(lc, rid, w.rid_hash, &rh)) < 0 ||
	    (rc = secret_new(lc, rid, token, &w.sec)) < 0)
		return rc;
	w.lock_id = lock_id;
	w.has_rid = rh != NULL;
	if (copy_str(w.owner, sizeof(w.owner),
	    req->owner != NULL ? req->owner : "") < 0)
		return LC_E_INVAL;
	w.ttl_ms = req->ttl_ms;
	w.deadline = req->deadline;
	w.wkey = req->who.key;
	return STORE(lc, waiter_add, &w, req->who.pid, req->who.pstart, id);
}

/*
 * Whether req's namespace may have one more grant (`waiting` false) or
 * waiter (`waiting` true) under `quota` (0: no limit).  0, `refusal`, or an
 * LC_E_ code.  Dead waiters count until removed: the count stops at the
 * quota, and its cost with it.
 */
static int
quota_check(struct lockcore *lc, const struct lock_acquire_req *req,
    bool waiting, int quota, int64_t now, int refusal)
{
	int rc, n = 0;

	if (quota <= 0 || req->quota_prefix == NULL ||
	    req->quota_prefix[0] == '\0')
		return 0;
	if ((rc = STORE(lc, quota_count, waiting, req->quota_prefix, now,
	    quota, &n)) < 0)
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
	int rc;

	memset(&w, 0, sizeof(w));
	if (queued && (rc = walk_waiters(lc, lr->id, INT64_MAX, now, false,
	    &w)) < 0)
		return rc;
	if (hs.count == 0 && w.live == 0) {
		char token[LC_TOKEN_LEN + 1];
		unsigned char buf[SECRET_HASH_LEN];
		const unsigned char *rh;
		struct hsecret sec;

		if ((rc = quota_check(lc, req, false, req->quota_held, now,
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
	if ((rc = quota_check(lc, req, false, req->quota_held, now,
	    LC_E_QUOTA_HELD)) != 0 ||
	    (rc = quota_check(lc, req, true, req->quota_waiting, now,
	    LC_E_QUOTA_WAIT)) != 0 ||
	    (rc = enqueue(lc, req, rid, lr->id, &info->waiter_id,
	    info->token)) < 0)
		return rc;
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
	struct lock_acquire_req r;
	const char *rid;
	struct lockrow lr;
	struct hstate hs;
	int64_t asked = now, skew;
	int rc;
	bool found, queued, handled = false;

	if (lc == NULL || grant == NULL || info == NULL ||
	    !acquire_valid(req, now))
		return LC_E_INVAL;
	rid = opt_rid(req->request_id);
	if ((rc = STORE(lc, begin, true, NULL)) < 0)
		return rc;
	if ((rc = lock_state(lc, req->name, &now, true, &lr, &hs, &queued,
	    &found)) < 0)
		goto out;
	/* The deadline is the caller's clock's; the rows are judged by the
	 * transaction's (lock_state() read it): the deadline keeps its
	 * distance from `now`, whatever the skew between the two clocks. */
	r = *req;
	if (lc->st->ops->server_clock &&
	    (__builtin_sub_overflow(now, asked, &skew) ||
	    __builtin_add_overflow(r.deadline, skew, &r.deadline)))
		r.deadline = now > asked ? INT64_MAX : INT64_MIN;
	req = &r;
	/* Not even a queue: a waiter could not be granted before the grace
	 * ends, which is usually long after its deadline. */
	if (now < lc->rec.grace_until) {
		rc = LC_E_RECOVERING;
		goto out;
	}
	/* acquire_retry() changes nothing unless it handles the request. */
	if (rid != NULL)
		rc = acquire_retry(lc, req, rid, &lr, now, grant, info,
		    &handled);
	if (rc >= 0 && !handled)
		rc = acquire_new(lc, req, rid, &lr, &hs, queued, now, grant,
		    info);
out:
	return STORE(lc, end, rc);
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
 * The outcome of a waiter's look that found its row gone: h is the live
 * grant made for the row (NULL: none), loaded into *grant.  LC_GRANTED if
 * it was made for `who` (its token then in grant->token), LC_E_SUPERSEDED
 * if for another request that owned the row then, else LC_E_GONE.
 */
static int
grant_found(struct lockcore *lc, const struct lock_waiter_ident *who,
    const struct hrow *h, struct lock_grant *grant,
    struct lock_wait_info *info)
{
	int rc;

	if (h == NULL)
		return LC_E_GONE;
	if (h->wkey != who->key)
		return LC_E_SUPERSEDED;
	if ((rc = own_token(lc, &h->sec, who, grant->token)) < 0)
		return rc;
	info->handed = true;
	return LC_GRANTED;
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
	return grant_found(lc, who, found ? &h : NULL, grant, info);
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

	if ((rc = STORE(lc, waiter_get, waiter_id, wr, &found)) < 0)
		return rc;
	if (!found)
		return granted_or_gone(lc, waiter_id, who, now, grant, info);
	return wr->wkey != who->key ? LC_E_SUPERSEDED : 0;
}

/*
 * The read half of lock_wait_poll: decides without writing when the waiter
 * was granted already, is gone or superseded, or must go on waiting since
 * the lock is full (the release that frees it grants or wakes the first
 * waiter).  0 when only poll_tx() can decide.  A store with waiter_look()
 * reads it all at once, and the transaction's time with it (*now).
 */
static int
poll_look(struct lockcore *lc, int64_t waiter_id,
    const struct lock_waiter_ident *who, int64_t *now,
    struct lock_grant *grant, struct lock_wait_info *info)
{
	struct wlook l;
	int rc;
	bool one = lc->st->ops->waiter_look != NULL;

	memset(&l, 0, sizeof(l));
	if (one) {
		if ((rc = STORE(lc, waiter_look, waiter_id, now, LC_AHEAD_MAX,
		    &l)) < 0)
			return rc;
		if (!l.found && l.granted &&
		    (rc = fill_grant(grant, l.w.name, &l.h, NULL)) < 0)
			return rc;
		if (!l.found)
			return grant_found(lc, who, l.granted ? &l.h : NULL,
			    grant, info);
		if (l.w.wkey != who->key)
			return LC_E_SUPERSEDED;
	} else if ((rc = poll_row(lc, waiter_id, who, *now, grant, info,
	    &l.w)) != 0 ||
	    (rc = STORE(lc, holder_state, l.w.lock_id, *now, &l.hs)) < 0)
		return rc;
	if (l.hs.count == 0)
		return 0;
	info->waiter_id = waiter_id;
	info->holder_expires = l.hs.min_expires;
	if (!one && (rc = STORE(lc, waiter_count, l.w.lock_id, 0, waiter_id,
	    *now, LC_AHEAD_MAX, &l.ahead)) < 0)
		return rc;
	info->ahead = l.ahead;
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
	int rc;

	if ((rc = poll_row(lc, waiter_id, who, now, grant, info, &wr)) != 0)
		return rc;
	if ((rc = STORE(lc, holders_purge, wr.lock_id, now, NULL)) < 0 ||
	    (rc = walk_waiters(lc, wr.lock_id, waiter_id, now, false,
	    &w)) < 0 ||
	    (rc = STORE(lc, holder_state, wr.lock_id, now, &hs)) < 0)
		return rc;
	if (hs.count > 0 || w.live > 0 || wr.deadline <= now) {
		/* Room, but someone live is ahead: that one must be told.
		 * A waiter past its deadline is never granted: its request
		 * times out (and withdraws) once it sees the clock. */
		*wake_next = hs.count == 0 && w.live > 0;
		rc = wait_info(lc, wr.lock_id, waiter_id, &w, &hs, now, info);
		return rc < 0 ? rc : LC_QUEUED;
	}
	if ((rc = own_token(lc, &wr.sec, who, token)) < 0 ||
	    (rc = grant_waiter(lc, waiter_id, &wr, token, now, grant)) < 0)
		return rc;
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
	if ((rc = STORE(lc, begin, false, lc->st->ops->waiter_look != NULL ?
	    NULL : &now)) < 0)
		return rc;
	rc = poll_look(lc, waiter_id, who, &now, grant, info);
	if ((rc = STORE(lc, end, rc)) != 0)
		return rc;
	if ((rc = STORE(lc, begin, true, &now)) < 0)
		return rc;
	rc = poll_tx(lc, waiter_id, who, now, grant, info, wake_next);
	return STORE(lc, end, rc);
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
	if ((rc = STORE(lc, lock_get, g.name, &lr, &found)) < 0)
		return rc;
	if (!found) {
		return lc_fail(lc, "lock row vanished");
	}
	if ((rc = STORE(lc, holder_delete, h.lock_id, h.fence)) < 0 ||
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

	if ((rc = STORE(lc, waiter_get, waiter_id, &wr, &found)) < 0)
		return rc;
	if (!found)
		return abandon_grant(lc, waiter_id, who, now, wake_next, ho);
	if (wr.wkey != who->key)
		return LC_E_SUPERSEDED;
	if ((rc = STORE(lc, waiter_delete, waiter_id)) < 0 ||
	    (rc = STORE(lc, waiter_count, wr.lock_id, 0, INT64_MAX, now, 1,
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
	if ((rc = STORE(lc, begin, true, &now)) < 0)
		return rc;
	rc = abandon_tx(lc, waiter_id, who, now, wake_next, ho);
	if ((rc = STORE(lc, end, rc)) < 0)
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
    int64_t *now, struct lockrow *lr, struct hrow *h, bool *queued)
{
	struct hstate hs;
	int rc;
	bool found;

	if ((rc = lock_state(lc, name, now, false, lr, &hs, queued,
	    &found)) < 0)
		return rc;
	if (!found || hs.count == 0)
		return LC_E_NOT_HELD;
	if ((rc = holder_by_token(lc, lr->id, token, *now, h, &found)) < 0)
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

	if ((rc = find_holder(lc, name, token, &now, &lr, &h, &queued)) < 0)
		return rc;
	if (key != 0 && h.wkey != key)
		return LC_E_SUPERSEDED;
	if ((rc = STORE(lc, holder_delete, h.lock_id, h.fence)) < 0 ||
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
	if ((rc = STORE(lc, begin, true, NULL)) < 0)
		return rc;
	rc = release_tx(lc, name, token, key, now, wake_next, ho);
	if ((rc = STORE(lc, end, rc)) < 0)
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
	struct lockrow lr;
	struct hrow h;
	int64_t expires;
	int rc;
	bool queued;

	if ((rc = find_holder(lc, name, token, &now, &lr, &h, &queued)) < 0)
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
	if ((rc = STORE(lc, holder_renew, h.lock_id, h.fence, expires,
	    ttl_ms)) < 0)
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
	if ((rc = STORE(lc, begin, true, NULL)) < 0)
		return rc;
	rc = renew_tx(lc, name, token, ttl_ms, now, grant);
	return STORE(lc, end, rc);
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

	if ((rc = STORE(lc, lock_get, name, &lr, &found)) < 0)
		return rc;
	if (!found)
		return LC_E_NOT_HELD;
	if ((rc = waiter_by_rid(lc, lr.id, rid, &id, NULL)) < 0)
		return rc;
	if (id != 0) {
		if ((rc = STORE(lc, waiter_delete, id)) < 0)
			return rc;
		*kick_waiter = id;
		*wake_next = true;
		return LC_OK;
	}
	if ((rc = STORE(lc, holders_purge, lr.id, now, NULL)) < 0 ||
	    (rc = holder_by_rid(lc, lr.id, rid, now, &h, &found)) < 0)
		return rc;
	if (!found)
		return LC_E_NOT_HELD;
	if ((rc = STORE(lc, holder_delete, h.lock_id, h.fence)) < 0 ||
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
	if ((rc = STORE(lc, begin, true, &now)) < 0)
		return rc;
	rc = cancel_tx(lc, name, request_id, now, was_held, kick_waiter,
	    wake_next, ho);
	if ((rc = STORE(lc, end, rc)) < 0)
		handoff_clear(ho);
	return rc;
}

/*
 * Housekeeping: one batch of lock rows after the connection's cursor.
 * Their expired holders and the waiter rows long past their deadline
 * (SWEEP_WAITER_LATE_MS: by then the request of each has answered, or its
 * process is gone) are deleted, then the rows of idle locks (no holder,
 * no waiter row, no grant for idle_ms), and the fence floor is raised
 * above the fences those rows had issued (conn.c, "Fences"), all in one
 * transaction.  The cursor starts over after the last row.
 */
static int
sweep_tx(struct lockcore *lc, int64_t now, int batch, int64_t idle_ms,
    int *changed)
{
	int64_t lo = lc->sweep_cursor, hi = 0, top = 0;
	int rc, n;

	for (;;) {
		if ((rc = STORE(lc, sweep_range, lo, batch, &hi)) < 0)
			return rc;
		if (hi != 0)
			break;
		lc->sweep_cursor = 0;
		if (lo == 0)
			return 0;          /* no lock rows at all */
		lo = 0;                    /* past the last: start over */
	}
	if ((rc = STORE(lc, sweep_expired, lo, hi, now,
	    now - SWEEP_WAITER_LATE_MS, &n)) < 0)
		return rc;
	*changed += n;
	if ((rc = STORE(lc, sweep_idle, lo, hi, now - idle_ms, &top, &n)) < 0)
		return rc;
	*changed += n;
	if (n > 0 && (rc = STORE(lc, floor_raise, top + 1)) < 0)
		return rc;
	lc->sweep_cursor = hi;
	return 0;
}

/* reap_mine()'s walk: the rows whose process is gone. */
struct reap {
	int64_t  id[REAP_MAX];
	uint64_t wkey[REAP_MAX];
	int      n;
	int      seen;
	int64_t  last;
};

static int
reap_one(const struct wslot *ws, void *arg)
{
	struct reap *rp = arg;

	rp->last = ws->id;
	rp->seen++;
	if (!proc_alive(ws->pid, ws->pstart)) {
		rp->id[rp->n] = ws->id;
		rp->wkey[rp->n++] = ws->wkey;
	}
	return rp->n == REAP_MAX;
}

/*
 * On a shared store, removes this host's waiter rows whose process is
 * gone (other hosts count them live while this host is), each in a
 * transaction of its own that takes the lock's row first, as a waiter
 * that leaves does; a row taken over since by a live request (another
 * wkey) stays.  At most REAP_MAX rows a call, after lc->reap_cursor.
 */
static int
reap_mine(struct lockcore *lc, int64_t now, int *changed)
{
	struct reap rp = { .n = 0, .seen = 0, .last = 0 };
	struct wrow wr;
	int64_t t;
	int i, rc;
	bool found;

	t = now;
	if ((rc = STORE(lc, begin, false, &t)) < 0)
		return rc;
	rc = STORE(lc, waiters_mine, lc->reap_cursor, REAP_SCAN, reap_one,
	    &rp);
	if ((rc = STORE(lc, end, rc)) < 0)
		return rc;
	/* After the last row, the next call starts over. */
	lc->reap_cursor = rp.n < REAP_MAX && rp.seen < REAP_SCAN ? 0 :
	    rp.last;
	for (i = 0; i < rp.n; i++) {
		t = now;
		if ((rc = STORE(lc, begin, true, &t)) < 0)
			return rc;
		if ((rc = STORE(lc, waiter_get, rp.id[i], &wr, &found)) == 0 &&
		    found && wr.wkey == rp.wkey[i] &&
		    (rc = STORE(lc, waiter_delete, rp.id[i])) == 0)
			(*changed)++;
		if ((rc = STORE(lc, end, rc)) < 0)
			return rc;
	}
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
	if ((rc = STORE(lc, begin, true, &now)) < 0)
		return rc;
	rc = sweep_tx(lc, now, batch, idle_ms, changed);
	if (rc == 0 && lc->st->ops->host_beat != NULL)
		rc = STORE(lc, host_beat, now);
	if ((rc = STORE(lc, end, rc)) < 0) {
		*changed = 0;
		lc->sweep_cursor = cursor;
		return rc;
	}
	if (lc->st->ops->waiters_mine != NULL)
		rc = reap_mine(lc, now, changed);
	return rc;
}
