/*
 * coordlink: the worker's side of the coordinator (coord/coordc.h): the
 * notifications that tell it what changed, what the worker last saw of
 * it (up or down, logged once per change), and which handoffs that allows.
 * The parking thread's waiter connections are wait.c's.
 */
#ifndef HTTPLOCK_COORDLINK_H
#define HTTPLOCK_COORDLINK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "coordc.h"
#include "lockcore.h"

/* How long the worker waits for the coordinator's answer to a
 * registration, an unregistration or a ping. */
#define COORD_ACK_MS 250

/* Connects notifications to the coordinator at `socket` (kept, not
 * copied); `poll_ms` is named in the log line of an outage, `pid` is this
 * process.  Exits on failure.  Call once, before the threads start. */
void coordlink_init(const char *socket, int64_t poll_ms, pid_t pid);
/* Tells the coordinator that lock `key` changed: wake its first waiter
 * (`wake_first`), wake waiter `kick` (0: none), re-arm its expiry timer
 * for `expires` (wall ms; 0: none).  Notes whether it answered. */
void coordlink_notify(const char *key, bool wake_first, int64_t kick,
    int64_t expires);
/* Notes the coordinator's state as a waiter or a notification found it. */
void coordlink_seen(bool up);
/* Asks the coordinator for its figures; true if it answered. */
bool coordlink_ping(struct coord_stats *cs);
/*
 * Prepares a transaction's handoff: whose waiters a transaction that frees
 * a lock may grant at once.  Our own process's, always: we wake them
 * directly.  Another process's only while the coordinator is seen up,
 * since without it that waiter would learn of its grant only at its next
 * poll, its lease already running.
 */
void coordlink_handoff_init(struct lock_handoff *ho);

#endif /* HTTPLOCK_COORDLINK_H */
