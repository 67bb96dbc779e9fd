/*
 * lctest: what the lockcore tests (check_lockcore, check_invariants) build
 * their calls from: the time base they pass explicitly, a test's database
 * in its own directory, a connection that must open, a request of this
 * process, an acquire that must be granted.
 */
#ifndef LCTEST_H
#define LCTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lockcore.h"

#define T0     INT64_C(1700000000000)   /* "now" at the start of a test */
#define TTL    INT64_C(10000)           /* a request's lease */
#define WAITMS INT64_C(60000)           /* a request's deadline after T0 */

/*
 * A test's fixture: makes a fresh directory under unit_topdir (in dir[dn]),
 * names the database "lock.db" in it (in dbpath[pn]) and opens it with o.
 */
struct lockcore	*lct_setup(char *dir, size_t dn, char *dbpath, size_t pn,
		    const struct lockcore_opts *o);

/* Closes *c (and sets it to NULL), then removes the test's directory. */
void		 lct_teardown(struct lockcore **c, const char *dir);

/* Opens the database at `path` with options o; fails the test if not. */
struct lockcore	*lct_open(const char *path, const struct lockcore_opts *o);

/* A request for `name` by this process with waiter key `key` and
 * request_id `rid` (NULL: none), lease TTL, deadline T0 + WAITMS. */
struct lock_acquire_req lct_req(const char *name, const char *rid, bool wait,
		    uint64_t key);

/* Acquires with `r` at `now` on connection c and insists on a grant. */
struct lock_grant lct_grant(struct lockcore *c, struct lock_acquire_req *r,
		    int64_t now);

#endif
