/*
 * lctest: the database, requests and grants of the lockcore tests
 * (lctest.h), each failing the test when lockcore does not answer as
 * required.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lctest.h"
#include "proc.h"
#include "unit.h"

struct lockcore *
lct_open(const char *path, const struct lockcore_opts *o)
{
	struct lockcore *c = NULL;
	char err[256] = "";
	int rc;

	rc = lockcore_open(&c, path, o, err, sizeof(err));
	ck_assert_msg(rc == 0, "lockcore_open(%s): %d %s", path, rc, err);
	ck_assert_ptr_nonnull(c);
	return c;
}

struct lock_acquire_req
lct_req(const char *name, const char *rid, bool wait, uint64_t key)
{
	struct lock_acquire_req r;

	memset(&r, 0, sizeof(r));
	r.name = name;
	r.owner = "tester";
	r.request_id = rid;
	r.ttl_ms = TTL;
	r.deadline = T0 + WAITMS;
	r.wait = wait;
	r.max_waiters = 100;
	r.who.pid = getpid();
	r.who.pstart = proc_start(getpid());
	r.who.key = key;
	return r;
}

struct lock_grant
lct_grant(struct lockcore *c, struct lock_acquire_req *r, int64_t now)
{
	struct lock_grant g;
	struct lock_wait_info wi;
	int rc;

	rc = lock_acquire(c, r, now, &g, &wi);
	ck_assert_msg(rc == LC_GRANTED, "acquire %s: %d", r->name, rc);
	return g;
}

struct lockcore *
lct_setup(char *dir, size_t dn, char *dbpath, size_t pn,
    const struct lockcore_opts *o)
{
	unit_testdir(dir, dn);
	ck_assert(snprintf(dbpath, pn, "%s/lock.db", dir) < (int)pn);
	return lct_open(dbpath, o);
}

void
lct_teardown(struct lockcore **c, const char *dir)
{
	lockcore_close(*c);
	*c = NULL;
	ck_assert_int_eq(unit_rm_tree(dir), 0);
}
