/*
 * lcint.h: lockcore's private header, shared by its files and by nothing
 * else: the connection's struct, the rows a transaction works on, and the
 * functions the files call in each other, grouped by the file that
 * defines them.
 */
#ifndef HTTPLOCK_LCINT_H
#define HTTPLOCK_LCINT_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "lockcore.h"
#include "secret.h"

#define SCHEMA_VERSION   5
#define BUSY_DEFAULT_MS  5000
#define BUSY_YIELDS      4      /* sched_yield() this often before sleeping */
#define BUSY_SLEEP_MIN   20     /* first sleep in the busy handler, µs */
#define BUSY_SLEEP_MAX   1000   /* longest sleep in the busy handler, µs */
#define ERRBUF_LEN       256
#define CKPT_FRAMES      1000   /* checkpoint when the WAL has this many
                                   frames (SQLite's own default) */
#define CKPT_WAIT_MS     20     /* longest wait of one checkpoint */
#define WAL_LIMIT        (8 * 1024 * 1024)  /* journal_size_limit, bytes:
                                   twice what CKPT_FRAMES frames take */
#define FENCE_JUMP       ((int64_t)1 << 32)  /* fences skipped after an
                                   unclean shutdown (see below) */
#define BOOT_ID_LEN      64
#define SWEEP_WAITER_LATE_MS (60 * 1000)  /* lockcore_sweep deletes waiter
                                   rows this long past their deadline */


enum stmt_id {
	S_BEGIN,
	S_BEGIN_RO,
	S_COMMIT,
	S_ROLLBACK,
	S_VERSION,
	S_PING,
	S_LOCK_GET,
	S_LOCK_STATE,
	S_LOCK_ADD,
	S_FENCE_BUMP,
	S_FENCE_GET,
	S_H_PURGE,
	S_H_STATE,
	S_H_LIST,
	S_H_BY_REQ,
	S_H_BY_WAITER,
	S_H_ADD,
	S_H_DEL,
	S_H_RENEW,
	S_H_TAKE,
	S_W_GET,
	S_W_BY_REQ,
	S_W_TAKE,
	S_W_WALK,
	S_W_COUNT,
	S_W_ADD,
	S_W_DEL,
	S_LIST,
	S_Q_HELD,
	S_Q_WAIT,
	S_SWEEP_RANGE,
	S_SWEEP_PURGE,
	S_SWEEP_WAITERS,
	S_SWEEP_TOP,
	S_SWEEP_IDLE,
	S_SWEEP_FLOOR,
	S_COUNT
};

struct lockcore {
	sqlite3         *db;
	sqlite3_stmt    *st[S_COUNT];
	int              busy_ms;          /* give up waiting after this */
	int              live_clock;       /* read the time after BEGIN */
	struct timespec  busy_t0;          /* when the current wait began */
	char             err[ERRBUF_LEN];  /* last error, for lockcore_errmsg */
	int              wal_frames;       /* WAL frames after our last commit */
	int              ckpt_at;          /* checkpoint when wal_frames gets here */
	int64_t          session;          /* our row of `sessions`, 0 if none */
	struct lockcore_recovery rec;      /* fence floor and grace in force */
	pid_t            self_pid;         /* this process, as of self_pstart */
	uint64_t         self_pstart;      /* its start time, 0 if unknown */
	bool             batch;            /* in lockcore_batch_begin() */
	bool             batch_failed;     /* a savepoint could not be undone
	                                      or released: roll back at end */
	sqlite3_stmt    *sp[3];            /* savepoint, release, rollback to */
	int64_t          sweep_cursor;     /* lockcore_sweep's next batch
	                                      starts after this lock id */
	int64_t          max_ttl_ms;       /* the longest lease we grant (the
	                                      crash grace counts on it) */
};

/* The lock row a transaction works on. */
struct lockrow {
	int64_t id;
	int     max_holders;
	int64_t nwait;        /* its waiter rows, dead ones included */
};

/* What walk_waiters() found in a lock's queue. */
struct walk {
	int     live;     /* live waiters seen */
	int64_t head;     /* id of the first live waiter, 0 if none */
	pid_t   head_pid; /* its process */
	int     removed;  /* dead waiters deleted */
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

/* A holder row as HOLDER_COLS returns it. */
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

/* A waiter row with the lock it waits for, as S_W_GET returns it. */
struct wrow {
	int64_t lock_id;
	char    owner[LC_OWNER_MAX + 1];
	unsigned char rid_hash[SECRET_HASH_LEN];
	bool    has_rid;
	struct hsecret sec;  /* of the token its grant will carry */
	int64_t ttl_ms;
	uint64_t wkey;
	char    name[LC_KEY_MAX + 1];
	int     max_holders;
	int64_t deadline;
};

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

/* store_sqlite.c */
int busy_wait(void *arg, int count);
int wal_hook(void *arg, sqlite3 *db, const char *name, int frames);
int
dbfail(struct lockcore *lc, int rc);
void
done(sqlite3_stmt *s);
void
bind_i64(sqlite3_stmt *s, int i, int64_t v, int *rc);
void
bind_txt(sqlite3_stmt *s, int i, const char *v, int *rc);
void
bind_blob(sqlite3_stmt *s, int i, const void *v, size_t n, int *rc);
int
copy_blob(void *dst, size_t n, sqlite3_stmt *s, int col);
int
step_row(struct lockcore *lc, sqlite3_stmt *s, int brc, bool *found);
int
run(struct lockcore *lc, sqlite3_stmt *s, int brc);
int
tx_begin(struct lockcore *lc, bool write, int64_t *now);
int
tx_end(struct lockcore *lc, int rc);
int
set_wal(struct lockcore *lc, const char **why);
int
prepare_all(struct lockcore *lc, const char **why);
int
check_version(struct lockcore *lc, const char **why);
int
prepare1(struct lockcore *lc, const char *sql, sqlite3_stmt **out);
int
meta_get(struct lockcore *lc, const char *key, int64_t *v);
int
meta_set(struct lockcore *lc, const char *key, int64_t v);
int
lock_get(struct lockcore *lc, const char *name, bool create,
    struct lockrow *lr, bool *found);
int
purge_holders(struct lockcore *lc, int64_t lock_id, int64_t now, int *n);
int
lock_state(struct lockcore *lc, const char *name, int64_t now, bool create,
    struct lockrow *lr, struct hstate *hs, bool *queued, bool *found);
int
holder_state(struct lockcore *lc, int64_t lock_id, int64_t now,
    struct hstate *hs);
int
read_holder(sqlite3_stmt *s, struct hrow *h);
int
holder_delete(struct lockcore *lc, const struct hrow *h);
int
waiter_get(struct lockcore *lc, int64_t id, struct wrow *w, bool *found);
int
waiter_delete(struct lockcore *lc, int64_t id);
int
waiter_count(struct lockcore *lc, int64_t lock_id, int64_t after,
    int64_t below, int64_t now, int64_t limit, int *n);

/* sqlite_schema.c */
int
make_schema(sqlite3 *db, bool *upgraded, const char **why);

/* query.c */
void
prefix_end(const char *prefix, char hi[LC_KEY_MAX + 1], int *len);

#endif /* HTTPLOCK_LCINT_H */
