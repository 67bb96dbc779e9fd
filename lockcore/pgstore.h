/*
 * pgstore: what the files of lockcore's PostgreSQL store share (store_pg.c,
 * its transactions in pgtx.c): the store's state, and how a write is
 * queued.  Private to lockcore.
 */
#ifndef HTTPLOCK_PGSTORE_H
#define HTTPLOCK_PGSTORE_H

#include <stdbool.h>
#include <stdint.h>

#include "clock.h"
#include "lockcore.h"
#include "pgconn.h"
#include "pgrows.h"
#include "pgschema.h"
#include "proc.h"
#include "store.h"

#define PG_TIMEOUT_MAX_MS     1000   /* every exchange, connecting too */
#define PG_SWEEP_MAX          1024         /* lock rows per sweep batch */
#define PG_WALK_PAGE          32           /* waiter rows per walk statement */
#define PG_BUSY_SLOTS         16           /* lock_state()'s hint */
#define PG_IDLE_CHECK_MS      1000         /* tx_begin() */

/* A deleted waiter row's lock may have room now; another host's row is
 * named in the NOTIFY (tx_end), whose results come with the COMMIT's. */
struct del_look {
	struct pgstore *q;
	int64_t         id;
	bool            known;    /* its lock and host known before (from a
	                             walk), whatever its result says */
};

struct pgstore {
	struct store base;              /* first: a struct store * is us */
	struct pgconn pc;
	char        *conninfo;
	bool         prepared[S_COUNT]; /* on pc */
	int          live_clock;        /* now := the server's clock */
	bool         clock_due;         /* ... read by lock_state() */
	int64_t     *now_out;           /* begin()'s `now` */
	bool         in_tx;
	bool         implicit;          /* a read of one statement: no BEGIN,
	                                   no COMMIT (pgtx_begin) */
	bool         fresh;             /* its first round trip, of reads
	                                   only, has not been sent (pgtx_again) */
	int64_t      used_at;           /* the last transaction's end
	                                   (monotonic ms) */
	bool         write;             /* the open transaction writes */
	int64_t      locked;            /* the lock row it holds, 0 if none */
	char         locked_name[LC_KEY_MAX + 1];  /* its name, "" unknown */
	int64_t      nwait0;            /* a lock row it took with no waiter
	                                   row, 0 if none */
	bool         flush;             /* its commit must wait for the WAL
	                                   flush ("Durability") */
	int64_t     *returning;         /* where an insert's returned value
	                                   goes (queue_returning) */
	bool         insert_lost;       /* such an insert found no row */
	struct pgr_holders hc;          /* what it read of its lock */
	struct pgr_queue   qc;
	struct pgr_waiter  wc;
	uint32_t     busy[PG_BUSY_SLOTS];  /* hashes of names of locks last
	                                   seen with waiter rows (lock_state) */
	int64_t      wake_lock;         /* a lock it freed room in, 0 if none */
	int64_t      kick;              /* another host's waiter row it
	                                   deleted, 0 if none */
	struct del_look del[PGC_PENDING_MAX];  /* waiter_delete()s whose
	                                   results are not read yet */
	int          ndel;
	int          nunknown;          /* of those, not known */
	bool         batch;             /* in batch_begin() */
	bool         batch_failed;
	int64_t      host_id;           /* our row of `hosts` */
	char         host_key[PROC_HOST_KEY_MAX];
	char         sweep_ids[PG_SWEEP_MAX * 21 + 3]; /* "{1,2,...}" */
};

/*
 * A write whose result the engine does not read: queued, sent with the
 * next statement whose result it reads (or the COMMIT), so it costs no
 * round trip of its own.  An error it meets is that later call's.
 * defer_lossy() is for the writes a crash may undo ("Durability").
 */
static inline int
defer_lossy(struct pgstore *q, enum stmt_id id, const struct pgc_args *a)
{
	return pgc_queue(&q->pc, id, a, NULL, NULL);
}

static inline int
defer(struct pgstore *q, enum stmt_id id, const struct pgc_args *a)
{
	q->flush = true;
	return defer_lossy(q, id, a);
}

/* The server's clock read as `server_ms`: how far it is ahead of ours. */
static inline void
note_clock(struct pgstore *q, int64_t server_ms)
{
	q->base.clock_ahead = server_ms - clock_wall_ms();
}

/* The transactions of store.h (begin, end, batch_begin, batch_end). */
int pgtx_begin(struct store *st, bool write, int64_t *now);
int pgtx_end(struct store *st, int rc);
int pgtx_batch_begin(struct store *st);
int pgtx_batch_end(struct store *st, int rc);
/*
 * A transaction whose first round trip (its BEGIN with reads only: the
 * lock_state() or waiter_look() that begin(NULL) leaves the clock to,
 * while q->fresh) found the connection ended by the server, restarted
 * since it was last used, begins again on a new one: 0, and the caller
 * sends its reads again, once; -1 if it cannot.
 */
int pgtx_again(struct pgstore *q);

#endif /* HTTPLOCK_PGSTORE_H */
