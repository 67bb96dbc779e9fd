/*
 * check_faults: fault injection into lockcore, SQLite style.  A scripted
 * workload (open, acquires, queueing, release with handoff, renew,
 * cancel, expiry, a batch, sweep, abandon) runs again and again on one
 * database file; run N fails the Nth allocation SQLite makes (an
 * allocator wrapped around the default one, SQLITE_CONFIG_MALLOC), or
 * the Nth write, or the Nth sync (a VFS registered as the default that
 * wraps the default unix VFS), for every N until a run completes with
 * nothing injected.  After a call that failed:
 *  - it returned an error (and did not crash; under ASan, leaked nothing);
 *  - its transaction rolled back whole: what lock_status and lock_list
 *    show, on the same connection and again after a normal reopen, is
 *    what they showed before the call, and the connection still works;
 *    in a batch, the failed call left nothing and the others committed;
 *  - PRAGMA integrity_check, on a connection of its own, says "ok";
 *  - no fence is ever issued twice: every grant reported by a call that
 *    succeeded, in every run, also after reopens, carries a fence above
 *    every earlier one of its lock.
 * A call that succeeded although a fault was injected in it (SQLite
 * recovered, or the fault hit a checkpoint after the commit) must have
 * done exactly what it does without one.
 *
 * SQLite takes its allocator only before sqlite3_initialize(), so main()
 * installs both hooks, idle, before any test runs; each test (a forked
 * process, Check's default) arms them in its own copy of the counters.
 * Only public headers are used: lockcore.h, proc.h (a waiter's process
 * start time), and SQLite's own API for the hooks and integrity_check.
 * Creating a database is tested apart (test_fail_create): the workload
 * runs on a file that exists.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "lockcore.h"
#include "proc.h"
#include "unit.h"

#define T0     INT64_C(1700000000000)
#define RUN_MS INT64_C(1000000)   /* between runs: every lease and
                                     deadline of a run is over by the next */
#define TTL    INT64_C(10000)
#define WAITMS INT64_C(60000)
#define NNAMES 4

static const char *const names[NNAMES] = { "a", "b", "c", "d" };

static char dir[128];
static char dbpath[160];

/* ------------------------------------------------------------ injection */

enum fault { F_MALLOC, F_WRITE, F_SYNC, F_COUNT };

/* What the hooks count while armed, and which call of each kind fails. */
static struct {
	bool armed;
	long calls[F_COUNT];
	long fail_at[F_COUNT];      /* 1-based; 0: none */
	long injected;              /* faults injected since reset */
} fi;

/* Counts one call of kind k; true if it is the one to fail. */
static bool
fi_hit(enum fault k)
{
	if (!fi.armed)
		return false;
	if (++fi.calls[k] != fi.fail_at[k])
		return false;
	fi.injected++;
	return true;
}

static void
fi_reset(enum fault k, long n)
{
	memset(fi.calls, 0, sizeof(fi.calls));
	memset(fi.fail_at, 0, sizeof(fi.fail_at));
	fi.fail_at[k] = n;
	fi.injected = 0;
	fi.armed = false;
}

static sqlite3_mem_methods real_mem;

static void *
fi_malloc(int n)
{
	return fi_hit(F_MALLOC) ? NULL : real_mem.xMalloc(n);
}

static void *
fi_realloc(void *p, int n)
{
	return fi_hit(F_MALLOC) ? NULL : real_mem.xRealloc(p, n);
}

/* The VFS shim: files opened through it write and sync through fi_hit(). */
static sqlite3_vfs *real_vfs;

struct fi_file {
	sqlite3_file  base;
	sqlite3_file *real;          /* right after this struct */
};

#define REAL(f) (((struct fi_file *)(f))->real)

static int
fi_close(sqlite3_file *f)
{
	return REAL(f)->pMethods->xClose(REAL(f));
}

static int
fi_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
	return REAL(f)->pMethods->xRead(REAL(f), buf, n, off);
}

static int
fi_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
	if (fi_hit(F_WRITE))
		return SQLITE_IOERR_WRITE;
	return REAL(f)->pMethods->xWrite(REAL(f), buf, n, off);
}

static int
fi_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	return REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int
fi_sync(sqlite3_file *f, int flags)
{
	if (fi_hit(F_SYNC))
		return SQLITE_IOERR_FSYNC;
	return REAL(f)->pMethods->xSync(REAL(f), flags);
}

static int
fi_size(sqlite3_file *f, sqlite3_int64 *size)
{
	return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int
fi_lock(sqlite3_file *f, int lock)
{
	return REAL(f)->pMethods->xLock(REAL(f), lock);
}

static int
fi_unlock(sqlite3_file *f, int lock)
{
	return REAL(f)->pMethods->xUnlock(REAL(f), lock);
}

static int
fi_check_lock(sqlite3_file *f, int *out)
{
	return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int
fi_control(sqlite3_file *f, int op, void *arg)
{
	return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int
fi_sector(sqlite3_file *f)
{
	return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int
fi_devchar(sqlite3_file *f)
{
	return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

static int
fi_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp)
{
	return REAL(f)->pMethods->xShmMap(REAL(f), pg, pgsz, extend, pp);
}

static int
fi_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
	return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
}

static void
fi_shm_barrier(sqlite3_file *f)
{
	REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int
fi_shm_unmap(sqlite3_file *f, int del)
{
	return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}

static int
fi_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
	return REAL(f)->pMethods->xFetch(REAL(f), off, n, pp);
}

static int
fi_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
	return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

static const sqlite3_io_methods fi_io = {
	3, fi_close, fi_read, fi_write, fi_truncate, fi_sync, fi_size,
	fi_lock, fi_unlock, fi_check_lock, fi_control, fi_sector, fi_devchar,
	fi_shm_map, fi_shm_lock, fi_shm_barrier, fi_shm_unmap, fi_fetch,
	fi_unfetch
};

static int
fi_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
    int *out_flags)
{
	struct fi_file *f = (struct fi_file *)file;
	int rc;

	(void)vfs;
	f->real = (sqlite3_file *)(f + 1);
	rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out_flags);
	/* SQLite calls xClose iff pMethods is set, even after an error. */
	f->base.pMethods = f->real->pMethods != NULL ? &fi_io : NULL;
	return rc;
}

static int
fi_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
	(void)vfs;
	return real_vfs->xDelete(real_vfs, name, sync_dir);
}

static int
fi_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	(void)vfs;
	return real_vfs->xAccess(real_vfs, name, flags, out);
}

static int
fi_full_path(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
	(void)vfs;
	return real_vfs->xFullPathname(real_vfs, name, n, out);
}

static int
fi_random(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	return real_vfs->xRandomness(real_vfs, n, out);
}

static int
fi_sleep(sqlite3_vfs *vfs, int us)
{
	(void)vfs;
	return real_vfs->xSleep(real_vfs, us);
}

static int
fi_time(sqlite3_vfs *vfs, double *t)
{
	(void)vfs;
	return real_vfs->xCurrentTime(real_vfs, t);
}

static int
fi_last_error(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	return real_vfs->xGetLastError(real_vfs, n, out);
}

static int
fi_time64(sqlite3_vfs *vfs, sqlite3_int64 *t)
{
	(void)vfs;
	return real_vfs->xCurrentTimeInt64(real_vfs, t);
}

static sqlite3_vfs fi_vfs = {
	.iVersion = 2,
	.zName = "faults",
	.xOpen = fi_open,
	.xDelete = fi_delete,
	.xAccess = fi_access,
	.xFullPathname = fi_full_path,
	.xRandomness = fi_random,
	.xSleep = fi_sleep,
	.xCurrentTime = fi_time,
	.xGetLastError = fi_last_error,
	.xCurrentTimeInt64 = fi_time64,
};

/* Installs both hooks, idle; before SQLite is initialised. */
static int
fi_install(void)
{
	sqlite3_mem_methods m;

	if (sqlite3_config(SQLITE_CONFIG_GETMALLOC, &real_mem) != SQLITE_OK)
		return -1;
	m = real_mem;
	m.xMalloc = fi_malloc;
	m.xRealloc = fi_realloc;
	if (sqlite3_config(SQLITE_CONFIG_MALLOC, &m) != SQLITE_OK ||
	    sqlite3_initialize() != SQLITE_OK ||
	    (real_vfs = sqlite3_vfs_find(NULL)) == NULL)
		return -1;
	fi_vfs.szOsFile = (int)sizeof(struct fi_file) + real_vfs->szOsFile;
	fi_vfs.mxPathname = real_vfs->mxPathname;
	return sqlite3_vfs_register(&fi_vfs, 1) == SQLITE_OK ? 0 : -1;
}

/* ------------------------------------------------------------ state */

/* What the public API shows of the workload's locks at one moment. */
struct view {
	struct lock_status st[NNAMES];
	int  nlisted;
	char listed[NNAMES][8];
	int  list_holders[NNAMES];
	int  list_waiters[NNAMES];
};

static int
list_fn(const struct lock_list_entry *e, void *arg)
{
	struct view *v = arg;

	ck_assert_int_lt(v->nlisted, NNAMES);
	ck_assert(snprintf(v->listed[v->nlisted], sizeof(v->listed[0]), "%s",
	    e->name) < (int)sizeof(v->listed[0]));
	v->list_holders[v->nlisted] = e->holders;
	v->list_waiters[v->nlisted] = e->waiters;
	v->nlisted++;
	return 0;
}

/* The view at `now` through connection c; faults are not armed. */
static void
view_of(struct lockcore *c, int64_t now, struct view *v)
{
	bool more;
	int i, rc;

	memset(v, 0, sizeof(*v));
	for (i = 0; i < NNAMES; i++) {
		rc = lock_status(c, names[i], now, &v->st[i]);
		ck_assert_msg(rc == 0, "lock_status(%s): %d %s", names[i], rc,
		    lockcore_errmsg(c));
	}
	rc = lock_list(c, NULL, NULL, NULL, 100, now, list_fn, v, &more);
	ck_assert_msg(rc == 0, "lock_list: %d %s", rc, lockcore_errmsg(c));
	ck_assert(!more);
}

/* A view with its times made relative to `base` and its fences left out,
 * to compare runs that started at different times. */
static void
view_relative(struct view *v, int64_t base)
{
	int i, j;

	for (i = 0; i < NNAMES; i++)
		for (j = 0; j < v->st[i].nholders; j++) {
			v->st[i].holders[j].fence = 0;
			v->st[i].holders[j].acquired_at -= base;
			v->st[i].holders[j].expires_at -= base;
		}
}

static void
view_same(const struct view *a, const struct view *b, const char *what)
{
	int i, j;

	for (i = 0; i < NNAMES; i++) {
		const struct lock_status *x = &a->st[i], *y = &b->st[i];

		ck_assert_msg(x->nholders == y->nholders &&
		    x->waiters == y->waiters, "%s: lock %s: %d holders, %d "
		    "waiters, expected %d, %d", what, names[i], x->nholders,
		    x->waiters, y->nholders, y->waiters);
		for (j = 0; j < x->nholders; j++) {
			const struct lock_holder *h = &x->holders[j];
			const struct lock_holder *e = &y->holders[j];

			ck_assert_msg(h->fence == e->fence &&
			    h->acquired_at == e->acquired_at &&
			    h->expires_at == e->expires_at &&
			    strcmp(h->owner, e->owner) == 0, "%s: lock %s: "
			    "holder %d is fence %lld from %lld to %lld, "
			    "expected %lld from %lld to %lld", what, names[i],
			    j, (long long)h->fence, (long long)h->acquired_at,
			    (long long)h->expires_at, (long long)e->fence,
			    (long long)e->acquired_at, (long long)e->expires_at);
		}
	}
	ck_assert_msg(a->nlisted == b->nlisted, "%s: %d locks listed, "
	    "expected %d", what, a->nlisted, b->nlisted);
	for (i = 0; i < a->nlisted; i++)
		ck_assert_msg(strcmp(a->listed[i], b->listed[i]) == 0 &&
		    a->list_holders[i] == b->list_holders[i] &&
		    a->list_waiters[i] == b->list_waiters[i],
		    "%s: list entry %d differs", what, i);
}

/* PRAGMA integrity_check on a connection of its own. */
static void
integrity_ok(void)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	ck_assert_int_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE,
	    NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1,
	    &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "ok");
	ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
	(void)sqlite3_finalize(st);
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
}

/* Whether a file exists, and its identity, size and time of change. */
struct stamp {
	bool            exists;
	struct stat     st;
};

/* The stamps of the database file and of its WAL. */
static void
stamp_db(struct stamp s[2])
{
	char wal[sizeof(dbpath) + 4];
	const char *p[2] = { dbpath, wal };
	int i;

	ck_assert(snprintf(wal, sizeof(wal), "%s-wal", dbpath) <
	    (int)sizeof(wal));
	memset(s, 0, 2 * sizeof(*s));
	for (i = 0; i < 2; i++)
		s[i].exists = stat(p[i], &s[i].st) == 0;
}

static bool
stamp_same(const struct stamp a[2], const struct stamp b[2])
{
	int i;

	for (i = 0; i < 2; i++)
		if (a[i].exists != b[i].exists || (a[i].exists &&
		    (a[i].st.st_ino != b[i].st.st_ino ||
		    a[i].st.st_size != b[i].st.st_size ||
		    a[i].st.st_mtim.tv_sec != b[i].st.st_mtim.tv_sec ||
		    a[i].st.st_mtim.tv_nsec != b[i].st.st_mtim.tv_nsec)))
			return false;
	return true;
}

/* ------------------------------------------------------------ workload */

/* The last fence issued for each name, over the whole test. */
static int64_t last_fence[NNAMES];

static int
name_index(const char *name)
{
	int i;

	for (i = 0; i < NNAMES; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	ck_abort_msg("unknown lock %s", name);
	return -1;
}

/* A grant was reported by a call that succeeded: its fence is new. */
static void
issued(const struct lock_grant *g)
{
	int i = name_index(g->name);

	ck_assert_msg(g->fence > last_fence[i], "lock %s: fence %lld issued "
	    "after %lld", g->name, (long long)g->fence,
	    (long long)last_fence[i]);
	last_fence[i] = g->fence;
}

/* One run of the workload: its connection and what its steps learnt. */
struct run {
	struct lockcore *lc;
	struct lockcore_opts opts;
	int64_t base;                   /* the run's time 0 */
	struct lock_grant ga, gb, gc;
	struct lock_acquire_req q2, q3, q5, q6, q7;
	int64_t w2, w3, w5, w6, w7;
	const struct view *before;      /* the view before the current step */
	struct view expect;             /* if `partial`: the view after it */
	bool partial;                   /* the step failed, but committed
	                                   what it did besides the failed call */
};

static struct lock_acquire_req
mkreq(const struct run *r, const char *name, const char *rid, bool wait,
    uint64_t key)
{
	struct lock_acquire_req q;

	memset(&q, 0, sizeof(q));
	q.name = name;
	q.owner = "faults";
	q.request_id = rid;
	q.ttl_ms = TTL;
	q.deadline = r->base + WAITMS;
	q.wait = wait;
	q.max_waiters = 10;
	q.who.pid = getpid();
	q.who.pstart = proc_start(getpid());
	q.who.key = key;
	return q;
}

/* Acquire that must grant; rc < 0 is passed on. */
static int
grant(struct run *r, struct lock_acquire_req *q, int64_t now,
    struct lock_grant *g)
{
	struct lock_wait_info wi;
	int rc;

	if ((rc = lock_acquire(r->lc, q, now, g, &wi)) < 0)
		return rc;
	ck_assert_int_eq(rc, LC_GRANTED);
	return rc;
}

/* Acquire that must queue; gives q->who its token. */
static int
queue(struct run *r, struct lock_acquire_req *q, int64_t now, int64_t *id)
{
	struct lock_grant g;
	struct lock_wait_info wi;
	int rc;

	if ((rc = lock_acquire(r->lc, q, now, &g, &wi)) < 0)
		return rc;
	ck_assert_int_eq(rc, LC_QUEUED);
	memcpy(q->who.token, wi.token, sizeof(q->who.token));
	*id = wi.waiter_id;
	return rc;
}

/*
 * The steps.  Each makes one call (or one batch) at its own time (t_of())
 * and checks its result when it succeeds; a call that fails returns its
 * rc < 0, for the caller to judge.  Grants are recorded in issued() only
 * once the call that made them succeeded.
 */
static int
st_open(struct run *r)
{
	char err[256];
	int rc;

	rc = lockcore_open(&r->lc, dbpath, &r->opts, err, sizeof(err));
	if (rc < 0) {
		ck_assert_ptr_null(r->lc);
		ck_assert(err[0] != '\0');
	}
	return rc;
}

static int
st_acquire(struct run *r)
{
	struct lock_acquire_req q = mkreq(r, "a", "rid-faults-a-000001", false, 1);
	int rc;

	if ((rc = grant(r, &q, r->base + 1, &r->ga)) > 0)
		issued(&r->ga);
	return rc;
}

static int
st_queue2(struct run *r)
{
	r->q2 = mkreq(r, "a", "rid-faults-q2-00001", true, 2);
	return queue(r, &r->q2, r->base + 2, &r->w2);
}

static int
st_queue3(struct run *r)
{
	r->q3 = mkreq(r, "a", "rid-faults-q3-00001", true, 3);
	return queue(r, &r->q3, r->base + 3, &r->w3);
}

static int
st_acquire_b(struct run *r)
{
	struct lock_acquire_req q = mkreq(r, "b", NULL, false, 4);
	int rc;

	if ((rc = grant(r, &q, r->base + 4, &r->gb)) > 0)
		issued(&r->gb);
	return rc;
}

static int
st_renew(struct run *r)
{
	struct lock_grant g;
	int rc;

	if ((rc = lock_renew(r->lc, "b", r->gb.token, 2 * TTL, r->base + 5,
	    &g)) < 0)
		return rc;
	ck_assert_int_eq(rc, LC_OK);
	ck_assert_int_eq(g.fence, r->gb.fence);
	ck_assert_int_eq(g.expires_at, r->base + 5 + 2 * TTL);
	return rc;
}

/* Release of a with a handoff to the first waiter (w2). */
static int
st_release_handoff(struct run *r)
{
	struct lock_handoff ho;
	bool wake;
	int rc;

	memset(&ho, 0, sizeof(ho));
	if ((rc = lock_release(r->lc, "a", r->ga.token, r->base + 6, &wake,
	    &ho)) < 0) {
		ck_assert_int_eq(ho.waiter_id, 0);
		return rc;
	}
	ck_assert_int_eq(rc, LC_OK);
	ck_assert_int_eq(ho.waiter_id, r->w2);
	ck_assert_int_eq(ho.grant.expires_at, r->base + 6 + TTL);
	issued(&ho.grant);
	return rc;
}

/* The waiter handed the lock collects its grant. */
static int
st_poll_handed(struct run *r)
{
	struct lock_grant g;
	struct lock_wait_info wi;
	bool wake;
	int rc;

	if ((rc = lock_wait_poll(r->lc, r->w2, &r->q2.who, r->base + 7, &g,
	    &wi, &wake)) < 0)
		return rc;
	ck_assert_int_eq(rc, LC_GRANTED);
	ck_assert(wi.handed);
	ck_assert_str_eq(g.token, r->q2.who.token);
	return rc;
}

static int
st_cancel(struct run *r)
{
	int64_t kick;
	bool held, wake;
	int rc;

	if ((rc = lock_cancel(r->lc, "a", "rid-faults-q3-00001", r->base + 8,
	    &held, &kick, &wake, NULL)) < 0)
		return rc;
	ck_assert_int_eq(rc, LC_OK);
	ck_assert(!held);
	ck_assert_int_eq(kick, r->w3);
	return rc;
}

/* c is granted, then queued for by w5, who takes it once c's lease ends. */
static int
st_acquire_c(struct run *r)
{
	struct lock_acquire_req q = mkreq(r, "c", NULL, false, 5);
	int rc;

	if ((rc = grant(r, &q, r->base + 9, &r->gc)) > 0)
		issued(&r->gc);
	return rc;
}

static int
st_queue5(struct run *r)
{
	r->q5 = mkreq(r, "c", NULL, true, 6);
	return queue(r, &r->q5, r->base + 10, &r->w5);
}

static int
st_poll_expiry(struct run *r)
{
	struct lock_grant g;
	struct lock_wait_info wi;
	bool wake;
	int rc;

	if ((rc = lock_wait_poll(r->lc, r->w5, &r->q5.who, r->gc.expires_at,
	    &g, &wi, &wake)) < 0)
		return rc;
	ck_assert_int_eq(rc, LC_GRANTED);
	ck_assert(!wi.handed);
	ck_assert_int_gt(g.fence, r->gc.fence);
	issued(&g);
	return rc;
}

static int
st_queue7(struct run *r)
{
	r->q7 = mkreq(r, "b", NULL, true, 10);
	return queue(r, &r->q7, r->base + 11, &r->w7);
}

/* Sets lock `name` in view v to one holder, the grant g. */
static void
view_hold(struct view *v, const char *name, const struct lock_grant *g)
{
	struct lock_status *st = &v->st[name_index(name)];

	memset(st->holders, 0, sizeof(st->holders));
	st->nholders = 1;
	memcpy(st->holders[0].owner, g->owner, sizeof(st->holders[0].owner));
	st->holders[0].fence = g->fence;
	st->holders[0].acquired_at = g->acquired_at;
	st->holders[0].expires_at = g->expires_at;
}

/* Rebuilds the lock_list half of v from its statuses. */
static void
view_relist(struct view *v)
{
	int i;

	v->nlisted = 0;
	for (i = 0; i < NNAMES; i++) {
		if (v->st[i].nholders == 0 && v->st[i].waiters == 0)
			continue;
		(void)snprintf(v->listed[v->nlisted], sizeof(v->listed[0]),
		    "%s", names[i]);
		v->list_holders[v->nlisted] = v->st[i].nholders;
		v->list_waiters[v->nlisted] = v->st[i].waiters;
		v->nlisted++;
	}
}

/*
 * Group commit, as the worker uses it: d is granted, and b released and
 * handed to its waiter, in one transaction, which commits whatever
 * succeeded.  A call that failed in it must have left nothing behind
 * (its savepoint rolled back): the step then says which view the calls
 * that succeeded leave (r->expect).  If the commit fails, nothing of the
 * batch happened.
 */
static int
st_batch(struct run *r)
{
	struct lock_acquire_req q = mkreq(r, "d", NULL, false, 7);
	struct lock_handoff ho;
	struct lock_grant gd;
	int64_t now = r->gc.expires_at + 1;
	bool wake;
	int ra, rb, rc;

	if ((rc = lockcore_batch_begin(r->lc)) < 0)
		return rc;
	ra = grant(r, &q, now, &gd);
	memset(&ho, 0, sizeof(ho));
	if ((rb = lock_release(r->lc, "b", r->gb.token, now, &wake, &ho)) == 0)
		ck_assert_int_eq(ho.waiter_id, r->w7);
	if ((rc = lockcore_batch_end(r->lc, 0)) < 0)
		return rc;
	if (ra > 0)
		issued(&gd);
	if (rb == 0)
		issued(&ho.grant);
	if (ra > 0 && rb == 0)
		return LC_GRANTED;
	r->expect = *r->before;
	if (ra > 0)
		view_hold(&r->expect, "d", &gd);
	if (rb == 0) {
		view_hold(&r->expect, "b", &ho.grant);
		r->expect.st[name_index("b")].waiters = 0;
	}
	view_relist(&r->expect);
	r->partial = true;
	return ra < 0 ? ra : rb;
}

/* Long after: every lease is over, the sweep reclaims a, b and c. */
static int
st_sweep(struct run *r)
{
	int changed, rc;

	if ((rc = lockcore_sweep(r->lc, r->base + 200000, 100, 1000,
	    &changed)) < 0)
		return rc;
	ck_assert_int_ge(changed, 3);
	return rc;
}

static int
st_acquire_reclaimed(struct run *r)
{
	struct lock_acquire_req q = mkreq(r, "b", NULL, false, 8);
	struct lock_grant g;
	int rc;

	q.deadline = r->base + 300000;
	if ((rc = grant(r, &q, r->base + 200001, &g)) > 0)
		issued(&g);
	return rc;
}

static int
st_queue6(struct run *r)
{
	r->q6 = mkreq(r, "b", NULL, true, 9);
	r->q6.deadline = r->base + 300000;
	return queue(r, &r->q6, r->base + 200002, &r->w6);
}

static int
st_abandon(struct run *r)
{
	bool wake;
	int rc;

	if ((rc = lock_wait_abandon(r->lc, r->w6, &r->q6.who, r->base + 200003,
	    &wake, NULL)) < 0)
		return rc;
	ck_assert_int_eq(rc, LC_OK);
	return rc;
}

struct step {
	const char *what;
	int (*fn)(struct run *);
	int64_t at;          /* the step's time, from the run's base; -1:
	                        the expiry of c's lease (t_of()) */
};

static const struct step steps[] = {
	{ "open", st_open, 0 },
	{ "acquire", st_acquire, 1 },
	{ "queue", st_queue2, 2 },
	{ "queue again", st_queue3, 3 },
	{ "acquire b", st_acquire_b, 4 },
	{ "renew", st_renew, 5 },
	{ "release with handoff", st_release_handoff, 6 },
	{ "poll handed", st_poll_handed, 7 },
	{ "cancel", st_cancel, 8 },
	{ "acquire c", st_acquire_c, 9 },
	{ "queue on c", st_queue5, 10 },
	{ "queue on b", st_queue7, 11 },
	{ "poll after expiry", st_poll_expiry, -1 },
	{ "batch", st_batch, -2 },
	{ "sweep", st_sweep, 200000 },
	{ "acquire reclaimed", st_acquire_reclaimed, 200001 },
	{ "queue on reclaimed b", st_queue6, 200002 },
	{ "abandon", st_abandon, 200003 },
};
#define NSTEPS (sizeof(steps) / sizeof(steps[0]))

static int64_t
t_of(const struct run *r, size_t i)
{
	if (steps[i].at == -1)
		return r->base + 9 + TTL;       /* c's expires_at */
	if (steps[i].at == -2)
		return r->base + 9 + TTL + 1;
	return r->base + steps[i].at;
}

static struct lockcore *
reopen(const struct lockcore_opts *o)
{
	struct lockcore *c = NULL;
	char err[256] = "";
	int rc;

	rc = lockcore_open(&c, dbpath, o, err, sizeof(err));
	ck_assert_msg(rc == 0, "reopen: %d %s", rc, err);
	return c;
}

/*
 * After the call of step i failed: the same connection (if it opened)
 * shows `want` (what it showed before the call, or, after a batch that
 * committed its other calls, what those did) and still writes; so does a
 * new one; the file is sound; and a new grant of each lock carries a
 * fence above every fence issued so far.  An open that failed without
 * touching the database file or its WAL (`files`: their stamps before
 * it) has left them as they were, which is all there is to check: most
 * of the allocations of an open prepare its statements, before it writes.
 */
static void
after_failure(struct run *r, size_t i, const struct view *want,
    const struct stamp files[2])
{
	struct stamp now_files[2];
	struct view v;
	int64_t now = t_of(r, i), later = r->base + 500000;
	int k;

	if (r->lc == NULL) {
		stamp_db(now_files);
		if (stamp_same(files, now_files))
			return;
	} else {
		view_of(r->lc, now, &v);
		view_same(&v, want, "same connection");
		ck_assert_int_eq(lockcore_ping(r->lc), 0);
		lockcore_close(r->lc);
	}
	r->lc = reopen(&r->opts);
	view_of(r->lc, now, &v);
	view_same(&v, want, "reopened");
	integrity_ok();
	for (k = 0; k < NNAMES; k++) {
		struct lock_acquire_req q = mkreq(r, names[k], NULL, false, 99);
		struct lock_grant g;
		bool wake;

		q.deadline = later + 1;
		ck_assert_int_eq(grant(r, &q, later, &g), LC_GRANTED);
		issued(&g);
		ck_assert_int_eq(lock_release(r->lc, g.name, g.token, later,
		    &wake, NULL), LC_OK);
	}
}

/*
 * Run `n` of the workload, failing the nth call of kind k.  Returns true
 * if a fault was injected.  *final (may be NULL) gets the view at the
 * end, relative to the run's base.
 */
static bool
one_run(enum fault k, long n, int64_t base, const struct lockcore_opts *o,
    struct view *final)
{
	struct run r;
	struct view before;
	struct stamp files[2];
	size_t i;
	long had;
	int rc;

	memset(&r, 0, sizeof(r));
	r.opts = *o;
	r.base = base;
	fi_reset(k, n);
	/* Every lease and deadline of the runs before is over. */
	memset(&before, 0, sizeof(before));
	for (i = 0; i < NSTEPS; i++) {
		if (r.lc != NULL)
			view_of(r.lc, t_of(&r, i), &before);
		else
			stamp_db(files);
		r.before = &before;
		had = fi.injected;
		fi.armed = true;
		rc = steps[i].fn(&r);
		fi.armed = false;
		if (rc >= 0)
			continue;
		ck_assert_msg(fi.injected > had, "step %s failed with nothing "
		    "injected: %d %s", steps[i].what, rc,
		    r.lc != NULL ? lockcore_errmsg(r.lc) : "");
		after_failure(&r, i, r.partial ? &r.expect : &before, files);
		break;
	}
	if (i == NSTEPS && final != NULL) {
		view_of(r.lc, t_of(&r, NSTEPS - 1), final);
		view_relative(final, base);
	}
	lockcore_close(r.lc);
	return fi.injected > 0;
}

/*
 * Fails call 1, 2, 3, ... of kind k, one run each, until a run injects
 * nothing (the workload made fewer calls).  A run that completed although
 * a fault was injected ends as the run without faults does.
 */
static void
every_n(enum fault k, const struct lockcore_opts *o)
{
	struct view ref, v;
	int64_t base = T0;
	long n, failed = 0;

	(void)one_run(k, 0, base, o, &ref);
	integrity_ok();
	for (n = 1;; n++) {
		base += RUN_MS;
		memset(&v, 0, sizeof(v));
		v.nlisted = -1;
		if (!one_run(k, n, base, o, &v))
			break;
		if (v.nlisted >= 0)
			view_same(&v, &ref, "completed despite the fault");
		else
			failed++;
	}
	integrity_ok();
	/* The workload makes calls of each kind, and some of them fail. */
	ck_assert_int_gt(n, 1);
	ck_assert_int_gt(failed, 0);
	fprintf(stderr, "check_faults: kind %d: %ld runs, %ld failed calls\n",
	    (int)k, n, failed);
}

/*
 * Creating a database: call n of kind k fails during the first open of a
 * new file, for every n (every `stride`th) until an open completes with
 * nothing injected.  After a failed open, the next one creates or
 * completes the schema, grants, and the file is sound.
 */
static void
create_every_n(enum fault k, long stride, const struct lockcore_opts *o)
{
	static const char *const sfx[3] = { "", "-wal", "-shm" };
	struct lockcore *c;
	struct lock_grant g;
	char err[256], p[sizeof(dbpath) + 4];
	long n, opens = 0, failed = 0;
	int i, rc;

	for (n = 1;; n += stride) {
		opens++;
		for (i = 0; i < 3; i++) {
			ck_assert(snprintf(p, sizeof(p), "%s%s", dbpath, sfx[i]) <
			    (int)sizeof(p));
			ck_assert(unlink(p) == 0 || errno == ENOENT);
		}
		memset(last_fence, 0, sizeof(last_fence));
		c = NULL;
		fi_reset(k, n);
		fi.armed = true;
		rc = lockcore_open(&c, dbpath, o, err, sizeof(err));
		fi.armed = false;
		if (rc < 0) {
			ck_assert_msg(fi.injected > 0, "open failed with nothing "
			    "injected: %s", err);
			ck_assert_ptr_null(c);
			failed++;
		}
		lockcore_close(c);
		if (fi.injected == 0)
			break;
		c = reopen(o);
		{
			struct run r = { .lc = c, .base = T0 };
			struct lock_acquire_req q = mkreq(&r, "a", NULL, false,
			    1);

			ck_assert_int_eq(grant(&r, &q, T0, &g), LC_GRANTED);
			issued(&g);
		}
		lockcore_close(c);
		integrity_ok();
	}
	ck_assert_int_gt(failed, 0);
	fprintf(stderr, "check_faults: creating, kind %d: %ld opens, %ld "
	    "failed\n", (int)k, opens, failed);
}

static void
setup(void)
{
	unit_testdir(dir, sizeof(dir));
	ck_assert(snprintf(dbpath, sizeof(dbpath), "%s/lock.db", dir) <
	    (int)sizeof(dbpath));
	memset(last_fence, 0, sizeof(last_fence));
}

static void
teardown(void)
{
	ck_assert_int_eq(unit_rm_tree(dir), 0);
}

START_TEST(test_fail_malloc)
{
	const struct lockcore_opts o = { .busy_timeout_ms = 1000 };

	every_n(F_MALLOC, &o);
}
END_TEST

START_TEST(test_fail_write)
{
	const struct lockcore_opts o = { .busy_timeout_ms = 1000 };

	every_n(F_WRITE, &o);
}
END_TEST

/* synchronous=FULL: every commit syncs. */
START_TEST(test_fail_sync)
{
	const struct lockcore_opts o = { .busy_timeout_ms = 1000,
	    .synchronous_full = 1 };

	every_n(F_SYNC, &o);
}
END_TEST

/*
 * Creating the schema makes some 4,700 allocations: every 31st fails
 * here (test_fail_malloc fails every one of an existing file's open).
 */
START_TEST(test_fail_create)
{
	const struct lockcore_opts o = { .busy_timeout_ms = 1000 };
	const struct lockcore_opts full = { .busy_timeout_ms = 1000,
	    .synchronous_full = 1 };

	create_every_n(F_WRITE, 1, &o);
	create_every_n(F_SYNC, 1, &full);
	create_every_n(F_MALLOC, 31, &o);
}
END_TEST

static Suite *
faults_suite(void)
{
	Suite *s = suite_create("faults");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_fail_malloc);
	tcase_add_test(tc, test_fail_write);
	tcase_add_test(tc, test_fail_sync);
	tcase_add_test(tc, test_fail_create);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	if (fi_install() < 0) {
		fprintf(stderr, "check_faults: cannot install the SQLite hooks\n");
		return EXIT_FAILURE;
	}
	return unit_run(faults_suite(), "/dev/shm/check_faults.XXXXXX");
}
