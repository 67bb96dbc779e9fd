/*
 * lctest: what the lockcore tests (check_lockcore, check_invariants) build
 * their calls from: the time base they pass explicitly, a test's database
 * (a SQLite file in its own directory, or a PostgreSQL database), a
 * connection that must open, a request of this process, an acquire that
 * must be granted.
 */
#ifndef LCTEST_H
#define LCTEST_H

#include <sys/types.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lockcore.h"

#define T0     INT64_C(1700000000000)   /* "now" at the start of a test */
#define TTL    INT64_C(10000)           /* a request's lease */
#define WAITMS INT64_C(60000)           /* a request's deadline after T0 */

/* The size of a buffer for a test's database (a path or a URI). */
#define LCT_PATH_MAX 512

/*
 * True when the environment variable HTTPLOCK_TEST_PG names a PostgreSQL
 * server (a libpq URI without a database, such as tests/pgcluster.py's
 * postgresql://httplock@127.0.0.1:PORT): the tests then run on it instead
 * of on SQLite files.
 */
bool		 lct_pg(void);

/*
 * A test's fixture: makes a fresh directory under unit_topdir (in dir[dn])
 * and opens the test's database with o, its name in dbpath[pn] (give it
 * LCT_PATH_MAX bytes).  On SQLite, that is "lock.db" in the directory; on
 * PostgreSQL (lct_pg()), the database lc_<program> of the server, made
 * if missing, without the schema httplock (dropped), so that each test
 * starts on an empty store.
 */
struct lockcore	*lct_setup(char *dir, size_t dn, char *dbpath, size_t pn,
		    const struct lockcore_opts *o);

/*
 * Names in path[n] a store that nobody has opened yet, for tests where
 * several connections create it at once: on SQLite, `name` in the test's
 * directory `dir`; on PostgreSQL, the test's database, *c closed (and set
 * to NULL) and its schema dropped.
 */
void		 lct_fresh(struct lockcore **c, char *path, size_t n,
		    const char *dir, const char *name);

/*
 * The integer in the first column of the first row of `sql` (a query on
 * lockcore's tables that both stores understand) run on the store at
 * `path` over a connection of its own; -1 if there is no row, 0 for NULL.
 * Fails the test on any error.
 */
int64_t		 lct_query_int(const char *path, const char *sql);

/* Closes *c (and sets it to NULL), then removes the test's directory. */
void		 lct_teardown(struct lockcore **c, const char *dir);

/* Opens the database at `path` with options o; fails the test if not. */
struct lockcore	*lct_open(const char *path, const struct lockcore_opts *o);

/* A request for `name` by this process with waiter key `key` and
 * request_id `rid` (NULL: none), lease TTL, deadline T0 + WAITMS. */
struct lock_acquire_req lct_req(const char *name, const char *rid, bool wait,
		    uint64_t key);

/* A pid that certainly has no process: a child that exited and was
 * reaped. */
pid_t		 lct_dead_pid(void);

/* Acquires with `r` at `now` on connection c and insists on a grant. */
struct lock_grant lct_grant(struct lockcore *c, struct lock_acquire_req *r,
		    int64_t now);

#endif
