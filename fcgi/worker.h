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

/* wakeup.c */
/* A waiting request's registration for direct wakes (caller-owned). */
struct wake_slot {
	int64_t           waiter_id;
	uint64_t          key;       /* the request's waiter key */
	int               efd;       /* eventfd to poll, -1 when not added */
	bool              granted;   /* `grant` was handed to it (wake_mu) */
	struct lock_grant grant;
	struct wake_slot *next;
};
/* Registers s for waiter_id of the request with `key`; 0, or -1 (logged;
 * s->efd is -1). */
int wakeup_add(struct wake_slot *s, int64_t waiter_id, uint64_t key);
/* Unregisters s and closes its eventfd; a no-op if it was not added. */
void wakeup_del(struct wake_slot *s);
/* Wakes this process's registered waiter_id; false if there is none. */
bool wakeup_signal(int64_t waiter_id);
/* Gives a committed handoff's grant to the request it was made for, if it
 * waits in this process, and wakes it (and any other request registered
 * for that waiter id, which then looks); false if there is none. */
bool wakeup_grant(const struct lock_handoff *ho);
/* After POLLIN on s->efd: consumes the wake.  0 for none, 1 for a wake
 * (look), 2 when a grant was handed over (copied to *g). */
int wakeup_read(struct wake_slot *s, struct lock_grant *g);

/* handlers.c */
/* Handles one accepted request completely; the caller then finishes it. */
void handle_request(FCGX_Request *fr);

#endif /* HTTPLOCK_WORKER_H */
