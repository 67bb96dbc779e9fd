/*
 * deliver: answering an acquire, and what follows a transaction that may
 * have handed a lock on: the grant goes to the waiter it names at once if
 * that request is parked in this process, else the coordinator wakes it.
 */
#ifndef HTTPLOCK_DELIVER_H
#define HTTPLOCK_DELIVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "lockcore.h"
#include "lockref.h"
#include "reply.h"

/* What answering a parked acquire needs; fixed while it is parked.  A
 * parked request's wake slot (wakeup.h) points at its parked_answer. */
struct parked_answer {
	struct reply             reply;    /* its FastCGI connection */
	struct lockref           ref;      /* name and key */
	struct lock_waiter_ident who;      /* token, waiter key */
	int64_t                  started;  /* its arrival, wall ms */
};

/* This process's pid, which handoffs name.  Call once, before the
 * threads start. */
void deliver_init(pid_t pid);

/*
 * Answers an acquire that ended with rc (a grant in *g for LC_GRANTED);
 * `wkey` is its waiter key, `started` its arrival (wall ms), `wait`
 * whether it was willing to wait.  A grant that cannot be delivered (the
 * web server dropped the connection) is released at once, and handed on,
 * rather than left to expire.
 */
void deliver_acquire(struct reply *r, const struct lockref *ref, int rc,
    const struct lock_grant *g, uint64_t wkey, int64_t started, bool wait);

/*
 * After a committed transaction on lock `key` that may have handed it on
 * (*ho): answers the waiter it granted if that request is parked here
 * (its parking thread then withdraws its registration with the
 * coordinator), wakes it through the coordinator's kick otherwise; the new
 * lease re-arms the coordinator's timer either way.  Without a handoff,
 * wakes the first waiter if `wake`.
 */
void deliver_handed_on(const char *key, bool wake,
    const struct lock_handoff *ho);

#endif /* HTTPLOCK_DELIVER_H */
