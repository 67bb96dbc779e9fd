/*
 * coordc: the worker's side of the coordinator protocol (proto.h).
 *
 * A waiting request opens its own connection (struct coord_waiter), so the
 * coordinator learns of a waiter that vanished from its closed socket, and
 * each wake reaches exactly one thread.  Notifications go through one
 * shared, mutex-protected connection per process (struct coord_notifier).
 *
 * Every call here may fail when the coordinator is down or restarting;
 * callers then fall back to polling the database.  Nothing blocks longer
 * than the timeouts given.
 */
#ifndef HTTPLOCK_COORDC_H
#define HTTPLOCK_COORDC_H

#include <stdbool.h>
#include <stdint.h>

enum {
	COORDC_OK = 0,
	COORDC_WOKEN = 1,
	COORDC_E_DOWN = -1,      /* cannot connect, or the connection broke */
	COORDC_E_PROTO = -2,     /* the coordinator spoke nonsense or another
	                            protocol version */
	COORDC_E_TIMEOUT = -3
};

struct coord_waiter;
struct coord_notifier;

struct coord_stats {
	uint32_t peers, waiters, locks;
};

/* Connects to the coordinator at `path`.  NULL with errno on failure. */
struct coord_waiter *coord_waiter_open(const char *path);

/* Closes the connection (which also unregisters).  NULL is a no-op. */
void coord_waiter_free(struct coord_waiter *w);

/*
 * Registers waiter `waiter_id` of lock `name` and waits up to timeout_ms for
 * the ACK.  After COORDC_OK every NOTIFY processed by the coordinator reaches
 * this registration, so the caller re-checks the database once and may then
 * sleep on coord_waiter_fd().
 */
int coord_waiter_register(struct coord_waiter *w, const char *name,
    int64_t waiter_id, int64_t holder_expires, int timeout_ms)
    __attribute__((warn_unused_result));

/*
 * Withdraws the registration, if any, without passing its turn on, so that
 * the connection can serve another wait (coord_waiter_register).  A WAKE
 * the coordinator sent before is dropped by that register.  On failure the
 * connection is broken: free it.
 */
int coord_waiter_unwait(struct coord_waiter *w, int timeout_ms)
    __attribute__((warn_unused_result));

/* The descriptor to poll for POLLIN (a WAKE, or the coordinator going). */
int coord_waiter_fd(const struct coord_waiter *w);

/*
 * Reads what arrived after POLLIN: COORDC_WOKEN for a WAKE (the registration
 * is then spent), COORDC_OK if nothing complete arrived yet, COORDC_E_DOWN
 * or COORDC_E_PROTO when the connection is unusable (free it).
 */
int coord_waiter_read(struct coord_waiter *w)
    __attribute__((warn_unused_result));

/* A notifier that (re)connects to `path` lazily.  NULL on ENOMEM. */
struct coord_notifier *coord_notifier_new(const char *path);
void coord_notifier_free(struct coord_notifier *n);

/*
 * Sends NOTIFY; thread-safe.  On failure the connection is dropped and the
 * next call reconnects; the caller need not act (waiters poll).
 */
int coord_notify(struct coord_notifier *n, const char *name, bool wake_first,
    int64_t kick_id, int64_t expires);

/* PING on a fresh connection; fills *st on COORDC_OK. */
int coord_ping(const char *path, struct coord_stats *st, int timeout_ms)
    __attribute__((warn_unused_result));

#endif /* HTTPLOCK_COORDC_H */
