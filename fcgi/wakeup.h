/*
 * wakeup: waking a parked request of this very process without the
 * coordinator (wakeup.c).
 */
#ifndef HTTPLOCK_WAKEUP_H
#define HTTPLOCK_WAKEUP_H

#include <stdbool.h>
#include <stdint.h>

#include "lockcore.h"

/* A parked request's registration for direct wakes (in struct park). */
struct wake_slot {
	int64_t            waiter_id;
	uint64_t           key;      /* the request's waiter key */
	void              *owner;    /* what its claimer answers (deliver.h
	                                struct parked_answer) */
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
/* Makes wakeup_fd() readable, for another reason than a slot (new
 * parked requests). */
void wakeup_kick(void);
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
/* What wakeup_read() found. */
enum wake_read {
	WAKE_READ_NONE,         /* no wake (or claimed) */
	WAKE_READ_LOOK,         /* a wake: look in the database */
	WAKE_READ_ANSWERED      /* answered by the thread that claimed it */
};
/* Consumes a woken slot's wake. */
enum wake_read wakeup_read(struct wake_slot *s);

#endif /* HTTPLOCK_WAKEUP_H */
