/*
 * worker.h: the private header of httplock-worker, the FastCGI application.
 * Prototypes are grouped by the file that defines them.
 */
#ifndef HTTPLOCK_WORKER_H
#define HTTPLOCK_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <fcgiapp.h>

#include "conf.h"
#include "coordc.h"
#include "lockcore.h"
#include "request.h"

/* State shared by every thread of one worker process. */
struct worker {
	struct hl_conf         conf;
	struct request_limits  limits;
	pthread_mutex_t        db_mu;      /* serialises all use of db */
	struct lockcore       *db;         /* opened lazily; NULL when broken */
	bool                   db_open_failed; /* last open failed (logged) */
	_Atomic int64_t        grace_until;    /* no new grant before (ms) */
	struct coord_notifier *notifier;
	pid_t                  pid;
	uint64_t               pstart;     /* our start time, for waiter rows */
	int                    listen_fd;
	int                    stop_rd;    /* readable once we are stopping */
	atomic_bool            stopping;
	atomic_int             nthreads;
	atomic_int             idle;       /* threads waiting in accept */
	atomic_int             busy;       /* requests in progress */
	atomic_int             waiting;    /* acquires sleeping in a queue */
};

/* worker.c */
extern struct worker W;
int64_t now_ms(void);
uint64_t random_u64(void);

/* handlers.c */
/* Handles one accepted request completely; the caller then finishes it. */
void handle_request(FCGX_Request *fr);

#endif /* HTTPLOCK_WORKER_H */
