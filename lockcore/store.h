/*
 * store.h: the storage seam of lockcore.  The engine (engine.c), the
 * queries (query.c) and the sessions (conn.c) keep every rule of the
 * lock semantics: who is live, who is next in the FIFO queue, whether a
 * lock has room, which fence a grant carries, how a token or request_id is
 * hashed and compared, when a lease has ended, when a freed lock is handed
 * on.  A store keeps rows and answers narrow questions about them, each
 * operation one statement or a few: get or create the lock row, a holder
 * by request id or by waiter, insert or delete a holder, insert, delete,
 * count or walk the waiters, meta get and set, the next fence.  So a
 * second store brings its SQL and its transactions, never a second copy
 * of the semantics.
 *
 * The operations are a table of function pointers (struct store_ops)
 * chosen when the connection is opened, not link-time names: one program
 * opens a SQLite file or, given a connection URI, a PostgreSQL database,
 * both stores may be linked into one binary, and the unit suite runs
 * against each.  A table costs one indirect call per operation, which is
 * nothing beside the statement it runs.
 *
 * Every operation but the transaction control runs inside a transaction
 * that begin() opened, returns 0 or an LC_E_ code (a failure of the store
 * is LC_E_DB or LC_E_NOMEM, with the message in st->err), and reads `now`
 * only as the caller passes it: time is the engine's.  Times are ms since
 * the Unix epoch.  Ids (lock rows, waiter rows, sessions) are positive
 * and only grow; waiter ids define the FIFO order.  A row struct read by
 * an operation is the caller's; strings passed in are borrowed for the
 * call.
 */
#ifndef HTTPLOCK_STORE_H
#define HTTPLOCK_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "lockcore.h"
#include "secret.h"

#define STORE_ERR_LEN 256
#define STORE_BOOT_ID_MAX 64   /* bytes of a session's boot id */

/* A lock row. */
struct lockrow {
	int64_t id;
	int64_t nwait;        /* its waiter rows, dead ones included */
};

/* Live holders of a lock. */
struct hstate {
	int     count;
	int64_t min_expires;  /* 0 if count == 0 */
};

/* The secrets of a grant as stored (secret.h). */
struct hsecret {
	unsigned char token_hash[SECRET_HASH_LEN];
	unsigned char seal[SECRET_SEAL_LEN];
	bool    has_seal;
};

/* A holder row: one grant. */
struct hrow {
	int64_t lock_id;     /* with fence, the row's key */
	struct hsecret sec;
	int64_t fence;
	char    owner[LC_OWNER_MAX + 1];
	int64_t acquired_at;
	int64_t expires_at;
	int64_t waiter_id;   /* the waiter row it was granted to, 0 if none */
	uint64_t wkey;       /* that row's wkey when it was granted */
	int64_t ttl_ms;      /* the lease as granted or last renewed */
};

/* A waiter row with the name of the lock it waits for (read only). */
struct wrow {
	int64_t lock_id;
	char    owner[LC_OWNER_MAX + 1];
	unsigned char rid_hash[SECRET_HASH_LEN];
	bool    has_rid;
	struct hsecret sec;  /* of the token its grant will carry */
	int64_t ttl_ms;
	uint64_t wkey;
	char    name[LC_KEY_MAX + 1];
	int64_t deadline;
};

/* What a waiter's look reads (store_ops.waiter_look). */
struct wlook {
	bool          found;    /* the waiter row: w, hs, ahead */
	struct wrow   w;
	struct hstate hs;
	int           ahead;
	bool          granted;  /* no row, but a live grant made for it: h,
	                           and its lock's name in w.name */
	struct hrow   h;
};

/* What a walk of a lock's queue sees of one waiter row. */
struct wslot {
	int64_t  id;
	pid_t    pid;
	uint64_t pstart;
	int64_t  deadline;
	bool     remote;    /* of another host (pid and pstart are its) */
	int64_t  host_seen; /* remote: when its host was last heard of */
	uint64_t wkey;      /* waiters_mine(): the row's wkey */
};

/* A row of the sessions (conn.c, "Unclean shutdowns"). */
struct session_row {
	int64_t  id;
	char     boot_id[STORE_BOOT_ID_MAX + 1];
	pid_t    pid;
	uint64_t pstart;
	bool     sync_full;     /* it committed with every grant on disk */
	int64_t  max_ttl_ms;    /* the longest lease it granted */
	int64_t  opened_at;
	int      server_alive;  /* -1: the store cannot tell; 0 or 1: the
	                           database server says whether the
	                           connection that added it is open */
};

/* One connection to a store; each store's own struct begins with it. */
struct store {
	const struct store_ops *ops;
	char err[STORE_ERR_LEN];  /* the last error, for lockcore_errmsg */
	int64_t clock_ahead;      /* the store's clock minus this host's wall
	                             clock at its last reading, ms (a store
	                             with server_clock; else 0) */
};

/*
 * Walk callbacks return 0 to go on and non-zero to stop; stopping is not
 * an error.  What they are given is valid only during the call.
 */
typedef int store_holder_fn(const struct hrow *h, void *arg);
typedef int store_waiter_fn(const struct wslot *w, void *arg);
typedef int store_list_fn(const struct lock_list_entry *e, void *arg);

struct store_ops {
	/*
	 * Transactions.  begin() opens a write transaction (`write`: one that
	 * excludes every other writer of the lock rows it touches) or a read
	 * one; a store whose transaction has its own clock may move *now
	 * to it: SQLite's only forward (the caller's clock is the same
	 * machine's), PostgreSQL's also back, so that every host judges
	 * leases by the server's one clock.  end() commits when rc >= 0 and rolls
	 * back otherwise; it returns rc, or the commit's error.  A NULL
	 * `now` leaves the transaction's time to its first call, which is
	 * then lock_state() or waiter_look(): a store on a server reads its
	 * clock with the lock's row, in one round trip.  Between
	 * batch_begin() and batch_end() all transactions are one, each a
	 * savepoint (lockcore_batch_begin).  durable(true) makes the commits
	 * that follow reach stable storage before they return, durable(false)
	 * restores the mode the store was opened with.
	 */
	int  (*begin)(struct store *st, bool write, int64_t *now);
	int  (*end)(struct store *st, int rc);
	int  (*batch_begin)(struct store *st);
	int  (*batch_end)(struct store *st, int rc);
	int  (*durable)(struct store *st, bool on);
	const char *(*errmsg)(struct store *st);
	const char *kind;    /* lockcore_store_info's: "sqlite", ... */
	bool server_clock;   /* begin()'s time is another machine's (the
	                        database server's): a deadline the caller
	                        made from its own clock is moved by the
	                        difference (lock_acquire) */
	/* What else lockcore_store_info() shows, outside any transaction;
	 * NULL: nothing. */
	int  (*info)(struct store *st, struct lockcore_store_info *si);
	void (*close)(struct store *st);  /* rolls back what is open */

	/* meta: named integers; a missing key reads as 0. */
	int (*meta_get)(struct store *st, const char *key, int64_t *v);
	int (*meta_set)(struct store *st, const char *key, int64_t v);
	/* meta.fence_floor = max(meta.fence_floor, floor), in one statement:
	 * a floor another connection raised meanwhile is never lowered. */
	int (*floor_raise)(struct store *st, int64_t floor);

	/* Sessions, in id order: the first after `after`. */
	int (*session_next)(struct store *st, int64_t after,
	    struct session_row *s, bool *found);
	int (*session_add)(struct store *st, const struct session_row *s,
	    int64_t *id);
	int (*session_delete)(struct store *st, int64_t id);

	/*
	 * Lock rows.  lock_state() reads in one go what the fast paths need:
	 * the row of `name` with its live holders (expires_at > now) in *hs
	 * and how many holders have expired (*expired), which it leaves in
	 * place; as a transaction's first call after begin(NULL) it first
	 * sets *now as begin() would have (so does waiter_look()).
	 * lock_add() creates the row of a name that had none; if another
	 * transaction created it meanwhile (a store where writers of
	 * different locks run at once), it returns that row with *existed
	 * set, and the caller reads its state again.
	 * fence_max() is the highest fence counter of all rows (0 if none).
	 */
	int (*lock_get)(struct store *st, const char *name, struct lockrow *lr,
	    bool *found);
	int (*lock_state)(struct store *st, const char *name, int64_t *now,
	    struct lockrow *lr, struct hstate *hs, int *expired, bool *found);
	int (*lock_add)(struct store *st, const char *name, struct lockrow *lr,
	    bool *existed);
	int (*fence_max)(struct store *st, int64_t *top);

	/*
	 * Holders.  "Live" is expires_at > now.  holders_live() calls fn for
	 * the live holders of a lock in fence order.  holder_by_rid() finds
	 * the live holder of a lock whose request_id has hash `rh`;
	 * holder_by_waiter() the live holder granted to waiter row
	 * `waiter_id`, with its lock's name.  holder_grant() inserts h with
	 * the request_id hash rh (NULL: none; h->waiter_id and h->wkey 0:
	 * none) and the lock's next fence: its fence counter raised to the
	 * greatest of its value + 1, `floor` and meta.fence_floor, its
	 * used_at stamped with h->acquired_at.  That fence reaches *fence
	 * by the time the transaction's next read, or end(), returns (a
	 * server store sends the insert with the next statement).
	 */
	int (*holder_state)(struct store *st, int64_t lock_id, int64_t now,
	    struct hstate *hs);
	int (*holders_purge)(struct store *st, int64_t lock_id, int64_t now,
	    int *n);
	int (*holders_live)(struct store *st, int64_t lock_id, int64_t now,
	    store_holder_fn *fn, void *arg);
	int (*holder_by_rid)(struct store *st, int64_t lock_id,
	    const unsigned char *rh, int64_t now, struct hrow *h, bool *found);
	int (*holder_by_waiter)(struct store *st, int64_t waiter_id,
	    int64_t now, struct hrow *h, char name[LC_KEY_MAX + 1],
	    bool *found);
	int (*holder_grant)(struct store *st, const struct hrow *h,
	    const unsigned char *rh, int64_t floor, int64_t *fence);
	int (*holder_delete)(struct store *st, int64_t lock_id, int64_t fence);
	int (*holder_renew)(struct store *st, int64_t lock_id, int64_t fence,
	    int64_t expires_at, int64_t ttl_ms);
	int (*holder_take)(struct store *st, int64_t lock_id, int64_t fence,
	    uint64_t wkey);

	/*
	 * Waiters.  waiter_by_rid() gives the id (0: none) and the secrets
	 * (sec may be NULL) of the lock's waiter row with request_id hash rh.
	 * waiter_add() appends w (its name unused) for the
	 * process pid started at pstart; its id reaches *id as a grant's
	 * fence does (holder_grant).
	 * waiter_take() gives row id to another request.  waiter_count()
	 * counts rows with after < id < below and deadline > now, stopping
	 * at `limit` (-1: none).  waiters_walk() calls fn for the rows with
	 * after < id < below in id order.
	 */
	int (*waiter_get)(struct store *st, int64_t id, struct wrow *w,
	    bool *found);
	int (*waiter_by_rid)(struct store *st, int64_t lock_id,
	    const unsigned char *rh, int64_t *id, struct hsecret *sec);
	int (*waiter_add)(struct store *st, const struct wrow *w, pid_t pid,
	    uint64_t pstart, int64_t *id);
	int (*waiter_take)(struct store *st, int64_t id,
	    const struct lock_waiter_ident *who, int64_t deadline);
	int (*waiter_delete)(struct store *st, int64_t id);
	int (*waiter_count)(struct store *st, int64_t lock_id, int64_t after,
	    int64_t below, int64_t now, int64_t limit, int *n);
	int (*waiters_walk)(struct store *st, int64_t lock_id, int64_t after,
	    int64_t below, store_waiter_fn *fn, void *arg);
	/*
	 * A waiter's look in one read (NULL: the engine makes the reads one
	 * by one): waiter row `id` as waiter_get() gives it, and if found
	 * its lock's holder_state() and its waiter_count() of the rows before
	 * it (up to `limit`); if not, the live holder granted to it as
	 * holder_by_waiter() gives it.  As the first call after begin(NULL)
	 * it sets *now first, as lock_state() does; a read transaction begun
	 * so makes no other call (a server store then runs it without BEGIN
	 * and COMMIT).
	 */
	int (*waiter_look)(struct store *st, int64_t id, int64_t *now,
	    int limit, struct wlook *l);

	/*
	 * Hosts, on a store shared by several (NULL on one that is not).
	 * host_beat() notes that this host is alive at `now`.
	 * waiters_mine() calls fn for at most `limit` of this host's waiter
	 * rows with id > after, in id order, with their pid, pstart and wkey
	 * (other hosts cannot tell whether those processes run).
	 */
	int (*host_beat)(struct store *st, int64_t now);
	int (*waiters_mine)(struct store *st, int64_t after, int limit,
	    store_waiter_fn *fn, void *arg);

	/*
	 * Across locks.  quota_count() counts the live holders (`waiting`
	 * false) or the waiters with deadline > now (`waiting` true) of the
	 * locks whose names start with `prefix` (not empty), stopping at
	 * `limit`.  list() calls fn for at most `limit` locks with a live
	 * holder or waiter, in byte order of their names, that sort after
	 * `after`, start with `prefix` and do not start with `skip` (""
	 * for none of the three), with their live holders and waiters.
	 */
	int (*quota_count)(struct store *st, bool waiting, const char *prefix,
	    int64_t now, int limit, int *n);
	int (*list)(struct store *st, int64_t now, const char *after,
	    const char *prefix, const char *skip, int64_t limit,
	    store_list_fn *fn, void *arg);

	/*
	 * Sweep (lockcore_sweep), over the lock rows with lo < id <= hi.
	 * sweep_range() gives in *hi the last id of the `batch` rows after
	 * lo (0: none).  sweep_expired() deletes their holders with
	 * expires_at <= now and their waiters with deadline <= late.
	 * sweep_idle() deletes the rows with no holder and no waiter row
	 * whose used_at <= used_before, and gives the highest fence counter
	 * they had in *top.  *n counts the rows deleted.
	 */
	int (*sweep_range)(struct store *st, int64_t lo, int batch,
	    int64_t *hi);
	int (*sweep_expired)(struct store *st, int64_t lo, int64_t hi,
	    int64_t now, int64_t late, int *n);
	int (*sweep_idle)(struct store *st, int64_t lo, int64_t hi,
	    int64_t used_before, int64_t *top, int *n);
};

/*
 * Opens the SQLite store at `path` (store_sqlite.c), creating or upgrading
 * its schema, with opts' busy timeout, synchronous mode and clock (NULL:
 * defaults).  On failure *out is NULL and err (errlen bytes) says why.
 */
int store_sqlite_open(struct store **out, const char *path,
    const struct lockcore_opts *opts, char *err, size_t errlen) LC_WUR;

/*
 * Opens the PostgreSQL store at `conninfo` (store_pg.c: a libpq URI or
 * key=value string), creating or upgrading its schema.  As
 * store_sqlite_open otherwise.
 */
int store_pg_open(struct store **out, const char *conninfo,
    const struct lockcore_opts *opts, char *err, size_t errlen) LC_WUR;

/* lockcore_store_name() of a PostgreSQL URI. */
void store_pg_name(const char *conninfo, char *buf, size_t size);

#endif /* HTTPLOCK_STORE_H */
