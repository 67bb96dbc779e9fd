/*
 * pglisten: the coordinator's ear on a PostgreSQL store shared by several
 * hosts.  A thread of its own holds one connection that LISTENs on the
 * channel lockcore's PostgreSQL store notifies (lockcore/store_pg.c,
 * "Waking across hosts") and hands what it hears to the coordinator's
 * event loop through an eventfd, so the loop never waits for the
 * database.  It connects again by itself, with backoff, whenever the
 * connection is lost; after every (re)connection it asks for every local
 * waiter to be woken once, since what was said meanwhile is lost.
 */
#ifndef HTTPLOCK_PGLISTEN_H
#define HTTPLOCK_PGLISTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * What was heard: the waiters of lock `name` (namelen bytes) should look,
 * and the one with waiter id `kick` (0: none) in particular; or, with
 * `all`, every waiter of every lock (name NULL).
 */
typedef void pglisten_fn(const char *name, size_t namelen, uint64_t kick,
    bool all, void *arg);

/*
 * Starts listening on the store `conninfo` as the host `host_key` (whose
 * own notifications are ignored).  Returns the eventfd that becomes
 * readable when something was heard, or -1 (logged).
 */
int pglisten_start(const char *conninfo, const char *host_key);

/* Calls fn for everything heard since the last call, in order. */
void pglisten_drain(pglisten_fn *fn, void *arg);

/* Stops the thread and closes everything.  A no-op if not started. */
void pglisten_stop(void);

#endif /* HTTPLOCK_PGLISTEN_H */
