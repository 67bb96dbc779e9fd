/*
 * conn.c: opening and closing a lockcore connection, its session and
 * the recovery from an unclean shutdown (fence floor and grace), group
 * commit, and the health probe.  The lock semantics are in engine.c, the
 * reads in query.c; all of them reach the rows through a store (store.h),
 * which this file opens.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "lcint.h"
#include "proc.h"

/*
 * Unclean shutdowns.  With synchronous=NORMAL in WAL mode a commit survives
 * the crash of its process (the OS still has it) but not an OS crash or a
 * power loss: the last commits before it may be gone from the file when
 * the machine comes back.  Those commits may have granted locks whose
 * clients still hold them (their processes ran on other machines), and
 * their fences were seen.  So every connection registers itself in
 * `sessions` with the kernel's boot id, in a transaction synced to disk
 * (synchronous=FULL for that commit) before it can grant anything, and
 * removes its row when closed.  A later open that finds a row of another
 * boot knows that the machine went down under a connection that was open:
 * if that connection ran with synchronous=NORMAL, commits may have been
 * lost, and in the same transaction that removes the stale rows it
 *  - raises meta.fence_floor to FENCE_JUMP above the highest fence on disk,
 *    so no fence that a lost commit issued is issued again (the lost tail
 *    of the WAL holds far fewer than 2^32 grants), and
 *  - unless no_crash_grace, sets meta.grace_until to the time this boot
 *    began plus the longest lease any of those connections could grant:
 *    every lost grant was made before the crash, hence before the boot,
 *    and has expired by then.  Until then no new grant is made
 *    (LC_E_RECOVERING); renewals, releases and reads go on.
 * A row of this boot whose process is gone is a process crash, which
 * loses nothing, and is only removed.  A machine that was shut down
 * cleanly closed its connections first and needs nothing.  With
 * synchronous=FULL every grant was on disk before it was answered.
 */

/*
 * Fences.  A fence must never be issued twice for a name, for as long as
 * the database exists, or a new grant could carry a fence an old holder
 * already showed to a resource.  Every fence is at least meta.fence_floor,
 * which only grows:
 *  - a lockcore_open that finds no other connection open (the first
 *    after a stop) raises it to the wall clock in microseconds, so a copy
 *    of the database restored from a backup (with the server stopped)
 *    issues fences above every fence the server issued after the copy
 *    was taken: those grew by one per grant from a floor set at an
 *    earlier start, far more slowly than the clock.  Later opens leave it,
 *    so fences of a running server go up by one per grant;
 *  - lockcore_sweep deletes the rows of locks idle for a while (no live
 *    holder, no waiter, no grant since `idle_ms`: locks.used_at) and
 *    raises it above their fence_seq in the same transaction, so a name
 *    used again starts above every fence it had;
 *  - an unclean shutdown raises it by FENCE_JUMP (above).
 * The grant's transaction reads it (fence_next in store.h), so a floor
 * raised by another connection is in force at once.
 */

/* Sessions: see "Unclean shutdowns" above. */

/*
 * Removes the sessions that are over: those of another boot (noting in
 * *lost whether one of them ran with synchronous=NORMAL, and in *ttl the
 * longest lease one of them could grant) and those of this boot whose
 * process is gone.  *alone is set when no session is left.
 */
static int
reap_sessions(struct lockcore *lc, const char *boot, bool *lost,
    int64_t *ttl, bool *alone)
{
	struct session_row s;
	int64_t last = 0;
	int rc;
	bool found, other, drop;

	*lost = false;
	*ttl = 0;
	*alone = true;
	for (;;) {
		if ((rc = STORE(lc, session_next, last, &s, &found)) < 0 ||
		    !found)
			return rc;
		if (s.server_alive >= 0) {
			/* The server knows whether the connection that
			 * added it is open; one that closed lost nothing,
			 * each commit having waited for the WAL flush. */
			other = false;
			drop = s.server_alive == 0;
		} else {
			other = strcmp(s.boot_id, boot) != 0;
			drop = other || !proc_alive(s.pid, s.pstart);
		}
		if (other) {
			lc->rec.stale_sessions++;
			if (!s.sync_full)
				*lost = true;
			if (s.max_ttl_ms > *ttl)
				*ttl = s.max_ttl_ms;
		}
		last = s.id;
		if (!drop) {
			*alone = false;
			continue;
		}
		if ((rc = STORE(lc, session_delete, s.id)) < 0)
			return rc;
	}
}

/*
 * After an unclean shutdown that may have lost commits: the fence floor
 * goes FENCE_JUMP above every fence on disk, and unless no_crash_grace
 * the grace runs until the boot's start plus the longest lease (ttl, or
 * ours).  *floor and *until are updated.
 */
static int
recover_lost(struct lockcore *lc, const struct lockcore_opts *opts,
    int64_t ttl, int64_t *floor, int64_t *until)
{
	int64_t top, t;
	int rc;

	lc->rec.recovered = 1;
	if ((rc = STORE(lc, fence_max, &top)) < 0)
		return rc;
	if (top < *floor)
		top = *floor;
	*floor = top + FENCE_JUMP;
	if ((rc = STORE(lc, floor_raise, *floor)) < 0)
		return rc;
	if (opts != NULL && opts->no_crash_grace)
		return 0;
	t = opts != NULL && opts->boot_time_ms > 0 ? opts->boot_time_ms :
	    proc_boot_time_ms();
	t += ttl > lc->max_ttl_ms ? ttl : lc->max_ttl_ms;
	if (t <= *until)
		return 0;
	*until = t;
	return STORE(lc, meta_set, "grace_until", *until);
}

/*
 * The session transaction of lockcore_open(): reaps the sessions that are
 * over, recovers from an unclean shutdown if one of them says so, adds
 * ours and reads the floor and grace in force.  It is committed durably
 * (synchronous=FULL), so our row is on disk before we grant anything.
 */
static int
open_session(struct lockcore *lc, const struct lockcore_opts *opts,
    const char **why)
{
	struct session_row me;
	int64_t now = clock_wall_ms(), ttl, floor, until;
	int rc, drc;
	bool lost, alone;

	memset(&me, 0, sizeof(me));
	if (opts != NULL && opts->boot_id != NULL)
		(void)snprintf(me.boot_id, sizeof(me.boot_id), "%s",
		    opts->boot_id);
	else
		proc_boot_id(me.boot_id, sizeof(me.boot_id));
	me.pid = getpid();
	me.pstart = proc_start(me.pid);
	me.sync_full = opts != NULL && opts->synchronous_full;
	me.max_ttl_ms = lc->max_ttl_ms;
	if ((rc = STORE(lc, durable, true)) < 0) {
		*why = lockcore_errmsg(lc);
		return -1;
	}
	if ((rc = STORE(lc, begin, true, &now)) < 0)
		goto out;
	if ((rc = reap_sessions(lc, me.boot_id, &lost, &ttl, &alone)) < 0 ||
	    (rc = STORE(lc, meta_get, "fence_floor", &floor)) < 0 ||
	    (rc = STORE(lc, meta_get, "grace_until", &until)) < 0)
		goto end;
	/* The first connection after a stop: no fence below the wall clock
	 * in microseconds (see "Fences"). */
	if (alone && now < INT64_MAX / 1000 && floor < now * 1000) {
		floor = now * 1000;
		if ((rc = STORE(lc, floor_raise, floor)) < 0)
			goto end;
	}
	if (lost && (rc = recover_lost(lc, opts, ttl, &floor, &until)) < 0)
		goto end;
	me.opened_at = now;
	if ((rc = STORE(lc, session_add, &me, &lc->session)) < 0)
		goto end;
	lc->rec.fence_floor = floor;
	lc->rec.grace_until = until > now ? until : 0;
end:
	rc = STORE(lc, end, rc);
out:
	if (rc < 0)
		*why = lockcore_errmsg(lc);
	if ((drc = STORE(lc, durable, false)) < 0 && rc == 0) {
		*why = lockcore_errmsg(lc);
		rc = drc;
	}
	return rc < 0 ? -1 : 0;
}

int
lockcore_open(struct lockcore **out, const char *path,
    const struct lockcore_opts *opts, char *err, size_t errlen)
{
	struct lockcore *lc = NULL;
	const char *why = NULL;
	int rc;

	if (out == NULL || path == NULL)
		return LC_E_INVAL;
	*out = NULL;
	if ((lc = calloc(1, sizeof(*lc))) == NULL) {
		if (err != NULL && errlen > 0)
			(void)snprintf(err, errlen, "%s: calloc: %s", path,
			    strerror(errno));
		return LC_E_NOMEM;
	}
	lc->max_ttl_ms = opts != NULL && opts->max_ttl_ms > 0 ?
	    opts->max_ttl_ms : LC_GRACE_DEFAULT_MS;
	lc->self_pid = getpid();
	lc->self_pstart = proc_start(lc->self_pid);
	rc = lockcore_path_is_pg(path) ?
	    store_pg_open(&lc->st, path, opts, err, errlen) :
	    store_sqlite_open(&lc->st, path, opts, err, errlen);
	if (rc < 0)
		goto out;
	if (open_session(lc, opts, &why) < 0) {
		if (err != NULL && errlen > 0)
			(void)snprintf(err, errlen, "%s: session: %s", path,
			    why != NULL ? why : "failed");
		rc = LC_E_DB;
		goto out;
	}
	*out = lc;
	lc = NULL;
	rc = 0;
out:
	lockcore_close(lc);
	return rc;
}

bool
lockcore_path_is_pg(const char *path)
{
	return strncmp(path, "postgresql://", 13) == 0 ||
	    strncmp(path, "postgres://", 11) == 0;
}

void
lockcore_store_name(const char *path, char *buf, size_t size)
{
	if (lockcore_path_is_pg(path))
		store_pg_name(path, buf, size);
	else
		(void)snprintf(buf, size, "%s", path);
}

void
lockcore_recovery(struct lockcore *lc, struct lockcore_recovery *r)
{
	*r = lc->rec;
}

/* Removes our session row; a failure leaves it to the next opener. */
static void
close_session(struct lockcore *lc)
{
	int64_t now = 0;
	int rc;

	if (lc->session == 0)
		return;
	if (STORE(lc, begin, true, &now) < 0)
		return;
	rc = STORE(lc, session_delete, lc->session);
	(void)STORE(lc, end, rc);
	lc->session = 0;
}

void
lockcore_close(struct lockcore *lc)
{
	if (lc == NULL)
		return;
	if (lc->st != NULL) {
		/* A batch left open is rolled back: it is not done. */
		(void)STORE(lc, batch_end, LC_E_DB);
		close_session(lc);
		lc->st->ops->close(lc->st);
	}
	free(lc);
}

int
lockcore_batch_begin(struct lockcore *lc)
{
	return lc->st->ops->batch_begin(lc->st);
}

int
lockcore_batch_end(struct lockcore *lc, int rc)
{
	return STORE(lc, batch_end, rc);
}

const char *
lockcore_errmsg(struct lockcore *lc)
{
	if (lc == NULL || lc->st == NULL)
		return "no connection";
	return lc->st->ops->errmsg(lc->st);
}

int
lockcore_ping(struct lockcore *lc)
{
	int64_t now = 0;
	int rc;

	if (lc == NULL)
		return LC_E_INVAL;
	if ((rc = STORE(lc, begin, true, &now)) < 0)
		return rc;
	rc = STORE(lc, meta_set, "health_probe", clock_wall_ms());
	return STORE(lc, end, rc);
}

int
lockcore_store_info(struct lockcore *lc, struct lockcore_store_info *si)
{
	if (lc == NULL || si == NULL)
		return LC_E_INVAL;
	memset(si, 0, sizeof(*si));
	si->kind = lc->st->ops->kind;
	si->primary = -1;
	return lc->st->ops->info != NULL ? lc->st->ops->info(lc->st, si) : 0;
}

int64_t
lockcore_clock_ahead(struct lockcore *lc)
{
	return lc != NULL && lc->st != NULL ? lc->st->clock_ahead : 0;
}
