/*
 * query.c: the read-only queries, lock_status and lock_list.  Each runs in
 * one read transaction of the store (store.h) and changes nothing: an
 * expired holder or a dead waiter is left for the next write to remove,
 * and only what is live is counted.
 */
#include <stdint.h>
#include <string.h>

#include "lcint.h"

/* Copies a live holder into the status, as long as there is room. */
static int
status_holder(const struct hrow *h, void *arg)
{
	struct lock_status *st = arg;
	struct lock_holder *lh = &st->holders[st->nholders++];

	memcpy(lh->owner, h->owner, sizeof(lh->owner));
	lh->fence = h->fence;
	lh->acquired_at = h->acquired_at;
	lh->expires_at = h->expires_at;
	return st->nholders >= LC_STATUS_HOLDERS_MAX;
}

static int
status_tx(struct lockcore *lc, const char *name, int64_t now,
    struct lock_status *st)
{
	struct lockrow lr;
	int rc;
	bool found;

	if ((rc = STORE(lc, lock_get, name, &lr, &found)) < 0 || !found ||
	    (rc = STORE(lc, holders_live, lr.id, now, status_holder, st)) < 0)
		return rc;
	return STORE(lc, waiter_count, lr.id, 0, INT64_MAX, now, -1,
	    &st->waiters);
}

int
lock_status(struct lockcore *lc, const char *name, int64_t now,
    struct lock_status *st)
{
	int rc;

	if (lc == NULL || !valid_str(name, LC_KEY_MAX) || st == NULL)
		return LC_E_INVAL;
	memset(st, 0, sizeof(*st));
	if ((rc = STORE(lc, begin, false, &now)) < 0)
		return rc;
	rc = status_tx(lc, name, now, st);
	return STORE(lc, end, rc);
}

/* lock_list's walk: hands `limit` entries to the caller's fn, then stops. */
struct list_walk {
	int   (*fn)(const struct lock_list_entry *e, void *arg);
	void  *arg;
	int    limit;
	int    n;            /* entries handed over */
	bool   stop;         /* fn asked to stop */
	bool  *more;
};

static int
list_entry(const struct lock_list_entry *e, void *arg)
{
	struct list_walk *lw = arg;

	/* The store reads one entry past the limit to tell *more. */
	if (lw->n == lw->limit || lw->stop) {
		*lw->more = true;
		return 1;
	}
	lw->n++;
	lw->stop = lw->fn(e, lw->arg) != 0;
	return 0;
}

int
lock_list(struct lockcore *lc, const char *prefix, const char *skip,
    const char *after, int limit, int64_t now,
    int (*fn)(const struct lock_list_entry *e, void *arg), void *arg,
    bool *more)
{
	struct list_walk lw = { fn, arg, limit, 0, false, more };
	int rc;

	if (lc == NULL || fn == NULL || more == NULL || limit <= 0 ||
	    !valid_opt(prefix, LC_KEY_MAX) || !valid_opt(skip, LC_KEY_MAX) ||
	    !valid_opt(after, LC_KEY_MAX))
		return LC_E_INVAL;
	*more = false;
	if ((rc = STORE(lc, begin, false, &now)) < 0)
		return rc;
	rc = STORE(lc, list, now, after != NULL ? after : "",
	    prefix != NULL ? prefix : "", skip != NULL ? skip : "",
	    (int64_t)limit + 1, list_entry, &lw);
	return STORE(lc, end, rc);
}
