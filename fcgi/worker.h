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
	bool                   own_listener; /* fd 0 from lighttpd: ours alone */
	bool                   unix_listener; /* listen_fd is AF_UNIX */
	int                    stop_rd;    /* readable once we are stopping */
	atomic_bool            stopping;
	atomic_int             nthreads;
	atomic_int             idle;       /* threads waiting in accept */
	atomic_int             busy;       /* requests on a thread */
	atomic_int             waiting;    /* acquires parked in a queue */
	int                    max_parked; /* cap on `waiting` (max_waiting,
	                                      descriptors) */
};

/*
 * Where an answer goes: the FastCGI request a thread serves, or, for a
 * parked acquire (wait.c), its connection and request id, answered with
 * FastCGI records written directly.
 */
struct reply {
	FCGX_Request *fr;          /* NULL: parked */
	int           fd;
	int           reqid;
};

/*
 * A lock as log lines name it (LOCK_FMT): the name its client uses and
 * lockcore's key, which for a tenant is "/" + enc(user) + "/" + name.
 * struct request has the same fields, so LOCK_ARGS takes either.  Both
 * the name and the tenant are the client's bytes: LOCK_ARGS escapes them
 * (log.h LOG_ESC), in buffers that last until the end of the block
 * holding the log call.
 */
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

/* On LC_E_DB, logs SQLite's reason (never a token); x is a lockref or a
 * request naming one lock. */
#define LOG_DB_ERROR(rc, op, x) do {					\
	if ((rc) == LC_E_DB && W.db != NULL)				\
		log_warnx("%s on " LOCK_FMT ": %s", (op), LOCK_ARGS(x),	\
		    lockcore_errmsg(W.db));				\
} while (0)

/* worker.c */
extern struct worker W;
int64_t now_ms(void);
uint64_t random_u64(void);
/* Blocks the stop signals in the calling thread (the main thread takes
 * them). */
void block_signals(void);

/* wakeup.c */
/* A parked request's registration for direct wakes (in struct park). */
struct wake_slot {
	int64_t            waiter_id;
	uint64_t           key;      /* the request's waiter key */
	void              *owner;    /* the parked request */
	bool               added;
	/* Under wake_mu: */
	bool               pending;  /* on the ready list */
	bool               woken;    /* woken since the last wakeup_read */
	bool               claimed;  /* a thread answers it (wakeup_claim) */
	bool               answered; /* ... and has (wakeup_answered) */
	struct wake_slot  *next;     /* hash chain */
	struct wake_slot  *rnext;    /* ready list */
};
/* Sets up the ready list's eventfd; -1 on failure (logged). */
int wakeup_init(void);
/* The descriptor that is readable while slots are ready. */
int wakeup_fd(void);
/* Registers s for waiter_id of the request with `key`. */
void wakeup_add(struct wake_slot *s, int64_t waiter_id, uint64_t key,
    void *owner);
/* What a slot's request is to its parking thread. */
enum wake_state {
	WAKE_FREE,              /* the parking thread's to answer */
	WAKE_CLAIMED,           /* another thread answers it: hands off */
	WAKE_ANSWERED           /* answered by that thread: only to free */
};
/* Unregisters s (also from the ready list; a no-op if not added) and
 * returns the state it was in; while WAKE_CLAIMED it does nothing. */
enum wake_state wakeup_del(struct wake_slot *s);
enum wake_state wakeup_state(struct wake_slot *s);
/* Wakes this process's registered waiter_id; false if there is none. */
bool wakeup_signal(int64_t waiter_id);
/* Claims the request a committed handoff granted, if it waits in this
 * process, for the calling thread to answer (any other request registered
 * for that waiter id is woken to look); NULL if there is none or it is
 * being ended.  The caller answers, then calls wakeup_answered(). */
struct wake_slot *wakeup_claim(const struct lock_handoff *ho);
/* Hands a claimed slot back, answered, to the parking thread. */
void wakeup_answered(struct wake_slot *s);
/* Empties wakeup_fd() before the ready list is taken with wakeup_next(). */
void wakeup_drain(void);
/* The next woken slot off the ready list, or NULL. */
struct wake_slot *wakeup_next(void);
/* Consumes a woken slot's wake: 0 for none (or claimed), 1 for a wake
 * (look), 2 when it was answered by the thread that claimed it. */
int wakeup_read(struct wake_slot *s);

/* handlers.c */
/* Handles one accepted request completely; the caller then finishes it
 * (a parked acquire has taken the connection: fr->ipcFd is then -1). */
void handle_request(FCGX_Request *fr);
struct lockcore *db_enter(bool write);
int db_leave(int rc);
void coord_seen(bool up);
void notify(const char *name, bool wake_first, int64_t kick,
    int64_t expires);
void handoff_init(struct lock_handoff *ho);
void handed_on(const char *name, bool wake, const struct lock_handoff *ho);
void send_error(struct reply *r, int status, const char *code,
    const char *msg, const char *allow, bool head);
/* Answers an acquire that ended with rc (a grant in *g for LC_GRANTED);
 * `wkey` is its waiter key, `started` its arrival. */
void acquire_answer(struct reply *r, const struct lockref *ref, int rc,
    const struct lock_grant *g, uint64_t wkey, int64_t started, bool wait);

/* wait.c */
/* Starts the thread that holds parked acquires; exits on failure. */
void wait_init(void);
/*
 * Parks the queued acquire of request rq (its waiter row `info`, made for
 * `who`, deadline `deadline`, arrived at `started`): takes over fr's
 * connection and answers it when the wait ends.  0; or, when it cannot be
 * parked, WAIT_PARK_FULL (max_waiting, the descriptors, or no memory) or
 * WAIT_PARK_CLIENT (its REMOTE_ADDR has max_waiting_per_client parked
 * here already): fr is then untouched.
 */
#define WAIT_PARK_FULL   (-1)
#define WAIT_PARK_CLIENT (-2)
int wait_park(FCGX_Request *fr, const struct request *rq,
    const struct lock_waiter_ident *who, int64_t deadline,
    const struct lock_wait_info *info, int64_t started);
/* Withdraws a waiter row (best effort). */
void wait_withdraw(const struct lockref *ref,
    const struct lock_waiter_ident *who, int64_t waiter_id);
/* Answers a committed handoff's grant if its request is parked here (or,
 * inside another such answer, wakes it to look); false if not parked. */
bool wait_answer_grant(const struct lock_handoff *ho);
/* Writes a whole response (hdr, then body) as FastCGI records and ends
 * the request; 0, or -1 if the connection failed. */
int wait_reply_raw(int fd, int reqid, const char *hdr, size_t hlen,
    const char *body, size_t blen);

#endif /* HTTPLOCK_WORKER_H */
