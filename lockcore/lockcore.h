/*
 * lockcore: the lock semantics of httplock, kept in one SQLite database.
 *
 * Every decision that matters for mutual exclusion (who holds a lock, who is
 * next, which fence a grant carries) is taken inside one SQLite write
 * transaction (BEGIN IMMEDIATE), so any number of threads and processes may
 * share one database file.  Nothing here blocks for a lock, speaks HTTP,
 * opens sockets or exits the process: waiting is the caller's business.  A
 * caller that must wait enqueues a waiter row, sleeps however it likes (the
 * worker sleeps on the coordinator's socket), and calls lock_wait_poll()
 * when woken.  A transaction that frees a lock (release, cancel, abandon of
 * a granted waiter) grants it to the first live waiter at once if the
 * caller asks (struct lock_handoff), and says whom it granted so that the
 * caller can wake that one; otherwise, and after a lease expired, the
 * waiter at the head of the queue grants itself when it polls.
 *
 * Times are milliseconds since the Unix epoch (wall clock), passed in by the
 * caller as `now`, so the semantics can be tested without sleeping.
 *
 * Tokens and request ids are credentials: the database keeps only their
 * hashes (secret.h), so a copy of the file grants nothing.  Fences only
 * grow per name, also across restarts, restores of older copies and
 * idle locks whose rows were reclaimed: the first open after a stop
 * floors them at the wall clock in microseconds (conn.c, "Fences").
 *
 * A struct lockcore is one SQLite connection.  It is not thread-safe: a
 * process that shares one among threads serialises calls with its own
 * mutex (which is also how writers are serialised inside a process).
 */
#ifndef HTTPLOCK_LOCKCORE_H
#define HTTPLOCK_LOCKCORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LC_WUR __attribute__((warn_unused_result))

/*
 * Limits on what callers may store; longer input is LC_E_INVAL.  A lock's
 * key is whatever string the caller names it by: the worker keeps the
 * names its clients see (255 bytes, request.h REQ_NAME_MAX) and, for
 * tenants, prefixes them with a namespace (docs/tenants.md), so keys are
 * longer than names.
 */
#define LC_KEY_MAX        1024  /* bytes of a lock key */
#define LC_OWNER_MAX      128   /* bytes of an owner label */
#define LC_REQUEST_ID_MAX 128   /* bytes of a request_id */
#define LC_TOKEN_LEN      32    /* hex characters of a token */
#define LC_AHEAD_MAX      1000  /* lock_wait_info.ahead is counted to here */

/* Return codes.  0 and positive values are outcomes, negatives are errors. */
enum {
	LC_OK = 0,
	LC_GRANTED = 1,          /* the grant is in *grant */
	LC_QUEUED = 2,           /* a waiter row exists; sleep and poll again */
	LC_BUSY = 3,             /* held, and the caller did not ask to wait */

	LC_E_INVAL = -1,         /* an argument is out of range */
	LC_E_NOT_HELD = -2,      /* no live grant matches that token/request_id */
	LC_E_TOO_MANY = -3,      /* the lock's waiter cap is reached */
	LC_E_GONE = -4,          /* the waiter row is gone (cancelled, expired) */
	LC_E_SUPERSEDED = -5,    /* another request took over this waiter row */
	LC_E_DB = -6,            /* SQLite failed (busy past the timeout, I/O,
	                            full disk, read-only, corrupt) */
	LC_E_NOMEM = -7,
	LC_E_RECOVERING = -8,    /* after an unclean shutdown, no new grant
	                            until every lease that may have been lost
	                            has expired (lockcore_grace_until) */
	LC_E_QUOTA_HELD = -9,    /* the namespace holds its quota of locks */
	LC_E_QUOTA_WAIT = -10    /* the namespace has its quota of waiters */
};

struct lockcore;

struct lockcore_opts {
	int busy_timeout_ms;     /* give up on a locked database after this */
	int synchronous_full;    /* 1: PRAGMA synchronous=FULL, 0: NORMAL */
	int live_clock;          /* 1: a transaction's time is the wall clock
	                            once it has the database, if later than the
	                            caller's `now` (servers); 0: exactly `now`
	                            (tests) */
	int no_crash_grace;      /* 1: grant at once after an unclean shutdown
	                            (unsafe: a lost grant may still be held) */
	int64_t max_ttl_ms;      /* the longest lease this caller grants, which
	                            bounds the grace; 0: LC_GRACE_DEFAULT_MS */
	const char *boot_id;     /* tests: this boot's id; NULL: the kernel's */
	int64_t boot_time_ms;    /* tests: when this boot began (wall clock,
	                            ms); 0: from CLOCK_BOOTTIME */
	const char *host_key;    /* this host's name in a shared store
	                            (proc_host_key); NULL: its boot and pid
	                            namespace */
};

#define LC_GRACE_DEFAULT_MS (3600 * 1000)

/*
 * What lockcore_open() found about earlier runs (see "Unclean shutdowns"
 * in conn.c).
 */
struct lockcore_recovery {
	int     recovered;       /* 1: this open found sessions of an earlier
	                            boot that never closed, synchronous=NORMAL,
	                            so commits may have been lost */
	int     stale_sessions;  /* sessions of an earlier boot it removed */
	int64_t fence_floor;     /* no fence is issued below this */
	int64_t grace_until;     /* ms; no new grant before it (0: none) */
};

/* Identity of one waiting request.  `pid` and `pstart` (the process start
 * time from /proc/<pid>/stat, field 22) let any process on the machine tell
 * whether the waiter's process is still alive; `key` is random per HTTP
 * request and tells which request currently owns a waiter row. */
struct lock_waiter_ident {
	pid_t    pid;
	uint64_t pstart;
	uint64_t key;
	char     token[LC_TOKEN_LEN + 1];  /* the token its grant carries
	                                      (lock_wait_info.token); unused
	                                      by lock_acquire */
};

struct lock_acquire_req {
	const char *name;        /* key: 1..LC_KEY_MAX bytes */
	const char *owner;       /* may be NULL */
	const char *request_id;  /* may be NULL */
	int64_t ttl_ms;          /* > 0 */
	int64_t deadline;        /* ms; the waiter gives up at this time */
	bool wait;               /* false: try once, never enqueue */
	int max_waiters;         /* per-lock cap on queued waiters, > 0 */
	struct lock_waiter_ident who;
	/* Quotas of a namespace: the keys that start with quota_prefix (NULL
	 * or "": no quota) may have at most quota_held live grants and
	 * quota_waiting live waiters (0: no limit).  A new grant or waiter
	 * beyond them is LC_E_QUOTA_HELD or LC_E_QUOTA_WAIT; a retry by
	 * request_id is not counted again. */
	const char *quota_prefix;
	int quota_held;
	int quota_waiting;
};

struct lock_grant {
	char    name[LC_KEY_MAX + 1];    /* the key */
	char    token[LC_TOKEN_LEN + 1];
	int64_t fence;
	int64_t acquired_at;
	int64_t expires_at;
	int64_t ttl_ms;                  /* the lease as granted or renewed */
	char    owner[LC_OWNER_MAX + 1];
};

/* What a waiter needs to know to sleep well. */
struct lock_wait_info {
	int64_t waiter_id;       /* this waiter's row; ids grow in arrival order */
	int64_t holder_expires;  /* earliest expiry among the holders, 0 if none */
	int     ahead;           /* live waiters ahead of this one, counted
	                            up to LC_AHEAD_MAX (an arrival's from the
	                            queue's row count, dead rows included) */
	bool    handed;          /* lock_wait_poll LC_GRANTED: the grant was
	                            made by another transaction (a handoff),
	                            this poll only read it */
	char    token[LC_TOKEN_LEN + 1];  /* lock_acquire LC_QUEUED: the token
	                            this waiter's grant will carry.  The
	                            database keeps only its hash: the caller
	                            keeps it and passes it back in
	                            lock_waiter_ident.token */
};

/*
 * Handing a freed lock on in the same transaction.  The caller says whose
 * waiters it may grant (only_pid: waiters of that process, which it can
 * wake at once; 0: any live waiter); the transaction says whom it granted.
 * The grant is the one lock_wait_poll() would have made: the first live
 * waiter (process running, deadline ahead), the next fence, a lease of the
 * waiter's ttl from now.  That waiter's lock_wait_poll() then returns it.
 * The OUT fields are zero when nobody was granted or the call failed.
 */
struct lock_handoff {
	pid_t   only_pid;        /* IN: 0, or grant only this process's waiter */
	int64_t waiter_id;       /* OUT: the waiter granted, 0 if none */
	pid_t   pid;             /* OUT: its process, 0 if it waits on
	                            another host */
	uint64_t key;            /* OUT: the key of the request that owned the
	                            row (struct lock_waiter_ident) */
	int64_t expires_at;      /* OUT: its lease's end */
	struct lock_grant grant; /* OUT: the grant, committed once the call
	                            returns LC_OK (a waiter of the same process
	                            may be given it without a look); its token
	                            is "": only the waiting request knows it */
};

struct lock_holder {
	char    owner[LC_OWNER_MAX + 1];
	int64_t fence;
	int64_t acquired_at;
	int64_t expires_at;
};

#define LC_STATUS_HOLDERS_MAX 16
struct lock_status {
	int     nholders;
	struct lock_holder holders[LC_STATUS_HOLDERS_MAX];
	int     waiters;
};

struct lock_list_entry {
	const char *name;
	int         holders;
	int         waiters;
};

/*
 * Opens (creating if needed) the database at `path`: a SQLite file (WAL
 * mode, the busy handler, the schema), or, for a path that is a libpq
 * connection URI (postgresql:// or postgres://), a PostgreSQL database
 * shared with other hosts (lockcore/store_pg.c), whose schema `httplock`
 * it creates if missing.  On success *out owns the connection; on
 * failure *out is NULL and `err` (errlen bytes) says why.  opts may be NULL
 * for the defaults (busy timeout 5000 ms, synchronous=NORMAL); with
 * PostgreSQL the busy timeout bounds every exchange with the server.
 */
int lockcore_open(struct lockcore **out, const char *path,
    const struct lockcore_opts *opts, char *err, size_t errlen) LC_WUR;

/* True if lockcore_open() takes `path` for a PostgreSQL connection URI. */
bool lockcore_path_is_pg(const char *path);

/*
 * The database at `path` as logs and /healthz may show it: the path, or
 * a URI's user, hosts, ports and database without its password or other
 * parameters.
 */
void lockcore_store_name(const char *path, char *buf, size_t size);

/*
 * What the open found about an unclean shutdown, and the grace it set (also
 * set by an earlier opener since the boot).  lc may not be NULL.
 */
void lockcore_recovery(struct lockcore *lc, struct lockcore_recovery *r);

/* Closes the connection.  lockcore_close(NULL) is a no-op. */
void lockcore_close(struct lockcore *lc);

/* The last SQLite error message of this connection, for logs. */
const char *lockcore_errmsg(struct lockcore *lc);

/*
 * Group commit.  Between lockcore_batch_begin() and lockcore_batch_end(),
 * every call runs inside one write transaction, each in a savepoint of its
 * own, so a call that fails undoes only itself and later calls see what
 * earlier ones did.  Nothing a call of the batch reported has happened
 * until lockcore_batch_end() returns 0: an error there (or an `rc` < 0
 * given to it, which rolls the batch back) means every call of the batch
 * failed, and their grants, releases and handoffs never were.
 */
int lockcore_batch_begin(struct lockcore *lc) LC_WUR;
int lockcore_batch_end(struct lockcore *lc, int rc) LC_WUR;

/*
 * Acquires req->name.  A request_id seen before on this lock returns what it
 * got then: the same live grant (LC_GRANTED, same token) or the same waiter
 * row (LC_QUEUED; the row now belongs to req->who, and the request that
 * owned it before gets LC_E_SUPERSEDED from its next poll).  Otherwise the
 * lock is granted if it has room and nobody live is queued, or else, with
 * req->wait, a waiter row is added at the tail (LC_QUEUED), or without it
 * LC_BUSY is returned.  LC_E_TOO_MANY when the queue is full.  A request
 * whose deadline is not after `now` cannot wait and gets LC_BUSY.
 * On LC_QUEUED and LC_BUSY *info is filled.
 */
int lock_acquire(struct lockcore *lc, const struct lock_acquire_req *req,
    int64_t now, struct lock_grant *grant, struct lock_wait_info *info) LC_WUR;

/*
 * Called by a waiter when woken; who->token is the token lock_acquire
 * gave it (lock_wait_info.token), and a grant carries it (LC_E_INVAL if
 * it is not the row's).  If another transaction granted this
 * waiter (struct lock_handoff), that live grant is returned (LC_GRANTED),
 * found with a read only; so is it while the lock is full (LC_QUEUED).
 * Otherwise, in a write transaction, expired holders and dead waiters
 * ahead (process gone, or past their deadline) are removed; if the lock
 * has room and this waiter is now first, its row becomes a grant
 * (LC_GRANTED), or else LC_QUEUED with *info refreshed.  LC_E_GONE if the
 * row was cancelled or removed (or its grant was released or expired
 * before the waiter saw it), LC_E_SUPERSEDED if `key` no longer owns it.
 * *wake_next is set when the caller should tell the coordinator that the
 * lock's state changed (it removed someone, or there is room for more).
 */
int lock_wait_poll(struct lockcore *lc, int64_t waiter_id,
    const struct lock_waiter_ident *who, int64_t now,
    struct lock_grant *grant, struct lock_wait_info *info,
    bool *wake_next) LC_WUR;

/*
 * Withdraws a waiter row owned by `who` (timeout, client gone, shutdown).
 * If the row was already granted (by a handoff) to `who`, that grant is
 * released instead, and handed on as by lock_release (LC_OK either way).
 * A row owned by someone else is left alone (LC_E_SUPERSEDED); LC_E_GONE
 * if the row no longer exists.  *wake_next as above; ho may be NULL.
 */
int lock_wait_abandon(struct lockcore *lc, int64_t waiter_id,
    const struct lock_waiter_ident *who, int64_t now, bool *wake_next,
    struct lock_handoff *ho) LC_WUR;

/*
 * Releases the grant of `name` whose token is `token` (compared in constant
 * time).  LC_E_NOT_HELD when no live grant has that token.  With `ho`, the
 * lock is granted to its first live waiter in the same transaction (see
 * struct lock_handoff).  *wake_next is set when somebody waits on the lock
 * and was not granted (room is left, or the first waiter is not one `ho`
 * allows): the coordinator should wake the first waiter.  ho may be NULL.
 */
int lock_release(struct lockcore *lc, const char *name, const char *token,
    int64_t now, bool *wake_next, struct lock_handoff *ho) LC_WUR;

/*
 * Undoes a grant that could not be delivered: releases (and hands on, as
 * lock_release) the live grant with `token` only if it still belongs to
 * the request with `key` (struct lock_waiter_ident); LC_E_SUPERSEDED if a
 * retry with the same request_id has taken it over since, so the retry's
 * client keeps it.  Every grant records the key of the request it was made
 * for, and a retry that is given an existing grant records its own.
 */
int lock_undo(struct lockcore *lc, const char *name, const char *token,
    uint64_t key, int64_t now, bool *wake_next, struct lock_handoff *ho) LC_WUR;

/*
 * Extends the lease of the live grant with `token` to now + ttl_ms, or with
 * ttl_ms 0 by the grant's own lease (as granted or last renewed), and
 * fills *grant.  LC_E_NOT_HELD once the lease is gone.
 */
int lock_renew(struct lockcore *lc, const char *name, const char *token,
    int64_t ttl_ms, int64_t now, struct lock_grant *grant) LC_WUR;

/*
 * Withdraws the waiter row with `request_id`, or releases the live grant it
 * received (handing the lock on as lock_release does with `ho`).
 * *was_held tells which; *kick_waiter is the waiter row id that was removed
 * or whose grant was released (so its sleeping request can be woken and
 * learn it is gone), or 0.  LC_E_NOT_HELD when neither exists.  ho may be
 * NULL.
 */
int lock_cancel(struct lockcore *lc, const char *name, const char *request_id,
    int64_t now, bool *was_held, int64_t *kick_waiter, bool *wake_next,
    struct lock_handoff *ho) LC_WUR;

/* Live holders and waiters of `name`; a never-used lock is not held. */
int lock_status(struct lockcore *lc, const char *name, int64_t now,
    struct lock_status *st) LC_WUR;

/*
 * Calls fn for each lock that has a live holder or waiter, whose key starts
 * with `prefix` (NULL or "" for all) but not with `skip` (NULL or "" for
 * none) and sorts after `after` (NULL: from the start), in byte order, at
 * most `limit` of them.  *more is set when more locks follow.  fn returning
 * non-zero stops the walk.  e->name is valid only during the call, and fn
 * must not use `lc`.
 */
int lock_list(struct lockcore *lc, const char *prefix, const char *skip,
    const char *after, int limit, int64_t now,
    int (*fn)(const struct lock_list_entry *e, void *arg), void *arg,
    bool *more) LC_WUR;

/*
 * Housekeeping, one batch at a time: takes the next `batch` lock rows
 * (after where the connection's previous call stopped, starting over
 * after the last), deletes their expired holders, their waiter rows a
 * minute past their deadline, and the rows of those that are idle (no
 * holder, no waiter row, and no grant since now - idle_ms), in one write
 * transaction.
 * Fences stay unique per name: the next grant of a name whose row was
 * deleted carries a fence above every one it had.  *changed gets the rows
 * deleted.  The caller runs it now and then: the worker runs one batch
 * at most once a second per process, after a request (fcgi db_sweep).
 * Without it the semantics hold (expired and dead rows count as absent),
 * but the rows of locks used once stay in the file, and so do waiter rows
 * that no request withdraws.
 */
int lockcore_sweep(struct lockcore *lc, int64_t now, int batch,
    int64_t idle_ms, int *changed) LC_WUR;

/*
 * Proves the database is usable for writes (for /healthz): one small write
 * transaction, so a full disk or a read-only file shows.
 */
int lockcore_ping(struct lockcore *lc) LC_WUR;

/*
 * How far the store's clock is ahead of this host's wall clock (ms), as
 * this connection last read it: 0 on a store without a clock of its own
 * (SQLite).  A time the store gave (expires_at, holder_expires) less this
 * is the same instant on this host's clock: what a timer here waits for.
 */
int64_t lockcore_clock_ahead(struct lockcore *lc);

/* What /healthz shows of the store. */
struct lockcore_store_info {
	const char *kind;        /* "sqlite" or "postgresql" */
	char server[256];        /* PostgreSQL: host:port of the server this
	                            connection reached ("" if none) */
	int  primary;            /* 1: the server takes writes, 0: it is a
	                            standby, -1: unknown or not applicable */
};

/* Fills *si; asks the server (a read) only on PostgreSQL.  0 or an
 * LC_E_ code, with what is known filled in either way. */
int lockcore_store_info(struct lockcore *lc,
    struct lockcore_store_info *si) LC_WUR;

#endif /* HTTPLOCK_LOCKCORE_H */
