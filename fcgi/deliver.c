/*
 * deliver.c: answering acquires and delivering handoffs (deliver.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "coordlink.h"
#include "db.h"
#include "deliver.h"
#include "log.h"
#include "wakeup.h"

static pid_t self_pid;

void
deliver_init(pid_t pid)
{
	self_pid = pid;
}

/*
 * Sends a grant.  If it cannot be delivered, the grant is released at once
 * -- only while it is still this request's: a retry with its request_id
 * may have been given it meanwhile, and that client keeps it.
 */
static void
send_grant(struct reply *r, const struct lock_grant *g,
    const struct lockref *ref, uint64_t wkey)
{
	char extra[64];
	struct lockcore *db;
	struct lock_handoff ho;
	bool wake = false;
	int rc;

	snprintf(extra, sizeof(extra), "Lock-Token: %s", g->token);
	if (reply_json(r, 200, extra, reply_grant(g, ref->name, g->ttl_ms),
	    false) == 0)
		return;
	if ((db = db_enter(DB_WRITE)) == NULL)
		return;
	coordlink_handoff_init(&ho);
	rc = lock_undo(db, g->name, g->token, wkey, clock_wall_ms(), &wake,
	    &ho);
	if ((rc = db_leave(rc)) < 0) {
		/* Undone or not committed: nothing to act upon. */
		ho.waiter_id = 0;
		wake = false;
	}
	log_info(LOCK_FMT ": grant with fence %" PRId64 " undeliverable "
	    "(client gone), %s", LOCK_ARGS(ref), g->fence,
	    rc == LC_OK ? "released" : rc == LC_E_SUPERSEDED ?
	    "kept: a retry with the same request_id has it" :
	    reply_lc_code(rc));
	deliver_handed_on(g->name, wake, &ho);
}

/* The debug line of an acquire's outcome; `started` is its arrival. */
static void
log_acquire(const struct lockref *ref, int rc, const struct lock_grant *g,
    int64_t started, bool wait)
{
	int64_t waited = clock_wall_ms() - started;

	if (rc == LC_GRANTED)
		log_debug(LOCK_FMT ": granted, fence %" PRId64 ", owner '%s', "
		    "waited %" PRId64 " ms%s", LOCK_ARGS(ref), g->fence,
		    LOG_ESC(g->owner), waited, g->acquired_at < started ?
		    " (replayed for its request_id)" : "");
	else if (rc == LC_BUSY)
		log_debug(LOCK_FMT ": %s after %" PRId64 " ms", LOCK_ARGS(ref),
		    wait ? "timeout" : "held, no wait", waited);
	else
		log_debug(LOCK_FMT ": acquire ended after %" PRId64 " ms: %s",
		    LOCK_ARGS(ref), waited, reply_lc_code(rc));
}

void
deliver_acquire(struct reply *r, const struct lockref *ref, int rc,
    const struct lock_grant *g, uint64_t wkey, int64_t started, bool wait)
{
	if (log_debug_enabled())
		log_acquire(ref, rc, g, started, wait);
	switch (rc) {
	case LC_GRANTED:
		send_grant(r, g, ref, wkey);
		break;
	case LC_BUSY:
		reply_error(r, 423, "timeout",
		    wait ? "the lock is still held after the timeout" :
		    "the lock is held", NULL, false);
		break;
	default:
		reply_lc_error(r, rc);
		break;
	}
}

/*
 * Answers the request a committed handoff granted, from the calling thread,
 * if it is parked in this process: the grant does not wait for the parking
 * thread to wake.  False if there is none (or it is being ended).
 *
 * A grant that cannot be delivered is released and may be handed on to
 * the next waiter here, whose connection may be dead too (a web server
 * restart drops them all): answering that one as well would recurse once
 * per dead waiter, ~1.3 KiB of stack each.  Below the first level the
 * waiter is only woken, and its parking thread looks in the database.
 */
static bool
answer_parked(const struct lock_handoff *ho)
{
	static _Thread_local bool answering;
	struct parked_answer *pa;
	struct lock_grant g;
	struct wake_slot *s;

	if (answering)
		return wakeup_signal(ho->waiter_id);
	if ((s = wakeup_claim(ho)) == NULL)
		return false;
	pa = s->owner;
	/* The grant carries the token only the waiting request knows. */
	g = ho->grant;
	memcpy(g.token, pa->who.token, sizeof(g.token));
	answering = true;
	deliver_acquire(&pa->reply, &pa->ref, LC_GRANTED, &g, pa->who.key,
	    pa->started, true);
	answering = false;
	wakeup_answered(s);
	return true;
}

void
deliver_handed_on(const char *key, bool wake, const struct lock_handoff *ho)
{
	if (ho->waiter_id != 0 && ho->pid == self_pid && answer_parked(ho))
		coordlink_notify(key, wake, 0, db_local_ms(ho->expires_at));
	else if (ho->waiter_id != 0)
		coordlink_notify(key, wake, ho->waiter_id,
		    db_local_ms(ho->expires_at));
	else if (wake)
		coordlink_notify(key, true, 0, 0);
}
