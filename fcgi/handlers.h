/*
 * handlers: one HTTP request from accept to response (handlers.c).
 */
#ifndef HTTPLOCK_HANDLERS_H
#define HTTPLOCK_HANDLERS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <fcgiapp.h>

#include "request.h"

struct handlers_conf {
	struct request_limits limits;
	bool              anonymous_deny;     /* anonymous = deny */
	int               max_waiters;        /* per lock */
	int               tenant_max_held;
	int               tenant_max_waiting;
	pid_t             pid;                /* this process, for waiter rows */
	uint64_t          pstart;             /* ... and its start time */
	const atomic_int *nthreads;           /* pool threads, for /healthz */
};

/* Call once, before the threads start. */
void handlers_init(const struct handlers_conf *hc);
/* Handles one accepted request completely; the caller then finishes it
 * (a parked acquire has taken the connection: fr->ipcFd is then -1). */
void handle_request(FCGX_Request *fr);

#endif /* HTTPLOCK_HANDLERS_H */
