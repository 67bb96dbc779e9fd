/*
 * Read-only queries: lock_status and lock_list.
 */
#include <string.h>

#include <sqlite3.h>

#include "lcint.h"


/* lock_status and lock_list: reads only. */

static int
status_tx(struct lockcore *lc, const char *name, int64_t now,
    struct lock_status *st)
{
	sqlite3_stmt *s = lc->st[S_H_LIST];
	struct lock_holder *lh;
	struct lockrow lr;
	struct hrow h;
	int rc = SQLITE_OK;
	bool found;

	if ((rc = lock_get(lc, name, false, &lr, &found)) < 0 || !found)
		return rc;
	bind_i64(s, 1, lr.id, &rc);
	bind_i64(s, 2, now, &rc);
	while (rc == SQLITE_OK && st->nholders < LC_STATUS_HOLDERS_MAX &&
	    (rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((rc = read_holder(s, &h)) < 0)
			goto out;
		lh = &st->holders[st->nholders++];
		memcpy(lh->owner, h.owner, sizeof(lh->owner));
		lh->fence = h.fence;
		lh->acquired_at = h.acquired_at;
		lh->expires_at = h.expires_at;
		rc = SQLITE_OK;
	}
	rc = rc == SQLITE_DONE || rc == SQLITE_OK ? 0 : dbfail(lc, rc);
out:
	done(s);
	if (rc == 0)
		rc = waiter_count(lc, lr.id, 0, INT64_MAX, now, -1,
		    &st->waiters);
	return rc;
}

int
lock_status(struct lockcore *lc, const char *name, int64_t now,
    struct lock_status *st)
{
	int rc;

	if (lc == NULL || !valid_str(name, LC_KEY_MAX) || st == NULL)
		return LC_E_INVAL;
	memset(st, 0, sizeof(*st));
	if ((rc = tx_begin(lc, false, &now)) < 0)
		return rc;
	rc = status_tx(lc, name, now, st);
	return tx_end(lc, rc);
}

/*
 * The smallest string greater than every string starting with prefix:
 * drop trailing 0xff bytes, then add one to the last byte.  *len is -1 if
 * there is none (prefix empty or all 0xff), i.e. no upper bound.
 */
void
prefix_end(const char *prefix, char hi[LC_KEY_MAX + 1], int *len)
{
	size_t n = strlen(prefix);

	while (n > 0 && (unsigned char)prefix[n - 1] == 0xff)
		n--;
	*len = -1;
	if (n == 0)
		return;
	memcpy(hi, prefix, n);
	hi[n - 1] = (char)((unsigned char)hi[n - 1] + 1);
	hi[n] = '\0';
	*len = (int)n;
}

/*
 * Binds the range [lo, hi) of strings starting with `pfx` to parameters
 * lo_i and lo_i + 1: NULLs for an empty pfx, hi NULL when it has no end.
 * The strings bound are lo (the caller's) and hi[], which must outlive the
 * statement's use.
 */
static void
bind_prefix(sqlite3_stmt *s, int lo_i, const char *pfx,
    char hi[LC_KEY_MAX + 1], int *rc)
{
	int hilen;

	prefix_end(pfx, hi, &hilen);
	if (*rc != SQLITE_OK)
		return;
	*rc = pfx[0] == '\0' ? sqlite3_bind_null(s, lo_i) :
	    sqlite3_bind_text(s, lo_i, pfx, -1, SQLITE_STATIC);
	if (*rc == SQLITE_OK)
		*rc = hilen < 0 ? sqlite3_bind_null(s, lo_i + 1) :
		    sqlite3_bind_text(s, lo_i + 1, hi, hilen, SQLITE_STATIC);
}

static int
list_run(struct lockcore *lc, const char *prefix, const char *skip,
    const char *after, int limit, int64_t now,
    int (*fn)(const struct lock_list_entry *e, void *arg), void *arg,
    bool *more)
{
	sqlite3_stmt *s = lc->st[S_LIST];
	struct lock_list_entry e;
	char hi[LC_KEY_MAX + 1], skip_hi[LC_KEY_MAX + 1];
	int n = 0, hilen, rc = SQLITE_OK;
	bool stop = false;

	prefix_end(prefix, hi, &hilen);
	bind_i64(s, 1, now, &rc);
	bind_txt(s, 2, after, &rc);
	bind_txt(s, 3, prefix, &rc);
	if (rc == SQLITE_OK)
		rc = hilen < 0 ? sqlite3_bind_null(s, 4) :
		    sqlite3_bind_text(s, 4, hi, hilen, SQLITE_STATIC);
	bind_i64(s, 5, (int64_t)limit + 1, &rc);
	bind_prefix(s, 6, skip, skip_hi, &rc);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		rc = SQLITE_OK;
		if (n == limit || stop) {
			*more = true;
			break;
		}
		e.name = (const char *)sqlite3_column_text(s, 0);
		if (e.name == NULL) {
			rc = SQLITE_NOMEM;
			break;
		}
		e.holders = sqlite3_column_int(s, 1);
		e.waiters = sqlite3_column_int(s, 2);
		n++;
		stop = fn(&e, arg) != 0;
	}
	rc = rc == SQLITE_DONE || rc == SQLITE_OK ? 0 : dbfail(lc, rc);
	done(s);
	return rc;
}

int
lock_list(struct lockcore *lc, const char *prefix, const char *skip,
    const char *after, int limit, int64_t now,
    int (*fn)(const struct lock_list_entry *e, void *arg), void *arg,
    bool *more)
{
	int rc;

	if (lc == NULL || fn == NULL || more == NULL || limit <= 0 ||
	    !valid_opt(prefix, LC_KEY_MAX) || !valid_opt(skip, LC_KEY_MAX) ||
	    !valid_opt(after, LC_KEY_MAX))
		return LC_E_INVAL;
	*more = false;
	if ((rc = tx_begin(lc, false, &now)) < 0)
		return rc;
	rc = list_run(lc, prefix != NULL ? prefix : "",
	    skip != NULL ? skip : "", after != NULL ? after : "", limit, now,
	    fn, arg, more);
	return tx_end(lc, rc);
}
