/*
 * lockref: a lock as the worker's log lines name it.  A lock has the name
 * its client uses and lockcore's key, which for a tenant is "/" + enc(user)
 * + "/" + name.  struct request (request.h) has the same fields, so
 * LOCK_ARGS takes either.  Both the name and the tenant are the client's
 * bytes: LOCK_ARGS escapes them (log.h LOG_ESC), in buffers that last until
 * the end of the block holding the log call.
 */
#ifndef HTTPLOCK_LOCKREF_H
#define HTTPLOCK_LOCKREF_H

#include <stdbool.h>
#include <stddef.h>

#include "log.h"

struct lockref {
	const char *name;
	const char *key;
	bool        tenant;
	size_t      nslen;
};

#define LOCK_FMT "lock '%s'%s%s%s"
#define LOCK_ARGS(rq) LOG_ESC((rq)->name), \
	(rq)->tenant ? " of '" : "", \
	(rq)->tenant ? LOG_ESCN((rq)->key + 1, (rq)->nslen - 2) : "", \
	(rq)->tenant ? "'" : ""

#endif /* HTTPLOCK_LOCKREF_H */
