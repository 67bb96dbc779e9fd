/*
 * lcint.h: lockcore's private header, shared by its files and by nothing
 * else: the connection's struct and the helpers every file uses.  The
 * store they all reach storage through is store.h.
 */
#ifndef HTTPLOCK_LCINT_H
#define HTTPLOCK_LCINT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#include "lockcore.h"
#include "store.h"

#define FENCE_JUMP       ((int64_t)1 << 32)  /* fences skipped after an
                                   unclean shutdown (conn.c) */
#define HOST_TTL_MS      (10 * 1000)  /* on a shared store, a host not
                                   heard of for this long is gone, and so
                                   are its waiters (engine.c) */
#define REAP_MAX         64     /* dead waiters of ours removed per sweep */
#define REAP_SCAN        1024   /* waiter rows of ours looked at per sweep */
#define SWEEP_WAITER_LATE_MS (60 * 1000)  /* lockcore_sweep deletes waiter
                                   rows this long past their deadline */

struct lockcore {
	struct store    *st;               /* where the rows are */
	int64_t          session;          /* our row of `sessions`, 0 if none */
	struct lockcore_recovery rec;      /* fence floor and grace in force */
	pid_t            self_pid;         /* this process, as of self_pstart */
	uint64_t         self_pstart;      /* its start time, 0 if unknown */
	int64_t          sweep_cursor;     /* lockcore_sweep's next batch
	                                      starts after this lock id */
	int64_t          reap_cursor;      /* and its reap_mine() after this
	                                      waiter id */
	int64_t          max_ttl_ms;       /* the longest lease we grant (the
	                                      crash grace counts on it) */
};

/* Calls operation `op` of lc's store: STORE(lc, waiter_delete, id). */
#define STORE(lc, op, ...) ((lc)->st->ops->op((lc)->st, __VA_ARGS__))

/* Notes an error found by lockcore itself for lockcore_errmsg.  LC_E_DB. */
static inline int
lc_fail(struct lockcore *lc, const char *msg)
{
	(void)snprintf(lc->st->err, sizeof(lc->st->err), "%s", msg);
	return LC_E_DB;
}

/* True if s is a NUL-terminated string of 1..max bytes. */
static inline bool
valid_str(const char *s, size_t max)
{
	size_t n;

	if (s == NULL)
		return false;
	n = strnlen(s, max + 1);
	return n >= 1 && n <= max;
}

/* True if s is NULL or a string of at most max bytes. */
static inline bool
valid_opt(const char *s, size_t max)
{
	return s == NULL || strnlen(s, max + 1) <= max;
}

#endif /* HTTPLOCK_LCINT_H */
